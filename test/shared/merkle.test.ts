import { sha256 } from "@noble/hashes/sha2.js";
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../shared/assert.ts";
import { ByteWriter, equalBytes, toBase64Url, utf8 } from "../../shared/bytes.ts";
import {
  MERKLE_BUCKETS,
  MERKLE_DEPTH,
  MERKLE_DIGEST_BYTES,
  MERKLE_FANOUT,
  type MerkleEntry,
  MerkleLevels,
  bucketOf,
  diffBucket,
  diffChildren,
  entryDelta,
  entryHash,
  isZero,
  merkleOf,
  stateDigest,
  xorInto,
} from "../../shared/merkle.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0x3e_4b1e;

/** Keys scanned for bucket collisions at most; a three-way collision is expected after about 5,000. */
const COLLISION_SCAN_MAX = 200_000;

/** The parent (level {@link MERKLE_DEPTH} - 1) of a bucket. */
const parentOf = (bucket: number): number => Math.floor(bucket / MERKLE_FANOUT);

/**
 * Keys that share buckets, found by scanning: three in one bucket, and two in different buckets
 * under one parent. Random keys almost never collide among 65,536 buckets, so without these the
 * properties below would never put two entries in one bucket or one parent.
 */
function collidingKeys(): { sameBucket: string[]; sameParent: string[] } {
  const byBucket = new Map<number, string[]>();
  const byParent = new Map<number, string>();
  let sameBucket: string[] | undefined;
  let sameParent: string[] | undefined;
  for (let i = 0; i < COLLISION_SCAN_MAX && (sameBucket === undefined || sameParent === undefined); i += 1) {
    const key = `collide-${i}`;
    const bucket = bucketOf(key);
    const inBucket = [...(byBucket.get(bucket) ?? []), key];
    byBucket.set(bucket, inBucket);
    if (sameBucket === undefined && inBucket.length === 3) sameBucket = inBucket;
    const cousin = byParent.get(parentOf(bucket));
    if (cousin === undefined) byParent.set(parentOf(bucket), key);
    else if (sameParent === undefined && bucketOf(cousin) !== bucket) sameParent = [cousin, key];
  }
  if (sameBucket === undefined || sameParent === undefined) throw new Error("no colliding keys found: raise the scan");
  return { sameBucket, sameParent };
}

const COLLIDING = collidingKeys();

/** The keys the properties draw from: few, so writes hit existing keys, and with shared buckets and parents. */
const KEYS: readonly string[] = [
  "a",
  "b",
  "users/1",
  "caf\u00e9",
  "cafe\u0301",
  "\u{1F600}",
  "\u{10FFFF}",
  ...COLLIDING.sameBucket,
  ...COLLIDING.sameParent,
];

/** Few state digests, so equal digests on both sides of a diff and updates to the same value recur. */
const DIGESTS: readonly Uint8Array[] = [
  stateDigest(utf8("state 0"), 1),
  stateDigest(utf8("state 1"), 1),
  stateDigest(utf8("state 1"), 2),
];

const keyArb = fc.constantFrom(...KEYS);
const digestArb = fc.constantFrom(...DIGESTS);
/** A write of a digest, or a delete (null). */
const opArb = fc.tuple(keyArb, fc.option(digestArb, { nil: null }));
type Op = [string, Uint8Array | null];
/** A final key-to-digest map, as distinct-key entries. */
const entriesArb = fc.uniqueArray(fc.tuple(keyArb, digestArb), { selector: ([key]) => key, maxLength: KEYS.length });

/** Whether every byte is zero; the tests' own check, so that a broken `isZero` cannot hide a difference. */
function allZero(digest: Uint8Array): boolean {
  return digest.every((b) => b === 0);
}

/** The XOR of 32-byte digests, computed here without `xorInto`. */
function xorOf(digests: Iterable<Uint8Array>): Uint8Array {
  const sum = new Uint8Array(MERKLE_DIGEST_BYTES);
  for (const digest of digests)
    for (let i = 0; i < sum.length; i += 1) sum[i] = (sum[i] as number) ^ (digest[i] as number);
  return sum;
}

