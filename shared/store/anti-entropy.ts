/**
 * Anti-entropy between two replicas (Dynamo, Cassandra, Riak: compare Merkle trees, descend
 * only where digests differ, exchange exactly the differing keys). One round, initiated by one
 * replica with one peer:
 *
 * 1. `aeBegin`: the peer's root, and its sequence number now.
 * 2. Level by level from the root, the children of the differing nodes, until the buckets. A
 *    subtree one side holds nothing of is not descended: its rows travel whole, in pages, in
 *    (bucket, key) order (this is how a new replica bootstraps: at about the cost of the state).
 * 3. The entries (key, state digest) of the differing buckets: the differing keys.
 * 4. Their states both ways: this replica merges the peer's, the peer merges this replica's,
 *    through the same fenced CRDT merge as replication (conflicts logged as usual).
 *
 * Cost: about 16 digests per differing node per level and the differing keys' states, so
 * O(d log n) for d differing keys among n, and one round trip for equal trees. Every step is
 * bounded; a round that stops short reports itself incomplete and the next one continues.
 * A complete round means this replica holds everything the peer held when it began, so the
 * peer's stream counts as applied up to the sequence number it reported, gaps included.
 */
import { HLC_SKEW_MS_MAX_DEFAULT } from "../hlc.ts";
import { equalBytes } from "../bytes.ts";
import { type Result, fail, ok } from "../errors.ts";
import {
  MERKLE_DEPTH,
  MERKLE_DIGEST_BYTES,
  MERKLE_FANOUT,
  type MerkleEntry,
  bucketOf,
  diffBucket,
  diffChildren,
  isZero,
} from "../merkle.ts";
import { type RegionId } from "../regions.ts";
import { mergeInto } from "./apply.ts";
import { type AeBegin, type AeReport, type PeerApi } from "./contract.ts";
import { decodeKeyState } from "./key-state.ts";
import { progressCovered } from "./progress.ts";
import { type ReplicaMachine } from "./replica-machine.ts";
import { type KeyRow } from "./storage.ts";

/** Nodes whose children one round descends into per level, at most: bounds a round's work. */
export const AE_FRONTIER_MAX = 4096;
/** Nodes or buckets asked for in one call. */
const AE_BATCH_NODES = 256;
/** Keys whose states travel in one call. */
const AE_BATCH_KEYS = 1000;
/** Differing keys one round repairs at most. */
export const AE_KEYS_MAX = 2000;
/** Rough size of a key and a digest on the wire. */
const ENTRY_OVERHEAD_BYTES = 16;

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** What the initiating replica answers for itself (the same questions the peer answers). */
export function aeBegin(machine: ReplicaMachine, from: RegionId, nowMs: number): AeBegin {
  const heard = machine.storage.peerRecv.get(from);
  return {
    heardOfYou: heard.heardMs > 0 || heard.knownSeq > 0,
    root: machine.storage.merkle.root(),
    seq: machine.seq,
    atMs: nowMs,
    firstMs: machine.firstWrittenMs,
    knownOfYou: machine.storage.peerRecv.get(from).knownSeq,
    bootstrapping: machine.bootstrapping,
    horizon: machine.gcHorizon,
  };
}

/** The children of several nodes of one level. */
export function localChildren(machine: ReplicaMachine, level: number, indices: readonly number[]): Uint8Array[][] {
  return indices.map((index) => machine.storage.merkle.children(level, index));
}

/** The stored rows of `keys` that this replica holds. */
export function localRows(machine: ReplicaMachine, keys: readonly string[]): KeyRow[] {
  const rows: KeyRow[] = [];
  for (const key of keys) {
    const row = machine.storage.kv.get(key);
    if (row !== null) rows.push({ key, ...row });
  }
  return rows;
}

/**
 * Merges rows from `from` (either side of a round), in one transaction, through the fenced
 * merge; returns how many changed this replica, how many it kept aside to judge later (older
 * epochs of an unsettled strong prefix, see `apply.ts` `judgeDeferred`), and how many it held
 * back because their stamps are too far ahead of its clock.
 */
