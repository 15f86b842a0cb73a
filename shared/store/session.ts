/**
 * Session tokens: the causal context a client has seen, as a vector of per-region write
 * sequence numbers ("I have seen region r's writes up to n"). A replica that covers the vector
 * for the key it serves can serve that client without going back in time. The token is opaque
 * to clients and signed by the router (HMAC), so it cannot be forged to make a replica wait for
 * writes that never happened. This module is the pure half: the token's shape.
 */
import { type RegionId } from "../regions.ts";
import { type VersionVector, formatVv, parseVv, vvEntries, vvGet } from "../version-vector.ts";

/** Token format version, the first field of every token. */
export const SESSION_TOKEN_VERSION = "s1";

/** The signed payload of a token: the seen vector in its compact text form. */
export function encodeSessionPayload(seen: VersionVector): string {
  return formatVv(seen);
}

/** Decodes a payload; `undefined` when malformed. */
export function decodeSessionPayload(text: string): VersionVector | undefined {
  return parseVv(text);
}

/** Splits `s1.<payload>.<mac>`; `undefined` when the shape is wrong. */
export function splitSessionToken(token: string): { payload: string; mac: string } | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || parts[0] !== SESSION_TOKEN_VERSION) return undefined;
  const [, payload, mac] = parts as [string, string, string];
  return { payload, mac };
}

/** Joins a payload and its MAC into a token. */
export function joinSessionToken(payload: string, mac: string): string {
  return `${SESSION_TOKEN_VERSION}.${payload}.${mac}`;
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