/** A tree maintained the way a replica maintains it: bucket digests in a map and levels in memory, both updated by deltas. */
interface LiveTree {
  readonly entries: Map<string, Uint8Array>;
  readonly buckets: Map<number, Uint8Array>;
  readonly levels: MerkleLevels;
}

/** An empty live tree. */
function liveTree(): LiveTree {
  return { entries: new Map(), buckets: new Map(), levels: MerkleLevels.fromBuckets([]) };
}

/** Writes (or, with null, deletes) one key, applying its delta to its bucket and to the levels. */
function write(tree: LiveTree, [key, digest]: Op): void {
  const delta = entryDelta(key, tree.entries.get(key) ?? null, digest);
  const bucket = bucketOf(key);
  const sum = tree.buckets.get(bucket) ?? new Uint8Array(MERKLE_DIGEST_BYTES);
  xorInto(sum, delta);
  tree.buckets.set(bucket, sum);
  tree.levels.add(bucket, delta);
  if (digest === null) tree.entries.delete(key);
  else tree.entries.set(key, digest);
}

/**
 * Every non-empty node of a tree, levels 0 to {@link MERKLE_DEPTH} (the buckets), in order, as
 * `level:index=digest` lines: two trees have equal lines exactly when every node is equal.
 */
function snapshot(buckets: ReadonlyMap<number, Uint8Array>, levels: MerkleLevels): string[] {
  const lines: string[] = [];
  for (let level = 0; level < MERKLE_DEPTH; level += 1) {
    for (let index = 0; index < MERKLE_FANOUT ** level; index += 1) {
      const digest = levels.node(level, index);
      if (!allZero(digest)) lines.push(`${level}:${index}=${toBase64Url(digest)}`);
    }
  }
  for (const [bucket, digest] of [...buckets].sort(([x], [y]) => x - y))
    if (!allZero(digest)) lines.push(`${MERKLE_DEPTH}:${bucket}=${toBase64Url(digest)}`);
  return lines;
}

/**
 * The same lines straight from the definition, sharing no code with {@link MerkleLevels}: node
 * `i` at level `l` is the XOR of the entry hashes of the keys whose bucket lies under it.
 */
function specSnapshot(entries: ReadonlyMap<string, Uint8Array>): string[] {
  const lines: string[] = [];
  for (let level = 0; level <= MERKLE_DEPTH; level += 1) {
    const nodes = new Map<number, Uint8Array[]>();
    for (const [key, digest] of entries) {
      const index = Math.floor(bucketOf(key) / MERKLE_FANOUT ** (MERKLE_DEPTH - level));
      nodes.set(index, [...(nodes.get(index) ?? []), entryHash(key, digest)]);
    }
    for (const [index, hashes] of [...nodes].sort(([x], [y]) => x - y)) {
      const digest = xorOf(hashes);
      if (!allZero(digest)) lines.push(`${level}:${index}=${toBase64Url(digest)}`);
    }
  }
  return lines;
}

/** The keys on which two maps differ (a digest differs, or one side lacks the key), sorted: the diff's specification. */
function differingKeys(a: ReadonlyMap<string, Uint8Array>, b: ReadonlyMap<string, Uint8Array>): string[] {
  const keys = new Set([...a.keys(), ...b.keys()]);
  return [...keys]
    .filter((key) => {
      const x = a.get(key);
      const y = b.get(key);
      return x === undefined || y === undefined || !equalBytes(x, y);
    })
    .sort();
}

/** One replica's side of an anti-entropy round: its tree and its entries grouped by bucket. */
interface Side {
  readonly buckets: ReadonlyMap<number, Uint8Array>;
  readonly levels: MerkleLevels;
  readonly entriesByBucket: ReadonlyMap<number, MerkleEntry[]>;
}

/** A side built from scratch with `merkleOf`. */
function sideOf(entries: ReadonlyMap<string, Uint8Array>): Side {
  const { buckets, levels } = merkleOf([...entries].map(([key, digest]) => ({ key, digest })));
  const entriesByBucket = new Map<number, MerkleEntry[]>();
  for (const [key, digest] of entries) {
    const bucket = bucketOf(key);
    entriesByBucket.set(bucket, [...(entriesByBucket.get(bucket) ?? []), { key, digest }]);
  }
  return { buckets, levels, entriesByBucket };
}

