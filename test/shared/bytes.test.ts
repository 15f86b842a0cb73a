import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ByteReader,
  ByteWriter,
  DecodeError,
  compareBytes,
  equalBytes,
  fromBase64Url,
  toBase64Url,
} from "../../shared/bytes.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0x0b_17e5;

function read<T>(bytes: Uint8Array, readValue: (reader: ByteReader) => T): T {
  const reader = new ByteReader(bytes);
  const value = readValue(reader);
  reader.end();
  return value;
}

/** The value `decode` returns, or the `DecodeError` it throws; any other error propagates. */
function attempt<T>(decode: () => T): T | DecodeError {
  try {
    return decode();
  } catch (error) {
    if (error instanceof DecodeError) return error;
    throw error;
  }
}

function varintOf(value: number): Uint8Array {
  return new ByteWriter().varint(value).finish();
}

describe("varint", () => {
  it("round-trips every non-negative safe integer", () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (value) => {
        expect(read(varintOf(value), (r) => r.varint())).toBe(value);
      }),
      { seed: SEED },
    );
  });

  it("uses the fewest bytes: seven bits per byte", () => {
    expect([...varintOf(0)]).toEqual([0]);
    expect([...varintOf(127)]).toEqual([127]);
    expect([...varintOf(128)]).toEqual([0x80, 0x01]);
    expect(varintOf(2 ** 21 - 1)).toHaveLength(3);
    expect(varintOf(Number.MAX_SAFE_INTEGER)).toHaveLength(8);
  });

  it("rejects a redundant trailing zero byte (a second encoding of the same number)", () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (value) => {
        const canonical = varintOf(value);
        // Set the continuation bit on the last byte and append a zero group: same number, one byte longer.
        const padded = Uint8Array.from([...canonical, 0]);
        padded[canonical.length - 1] = (padded[canonical.length - 1] as number) | 0x80;
        expect(() => read(padded, (r) => r.varint())).toThrow(DecodeError);
      }),
      { seed: SEED },
    );
  });

  it("rejects values past the safe-integer range, over-long and truncated input", () => {
    const aboveSafe = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    expect(() => read(aboveSafe, (r) => r.varint())).toThrow("safe-integer range");
    const nineBytes = Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
    expect(() => read(nineBytes, (r) => r.varint())).toThrow("longer than 8 bytes");
    expect(() => read(Uint8Array.from([0x80]), (r) => r.varint())).toThrow("unexpected end");
    expect(() => read(new Uint8Array(), (r) => r.varint())).toThrow(DecodeError);
  });

  it("refuses to write a negative or fractional number (a programmer error)", () => {
    expect(() => new ByteWriter().varint(-1)).toThrow("non-negative safe integer");
    expect(() => new ByteWriter().varint(1.5)).toThrow("non-negative safe integer");
    expect(() => new ByteWriter().varint(2 ** 53)).toThrow("non-negative safe integer");
  });
});

describe("bytes and strings", () => {
  it("round-trips length-prefixed bytes, including across buffer growth", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), (chunks) => {
        const writer = new ByteWriter();
        for (const chunk of chunks) writer.bytes(chunk);
        const decoded = read(writer.finish(), (r) => chunks.map(() => r.bytes()));
        expect(decoded).toEqual(chunks);
      }),
      { seed: SEED },
    );
  });

  it("round-trips UTF-8 strings", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 50 }), fc.maxSafeNat(), (text, n) => {
        const bytes = new ByteWriter().string(text).varint(n).finish();
        expect(read(bytes, (r) => [r.string(), r.varint()])).toEqual([text, n]);
      }),
      { seed: SEED },
    );
  });

  it("rejects a length that runs past the end, invalid UTF-8 and trailing bytes", () => {
    expect(() => read(Uint8Array.from([3, 1, 2]), (r) => r.bytes())).toThrow("past the end");
    expect(() => read(Uint8Array.from([1, 0xff]), (r) => r.string())).toThrow("not valid UTF-8");
    expect(() => read(Uint8Array.from([1, 0x41, 0]), (r) => r.string())).toThrow("trailing bytes");
  });

  it("reads single bytes and refuses to write one out of range", () => {
    expect(read(new ByteWriter().byte(0).byte(255).finish(), (r) => [r.byte(), r.byte()])).toEqual([0, 255]);
    expect(() => new ByteWriter().byte(256)).toThrow("byte out of range");
  });
});

describe("base64url", () => {
  it("round-trips any bytes and agrees with Node's encoder", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        const text = toBase64Url(bytes);
        expect(text).toBe(Buffer.from(bytes).toString("base64url"));
        expect(text).toMatch(/^[A-Za-z0-9_-]*$/);
        expect(fromBase64Url(text)).toEqual(bytes);
      }),
      { seed: SEED },
    );
  });

  it("accepts a text only if it is the canonical encoding of what it decodes to", () => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".split("");
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...alphabet), maxLength: 12 }), (text) => {
        const decoded = attempt(() => fromBase64Url(text));
        expect(decoded instanceof DecodeError ? text : toBase64Url(decoded)).toBe(text);
      }),
      { seed: SEED },
    );
  });

  it("rejects bad characters, padding, impossible lengths and non-zero leftover bits", () => {
    const bad = ["AA+A", "AA/A", "AA==", "AA A", "A", "AAAAA", "AB", "AAB", "AAAA\n"];
    expect(bad.filter((text) => !(attempt(() => fromBase64Url(text)) instanceof DecodeError))).toEqual([]);
    expect(fromBase64Url("")).toEqual(new Uint8Array());
    expect(fromBase64Url("AA")).toEqual(Uint8Array.from([0]));
    expect(fromBase64Url("_-8")).toEqual(Uint8Array.from([0xff, 0xef]));
  });
});

describe("compareBytes", () => {
  it("is lexicographic with a shorter prefix first, and consistent with equalBytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 6 }), fc.uint8Array({ maxLength: 6 }), (a, b) => {
        const expected = Buffer.compare(Buffer.from(a), Buffer.from(b));
        expect(Math.sign(compareBytes(a, b))).toBe(expected);
        expect(Math.sign(compareBytes(b, a))).toBe(0 - expected);
        expect(equalBytes(a, b)).toBe(expected === 0);
      }),
      { seed: SEED },
    );
  });
});
