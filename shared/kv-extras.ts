/**
 * Workers KV's two extras on a value, as the HTTP API takes and answers them: metadata (any
 * JSON, at most {@link METADATA_BYTES_MAX} bytes serialized) in the `X-KV-Metadata` header, and
 * an expiration, absolute (`?expiration=<unix seconds>`) or relative (`?expiration_ttl=<seconds>`).
 * Both are stored in the value's register (`shared/crdt/lww-register.ts`) and replicate with it.
 */
import { type Result, fail, ok } from "./errors.ts";

/** Largest metadata, serialized, as in Workers KV. */
export const METADATA_BYTES_MAX = 1024;
/** Latest expiration taken (unix seconds): year 9999, far inside the safe-integer range. */
export const EXPIRATION_SECONDS_MAX = 253_402_300_799;

/** A non-negative integer written in decimal digits only, or undefined. */
function digits(raw: string): number | undefined {
  if (!/^\d{1,15}$/.test(raw)) return undefined;
  return Number(raw);
}

/**
 * The expiration a write asks for (unix seconds), or null for none: from `expiration` (must be
 * in the future by `nowMs`) or `expiration_ttl` (at least 1 second from `nowMs`), not both.
 */
export function parseExpiration(
  expiration: string | undefined,
  ttl: string | undefined,
  nowMs: number,
): Result<number | null> {
  const nowSeconds = Math.floor(nowMs / 1000);
  if (expiration !== undefined && ttl !== undefined)
    return fail("invalid_query", "give expiration or expiration_ttl, not both");
  if (expiration !== undefined) {
    const at = digits(expiration);
    if (at === undefined || at > EXPIRATION_SECONDS_MAX)
      return fail("invalid_query", `expiration must be a time in unix seconds; got "${expiration}"`);
    if (at <= nowSeconds)
      return fail("invalid_query", `expiration ${at} is not in the future (now is ${nowSeconds})`, {
        nowSeconds,
      });
    return ok(at);
  }
  if (ttl !== undefined) {
    const seconds = digits(ttl);
    if (seconds === undefined || seconds < 1 || nowSeconds + seconds > EXPIRATION_SECONDS_MAX)
      return fail("invalid_query", `expiration_ttl must be a whole number of seconds, at least 1; got "${ttl}"`);
    return ok(nowSeconds + seconds);
  }
  return ok(null);
}

/**
 * The metadata a write carries, as compact JSON text, or null for none: the header must hold
 * one JSON value of at most {@link METADATA_BYTES_MAX} bytes once serialized.
 */
export function parseMetadata(header: string | undefined): Result<string | null> {
  if (header === undefined) return ok(null);
  let value: unknown;
  try {
    value = JSON.parse(header);
  } catch {
    return fail("invalid_body", "X-KV-Metadata must be JSON");
  }
  const text = JSON.stringify(value);
  const bytes = new TextEncoder().encode(text).length;
  if (bytes > METADATA_BYTES_MAX)
    return fail("invalid_body", `X-KV-Metadata is ${bytes} bytes serialized; at most ${METADATA_BYTES_MAX}`);
  return ok(text);
}

/**
 * JSON text safe in an HTTP header: every character beyond ASCII written as a `\u` escape
 * (the same JSON value; header values are bytes, and Workers refuses characters beyond Latin-1).
 */
export function headerJson(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
