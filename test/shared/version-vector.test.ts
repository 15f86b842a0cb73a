import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteReader, ByteWriter, DecodeError, toBase64Url } from "../../shared/bytes.ts";
import { LOCATION_HINTS, type RegionId } from "../../shared/regions.ts";
import {
  type Causality,
  type Dot,
  EMPTY_VV,
  type VersionVector,
  compareDots,
  formatVv,
  parseVv,
  readDot,
  readVv,
  vvCompare,
  vvDescends,
  vvEntries,
  vvFrom,
  vvGet,
  vvHasDot,
  vvIncrement,
  vvMerge,
  vvSum,
  writeDot,
  writeVv,
} from "../../shared/version-vector.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0x7e_c70e;

const regionArb = fc.constantFrom(...LOCATION_HINTS);

/** Small counters over a few regions, so equal, ordered and concurrent pairs all come up often. */
const smallVvArb: fc.Arbitrary<VersionVector> = fc
  .array(fc.tuple(fc.constantFrom<RegionId>("wnam", "enam", "weur", "apac"), fc.integer({ min: 0, max: 2 })), {
    maxLength: 6,
  })
  .map(vvFrom);

/** Any canonical vector, counters up to the safe-integer limit. */
const anyVvArb: fc.Arbitrary<VersionVector> = fc
  .array(fc.tuple(regionArb, fc.oneof(fc.maxSafeNat(), fc.integer({ min: 0, max: 300 }))), { maxLength: 12 })
  .map(vvFrom);

const vvArb = fc.oneof(smallVvArb, anyVvArb);

const INVERSE: Record<Causality, Causality> = {
  equal: "equal",
  before: "after",
  after: "before",
  concurrent: "concurrent",
};

function encode(vv: VersionVector): Uint8Array {
  const writer = new ByteWriter();
  writeVv(writer, vv);
  return writer.finish();
}

function decode(bytes: Uint8Array): VersionVector {
  const reader = new ByteReader(bytes);
  const vv = readVv(reader);
  reader.end();
  return vv;
}

describe("vvFrom", () => {
  it("drops zero entries, keeps region-table order and takes the max of duplicates", () => {
    const vv = vvFrom([
      ["me", 2],
      ["wnam", 0],
      ["enam", 1],
      ["me", 5],
    ]);
    expect(vv).toEqual({ enam: 1, me: 5 });
    expect(Object.keys(vv)).toEqual(["enam", "me"]);
    expect(Object.isFrozen(vv)).toBe(true);
  });

  it("produces canonical vectors: keys in table order, no zero entries", () => {
    fc.assert(
      fc.property(vvArb, (vv) => {
        const keys = Object.keys(vv);
        expect(keys).toEqual(LOCATION_HINTS.filter((region) => keys.includes(region)));
        for (const [, count] of vvEntries(vv)) expect(count).toBeGreaterThan(0);
      }),
      { seed: SEED },
    );
  });
});

