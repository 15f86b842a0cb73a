import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../shared/assert.ts";
import { toBase64Url } from "../../shared/bytes.ts";
import {
  MERKLE_DEPTH_MAX,
  MERKLE_FANOUT,
  MERKLE_KEY_BYTES_MAX,
  type MerkleTree,
  merkleBucket,
  merkleBucketOf,
  merkleChildren,
  merkleCreate,
  merkleDelete,
  merkleDepthFor,
  merkleDiff,
  merkleFromEntries,
  merkleLevel,
  merkleNode,
  merkleRoot,
  merkleSet,
  merkleSize,
} from "../../shared/merkle.ts";

// Fixed seeds: a failure reproduces exactly, and fast-check prints the seed and path with it.
const SEED = 20_241_117;
const ZERO_ROOT = new Uint8Array(32);

// Small key and digest spaces, so updates collide with existing keys and equal digests recur.
const keyArb = fc.oneof(fc.string({ maxLength: 5 }), fc.string({ unit: "binary", maxLength: 3 }));
const digestArb = fc.uint8Array({ minLength: 1, maxLength: 2, max: 3 });
const entriesArb = fc.uniqueArray(fc.tuple(keyArb, digestArb), { selector: ([key]) => key, maxLength: 80 });
const depthArb = fc.integer({ min: 0, max: 3 });
/** A write (digest) or a delete (no digest). */
const opArb = fc.tuple(keyArb, fc.option(digestArb, { nil: undefined }));
type Op = [string, Uint8Array | undefined];

function apply(tree: MerkleTree, model: Map<string, Uint8Array>, [key, digest]: Op): void {
  if (digest === undefined) {
    merkleDelete(tree, key);
    model.delete(key);
  } else {
    merkleSet(tree, key, digest);
    model.set(key, digest);
  }
}

/** Every stored digest and entry in a comparable form. */
function dump(tree: MerkleTree): unknown {
  const levels = Array.from({ length: tree.depth + 1 }, (_, level) =>
    merkleLevel(tree, level).map(([index, digest]) => `${index}:${toBase64Url(digest)}`),
  );
  const buckets = merkleLevel(tree, tree.depth).map(([index]) =>
    merkleBucket(tree, index).map((entry) => `${entry.key}=${toBase64Url(entry.digest)}`),
  );
  return { levels, buckets };
}

/** The keys on which two maps differ, sorted: the diff's specification. */
function expectedDiff(a: Map<string, Uint8Array>, b: Map<string, Uint8Array>): string[] {
  const keys = new Set([...a.keys(), ...b.keys()]);
  const same = (key: string) => {
    const x = a.get(key);
    const y = b.get(key);
    return x !== undefined && y !== undefined && toBase64Url(x) === toBase64Url(y);
  };
  return [...keys].filter((key) => !same(key)).sort();
}

function numbered(n: number, salt = 0): Array<[string, Uint8Array]> {
  return Array.from({ length: n }, (_, i) => [`key-${i}`, Uint8Array.of(i & 0xff, i >> 8, salt)]);
}

