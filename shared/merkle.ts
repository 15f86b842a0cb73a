/**
 * Merkle tree over (key, state digest) pairs for anti-entropy between replicas (the
 * Dynamo/Cassandra scheme: compare roots, descend only where digests differ).
 *
 * Shape: a fixed fanout of 16 and a fixed depth of {@link MERKLE_DEPTH} (65,536 buckets), the same
 * on every replica, so trees of any two replicas compare node for node. A key's bucket depends
 * only on the key (a SHA-256 prefix). Every node's digest is the XOR of the entry hashes below
 * it, an entry hash being SHA-256(tag, key, state digest):
 * - equal content gives equal digests whatever the order of updates;
 * - an update is a delta (old entry hash XOR new one) applied to its bucket and to each node on
 *   the path to the root: O(depth) XORs and no rehashing, so the tree is maintained in the same
 *   transaction as every write and merge, never rebuilt;
 * - only bucket digests need storing: the levels above (1 + 16 + 256 + 4,096 nodes, about
 *   140 KB) are summed in memory from them ({@link MerkleLevels}), bounded whatever the key count.
 * XOR of SHA-256 outputs is a set hash that is safe against accidents, not adversaries: the
 * replicas that compare trees trust each other.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { assert } from "./assert.ts";
import { ByteWriter, equalBytes, utf8 } from "./bytes.ts";

/** Children per inner node: one hex digit of the key hash per level. */
export const MERKLE_FANOUT = 16;
/** Levels below the root; level {@link MERKLE_DEPTH} is the buckets. */
export const MERKLE_DEPTH = 4;
/** Number of buckets. */
export const MERKLE_BUCKETS = MERKLE_FANOUT ** MERKLE_DEPTH;
/** Bytes in every digest. */
export const MERKLE_DIGEST_BYTES = 32;

// Domain tags keep key hashes, state digests and entry hashes from colliding with each other.
const TAG_KEY = 0x4b;
const TAG_STATE = 0x53;
const TAG_ENTRY = 0x45;
const ZERO = new Uint8Array(MERKLE_DIGEST_BYTES);

/** One key and the digest of its stored state. */
export interface MerkleEntry {
  readonly key: string;
  readonly digest: Uint8Array;
}

/** The digest of a key's stored state: its canonical bytes and its fencing epoch. */
export function stateDigest(encoded: Uint8Array, epoch: number): Uint8Array {
  return sha256(new ByteWriter().byte(TAG_STATE).varint(epoch).bytes(encoded).finish());
}

/** The bucket `key` falls in, 0 to {@link MERKLE_BUCKETS} - 1. */
export function bucketOf(key: string): number {
  const hash = sha256(new ByteWriter().byte(TAG_KEY).bytes(utf8(key)).finish());
  // Two bytes hold the 16 bits of four hex digits.
  return ((hash[0] as number) << 8) | (hash[1] as number);
}

/** The hash an entry contributes to its bucket and every node above it. */
export function entryHash(key: string, digest: Uint8Array): Uint8Array {
  return sha256(new ByteWriter().byte(TAG_ENTRY).bytes(utf8(key)).bytes(digest).finish());
}

/** XORs `x` into `target` in place. */
export function xorInto(target: Uint8Array, x: Uint8Array): void {
  assert(target.length === MERKLE_DIGEST_BYTES && x.length === MERKLE_DIGEST_BYTES, "digests are 32 bytes");
  for (let i = 0; i < MERKLE_DIGEST_BYTES; i += 1) target[i] = (target[i] as number) ^ (x[i] as number);
}

/**
 * What replacing `key`'s entry changes in its bucket and the nodes above: the XOR of the old
 * entry hash (none for a new key) and the new one (none for a removed key).
 */
export function entryDelta(key: string, before: Uint8Array | null, after: Uint8Array | null): Uint8Array {
  const delta = new Uint8Array(MERKLE_DIGEST_BYTES);
  if (before !== null) xorInto(delta, entryHash(key, before));
  if (after !== null) xorInto(delta, entryHash(key, after));
  return delta;
}

