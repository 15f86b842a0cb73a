/**
 * Signs and verifies session tokens with HMAC-SHA-256 under the `SESSION_SECRET` secret.
 * Verification is constant-time (`crypto.subtle.verify`).
 */
import { fromBase64Url, toBase64Url, utf8, DecodeError } from "../../shared/bytes.ts";
import { StoreError } from "../../shared/errors.ts";
import {
  decodeSessionPayload,
  encodeSessionPayload,
  joinSessionToken,
  splitSessionToken,
} from "../../shared/store/session.ts";
import { EMPTY_VV, type VersionVector } from "../../shared/version-vector.ts";

const keys = new Map<string, Promise<CryptoKey>>();

function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keys.get(secret);
  if (key === undefined) {
    key = crypto.subtle.importKey("raw", utf8(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    keys.set(secret, key);
  }
  return key;
}

/** A signed token for the vector `seen`. */
export async function signSession(secret: string, seen: VersionVector): Promise<string> {
  const payload = encodeSessionPayload(seen);
  const mac = await crypto.subtle.sign("HMAC", await hmacKey(secret), utf8(payload));
  return joinSessionToken(payload, toBase64Url(new Uint8Array(mac)));
}

/**
 * The vector inside a token; the empty vector when there is no token. A garbled or forged
 * token is `invalid_session_token`, never silently ignored: ignoring it would quietly drop the
 * client's read-your-writes guarantee.
 */
export async function verifySession(secret: string, token: string | undefined): Promise<VersionVector> {
  if (token === undefined || token === "") return EMPTY_VV;
  const invalid = new StoreError(
    "invalid_session_token",
    "the X-Session-Token header is malformed or was not issued by this store; send back a token exactly as received, or none",
  );
  const parts = splitSessionToken(token.trim());
  if (parts === undefined) throw invalid;
  let mac: Uint8Array;
  try {
    mac = fromBase64Url(parts.mac);
  } catch (error) {
    if (error instanceof DecodeError) throw invalid;
    throw error;
  }
  const valid = await crypto.subtle.verify("HMAC", await hmacKey(secret), mac, utf8(parts.payload));
  if (!valid) throw invalid;
  const seen = decodeSessionPayload(parts.payload);
  if (seen === undefined) throw invalid;
  return seen;
}
