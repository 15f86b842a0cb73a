/**
 * Session tokens: the causal context a client has seen, as a vector of per-region write
 * sequence numbers for each shard ("in shard s I have seen region r's writes up to n"; each
 * shard is its own replica group with its own numbering, `shared/shards.ts`). A replica that
 * covers its shard's vector for the key it serves can serve that client without going back in
 * time. The token is opaque
 * to clients and signed by the router (HMAC), so it cannot be forged to make a replica wait for
 * writes that never happened. This module is the pure half: the token's shape, and which of
 * the router's secrets a token may be checked against. Hashing and MACs stay in the router.
 */
import { assert } from "../assert.ts";
import { ByteReader, ByteWriter, DecodeError, fromBase64Url, toBase64Url } from "../bytes.ts";
import { type RegionId } from "../regions.ts";
import { SHARDS_MAX, type ShardIndex } from "../shards.ts";
import {
  EMPTY_VV,
  type VersionVector,
  parseVv,
  readVv,
  vvEntries,
  vvGet,
  vvMerge,
  writeVv,
} from "../version-vector.ts";

/**
 * Token format version of every token the router issues: `s3.<kid>.<payload>.<mac>`, whose
 * payload holds one vector per shard.
 */
export const SESSION_TOKEN_VERSION = "s3";

/**
 * The format before shards, `s2.<kid>.<payload>.<mac>`, whose payload is one vector: still
 * accepted, as shard 0's.
 */
export const SESSION_TOKEN_VERSION_V2 = "s2";

/**
 * The first format, `s1.<payload>.<mac>`, which names no key. The router still accepts it, so
 * clients holding one when the router that issues `s2` is deployed keep their sessions.
 */
export const SESSION_TOKEN_VERSION_V1 = "s1";

/** Characters of base64url in a key id: 48 bits, plenty to tell a current from a previous secret. */
export const SESSION_KID_LENGTH = 8;

/**
 * Prefix of the text whose SHA-256 gives a secret's key id. It separates this use of the secret
 * from the MAC, so the published id says nothing about the MAC key beyond naming it.
 */
export const SESSION_KID_CONTEXT = "kv-session-kid:";

const KID_PATTERN = new RegExp(`^[A-Za-z0-9_-]{${SESSION_KID_LENGTH}}$`);

/** A token split into its fields; `signed` is the exact text its MAC covers. */
export type SessionTokenParts =
  | {
      readonly version: typeof SESSION_TOKEN_VERSION | typeof SESSION_TOKEN_VERSION_V2;
      readonly kid: string;
      readonly payload: string;
      readonly mac: string;
      readonly signed: string;
    }
  | {
      readonly version: typeof SESSION_TOKEN_VERSION_V1;
      readonly kid: undefined;
      readonly payload: string;
      readonly mac: string;
      readonly signed: string;
    };

/**
 * What a session has seen: per shard (a replica group, named by its index in every layout),
 * the vector of writes seen there. Shards it never touched are absent.
 */
export type SessionSeen = ReadonlyMap<ShardIndex, VersionVector>;

/** A session that has seen nothing. */
export const EMPTY_SEEN: SessionSeen = new Map();

/** What `seen` has seen in `shard`. */
export function seenIn(seen: SessionSeen, shard: ShardIndex): VersionVector {
  return seen.get(shard) ?? EMPTY_VV;
}

/** Most tokens one X-Session-Token header may carry (a client's answers that crossed in flight). */
export const SESSION_TOKENS_MAX = 16;

/** Everything `a` or `b` has seen: the session of two answers that crossed in flight. */
export function joinSeen(a: SessionSeen, b: SessionSeen): SessionSeen {
  let out = a;
  for (const [shard, vv] of b) out = seeAlso(out, shard, vv);
  return out;
}

/** `seen` having also seen `vv` in `shard`. */
export function seeAlso(seen: SessionSeen, shard: ShardIndex, vv: VersionVector): SessionSeen {
  const out = new Map(seen);
  out.set(shard, vvMerge(seenIn(seen, shard), vv));
  return out;
}

/**
 * The signed payload of an `s3` token: base64url of the number of shards seen, then per shard
 * (ascending) its index and its vector in binary form.
 */
export function encodeSessionPayload(seen: SessionSeen): string {
  const shards = [...seen].filter(([, vv]) => vvEntries(vv).length > 0).sort(([a], [b]) => a - b);
  const writer = new ByteWriter().varint(shards.length);
  for (const [shard, vv] of shards) {
    writer.varint(shard);
    writeVv(writer, vv);
  }
  return toBase64Url(writer.finish());
}