/** The 16 child digests of node `index` at `level`: inner nodes from the levels, the last level's from the buckets. */
function childrenOf(side: Side, level: number, index: number): Uint8Array[] {
  return Array.from({ length: MERKLE_FANOUT }, (_, c) => {
    const child = index * MERKLE_FANOUT + c;
    if (level + 1 < MERKLE_DEPTH) return side.levels.node(level + 1, child);
    return side.buckets.get(child) ?? new Uint8Array(MERKLE_DIGEST_BYTES);
  });
}

/**
 * An anti-entropy round as two replicas run it: compare roots, list the children of every
 * differing node and keep the differing ones, level by level, then diff the entries of each
 * differing bucket. Returns the keys to repair and how many node digest pairs were compared.
 */
function descend(a: Side, b: Side): { keys: string[]; comparisons: number } {
  let comparisons = 1;
  if (equalBytes(a.levels.root(), b.levels.root())) return { keys: [], comparisons };
  let differing = [0];
  for (let level = 0; level < MERKLE_DEPTH; level += 1) {
    const next: number[] = [];
    for (const index of differing) {
      comparisons += MERKLE_FANOUT;
      next.push(...diffChildren(index, childrenOf(a, level, index), childrenOf(b, level, index)));
    }
    differing = next;
  }
  const keys = differing.flatMap((bucket) =>
    diffBucket(a.entriesByBucket.get(bucket) ?? [], b.entriesByBucket.get(bucket) ?? []),
  );
  return { keys, comparisons };
}

describe("bucketOf", () => {
  it("is a bucket index, the same for equal keys", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: "grapheme" }), fc.string({ unit: "binary" })), (key) => {
        const bucket = bucketOf(key);
        expect(Number.isInteger(bucket)).toBe(true);
        expect(bucket).toBeGreaterThanOrEqual(0);
        expect(bucket).toBeLessThan(MERKLE_BUCKETS);
        // The same text built afresh, not the same string value.
        expect(bucketOf([...key].join(""))).toBe(bucket);
      }),
      { seed: SEED, numRuns: 500 },
    );
    expect(MERKLE_BUCKETS).toBe(65_536);
  });

  it("is the first 16 bits of SHA-256 over the tagged UTF-8 key, astral characters as 4 bytes", () => {
    // Pinned because every replica must place a key in the same bucket, whatever its version.
    for (const key of ["", "a", "caf\u00e9", "\u{1F600}", "\uD834\uDD1E clef"]) {
      const hash = sha256(new ByteWriter().byte(0x4b).bytes(utf8(key)).finish());
      expect(bucketOf(key)).toBe(((hash[0] as number) << 8) | (hash[1] as number));
    }
    expect(utf8("\u{1F600}")).toEqual(Uint8Array.of(0xf0, 0x9f, 0x98, 0x80));
  });

  it("tells unicode keys apart: composed and decomposed forms, astral characters, neighbours", () => {
    const keys = [
      "caf\u00e9",
      "cafe\u0301",
      "\u{1F600}",
      "\u{1F601}",
      "\u{1F600}\u{1F600}",
      "\u{10FFFF}",
      "\uFFFF",
      "\uFFFD",
      "a\u{1F600}",
      "\u{1F600}a",
      "\u{1D11E}",
    ];
    expect(new Set(keys.map((key) => bucketOf(key))).size).toBe(keys.length);
  });

  it("spreads 10,000 keys as a uniform hash would", () => {
    const n = 10_000;
    const buckets = Array.from({ length: n }, (_, i) => bucketOf(`key-${i}`));
    // Uniform placement of 10,000 keys in 65,536 buckets fills 9,274.5 of them on average, with a
    // standard deviation of 24.3: this band is five deviations either side. The keys are fixed, so
    // the result never changes between runs; the band only has to hold for a real hash.
    const distinct = new Set(buckets).size;
    expect(distinct).toBeGreaterThan(9_150);
    expect(distinct).toBeLessThan(9_400);
    // Each of the 16 subtrees under the root expects 625 keys with a deviation of 24.2.
    const perChild = Array.from({ length: MERKLE_FANOUT }, () => 0);
    for (const bucket of buckets) {
      const child = Math.floor(bucket / MERKLE_FANOUT ** (MERKLE_DEPTH - 1));
      perChild[child] = (perChild[child] as number) + 1;
    }
    for (const count of perChild) {
      expect(count).toBeGreaterThan(500);
      expect(count).toBeLessThan(750);
    }
  });
});

