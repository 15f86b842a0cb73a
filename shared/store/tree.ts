/**
 * Storing and dropping keys with the Merkle tree kept in step, in the same transaction: every
 * change to a key's state goes through these two functions, so the tree is never rebuilt and
 * anti-entropy can trust it.
 */
import { assert } from "../assert.ts";
import {
  MERKLE_DEPTH,
  MERKLE_DIGEST_BYTES,
  MERKLE_FANOUT,
  type MerkleLevels,
  bucketOf,
  entryDelta,
  isZero,
  stateDigest,
} from "../merkle.ts";
import { type VersionVector } from "../version-vector.ts";
import { changeOf } from "./changes.ts";
import { type KeyState, decodeKeyState } from "./key-state.ts";
import { type ReplicaStorage, type StoredKey } from "./storage.ts";

/**
 * Stores `key`'s state (`before` is what was stored, as read in this transaction) and moves
 * its Merkle entry. `epoch` is the key's effective epoch, so replicas that hold the same state
 * hold the same digest.
 */
export function putKey(
  storage: ReplicaStorage,
  key: string,
  before: StoredKey | null,
  state: KeyState,
  encoded: Uint8Array,
  seqs: VersionVector,
  epoch: number,
): void {
  const digest = stateDigest(encoded, epoch);
  const bucket = bucketOf(key);
  storage.kv.put(key, state, encoded, seqs, epoch, digest, bucket);
  const change = changeOf(key, before, state, encoded, seqs);
  if (change !== null) storage.changes.append(change);
  const delta = entryDelta(key, before?.digest ?? null, digest);
  if (!isZero(delta)) storage.merkle.add(bucket, delta);
}

/** Drops `key` (stored as `before`, read in this transaction) and its Merkle entry. */
export function dropKey(storage: ReplicaStorage, key: string, before: StoredKey): void {
  storage.kv.delete(key);
  if (before.digest !== null) storage.merkle.add(bucketOf(key), entryDelta(key, before.digest, null));
}

/** Keys entered into the tree per call of {@link enterUndigested}. */
const UNDIGESTED_PAGE = 500;

/**
 * Enters into the tree one page of keys stored before it existed (a store upgraded in place);
 * true when none is left. Runs at start, before anti-entropy compares trees.
 */
export function enterUndigested(storage: ReplicaStorage, epochOf: (key: string, tag: number) => number): boolean {
  return storage.transaction(() => {
    const rows = storage.kv.undigested(UNDIGESTED_PAGE);
    for (const row of rows)
      putKey(storage, row.key, row, decodeKeyState(row.encoded), row.encoded, row.seqs, epochOf(row.key, row.epoch));
    return rows.length < UNDIGESTED_PAGE;
  });
}

/**
 * The 16 child digests of node `index` at `level`, for a storage adapter: from the in-memory
 * levels above the buckets, or, for the buckets' parents, from the stored buckets of that range
 * (`bucketRange(from, to)` lists the non-empty ones).
 */
export function merkleChildren(
  level: number,
  index: number,
  levels: () => MerkleLevels,
  bucketRange: (from: number, to: number) => ReadonlyArray<readonly [number, Uint8Array]>,
): Uint8Array[] {
  assert(Number.isInteger(level) && level >= 0 && level < MERKLE_DEPTH, "buckets have no children");
  const first = index * MERKLE_FANOUT;
  if (level < MERKLE_DEPTH - 1)
    return Array.from({ length: MERKLE_FANOUT }, (_, c) => levels().node(level + 1, first + c));
  const found = new Map(bucketRange(first, first + MERKLE_FANOUT));
  return Array.from(
    { length: MERKLE_FANOUT },
    (_, c) => found.get(first + c)?.slice() ?? new Uint8Array(MERKLE_DIGEST_BYTES),
  );
}