/**
 * Decodes a payload of `version`; `undefined` when malformed. An `s1` or `s2` payload is one
 * vector, from before shards: it counts as shard 0's.
 */
export function decodeSessionPayload(
  text: string,
  version: SessionTokenParts["version"] = SESSION_TOKEN_VERSION,
): SessionSeen | undefined {
  if (version !== SESSION_TOKEN_VERSION) {
    const vv = parseVv(text);
    return vv === undefined ? undefined : new Map([[0, vv]]);
  }
  try {
    const reader = new ByteReader(fromBase64Url(text));
    const n = reader.varint();
    if (n > SHARDS_MAX) return undefined;
    const seen = new Map<ShardIndex, VersionVector>();
    let previous = -1;
    for (let i = 0; i < n; i += 1) {
      const shard = reader.varint();
      const vv = readVv(reader);
      // Canonical form only: ascending shards, no empty vector.
      if (shard <= previous || shard >= SHARDS_MAX || vvEntries(vv).length === 0) return undefined;
      seen.set(shard, vv);
      previous = shard;
    }
    reader.end();
    return seen;
  } catch (error) {
    if (error instanceof DecodeError) return undefined;
    throw error;
  }
}

/** The text to hash (SHA-256) for the key id of `secret`. */
export function sessionKidInput(secret: string): string {
  return `${SESSION_KID_CONTEXT}${secret}`;
}

/** The key id of a secret from the SHA-256 digest of {@link sessionKidInput}: its first base64url characters. */
export function sessionKidOf(digest: Uint8Array): string {
  const kid = toBase64Url(digest).slice(0, SESSION_KID_LENGTH);
  assert(KID_PATTERN.test(kid), "a key id needs a digest of at least 6 bytes");
  return kid;
}

/**
 * The text an `s2` MAC covers: version, key id and payload together, so a MAC cannot be moved
 * to another key id or format version.
 */
export function sessionSignedText(
  kid: string,
  payload: string,
  version: typeof SESSION_TOKEN_VERSION | typeof SESSION_TOKEN_VERSION_V2 = SESSION_TOKEN_VERSION,
): string {
  assert(KID_PATTERN.test(kid), "a key id is SESSION_KID_LENGTH base64url characters");
  return `${version}.${kid}.${payload}`;
}

/** Joins a key id, a payload and the MAC of their {@link sessionSignedText} into a token. */
export function joinSessionToken(kid: string, payload: string, mac: string): string {
  return `${sessionSignedText(kid, payload)}.${mac}`;
}

/**
 * Splits `s3.<kid>.<payload>.<mac>`, the older `s2.<kid>.<payload>.<mac>` or the oldest
 * `s1.<payload>.<mac>`; `undefined` when the shape is wrong or a field is empty. An `s1` MAC
 * covers the payload alone, which cannot be confused with an `s2` or `s3` signed text: a payload is base64url and never contains the dots that
 * one has.
 */
export function splitSessionToken(token: string): SessionTokenParts | undefined {
  const parts = token.split(".");
  const version = parts[0];
  if (parts.length === 4 && (version === SESSION_TOKEN_VERSION || version === SESSION_TOKEN_VERSION_V2)) {
    const [, kid, payload, mac] = parts as [string, string, string, string];
    if (!KID_PATTERN.test(kid) || payload === "" || mac === "") return undefined;
    return { version, kid, payload, mac, signed: sessionSignedText(kid, payload, version) };
  }
  if (parts.length === 3 && parts[0] === SESSION_TOKEN_VERSION_V1) {
    const [, payload, mac] = parts as [string, string, string];
    if (payload === "" || mac === "") return undefined;
    return { version: SESSION_TOKEN_VERSION_V1, kid: undefined, payload, mac, signed: payload };
  }
  return undefined;
}

/**
 * The keys a token may be verified with, in the order given: those whose id the token names,
 * or every key for an `s1` token, which names none. An empty list means the token was signed
 * with a secret the router no longer holds.
 */
export function sessionCandidates<K extends { readonly kid: string }>(
  parts: SessionTokenParts,
  keys: readonly K[],
): K[] {
  if (parts.kid === undefined) return [...keys];
  return keys.filter((key) => key.kid === parts.kid);
}

/**
 * The regions whose writes a replica with applied vector `applied` still lacks to serve a
 * session that has seen `seen`: every region r with seen[r] > applied[r].
 */
export function sessionLagging(applied: VersionVector, seen: VersionVector): RegionId[] {
  return vvEntries(seen)
    .filter(([region, count]) => vvGet(applied, region) < count)
    .map(([region]) => region);
}
