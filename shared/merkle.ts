/**
 * Merkle tree over (key, version digest) pairs for anti-entropy between replicas (the
 * Dynamo/Cassandra scheme: compare roots, descend only where digests differ).
 *
 * Shape: a fixed-fanout (16) tree over SHA-256 of the key, so a key's bucket depends only on
 * the key and every replica places it alike. Level 0 is the root; level `depth` holds the
 * buckets, one per `4 * depth`-bit key-hash prefix. Digests:
 * - an entry hashes to SHA-256(tag, key, version digest), length-prefixed so no two pairs
 *   encode alike;
 * - a bucket's digest is the XOR of its entries' hashes: independent of insertion order, and
 *   updated in O(1) per write instead of rehashing the bucket;
 * - an inner node's digest is SHA-256(tag, its 16 child digests), an empty subtree being all
 *   zeros, so only non-empty nodes are stored and memory grows with the key count, not 16^depth.
 * Equal content gives equal digests whatever the update order, and a write rehashes one path:
 * O(depth) hashing.
 *
 * A tree is a mutable object owned by one replica, changed only through {@link merkleSet} and
 * {@link merkleDelete}; reads return copies, so a caller cannot corrupt it. Both sides of a diff
 * must use the same depth: pick it from the expected key count with {@link merkleDepthFor} and
 * agree on it in configuration, not per replica.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { assert } from "./assert.ts";
import { ByteWriter, equalBytes, utf8 } from "./bytes.ts";

/** Children per inner node: one hex digit of the key hash per level. */
export const MERKLE_FANOUT = 16;
/** Deepest tree allowed: 16^6 = 16.7M buckets, enough for ~270M keys at the bucket target. */
export const MERKLE_DEPTH_MAX = 6;
/** Keys per bucket the depth rule aims at: a differing bucket costs about this many entries. */
export const MERKLE_BUCKET_TARGET = 16;
/** Longest key, in UTF-8 bytes (the store's key limit). */
export const MERKLE_KEY_BYTES_MAX = 512;
/** Longest version digest, in bytes (SHA-512 size; digests are 16-32 bytes in practice). */
export const MERKLE_DIGEST_BYTES_MAX = 64;
/** Bytes in every node digest (SHA-256). */
export const MERKLE_NODE_BYTES = 32;

// Domain tags keep key hashes, entry hashes and node hashes from ever colliding with each other.
const TAG_KEY = 0x4b;
const TAG_ENTRY = 0x45;
const TAG_NODE = 0x4e;
const ZERO = new Uint8Array(MERKLE_NODE_BYTES);
const PREFIX_BYTES = Math.ceil((MERKLE_DEPTH_MAX * 4) / 8);
// UTF-8 encodes every lone surrogate as U+FFFD, so two such keys would hash alike. With the `u`
// flag a surrogate class matches only unpaired halves: a valid pair is one code point.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** One key and the digest of its canonical state. */
export interface MerkleEntry {
  readonly key: string;
  readonly digest: Uint8Array;
}

/** A replica's Merkle tree. Mutable; change it only through this module's functions. */
export interface MerkleTree {
  readonly depth: number;
  /** `levels[l]` maps a node index to its digest, for non-empty nodes only; `levels[depth]` are buckets. */
  readonly levels: ReadonlyArray<Map<number, Uint8Array>>;
  /** Bucket index to that bucket's entries (key to version digest); empty buckets absent. */
  readonly buckets: Map<number, Map<string, Uint8Array>>;
}

/**
 * What a diff needs from one side. A local tree gives it through {@link merkleView}; a
 * networked anti-entropy answers the same questions over RPC and drives the same steps
 * ({@link merkleDiffChildren}, {@link merkleDiffBucket}) one round trip per level.
 */
export interface MerkleView {
  readonly depth: number;
  /** The root digest. */
  root(): Uint8Array;
  /** The 16 child digests of node `index` at `level` (0 <= level < depth), zeros for empty ones. */
  children(level: number, index: number): Uint8Array[];
  /** The entries of bucket `index`. */
  bucket(index: number): MerkleEntry[];
}

