// The HTTP form of Workers KV's extras: expirations in the future only, TTLs of a second or
// more, metadata that is JSON within 1024 bytes, and header JSON that stays ASCII.
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  EXPIRATION_SECONDS_MAX,
  METADATA_BYTES_MAX,
  headerJson,
  parseExpiration,
  parseMetadata,
} from "../../shared/kv-extras.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 20261128;
const NOW_MS = 1_800_000_000_500;
const NOW_S = 1_800_000_000;

function code(result: { ok: boolean; error?: { code: string } }): string {
  return result.ok ? "ok" : (result.error?.code ?? "?");
}

describe("parseExpiration", () => {
  it("takes an absolute time in the future or a TTL of at least a second, and neither is none", () => {
    expect(parseExpiration(String(NOW_S + 1), undefined, NOW_MS)).toEqual({ ok: true, value: NOW_S + 1 });
    expect(parseExpiration(undefined, "1", NOW_MS)).toEqual({ ok: true, value: NOW_S + 1 });
    expect(parseExpiration(undefined, "86400", NOW_MS)).toEqual({ ok: true, value: NOW_S + 86_400 });
    expect(parseExpiration(undefined, undefined, NOW_MS)).toEqual({ ok: true, value: null });
  });

  it("refuses the past, now, fractions, signs, words, zero TTLs, both at once and beyond year 9999", () => {
    for (const [expiration, ttl] of [
      [String(NOW_S), undefined],
      [String(NOW_S - 1), undefined],
      ["1.5", undefined],
      ["+1900000000", undefined],
      ["", undefined],
      ["soon", undefined],
      [String(EXPIRATION_SECONDS_MAX + 1), undefined],
      [undefined, "0"],
      [undefined, "-1"],
      [undefined, "1e3"],
      [undefined, ""],
      [undefined, String(EXPIRATION_SECONDS_MAX)],
      [String(NOW_S + 10), "10"],
    ] as const) {
      expect([expiration, ttl, code(parseExpiration(expiration, ttl, NOW_MS))]).toEqual([
        expiration,
        ttl,
        "invalid_query",
      ]);
    }
  });
});

describe("parseMetadata", () => {
  it("keeps any JSON value within the bound, compacted", () => {
    expect(parseMetadata(undefined)).toEqual({ ok: true, value: null });
    expect(parseMetadata(' { "a" : [1, true, null] } ')).toEqual({ ok: true, value: '{"a":[1,true,null]}' });
    expect(parseMetadata('"text"')).toEqual({ ok: true, value: '"text"' });
    const atBound = JSON.stringify("x".repeat(METADATA_BYTES_MAX - 2));
    expect(parseMetadata(atBound)).toEqual({ ok: true, value: atBound });
  });

  it("refuses text that is not JSON, and JSON over the bound once serialized", () => {
    expect(code(parseMetadata("{oops"))).toBe("invalid_body");
    expect(code(parseMetadata(""))).toBe("invalid_body");
    expect(code(parseMetadata(JSON.stringify("x".repeat(METADATA_BYTES_MAX - 1))))).toBe("invalid_body");
    // Counted in UTF-8 bytes of the serialized form, not characters.
    expect(code(parseMetadata(JSON.stringify("é".repeat(METADATA_BYTES_MAX / 2))))).toBe("invalid_body");
  });
});

describe("headerJson", () => {
  it("writes the same JSON value in ASCII only", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = headerJson(JSON.stringify(value));
        expect(text).toMatch(/^[\x20-\x7e]*$/);
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(value)));
      }),
      { seed: SEED, numRuns: 500 },
    );
    expect(headerJson('{"k":"é🔑"}')).toBe('{"k":"\\u00e9\\ud83d\\udd11"}');
  });
});
