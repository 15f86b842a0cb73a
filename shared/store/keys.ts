/**
 * Keys: their bounds, and the key range a prefix covers. Keys order as SQLite orders TEXT
 * (UTF-8 bytes, which is code point order).
 */
import { type Result, fail, ok } from "../errors.ts";

/** Longest key in UTF-8 bytes (the Workers KV bound). */
export const KEY_BYTES_MAX = 512;

/** A lone UTF-16 surrogate: not a character, and UTF-8 would turn it into U+FFFD. */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Whether `key` is text: a key with a lone surrogate would encode to the same UTF-8 as another
 * key, so the two would share a Merkle entry and anti-entropy could not tell them apart.
 */
export function wellFormedKey(key: string): boolean {
  return !LONE_SURROGATE.test(key);
}

/** Checks a decoded key: well-formed text of 1 to {@link KEY_BYTES_MAX} bytes of UTF-8. */
export function checkKey(key: string): Result<string> {
  if (!wellFormedKey(key)) return fail("invalid_key", "the key holds a lone UTF-16 surrogate; keys are text");
  const length = new TextEncoder().encode(key).length;
  if (length === 0) return fail("invalid_key", "the key is empty; keys are 1 to 512 bytes of UTF-8");
  if (length > KEY_BYTES_MAX)
    return fail("invalid_key", `the key is ${length} bytes; keys are at most ${KEY_BYTES_MAX} bytes of UTF-8`);
  return ok(key);
}

/** The smallest string greater than every string starting with `prefix`, or null if none exists. */
export function prefixEnd(prefix: string): string | null {
  const points = [...prefix];
  while (points.length > 0) {
    const last = (points.pop() as string).codePointAt(0) as number;
    let next = last + 1;
    // Skip the surrogate block: those code points are not characters and sort as U+E000.. in UTF-8 order.
    if (next >= 0xd800 && next <= 0xdfff) next = 0xe000;
    if (next <= 0x10ffff) return points.join("") + String.fromCodePoint(next);
  }
  return null;
}