describe("merkle diff", () => {
  it("finds exactly the differing keys, and is empty exactly when the maps are equal", () => {
    const seen = { equal: 0, different: 0 };
    fc.assert(
      fc.property(depthArb, entriesArb, fc.array(opArb, { maxLength: 6 }), (depth, entries, ops) => {
        const ma = new Map(entries);
        const mb = new Map(entries);
        const b = merkleFromEntries(entries, { depth });
        for (const op of ops) apply(b, mb, op);
        const a = merkleFromEntries(ma, { depth });
        const expected = expectedDiff(ma, mb);
        seen[expected.length === 0 ? "equal" : "different"] += 1;
        expect(merkleDiff(a, b).keys).toEqual(expected);
        expect(merkleDiff(b, a).keys).toEqual(expected);
        expect(toBase64Url(merkleRoot(a)) === toBase64Url(merkleRoot(b))).toBe(expected.length === 0);
      }),
      { seed: SEED, numRuns: 300 },
    );
    // Both sides of "exactly when" must actually have been exercised.
    expect(seen.equal).toBeGreaterThan(20);
    expect(seen.different).toBeGreaterThan(20);
  });

  it("compares at most d * depth * fanout + fanout nodes for d differences", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 40 }), (n, dWanted) => {
        const depth = merkleDepthFor(n);
        const base = numbered(n);
        const a = merkleFromEntries(base, { depth });
        const b = merkleFromEntries(base, { depth });
        // A third of the differences change a digest, a third delete a key, a third add one.
        const d = Math.min(dWanted, n);
        for (let i = 0; i < d; i += 1) {
          const [key] = base[i] as [string, Uint8Array];
          if (i % 3 === 0) merkleSet(b, key, Uint8Array.of(0xee));
          else if (i % 3 === 1) merkleDelete(b, key);
          else merkleSet(b, `extra-${i}`, Uint8Array.of(1));
        }
        const diff = merkleDiff(a, b);
        expect(diff.keys).toHaveLength(d);
        expect(diff.comparisons).toBeLessThanOrEqual(d * depth * MERKLE_FANOUT + MERKLE_FANOUT);
      }),
      { seed: SEED, numRuns: 40 },
    );
  });

  it("empty vs empty: no keys, one comparison, at every depth", () => {
    for (let depth = 0; depth <= MERKLE_DEPTH_MAX; depth += 1) {
      const a = merkleCreate({ depth });
      expect(merkleRoot(a)).toEqual(ZERO_ROOT);
      expect(merkleDiff(a, merkleCreate({ depth }))).toEqual({ keys: [], comparisons: 1 });
    }
  });

  it("one key differing among thousands costs one path: 1 + depth * fanout comparisons", () => {
    const base = numbered(5000);
    const depth = merkleDepthFor(base.length);
    expect(depth).toBe(3);
    const a = merkleFromEntries(base, { depth });
    const b = merkleFromEntries(base, { depth });
    merkleSet(b, "key-4321", Uint8Array.of(9, 9, 9));
    expect(merkleDiff(a, b)).toEqual({ keys: ["key-4321"], comparisons: 1 + depth * MERKLE_FANOUT });
  });

  it("all keys differing: every key is found, against an empty tree too", () => {
    const depth = merkleDepthFor(1000);
    const a = merkleFromEntries(numbered(1000), { depth });
    const b = merkleFromEntries(numbered(1000, 1), { depth });
    const all = numbered(1000)
      .map(([key]) => key)
      .sort();
    expect(merkleDiff(a, b).keys).toEqual(all);
    expect(merkleDiff(merkleCreate({ depth }), a).keys).toEqual(all);
  });

  it("refuses trees of different depths", () => {
    expect(() => merkleDiff(merkleCreate({ depth: 1 }), merkleCreate({ depth: 2 }))).toThrow(AssertionError);
  });
});