/** Whether a digest is all zeros (an empty subtree, or a delta that changes nothing). */
export function isZero(digest: Uint8Array): boolean {
  return equalBytes(digest, ZERO);
}

/** Index of the ancestor at `level` of bucket `bucket`. */
function ancestor(bucket: number, level: number): number {
  return Math.floor(bucket / MERKLE_FANOUT ** (MERKLE_DEPTH - level));
}

/**
 * The levels above the buckets, summed in memory from bucket digests: the root (level 0) down
 * to the parents of the buckets (level {@link MERKLE_DEPTH} - 1).
 */
export class MerkleLevels {
  /** `levels[l][i]`: the digest of node `i` at level `l`, zeros when empty. */
  private readonly levels: Uint8Array[][];

  private constructor() {
    this.levels = Array.from({ length: MERKLE_DEPTH }, (_, level) =>
      Array.from({ length: MERKLE_FANOUT ** level }, () => new Uint8Array(MERKLE_DIGEST_BYTES)),
    );
  }

  /** The levels over buckets whose digests are `buckets` (bucket index, digest; others empty). */
  static fromBuckets(buckets: Iterable<readonly [number, Uint8Array]>): MerkleLevels {
    const levels = new MerkleLevels();
    for (const [bucket, digest] of buckets) levels.add(bucket, digest);
    return levels;
  }

  /** Applies a delta made at `bucket` to every node above it. */
  add(bucket: number, delta: Uint8Array): void {
    assert(Number.isInteger(bucket) && bucket >= 0 && bucket < MERKLE_BUCKETS, "bucket out of range");
    for (let level = 0; level < MERKLE_DEPTH; level += 1)
      xorInto(this.levels[level]?.[ancestor(bucket, level)] as Uint8Array, delta);
  }

  /** The digest of node `index` at `level` (above the buckets). */
  node(level: number, index: number): Uint8Array {
    assert(Number.isInteger(level) && level >= 0 && level < MERKLE_DEPTH, "level out of range");
    const node = this.levels[level]?.[index];
    assert(node !== undefined, "node index out of range");
    return node.slice();
  }

  /** The root digest; all zeros when the tree is empty. */
  root(): Uint8Array {
    return this.node(0, 0);
  }
}

/** The indices (one level down) of the children of `index` whose digests differ between `a` and `b`. */
export function diffChildren(index: number, a: readonly Uint8Array[], b: readonly Uint8Array[]): number[] {
  assert(a.length === MERKLE_FANOUT && b.length === MERKLE_FANOUT, "a node has exactly 16 children");
  const differ: number[] = [];
  for (let c = 0; c < MERKLE_FANOUT; c += 1)
    if (!equalBytes(a[c] as Uint8Array, b[c] as Uint8Array)) differ.push(index * MERKLE_FANOUT + c);
  return differ;
}

/** The keys present on one side only, or with different digests: a differing bucket's keys to repair. */
export function diffBucket(a: readonly MerkleEntry[], b: readonly MerkleEntry[]): string[] {
  const other = new Map(b.map((entry) => [entry.key, entry.digest]));
  const keys: string[] = [];
  for (const { key, digest } of a) {
    const theirs = other.get(key);
    if (theirs === undefined || !equalBytes(digest, theirs)) keys.push(key);
    other.delete(key);
  }
  keys.push(...other.keys());
  return keys;
}

/**
 * A whole tree computed from scratch, for checking the incremental one: the bucket digests and
 * the levels above them, from every (key, state digest) entry.
 */
export function merkleOf(entries: Iterable<MerkleEntry>): { buckets: Map<number, Uint8Array>; levels: MerkleLevels } {
  const buckets = new Map<number, Uint8Array>();
  for (const { key, digest } of entries) {
    const bucket = bucketOf(key);
    const sum = buckets.get(bucket) ?? new Uint8Array(MERKLE_DIGEST_BYTES);
    xorInto(sum, entryHash(key, digest));
    buckets.set(bucket, sum);
  }
  return { buckets, levels: MerkleLevels.fromBuckets(buckets) };
}