/** Keys whose digests differ, in string order, and how many node digest pairs were compared. */
export interface MerkleDiff {
  readonly keys: string[];
  readonly comparisons: number;
}

/**
 * The depth for about `keyCount` keys: the least depth whose buckets hold at most
 * `bucketTarget` keys on average, i.e. ceil(log16(keyCount / bucketTarget)), capped at
 * {@link MERKLE_DEPTH_MAX}. Deeper trees cost more comparisons per difference; shallower
 * ones ship bigger buckets.
 */
export function merkleDepthFor(keyCount: number, bucketTarget: number = MERKLE_BUCKET_TARGET): number {
  assert(Number.isSafeInteger(keyCount) && keyCount >= 0, "key count must be a non-negative integer");
  assert(Number.isSafeInteger(bucketTarget) && bucketTarget >= 1, "bucket target must be a positive integer");
  let depth = 0;
  while (depth < MERKLE_DEPTH_MAX && keyCount > bucketTarget * MERKLE_FANOUT ** depth) depth += 1;
  return depth;
}

/** An empty tree of the given depth. */
export function merkleCreate(options: { depth: number }): MerkleTree {
  const { depth } = options;
  assert(Number.isInteger(depth) && depth >= 0 && depth <= MERKLE_DEPTH_MAX, "depth out of range");
  return { depth, levels: Array.from({ length: depth + 1 }, () => new Map()), buckets: new Map() };
}

/** A tree holding `entries` (keys distinct), built bottom-up: each inner node is hashed once. */
export function merkleFromEntries(
  entries: Iterable<readonly [string, Uint8Array]>,
  options: { depth: number },
): MerkleTree {
  const tree = merkleCreate(options);
  for (const [key, digest] of entries) {
    const { bucket, hash } = locate(tree, key, digest);
    const slot = bucketSlot(tree, bucket);
    assert(!slot.has(key), "entries must have distinct keys");
    slot.set(key, digest.slice());
    xorLeaf(tree, bucket, hash);
  }
  for (let level = tree.depth - 1; level >= 0; level -= 1) {
    const parents = new Set(
      [...(tree.levels[level + 1] as Map<number, Uint8Array>).keys()].map((i) => Math.floor(i / MERKLE_FANOUT)),
    );
    for (const index of parents) rehashNode(tree, level, index);
  }
  return tree;
}

/** Records `key` at version `digest`, rehashing its path to the root. */
export function merkleSet(tree: MerkleTree, key: string, digest: Uint8Array): void {
  const { bucket, hash } = locate(tree, key, digest);
  const slot = bucketSlot(tree, bucket);
  const old = slot.get(key);
  if (old !== undefined && equalBytes(old, digest)) return;
  if (old !== undefined) xorLeaf(tree, bucket, entryHash(utf8(key), old));
  slot.set(key, digest.slice());
  xorLeaf(tree, bucket, hash);
  rehashPath(tree, bucket);
}

/** Removes `key` (absent keys are a no-op), rehashing its path to the root. */
export function merkleDelete(tree: MerkleTree, key: string): void {
  const bucket = bucketOf(tree, checkKey(key));
  const slot = tree.buckets.get(bucket);
  const old = slot?.get(key);
  if (slot === undefined || old === undefined) return;
  slot.delete(key);
  xorLeaf(tree, bucket, entryHash(utf8(key), old));
  if (slot.size === 0) {
    // An empty bucket must read as all zeros, as if it had never held anything.
    tree.buckets.delete(bucket);
    tree.levels[tree.depth]?.delete(bucket);
  }
  rehashPath(tree, bucket);
}

/** The root digest; all zeros for an empty tree. */
export function merkleRoot(tree: MerkleTree): Uint8Array {
  return merkleNode(tree, 0, 0);
}