describe("merkle digests", () => {
  it("do not depend on the order of updates", () => {
    const withOrder = entriesArb.chain((entries) =>
      fc.tuple(fc.constant(entries), fc.shuffledSubarray(entries, { minLength: entries.length })),
    );
    fc.assert(
      fc.property(depthArb, withOrder, (depth, [entries, shuffled]) => {
        const a = merkleCreate({ depth });
        const b = merkleCreate({ depth });
        for (const [key, digest] of entries) merkleSet(a, key, digest);
        for (const [key, digest] of shuffled) merkleSet(b, key, digest);
        expect(dump(b)).toEqual(dump(a));
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("return to the original after updates are undone", () => {
    fc.assert(
      fc.property(depthArb, entriesArb, fc.array(opArb, { maxLength: 20 }), (depth, entries, ops) => {
        const original = new Map(entries);
        const tree = merkleFromEntries(entries, { depth });
        const before = dump(tree);
        for (const op of ops) apply(tree, new Map(), op);
        for (const [key] of ops) apply(tree, new Map(), [key, original.get(key)]);
        expect(dump(tree)).toEqual(before);
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("agree between incremental updates and a build from scratch", () => {
    fc.assert(
      fc.property(depthArb, fc.array(opArb, { maxLength: 60 }), (depth, ops) => {
        const tree = merkleCreate({ depth });
        const model = new Map<string, Uint8Array>();
        for (const op of ops) apply(tree, model, op);
        expect(dump(tree)).toEqual(dump(merkleFromEntries(model, { depth })));
        expect(merkleSize(tree)).toBe(model.size);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("go back to the empty tree when the only key is deleted", () => {
    const tree = merkleCreate({ depth: 2 });
    merkleSet(tree, "only", Uint8Array.of(1, 2, 3));
    expect(merkleRoot(tree)).not.toEqual(ZERO_ROOT);
    merkleDelete(tree, "only");
    expect(merkleRoot(tree)).toEqual(ZERO_ROOT);
    expect(dump(tree)).toEqual(dump(merkleCreate({ depth: 2 })));
    expect(merkleSize(tree)).toBe(0);
    merkleDelete(tree, "only");
    expect(merkleRoot(tree)).toEqual(ZERO_ROOT);
  });

  it("keep their own copy of a digest", () => {
    const digest = Uint8Array.of(1, 2, 3);
    const tree = merkleCreate({ depth: 1 });
    merkleSet(tree, "k", digest);
    const root = merkleRoot(tree);
    digest[0] = 7;
    merkleRoot(tree).fill(0xff);
    expect(merkleRoot(tree)).toEqual(root);
    expect(merkleBucket(tree, merkleBucketOf(tree, "k"))).toEqual([{ key: "k", digest: Uint8Array.of(1, 2, 3) }]);
  });

  it("expose children that match the level below", () => {
    const tree = merkleFromEntries(numbered(300), { depth: 2 });
    const level1 = new Map(merkleLevel(tree, 1).map(([index, digest]) => [index, toBase64Url(digest)]));
    const children = merkleChildren(tree, 0, 0);
    expect(children).toHaveLength(MERKLE_FANOUT);
    children.forEach((digest, c) => expect(level1.get(c) ?? toBase64Url(ZERO_ROOT)).toBe(toBase64Url(digest)));
    expect(merkleNode(tree, 0, 0)).toEqual(merkleRoot(tree));
    for (const [bucket] of merkleLevel(tree, 2)) {
      for (const { key } of merkleBucket(tree, bucket)) expect(merkleBucketOf(tree, key)).toBe(bucket);
    }
  });
});

describe("merkle bounds", () => {
  it("picks the least depth whose buckets average at most 16 keys", () => {
    expect([0, 16, 17, 256, 257, 4096, 4097].map((n) => merkleDepthFor(n))).toEqual([0, 0, 1, 1, 2, 2, 3]);
    expect(merkleDepthFor(Number.MAX_SAFE_INTEGER)).toBe(MERKLE_DEPTH_MAX);
  });

  it("asserts on programmer errors", () => {
    const tree = merkleCreate({ depth: 1 });
    expect(() => merkleCreate({ depth: MERKLE_DEPTH_MAX + 1 })).toThrow(AssertionError);
    expect(() => merkleSet(tree, "x".repeat(MERKLE_KEY_BYTES_MAX + 1), Uint8Array.of(1))).toThrow(AssertionError);
    expect(() => merkleSet(tree, "\uD800", Uint8Array.of(1))).toThrow(AssertionError);
    expect(() => merkleSet(tree, "k", new Uint8Array(0))).toThrow(AssertionError);
    expect(() =>
      merkleFromEntries(
        [
          ["k", Uint8Array.of(1)],
          ["k", Uint8Array.of(2)],
        ],
        { depth: 1 },
      ),
    ).toThrow(AssertionError);
    expect(() => merkleChildren(tree, 1, 0)).toThrow(AssertionError);
    expect(merkleSet(tree, "x".repeat(MERKLE_KEY_BYTES_MAX), Uint8Array.of(1))).toBeUndefined();
  });
});