describe("digests", () => {
  it("stateDigest depends on both the bytes and the epoch", () => {
    const inputArb = fc.tuple(fc.uint8Array({ maxLength: 3, max: 2 }), fc.oneof(fc.nat({ max: 2 }), fc.maxSafeNat()));
    fc.assert(
      fc.property(inputArb, inputArb, ([x, ex], [y, ey]) => {
        const same = equalBytes(x, y) && ex === ey;
        expect(equalBytes(stateDigest(x, ex), stateDigest(y, ey))).toBe(same);
        expect(stateDigest(x, ex)).toHaveLength(MERKLE_DIGEST_BYTES);
      }),
      { seed: SEED, numRuns: 500 },
    );
    const bytes = utf8("value");
    expect(stateDigest(bytes, 0)).not.toEqual(stateDigest(bytes, 1));
    expect(stateDigest(bytes, 127)).not.toEqual(stateDigest(bytes, 128));
    expect(stateDigest(bytes, 3)).not.toEqual(stateDigest(utf8("valuf"), 3));
    expect(stateDigest(new Uint8Array(0), 0)).not.toEqual(stateDigest(Uint8Array.of(0), 0));
  });

  it("entryHash depends on the key and the digest, and on where one ends", () => {
    fc.assert(
      fc.property(keyArb, digestArb, keyArb, digestArb, (k, d, l, e) => {
        const same = k === l && equalBytes(d, e);
        expect(equalBytes(entryHash(k, d), entryHash(l, e))).toBe(same);
      }),
      { seed: SEED, numRuns: 300 },
    );
    // Without a length before the key, these two entries would hash the same bytes.
    const digest = DIGESTS[0] as Uint8Array;
    const shifted = new Uint8Array([...utf8("b"), ...digest]);
    expect(entryHash("ab", digest)).not.toEqual(entryHash("a", shifted));
  });

  it("keeps state digests and entry hashes apart, even over the same bytes", () => {
    // stateDigest([4, 1, 2, 3, 4], epoch 1) and entryHash("\x05", [1, 2, 3, 4]) hash the same body
    // after their tags; only the domain tags keep the two digests apart.
    const encoded = Uint8Array.of(4, 1, 2, 3, 4);
    const key = "\u0005";
    const digest = Uint8Array.of(1, 2, 3, 4);
    const stateBody = new ByteWriter().varint(1).bytes(encoded).finish();
    const entryBody = new ByteWriter().bytes(utf8(key)).bytes(digest).finish();
    expect(stateBody).toEqual(entryBody);
    expect(stateDigest(encoded, 1)).not.toEqual(entryHash(key, digest));
    fc.assert(
      fc.property(keyArb, fc.uint8Array({ maxLength: 4 }), fc.nat({ max: 3 }), (k, bytes, epoch) => {
        const state = stateDigest(bytes, epoch);
        expect(equalBytes(state, entryHash(k, bytes))).toBe(false);
        expect(equalBytes(state, entryHash(k, state))).toBe(false);
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("isZero holds exactly for all-zero digests, and xorInto is its own inverse", () => {
    const zero = new Uint8Array(MERKLE_DIGEST_BYTES);
    expect(isZero(zero)).toBe(true);
    for (let i = 0; i < MERKLE_DIGEST_BYTES; i += 1) {
      const one = new Uint8Array(MERKLE_DIGEST_BYTES);
      one[i] = 1;
      expect(isZero(one)).toBe(false);
    }
    const sum = new Uint8Array(MERKLE_DIGEST_BYTES);
    const digest = DIGESTS[1] as Uint8Array;
    xorInto(sum, digest);
    expect(sum).toEqual(digest);
    xorInto(sum, digest);
    expect(isZero(sum)).toBe(true);
  });
});

describe("entryDelta", () => {
  const sideArb = fc.option(digestArb, { nil: null });

  it("is zero when nothing changes, and the entry hash for an insert or a delete", () => {
    fc.assert(
      fc.property(keyArb, sideArb, digestArb, (key, digest, other) => {
        expect(isZero(entryDelta(key, digest, digest))).toBe(true);
        expect(entryDelta(key, null, other)).toEqual(entryHash(key, other));
        expect(entryDelta(key, other, null)).toEqual(entryHash(key, other));
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("composes: delta(a, b) XOR delta(b, c) is delta(a, c)", () => {
    fc.assert(
      fc.property(keyArb, sideArb, sideArb, sideArb, (key, a, b, c) => {
        const sum = entryDelta(key, a, b);
        xorInto(sum, entryDelta(key, b, c));
        expect(sum).toEqual(entryDelta(key, a, c));
        // A real change is never a zero delta, or the tree would not notice it.
        expect(isZero(entryDelta(key, a, c))).toBe(a === c || (a !== null && c !== null && equalBytes(a, c)));
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("returns a bucket and the tree to zero when an entry is added then removed", () => {
    fc.assert(
      fc.property(keyArb, digestArb, digestArb, (key, first, second) => {
        const tree = liveTree();
        write(tree, [key, first]);
        const bucket = tree.buckets.get(bucketOf(key)) as Uint8Array;
        expect(isZero(bucket)).toBe(false);
        expect(isZero(tree.levels.root())).toBe(false);
        write(tree, [key, second]);
        write(tree, [key, null]);
        expect(isZero(tree.buckets.get(bucketOf(key)) as Uint8Array)).toBe(true);
        expect(snapshot(tree.buckets, tree.levels)).toEqual([]);
      }),
      { seed: SEED, numRuns: 100 },
    );
  });
});

describe("incremental maintenance", () => {
  it("equals a rebuild, node for node, after any sequence of writes and deletes", () => {
    const seen = { nonEmpty: 0, sharedBucket: 0 };
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
        const tree = liveTree();
        for (const op of ops) write(tree, op);
        const rebuilt = merkleOf([...tree.entries].map(([key, digest]) => ({ key, digest })));
        const lines = snapshot(tree.buckets, tree.levels);
        expect(lines).toEqual(snapshot(rebuilt.buckets, rebuilt.levels));
        expect(lines).toEqual(specSnapshot(tree.entries));
        expect(tree.levels.root()).toEqual(xorOf([...tree.entries].map(([key, digest]) => entryHash(key, digest))));
        if (tree.entries.size > 0) seen.nonEmpty += 1;
        if (COLLIDING.sameBucket.filter((key) => tree.entries.has(key)).length >= 2) seen.sharedBucket += 1;
      }),
      { seed: SEED, numRuns: 300 },
    );
    // The property must have met non-empty trees and buckets holding several keys.
    expect(seen.nonEmpty).toBeGreaterThan(150);
    expect(seen.sharedBucket).toBeGreaterThan(30);
  });

  it("does not depend on the order of updates, nor on values written and overwritten on the way", () => {
    const ordersArb = entriesArb.chain((entries) =>
      fc.tuple(
        fc.constant(entries),
        fc.shuffledSubarray(entries, { minLength: entries.length }),
        fc.array(digestArb, { minLength: entries.length, maxLength: entries.length }),
        fc.tuple(keyArb, digestArb),
      ),
    );
    fc.assert(
      fc.property(ordersArb, ([entries, shuffled, detours, [transient, transientDigest]]) => {
        const a = liveTree();
        for (const [key, digest] of entries) write(a, [key, digest]);
        const b = liveTree();
        // A key that is not in the final set comes and goes first, when it is not in it.
        const passing = !entries.some(([key]) => key === transient);
        if (passing) write(b, [transient, transientDigest]);
        shuffled.forEach(([key, digest], i) => {
          write(b, [key, detours[i] as Uint8Array]);
          write(b, [key, digest]);
        });
        if (passing) write(b, [transient, null]);
        expect(b.levels.root()).toEqual(a.levels.root());
        expect(snapshot(b.buckets, b.levels)).toEqual(snapshot(a.buckets, a.levels));
        const rebuilt = merkleOf(shuffled.map(([key, digest]) => ({ key, digest })));
        expect(rebuilt.levels.root()).toEqual(a.levels.root());
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("gives an all-zero root for the empty tree, and a non-zero one otherwise", () => {
    expect(isZero(MerkleLevels.fromBuckets([]).root())).toBe(true);
    const empty = merkleOf([]);
    expect(empty.buckets.size).toBe(0);
    expect(empty.levels.root()).toEqual(new Uint8Array(MERKLE_DIGEST_BYTES));
    for (const key of KEYS)
      expect(isZero(merkleOf([{ key, digest: DIGESTS[0] as Uint8Array }]).levels.root())).toBe(false);
  });

  it("fromBuckets sums the bucket digests it is given", () => {
    const entries = KEYS.map((key, i) => ({ key, digest: DIGESTS[i % DIGESTS.length] as Uint8Array }));
    const { buckets, levels } = merkleOf(entries);
    const again = MerkleLevels.fromBuckets([...buckets].reverse());
    expect(snapshot(buckets, again)).toEqual(snapshot(buckets, levels));
    expect(snapshot(buckets, levels)).toEqual(specSnapshot(new Map(entries.map(({ key, digest }) => [key, digest]))));
  });
});

describe("diff", () => {
  // No edits half the time, so that both maps are left as the base map often enough.
  const editsArb = fc.oneof(fc.constant<Op[]>([]), fc.array(opArb, { minLength: 1, maxLength: 4 }));
  /** Two maps made by editing one base map, so they overlap, are often equal, and differ in few keys. */
  const pairArb = fc.tuple(entriesArb, editsArb, editsArb).map(([base, editsA, editsB]) => {
    const edit = (ops: Op[]): Map<string, Uint8Array> => {
      const map = new Map(base);
      for (const [key, digest] of ops) {
        if (digest === null) map.delete(key);
        else map.set(key, digest);
      }
      return map;
    };
    return [edit(editsA), edit(editsB)] as const;
  });

  it("finds exactly the differing keys, within 1 + d * depth * 16 comparisons, and equal roots exactly for equal maps", () => {
    const seen = { equal: 0, different: 0, severalKeys: 0, mixedBucket: 0 };
    fc.assert(
      fc.property(pairArb, ([a, b]) => {
        const expected = differingKeys(a, b);
        const sideA = sideOf(a);
        const sideB = sideOf(b);
        for (const [x, y] of [
          [sideA, sideB],
          [sideB, sideA],
        ] as const) {
          const { keys, comparisons } = descend(x, y);
          expect([...keys].sort()).toEqual(expected);
          const d = expected.length;
          expect(comparisons).toBeLessThanOrEqual(1 + d * MERKLE_DEPTH * MERKLE_FANOUT);
          // A differing key differs at every level, so the round goes all the way down at least once.
          expect(comparisons).toBeGreaterThanOrEqual(d === 0 ? 1 : 1 + MERKLE_DEPTH * MERKLE_FANOUT);
        }
        expect(equalBytes(sideA.levels.root(), sideB.levels.root())).toBe(expected.length === 0);
        seen[expected.length === 0 ? "equal" : "different"] += 1;
        if (expected.length >= 2) seen.severalKeys += 1;
        const shared = COLLIDING.sameBucket.filter((key) => a.has(key) || b.has(key));
        if (shared.some((key) => expected.includes(key)) && shared.some((key) => !expected.includes(key)))
          seen.mixedBucket += 1;
      }),
      { seed: SEED, numRuns: 300 },
    );
    // Both sides of "exactly when" must actually have been exercised, and buckets where only some keys differ.
    expect(seen.equal).toBeGreaterThan(50);
    expect(seen.different).toBeGreaterThan(100);
    expect(seen.severalKeys).toBeGreaterThan(50);
    expect(seen.mixedBucket).toBeGreaterThan(20);
  });

  it("costs one path for one differing key among thousands, and finds every key against an empty side", () => {
    const base = new Map(Array.from({ length: 5_000 }, (_, i) => [`key-${i}`, DIGESTS[i % 2] as Uint8Array]));
    const changed = new Map(base).set("key-4321", DIGESTS[2] as Uint8Array);
    expect(descend(sideOf(base), sideOf(changed))).toEqual({
      keys: ["key-4321"],
      comparisons: 1 + MERKLE_DEPTH * MERKLE_FANOUT,
    });
    expect(descend(sideOf(base), sideOf(new Map(base)))).toEqual({ keys: [], comparisons: 1 });
    const all = descend(sideOf(new Map()), sideOf(base));
    expect(all.keys.sort()).toEqual([...base.keys()].sort());
  });

  it("diffChildren names differing children by their index one level down", () => {
    const zeros = Array.from({ length: MERKLE_FANOUT }, () => new Uint8Array(MERKLE_DIGEST_BYTES));
    const other = zeros.map((digest, c) => (c === 3 || c === 15 ? (DIGESTS[0] as Uint8Array) : digest));
    expect(diffChildren(0, zeros, zeros)).toEqual([]);
    expect(diffChildren(7, zeros, other)).toEqual([7 * MERKLE_FANOUT + 3, 7 * MERKLE_FANOUT + 15]);
  });

  it("diffBucket returns keys on one side only and keys whose digests differ, not equal ones", () => {
    const [d0, d1] = DIGESTS as [Uint8Array, Uint8Array];
    const a = [
      { key: "same", digest: d0 },
      { key: "changed", digest: d0 },
      { key: "onlyA", digest: d1 },
    ];
    const b = [
      { key: "onlyB", digest: d0 },
      { key: "changed", digest: d1 },
      { key: "same", digest: Uint8Array.from(d0) },
    ];
    expect(diffBucket(a, b).sort()).toEqual(["changed", "onlyA", "onlyB"]);
    expect(diffBucket(b, a).sort()).toEqual(["changed", "onlyA", "onlyB"]);
    expect(diffBucket([], [])).toEqual([]);
  });
});

describe("bounds", () => {
  it("MerkleLevels.add refuses a bucket out of range, and changes nothing", () => {
    const levels = MerkleLevels.fromBuckets([]);
    const delta = DIGESTS[0] as Uint8Array;
    for (const bucket of [-1, MERKLE_BUCKETS, MERKLE_BUCKETS + 1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])
      expect(() => levels.add(bucket, delta)).toThrow(AssertionError);
    expect(() => levels.add(0, new Uint8Array(MERKLE_DIGEST_BYTES - 1))).toThrow(AssertionError);
    expect(isZero(levels.root())).toBe(true);
    levels.add(0, delta);
    levels.add(MERKLE_BUCKETS - 1, delta);
    expect(isZero(levels.root())).toBe(true);
    expect(levels.node(MERKLE_DEPTH - 1, 0)).toEqual(delta);
    expect(levels.node(MERKLE_DEPTH - 1, MERKLE_BUCKETS / MERKLE_FANOUT - 1)).toEqual(delta);
  });

  it("MerkleLevels.node refuses a level or index out of range, and hands out copies", () => {
    const levels = MerkleLevels.fromBuckets([[0, DIGESTS[0] as Uint8Array]]);
    for (const [level, index] of [
      [-1, 0],
      [MERKLE_DEPTH, 0],
      [0.5, 0],
      [0, 1],
      [0, -1],
      [1, MERKLE_FANOUT],
      [2, 0.5],
      [MERKLE_DEPTH - 1, MERKLE_BUCKETS / MERKLE_FANOUT],
    ] as const)
      expect(() => levels.node(level, index)).toThrow(AssertionError);
    expect(levels.node(MERKLE_DEPTH - 1, MERKLE_BUCKETS / MERKLE_FANOUT - 1)).toHaveLength(MERKLE_DIGEST_BYTES);
    levels.root().fill(0xff);
    levels.node(1, 0).fill(0xff);
    expect(levels.root()).toEqual(DIGESTS[0]);
    expect(levels.node(1, 0)).toEqual(DIGESTS[0]);
  });

  it("refuses digests that are not 32 bytes and nodes without 16 children", () => {
    const zeros = Array.from({ length: MERKLE_FANOUT }, () => new Uint8Array(MERKLE_DIGEST_BYTES));
    expect(() => xorInto(new Uint8Array(MERKLE_DIGEST_BYTES), new Uint8Array(16))).toThrow(AssertionError);
    expect(() => diffChildren(0, zeros.slice(1), zeros.slice(1))).toThrow(AssertionError);
    expect(() => diffChildren(0, zeros, [...zeros, zeros[0] as Uint8Array])).toThrow(AssertionError);
    expect(() => stateDigest(new Uint8Array(0), -1)).toThrow(AssertionError);
  });
});