/** The digest of node `index` at `level` (level `depth` is the buckets); all zeros when empty. */
export function merkleNode(tree: MerkleTree, level: number, index: number): Uint8Array {
  checkNode(tree, level, index);
  return (tree.levels[level]?.get(index) ?? ZERO).slice();
}

/** The non-empty node digests of one level, by index. */
export function merkleLevel(tree: MerkleTree, level: number): Array<[number, Uint8Array]> {
  checkNode(tree, level, 0);
  const nodes = [...(tree.levels[level] as Map<number, Uint8Array>)];
  return nodes.sort((x, y) => x[0] - y[0]).map(([index, digest]) => [index, digest.slice()]);
}

/** The 16 child digests of node `index` at `level`, which must be above the buckets. */
export function merkleChildren(tree: MerkleTree, level: number, index: number): Uint8Array[] {
  assert(level < tree.depth, "buckets have no child nodes");
  checkNode(tree, level, index);
  return Array.from({ length: MERKLE_FANOUT }, (_, c) => merkleNode(tree, level + 1, index * MERKLE_FANOUT + c));
}

/** The entries of bucket `index`, sorted by key. */
export function merkleBucket(tree: MerkleTree, index: number): MerkleEntry[] {
  checkNode(tree, tree.depth, index);
  const slot = tree.buckets.get(index) ?? new Map<string, Uint8Array>();
  const entries = [...slot].map(([key, digest]) => ({ key, digest: digest.slice() }));
  return entries.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
}

/** The bucket index `key` falls in. */
export function merkleBucketOf(tree: MerkleTree, key: string): number {
  return bucketOf(tree, checkKey(key));
}

/** Number of keys in the tree. */
export function merkleSize(tree: MerkleTree): number {
  let size = 0;
  for (const slot of tree.buckets.values()) size += slot.size;
  return size;
}

/** A {@link MerkleView} of a local tree. */
export function merkleView(tree: MerkleTree): MerkleView {
  return {
    depth: tree.depth,
    root: () => merkleRoot(tree),
    children: (level, index) => merkleChildren(tree, level, index),
    bucket: (index) => merkleBucket(tree, index),
  };
}

/** One diff step: indices (one level down) of the children of `index` whose digests differ. */
export function merkleDiffChildren(index: number, a: readonly Uint8Array[], b: readonly Uint8Array[]): number[] {
  assert(a.length === MERKLE_FANOUT, "a node has exactly 16 children");
  assert(b.length === MERKLE_FANOUT, "a node has exactly 16 children");
  const differ: number[] = [];
  for (let c = 0; c < MERKLE_FANOUT; c += 1) {
    if (!equalBytes(a[c] as Uint8Array, b[c] as Uint8Array)) differ.push(index * MERKLE_FANOUT + c);
  }
  return differ;
}