export function mergeRows(
  machine: ReplicaMachine,
  from: string,
  rows: readonly KeyRow[],
  nowMs: number,
): { changed: number; waiting: number; held: number } {
  let changed = 0;
  let waiting = 0;
  let held = 0;
  machine.storage.transaction(() => {
    // One read for the page's stored keys (they are distinct in every page a round moves).
    const keys = rows.map((row) => row.key);
    const stored = new Set(keys).size === keys.length ? machine.storage.kv.getMany(keys) : undefined;
    for (const row of rows) {
      const state = decodeKeyState(row.encoded);
      // A register stamped further ahead of this replica's clock than the HLC allows is held, as
      // the stream holds it (`clock_skew`): merged, a skewed clock's write would win every later
      // one. A later round takes it once the clocks agree.
      if (state.type === "register" && state.register.stamp.wallMs > nowMs + HLC_SKEW_MS_MAX_DEFAULT) {
        held += 1;
        continue;
      }
      const epoch = machine.epochOf(row.key, row.epoch);
      const read = stored === undefined ? undefined : (stored.get(row.key) ?? null);
      const outcome = mergeInto(machine, row.key, state, epoch, row.seqs, from, nowMs, false, "repair", read);
      if (outcome === "merged") changed += 1;
      // Content of an older epoch of a prefix whose new primary's state this replica has not
      // taken in yet: kept aside and judged once it has, as the stream does.
      if (outcome === "wait") {
        const strong = machine.strongOf(row.key) as { prefix: string };
        machine.storage.deferred.add({ prefix: strong.prefix, key: row.key, origin: from, epoch, state: row.encoded });
        waiting += 1;
      }
    }
    if (held > 0) machine.storage.metrics.add("anti_entropy_skew_held_total", from, held);
  });
  return { changed, waiting, held };
}

/** Buckets `from` (inclusive) to `to` (exclusive): the span of one node of the tree. */
interface BucketRange {
  readonly from: number;
  readonly to: number;
}

/** Where a page of rows in (bucket, key) order stopped. */
export interface BucketCursor {
  readonly bucket: number;
  readonly key: string;
}

/** The buckets under node `index` of `level` (level MERKLE_DEPTH: the bucket itself). */
function bucketRange(level: number, index: number): BucketRange {
  const width = MERKLE_FANOUT ** (MERKLE_DEPTH - level);
  return { from: index * width, to: (index + 1) * width };
}

function cursorOf(rows: readonly KeyRow[]): BucketCursor {
  const last = rows.at(-1) as KeyRow;
  return { bucket: bucketOf(last.key), key: last.key };
}

function rowBytes(rows: readonly KeyRow[]): number {
  return rows.reduce((sum, r) => sum + r.encoded.length + r.key.length + ENTRY_OVERHEAD_BYTES, 0);
}

/** The outcome of a round, with what a bootstrapping replica needs to know of it. */
export interface RoundResult extends AeReport {
  readonly begin: AeBegin;
  /** The highest of this replica's own sequence numbers seen in the rows it merged. */
}

/**
 * One anti-entropy round of `machine` with `peer` (region `peerRegion`). A failed call ends the
 * round with `region_unavailable`; what was merged before stays merged.
 */