describe("vvCompare", () => {
  it("is antisymmetric and says equal exactly when the entries are the same", () => {
    fc.assert(
      fc.property(vvArb, vvArb, (a, b) => {
        const forward = vvCompare(a, b);
        expect(vvCompare(b, a)).toBe(INVERSE[forward]);
        expect(forward === "equal").toBe(JSON.stringify(vvEntries(a)) === JSON.stringify(vvEntries(b)));
        expect(vvCompare(a, a)).toBe("equal");
      }),
      { seed: SEED },
    );
  });

  it("agrees with the pointwise definition", () => {
    fc.assert(
      fc.property(smallVvArb, smallVvArb, (a, b) => {
        const aGeB = LOCATION_HINTS.every((region) => vvGet(a, region) >= vvGet(b, region));
        const bGeA = LOCATION_HINTS.every((region) => vvGet(b, region) >= vvGet(a, region));
        const expected: Causality = aGeB && bGeA ? "equal" : aGeB ? "after" : bGeA ? "before" : "concurrent";
        expect(vvCompare(a, b)).toBe(expected);
        expect(vvDescends(a, b)).toBe(aGeB);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("classifies examples", () => {
    expect(vvCompare({ wnam: 1 }, { wnam: 1 })).toBe("equal");
    expect(vvCompare({ wnam: 1 }, { wnam: 2 })).toBe("before");
    expect(vvCompare({ wnam: 2, enam: 1 }, { wnam: 2 })).toBe("after");
    expect(vvCompare({ wnam: 1 }, { enam: 1 })).toBe("concurrent");
    expect(vvCompare(EMPTY_VV, { enam: 1 })).toBe("before");
  });

  it("is transitive for before", () => {
    fc.assert(
      fc.property(smallVvArb, smallVvArb, smallVvArb, (a, b, c) => {
        const chained = vvCompare(a, b) === "before" && vvCompare(b, c) === "before";
        expect(chained ? vvCompare(a, c) : "not a chain").toBe(chained ? "before" : "not a chain");
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
});

describe("vvMerge", () => {
  it("is commutative, associative and idempotent", () => {
    fc.assert(
      fc.property(vvArb, vvArb, vvArb, (a, b, c) => {
        expect(vvMerge(a, b)).toEqual(vvMerge(b, a));
        expect(vvMerge(vvMerge(a, b), c)).toEqual(vvMerge(a, vvMerge(b, c)));
        expect(vvMerge(a, a)).toEqual(a);
        expect(encode(vvMerge(a, b))).toEqual(encode(vvMerge(b, a)));
      }),
      { seed: SEED },
    );
  });

  it("is the least upper bound", () => {
    fc.assert(
      fc.property(smallVvArb, smallVvArb, smallVvArb, (a, b, c) => {
        const m = vvMerge(a, b);
        expect(vvDescends(m, a)).toBe(true);
        expect(vvDescends(m, b)).toBe(true);
        // Any upper bound of a and b descends from the merge.
        const upperBound = vvDescends(c, a) && vvDescends(c, b);
        expect(upperBound && !vvDescends(c, m)).toBe(false);
        for (const region of LOCATION_HINTS)
          expect(vvGet(m, region)).toBe(Math.max(vvGet(a, region), vvGet(b, region)));
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("has the empty vector as identity", () => {
    fc.assert(
      fc.property(vvArb, (a) => {
        expect(vvMerge(EMPTY_VV, a)).toEqual(a);
      }),
      { seed: SEED },
    );
  });
});

describe("dots", () => {
  it("vvIncrement issues the next dot and includes it", () => {
    fc.assert(
      fc.property(smallVvArb, regionArb, (vv, region) => {
        const { vv: next, dot } = vvIncrement(vv, region);
        expect(dot).toEqual({ region, counter: vvGet(vv, region) + 1 });
        expect(vvHasDot(vv, dot)).toBe(false);
        expect(vvHasDot(next, dot)).toBe(true);
        expect(vvCompare(vv, next)).toBe("before");
        expect(vvSum(next)).toBe(vvSum(vv) + 1);
      }),
      { seed: SEED },
    );
  });

  it("dots round-trip and reject counter zero and unknown regions", () => {
    const dotArb: fc.Arbitrary<Dot> = fc.record({ region: regionArb, counter: fc.integer({ min: 1, max: 1e9 }) });
    fc.assert(
      fc.property(dotArb, (dot) => {
        const writer = new ByteWriter();
        writeDot(writer, dot);
        expect(readDot(new ByteReader(writer.finish()))).toEqual(dot);
      }),
      { seed: SEED },
    );
    expect(() => readDot(new ByteReader(Uint8Array.from([0, 0])))).toThrow("start at 1");
    expect(() => readDot(new ByteReader(Uint8Array.from([LOCATION_HINTS.length, 1])))).toThrow("unknown region");
  });

  it("compareDots orders by region table, then counter", () => {
    expect(compareDots({ region: "wnam", counter: 9 }, { region: "enam", counter: 1 })).toBeLessThan(0);
    expect(compareDots({ region: "enam", counter: 2 }, { region: "enam", counter: 1 })).toBeGreaterThan(0);
    expect(compareDots({ region: "me", counter: 2 }, { region: "me", counter: 2 })).toBe(0);
  });
});

describe("encoding", () => {
  it("binary and text forms round-trip", () => {
    fc.assert(
      fc.property(vvArb, (vv) => {
        expect(decode(encode(vv))).toEqual(vv);
        expect(parseVv(formatVv(vv))).toEqual(vv);
        expect(formatVv(vv)).toBe(toBase64Url(encode(vv)));
      }),
      { seed: SEED },
    );
  });

  it("fits eight regions with counters below 2^21 in 33 bytes", () => {
    const vv = vvFrom(LOCATION_HINTS.slice(0, 8).map((region) => [region, 2 ** 21 - 1]));
    expect(encode(vv)).toHaveLength(33);
  });

  const rejected: Array<[string, number[]]> = [
    ["entries out of order", [2, 1, 1, 0, 1]],
    ["duplicate entries", [2, 1, 1, 1, 2]],
    ["a zero entry", [1, 0, 0]],
    ["an unknown region index", [1, LOCATION_HINTS.length, 1]],
    ["more entries than regions", [LOCATION_HINTS.length + 1]],
    ["a truncated entry", [1, 0]],
    ["a missing entry", [2, 0, 1]],
    ["a non-canonical count", [0x81, 0x00]],
  ];

  it.each(rejected)("rejects %s", (_why, bytes) => {
    expect(() => decode(Uint8Array.from(bytes))).toThrow(DecodeError);
    expect(parseVv(toBase64Url(Uint8Array.from(bytes)))).toBeUndefined();
  });

  it("accepts the canonical form of the same entries", () => {
    expect(decode(Uint8Array.from([2, 0, 1, 1, 1]))).toEqual({ wnam: 1, enam: 1 });
  });

  it("rejects trailing bytes after any vector", () => {
    fc.assert(
      fc.property(vvArb, fc.uint8Array({ minLength: 1, maxLength: 3 }), (vv, extra) => {
        const bytes = Uint8Array.from([...encode(vv), ...extra]);
        expect(() => decode(bytes)).toThrow("trailing bytes");
        expect(parseVv(toBase64Url(bytes))).toBeUndefined();
      }),
      { seed: SEED },
    );
  });

  it("parseVv rejects bad base64url", () => {
    const bad = ["A", "AQA=", "AQ+A", "AQ A", "AB", "!!!!"];
    expect(bad.filter((text) => parseVv(text) !== undefined)).toEqual([]);
    expect(parseVv("")).toBeUndefined();
    expect(parseVv("AA")).toEqual(EMPTY_VV);
  });
});