/** The last diff step: keys present on one side only or with different digests, unsorted. */
export function merkleDiffBucket(a: readonly MerkleEntry[], b: readonly MerkleEntry[]): string[] {
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
 * The keys whose digests differ between two views, descending only into subtrees whose
 * digests differ: the root, then 16 comparisons for each differing node on each level, so
 * d differences cost at most 1 + d * depth * 16 node comparisons.
 */
export function merkleDiffViews(a: MerkleView, b: MerkleView): MerkleDiff {
  assert(a.depth === b.depth, "diffed trees must have the same depth");
  assert(Number.isInteger(a.depth) && a.depth >= 0 && a.depth <= MERKLE_DEPTH_MAX, "depth out of range");
  let comparisons = 1;
  if (equalBytes(a.root(), b.root())) return { keys: [], comparisons };
  let frontier = [0];
  for (let level = 0; level < a.depth; level += 1) {
    const next: number[] = [];
    for (const index of frontier) {
      next.push(...merkleDiffChildren(index, a.children(level, index), b.children(level, index)));
      comparisons += MERKLE_FANOUT;
    }
    frontier = next;
  }
  const keys: string[] = [];
  for (const index of frontier) keys.push(...merkleDiffBucket(a.bucket(index), b.bucket(index)));
  return { keys: keys.sort(), comparisons };
}

/** {@link merkleDiffViews} between two local trees of the same depth. */
export function merkleDiff(a: MerkleTree, b: MerkleTree): MerkleDiff {
  return merkleDiffViews(merkleView(a), merkleView(b));
}

function checkKey(key: string): Uint8Array {
  assert(!LONE_SURROGATE.test(key), "key must be well-formed UTF-16 (no lone surrogates)");
  const bytes = utf8(key);
  assert(bytes.length <= MERKLE_KEY_BYTES_MAX, "key longer than the key limit");
  return bytes;
}

function checkNode(tree: MerkleTree, level: number, index: number): void {
  assert(Number.isInteger(level) && level >= 0 && level <= tree.depth, "level out of range");
  assert(Number.isInteger(index) && index >= 0 && index < MERKLE_FANOUT ** level, "node index out of range");
}

/** Checks a write and returns its bucket and entry hash. */
function locate(tree: MerkleTree, key: string, digest: Uint8Array): { bucket: number; hash: Uint8Array } {
  const keyBytes = checkKey(key);
  assert(digest.length >= 1 && digest.length <= MERKLE_DIGEST_BYTES_MAX, "digest length out of range");
  return { bucket: bucketOf(tree, keyBytes), hash: entryHash(keyBytes, digest) };
}

function bucketOf(tree: MerkleTree, keyBytes: Uint8Array): number {
  const hash = sha256(new ByteWriter().byte(TAG_KEY).bytes(keyBytes).finish());
  let prefix = 0;
  for (let i = 0; i < PREFIX_BYTES; i += 1) prefix = prefix * 256 + (hash[i] as number);
  return Math.floor(prefix / MERKLE_FANOUT ** (MERKLE_DEPTH_MAX - tree.depth));
}

function entryHash(keyBytes: Uint8Array, digest: Uint8Array): Uint8Array {
  return sha256(new ByteWriter().byte(TAG_ENTRY).bytes(keyBytes).bytes(digest).finish());
}

function bucketSlot(tree: MerkleTree, bucket: number): Map<string, Uint8Array> {
  const slot = tree.buckets.get(bucket) ?? new Map<string, Uint8Array>();
  tree.buckets.set(bucket, slot);
  return slot;
}

function xorLeaf(tree: MerkleTree, bucket: number, hash: Uint8Array): void {
  const leaves = tree.levels[tree.depth] as Map<number, Uint8Array>;
  const leaf = leaves.get(bucket) ?? new Uint8Array(MERKLE_NODE_BYTES);
  for (let i = 0; i < MERKLE_NODE_BYTES; i += 1) leaf[i] = (leaf[i] as number) ^ (hash[i] as number);
  leaves.set(bucket, leaf);
}

/** Rehashes the inner nodes above `bucket`, bottom-up: `depth` hashes. */
function rehashPath(tree: MerkleTree, bucket: number): void {
  let index = bucket;
  for (let level = tree.depth - 1; level >= 0; level -= 1) {
    index = Math.floor(index / MERKLE_FANOUT);
    rehashNode(tree, level, index);
  }
}

function rehashNode(tree: MerkleTree, level: number, index: number): void {
  const children = tree.levels[level + 1] as Map<number, Uint8Array>;
  const hasher = sha256.create().update(Uint8Array.of(TAG_NODE));
  let empty = true;
  for (let c = 0; c < MERKLE_FANOUT; c += 1) {
    const child = children.get(index * MERKLE_FANOUT + c);
    if (child !== undefined) empty = false;
    hasher.update(child ?? ZERO);
  }
  const nodes = tree.levels[level] as Map<number, Uint8Array>;
  if (empty) nodes.delete(index);
  else nodes.set(index, hasher.digest());
}
