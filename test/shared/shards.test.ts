// The key-to-shard layout: a stable, documented hash (every region and every build must place a
// key alike), spread evenly, and replica object names that parse back.
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../shared/assert.ts";
import { SHARDS_MAX, parseReplicaName, replicaName, shardHash, shardIndices, shardOf } from "../../shared/shards.ts";

const SEED = 0x5a_2d;

/** The hash as docs/replication.md documents it, written out with BigInt arithmetic: FNV-1a 32 then fmix32. */
function documentedHash(key: string): number {
  const mask = 0xffff_ffffn;
  let h = 0x811c9dc5n;
  for (const byte of new TextEncoder().encode(key)) h = ((h ^ BigInt(byte)) * 0x01000193n) & mask;
  h ^= h >> 16n;
  h = (h * 0x85ebca6bn) & mask;
  h ^= h >> 13n;
  h = (h * 0xc2b2ae35n) & mask;
  h ^= h >> 16n;
  return Number(h);
}

describe("shardHash", () => {
  it("is FNV-1a over UTF-8 finished with fmix32, for any key", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 40 }), (key) => {
        expect(shardHash(key)).toBe(documentedHash(key));
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("never changes for keys already stored (pinned values)", () => {
    // Changing any of these moves stored keys to another shard: a data migration, not a refactor.
    expect([shardHash(""), shardHash("a"), shardHash("user/42"), shardHash("ключ")]).toEqual([
      0xab3e7c0b, 0x1a80b1b3, 0x58be0b1d, 0x9aa1b562,
    ]);
  });

  it("spreads sequential keys evenly: the fullest of 8 shards holds at most 3% over the mean", () => {
    const counts = Array.from({ length: 8 }, () => 0);
    const n = 80_000;
    for (let i = 0; i < n; i += 1) {
      const shard = shardOf(`key-${i}`, 8);
      counts[shard] = (counts[shard] ?? 0) + 1;
    }
    expect(Math.max(...counts) / (n / 8)).toBeLessThan(1.03);
    expect(Math.min(...counts) / (n / 8)).toBeGreaterThan(0.97);
  });
});

describe("shardOf", () => {
  it("is a shard of the layout, and splitting 2 shards into 4 moves a key only to its shard + 2", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), (key) => {
        const two = shardOf(key, 2);
        const four = shardOf(key, 4);
        expect(two).toBeGreaterThanOrEqual(0);
        expect(two).toBeLessThan(2);
        expect(four % 2).toBe(two);
        expect(shardOf(key, 1)).toBe(0);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("refuses a shard count outside 1 to SHARDS_MAX", () => {
    expect(() => shardOf("k", 0)).toThrow(AssertionError);
    expect(() => shardOf("k", SHARDS_MAX + 1)).toThrow(AssertionError);
    expect(() => shardIndices(1.5)).toThrow(AssertionError);
    expect(shardIndices(3)).toEqual([0, 1, 2]);
  });
});

describe("replica names", () => {
  it("round-trip every region and shard", () => {
    for (const shard of [0, 1, 9, 10, SHARDS_MAX - 1])
      expect(parseReplicaName(replicaName("apac", shard))).toEqual({ region: "apac", shard });
    // Shard 0 keeps the name of the one object per region before shards.
    expect(replicaName("apac", 0)).toBe("apac");
    expect(replicaName("apac", 3)).toBe("apac:3");
  });

  it("refuse anything else", () => {
    for (const name of ["apac:0", "apac:", ":1", "mars:1", "apac:01", `apac:${SHARDS_MAX}`, "apac:1:2", "APAC:1"])
      expect(parseReplicaName(name)).toBeUndefined();
    expect(() => replicaName("apac", SHARDS_MAX)).toThrow(AssertionError);
  });
});
