/**
 * Signs and verifies session tokens with HMAC-SHA-256. Tokens are signed with `SESSION_SECRET`
 * and name it by a key id; during a rotation, tokens signed with `SESSION_SECRET_PREVIOUS` are
 * still accepted, so no client's session breaks when the secret changes. Verification is
 * constant-time (`crypto.subtle.verify`).
 */
import { fromBase64Url, toBase64Url, utf8, DecodeError } from "../../shared/bytes.ts";
import { StoreError } from "../../shared/errors.ts";
import {
  EMPTY_SEEN,
  SESSION_TOKENS_MAX,
  type SessionSeen,
  decodeSessionPayload,
  encodeSessionPayload,
  joinSeen,
  joinSessionToken,
  sessionCandidates,
  sessionKidInput,
  sessionKidOf,
  sessionSignedText,
  splitSessionToken,
} from "../../shared/store/session.ts";

/** The secrets of session tokens: `current` signs and verifies, `previous` only verifies. */
export interface SessionSecrets {
  readonly current: string;
  readonly previous?: string | undefined;
}

/** An imported HMAC key and the public id that tokens signed with it carry. */
interface SessionKey {
  readonly kid: string;
  readonly key: CryptoKey;
}

/**
 * Imported keys kept per isolate. A rotation adds one secret at a time, so a handful is plenty;
 * the bound only keeps a misuse (a secret per request) from growing the map without limit.
 */
const SESSION_KEYS_CACHED_MAX = 8;

const keys = new Map<string, Promise<SessionKey>>();

async function importSessionKey(secret: string): Promise<SessionKey> {
  const [key, digest] = await Promise.all([
    crypto.subtle.importKey("raw", utf8(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]),
    crypto.subtle.digest("SHA-256", utf8(sessionKidInput(secret))),
  ]);
  return { kid: sessionKidOf(new Uint8Array(digest)), key };
}

function sessionKey(secret: string): Promise<SessionKey> {
  let key = keys.get(secret);
  if (key === undefined) {
    if (keys.size >= SESSION_KEYS_CACHED_MAX) keys.clear();
    key = importSessionKey(secret);
    keys.set(secret, key);
  }
  return key;
}

/**
 * The session secrets of a Worker environment. `SESSION_SECRET_PREVIOUS` is optional, and
 * wrangler's `[secrets]` can only list required secrets, so `wrangler types` does not declare
 * it: it is read here, and only here, as an optional string. An empty value counts as unset.
 */
export function sessionSecrets(env: Env): SessionSecrets {
  const previous = (env as Env & { SESSION_SECRET_PREVIOUS?: string }).SESSION_SECRET_PREVIOUS;
  if (typeof previous !== "string" || previous === "" || previous === env.SESSION_SECRET) {
    return { current: env.SESSION_SECRET };
  }
  return { current: env.SESSION_SECRET, previous };
}

/** A signed `s3` token for what a session has `seen`, under the current secret. */
export async function signSession(secrets: SessionSecrets, seen: SessionSeen): Promise<string> {
  const { kid, key } = await sessionKey(secrets.current);
  const payload = encodeSessionPayload(seen);
  const mac = await crypto.subtle.sign("HMAC", key, utf8(sessionSignedText(kid, payload)));
  return joinSessionToken(kid, payload, toBase64Url(new Uint8Array(mac)));
}

/**
 * What a session has seen; nothing when there is no token. The header holds one token, or several
 * separated by commas (answers that crossed in flight: the session has seen what all of them
 * have). A token verifies when it was signed with the current or the previous secret. A
 * garbled, forged or retired token is `invalid_session_token`, never silently ignored: ignoring
 * it would quietly drop the client's read-your-writes guarantee.
 */
export async function verifySession(secrets: SessionSecrets, header: string | undefined): Promise<SessionSeen> {
  const tokens = (header ?? "")
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t !== "");
  if (tokens.length > SESSION_TOKENS_MAX) {
    throw new StoreError(
      "invalid_session_token",
      `X-Session-Token carries ${tokens.length} tokens; at most ${SESSION_TOKENS_MAX}: send the latest answer's token`,
    );
  }
  const seens = await Promise.all(tokens.map((token) => verifyOne(secrets, token)));
  return seens.reduce(joinSeen, EMPTY_SEEN);
}

async function verifyOne(secrets: SessionSecrets, token: string): Promise<SessionSeen> {
  const invalid = new StoreError(
    "invalid_session_token",
    "the X-Session-Token header is malformed or was not issued by this store; send back a token exactly as received, or none",
  );
  const parts = splitSessionToken(token);
  if (parts === undefined) throw invalid;
  let mac: Uint8Array;
  try {
    mac = fromBase64Url(parts.mac);
  } catch (error) {
    if (error instanceof DecodeError) throw invalid;
    throw error;
  }
  const held = [secrets.current, secrets.previous].filter((secret) => secret !== undefined);
  const candidates = sessionCandidates(parts, await Promise.all(held.map(sessionKey)));
  if (candidates.length === 0) {
    throw new StoreError(
      "invalid_session_token",
      "the X-Session-Token header names a signing key this store does not hold (its secret was retired, or the token is not from this store); send no token to start a new session",
    );
  }
  let valid = false;
  // At most two candidates (current and previous), each checked in constant time.
  for (const { key } of candidates) {
    if (await crypto.subtle.verify("HMAC", key, mac, utf8(parts.signed))) {
      valid = true;
      break;
    }
  }
  if (!valid) throw invalid;
  const seen = decodeSessionPayload(parts.payload, parts.version);
  if (seen === undefined) throw invalid;
  return seen;
}
