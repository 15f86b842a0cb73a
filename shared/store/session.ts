/**
 * Session tokens: the causal context a client has seen, as a vector of per-region write
 * sequence numbers ("I have seen region r's writes up to n"). A replica that covers the vector
 * for the key it serves can serve that client without going back in time. The token is opaque
 * to clients and signed by the router (HMAC), so it cannot be forged to make a replica wait for
 * writes that never happened. This module is the pure half: the token's shape, and which of
 * the router's secrets a token may be checked against. Hashing and MACs stay in the router.
 */
import { assert } from "../assert.ts";
import { toBase64Url } from "../bytes.ts";
import { type RegionId } from "../regions.ts";
import { type VersionVector, formatVv, parseVv, vvEntries, vvGet } from "../version-vector.ts";

/** Token format version of every token the router issues: `s2.<kid>.<payload>.<mac>`. */
export const SESSION_TOKEN_VERSION = "s2";

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
      readonly version: typeof SESSION_TOKEN_VERSION;
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

/** The signed payload of a token: the seen vector in its compact text form. */
export function encodeSessionPayload(seen: VersionVector): string {
  return formatVv(seen);
}

/** Decodes a payload; `undefined` when malformed. */
export function decodeSessionPayload(text: string): VersionVector | undefined {
  return parseVv(text);
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
export function sessionSignedText(kid: string, payload: string): string {
  assert(KID_PATTERN.test(kid), "a key id is SESSION_KID_LENGTH base64url characters");
  return `${SESSION_TOKEN_VERSION}.${kid}.${payload}`;
}

/** Joins a key id, a payload and the MAC of their {@link sessionSignedText} into a token. */
export function joinSessionToken(kid: string, payload: string, mac: string): string {
  return `${sessionSignedText(kid, payload)}.${mac}`;
}

/**
 * Splits `s2.<kid>.<payload>.<mac>` or the older `s1.<payload>.<mac>`; `undefined` when the
 * shape is wrong or a field is empty. An `s1` MAC covers the payload alone, which cannot be
 * confused with an `s2` signed text: a payload is base64url and never contains the dots that
 * one has.
 */
export function splitSessionToken(token: string): SessionTokenParts | undefined {
  const parts = token.split(".");
  if (parts.length === 4 && parts[0] === SESSION_TOKEN_VERSION) {
    const [, kid, payload, mac] = parts as [string, string, string, string];
    if (!KID_PATTERN.test(kid) || payload === "" || mac === "") return undefined;
    return { version: SESSION_TOKEN_VERSION, kid, payload, mac, signed: sessionSignedText(kid, payload) };
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