export async function antiEntropyRound(
  machine: ReplicaMachine,
  peerRegion: RegionId,
  peer: PeerApi,
  now: () => number,
  keysMax: number = AE_KEYS_MAX,
): Promise<Result<RoundResult>> {
  const unreachable = <T>(what: string): Result<T> =>
    fail("region_unavailable", `anti-entropy with ${peerRegion}: ${what} did not answer`, { region: peerRegion });
  const begun = await peer.aeBegin(machine.region);
  if (!begun.ok) return begun;
  const begin = begun.value;
  let bytes = MERKLE_DIGEST_BYTES;
  let complete = true;
  let keysRepaired = 0;
  let budget = keysMax;
  let frontier = [0];
  // Subtrees one side holds nothing of: their rows travel whole, without descending further.
  const pull: BucketRange[] = [];
  const push: BucketRange[] = [];
  if (equalBytes(begin.root, machine.storage.merkle.root())) frontier = [];
  for (let level = 0; level < MERKLE_DEPTH && frontier.length > 0; level += 1) {
    if (frontier.length > AE_FRONTIER_MAX) {
      frontier = frontier.slice(0, AE_FRONTIER_MAX);
      complete = false;
    }
    const next: number[] = [];
    for (const batch of chunks(frontier, AE_BATCH_NODES)) {
      const theirs = await peer.merkleChildren(level, batch);
      if (!theirs.ok) return unreachable("merkleChildren");
      bytes += batch.length * MERKLE_FANOUT * MERKLE_DIGEST_BYTES;
      const mine = localChildren(machine, level, batch);
      batch.forEach((index, i) => {
        const ours = mine[i] as Uint8Array[];
        const other = theirs.value[i] as Uint8Array[];
        for (const child of diffChildren(index, ours, other)) {
          const c = child - index * MERKLE_FANOUT;
          if (isZero(ours[c] as Uint8Array)) pull.push(bucketRange(level + 1, child));
          else if (isZero(other[c] as Uint8Array)) push.push(bucketRange(level + 1, child));
          else next.push(child);
        }
      });
    }
    frontier = next;
  }
  // What this replica lacks entirely, page by page from the peer.
  for (const range of pull) {
    let after: BucketCursor | null = null;
    do {
      if (budget <= 0) {
        complete = false;
        break;
      }
      const limit = Math.min(AE_BATCH_KEYS, budget);
      const page = await peer.bucketRows(range.from, range.to, after, limit);
      if (!page.ok) return unreachable("bucketRows");
      bytes += rowBytes(page.value);
      const merged = mergeRows(machine, peerRegion, page.value, now());
      keysRepaired += merged.changed;
      if (merged.held > 0) complete = false;
      budget -= page.value.length;
      after = page.value.length < limit ? null : cursorOf(page.value);
    } while (after !== null);
  }
  // What the peer lacks entirely, page by page from this replica.
  for (const range of push) {
    let after: BucketCursor | null = null;
    do {
      if (budget <= 0) {
        complete = false;
        break;
      }
      const limit = Math.min(AE_BATCH_KEYS, budget);
      const rows = machine.storage.kv.bucketRows(range.from, range.to, after, limit);
      if (rows.length === 0) break;
      bytes += rowBytes(rows);
      const repaired = await peer.repairStates(machine.region, rows);
      if (!repaired.ok) return unreachable("repairStates");
      keysRepaired += repaired.value;
      budget -= rows.length;
      after = rows.length < limit ? null : cursorOf(rows);
    } while (after !== null);
  }
  const keys: string[] = [];
  for (const batch of chunks(frontier.slice(0, AE_FRONTIER_MAX), AE_BATCH_NODES)) {
    const theirs = await peer.bucketEntries(batch);
    if (!theirs.ok) return unreachable("bucketEntries");
    batch.forEach((bucket, i) => {
      const entries = theirs.value[i] as MerkleEntry[];
      bytes += entries.reduce((sum, e) => sum + e.key.length + MERKLE_DIGEST_BYTES + ENTRY_OVERHEAD_BYTES, 0);
      keys.push(...diffBucket(machine.storage.kv.bucket(bucket), entries));
    });
  }
  if (frontier.length > AE_FRONTIER_MAX) complete = false;
  const repair = keys.slice(0, Math.max(0, budget));
  if (keys.length > repair.length) complete = false;
  for (const batch of chunks(repair, AE_BATCH_KEYS)) {
    const theirs = await peer.keyStates(batch);
    if (!theirs.ok) return unreachable("keyStates");
    bytes += rowBytes(theirs.value);
    const merged = mergeRows(machine, peerRegion, theirs.value, now());
    keysRepaired += merged.changed;
    if (merged.held > 0) complete = false;
    // What this replica holds for those keys, and the peer lacks or holds differently.
    const mine = localRows(machine, batch);
    if (mine.length === 0) continue;
    bytes += rowBytes(mine);
    const repaired = await peer.repairStates(machine.region, mine);
    if (!repaired.ok) return unreachable("repairStates");
    keysRepaired += repaired.value;
  }
  if (complete && !begin.bootstrapping) {
    const { storage } = machine;
    storage.transaction(() =>
      storage.peerRecv.put(peerRegion, progressCovered(storage.peerRecv.get(peerRegion), begin.seq, begin.atMs, now())),
    );
  }
  return ok({ peer: peerRegion, keysRepaired, bytes, complete, begin });
}
