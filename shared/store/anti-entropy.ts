/**
 * Anti-entropy between two replicas (Dynamo, Cassandra, Riak: compare Merkle trees, descend
 * only where digests differ, exchange exactly the differing keys). One round, initiated by one
 * replica with one peer:
 *
 * 1. `aeBegin`: the peer's root, and its sequence number now.
 * 2. Level by level from the root, the children of the differing nodes, until the buckets.
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
import { equalBytes } from "../bytes.ts";
import { type Result, fail, ok } from "../errors.ts";
import {
  MERKLE_DEPTH,
  MERKLE_DIGEST_BYTES,
  MERKLE_FANOUT,
  type MerkleEntry,
  diffBucket,
  diffChildren,
} from "../merkle.ts";
import { type RegionId } from "../regions.ts";
import { vvGet } from "../version-vector.ts";
import { mergeInto } from "./apply.ts";
import { type AeBegin, type AeReport, type PeerApi } from "./contract.ts";
import { decodeKeyState, keyVv } from "./key-state.ts";
import { progressCovered } from "./progress.ts";
import { type ReplicaMachine } from "./replica-machine.ts";
import { type KeyRow } from "./storage.ts";

/** Nodes whose children one round descends into per level, at most: bounds a round's work. */
export const AE_FRONTIER_MAX = 4096;
/** Nodes or buckets asked for in one call. */
const AE_BATCH_NODES = 256;
/** Keys whose states travel in one call. */
const AE_BATCH_KEYS = 200;
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
  const { storage } = machine;
  // Whether the outbox still holds every write of this region that `from` has not confirmed:
  // a new replica then receives all of it through the stream.
  const confirmed = storage.peerReports.all().get(from)?.applied[machine.region] ?? 0;
  const next = storage.log.after(confirmed, 1, 0)[0];
  return {
    holdsYourStream: machine.seq <= confirmed || next?.seq === confirmed + 1,
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
 * epochs of an unsettled strong prefix, see `apply.ts` `judgeDeferred`), and the highest of this replica's own sequence numbers the
 * rows carry.
 */
export function mergeRows(
  machine: ReplicaMachine,
  from: string,
  rows: readonly KeyRow[],
  nowMs: number,
): { changed: number; ownMax: number; waiting: number } {
  let changed = 0;
  let ownMax = 0;
  let waiting = 0;
  machine.storage.transaction(() => {
    for (const row of rows) {
      const state = decodeKeyState(row.encoded);
      ownMax = Math.max(ownMax, vvGet(keyVv(state), machine.region), vvGet(row.seqs, machine.region));
      const epoch = machine.epochOf(row.key, row.epoch);
      const outcome = mergeInto(machine, row.key, state, epoch, row.seqs, from, nowMs, false, "repair");
      if (outcome === "merged") changed += 1;
      // Content of an older epoch of a prefix whose new primary's state this replica has not
      // taken in yet: kept aside and judged once it has, as the stream does.
      if (outcome === "wait") {
        const strong = machine.strongOf(row.key) as { prefix: string };
        machine.storage.deferred.add({ prefix: strong.prefix, key: row.key, origin: from, epoch, state: row.encoded });
        waiting += 1;
      }
    }
  });
  return { changed, ownMax, waiting };
}

/** The outcome of a round, with what a bootstrapping replica needs to know of it. */
export interface RoundResult extends AeReport {
  readonly begin: AeBegin;
  /** The highest of this replica's own sequence numbers seen in the rows it merged. */
  readonly ownMax: number;
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
  let frontier = [0];
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
      batch.forEach((index, i) =>
        next.push(...diffChildren(index, mine[i] as Uint8Array[], theirs.value[i] as Uint8Array[])),
      );
    }
    frontier = next;
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
  const repair = keys.slice(0, keysMax);
  if (keys.length > keysMax) complete = false;
  let keysRepaired = 0;
  let ownMax = 0;
  for (const batch of chunks(repair, AE_BATCH_KEYS)) {
    const theirs = await peer.keyStates(batch);
    if (!theirs.ok) return unreachable("keyStates");
    bytes += theirs.value.reduce((sum, r) => sum + r.encoded.length + r.key.length + ENTRY_OVERHEAD_BYTES, 0);
    const merged = mergeRows(machine, peerRegion, theirs.value, now());
    keysRepaired += merged.changed;
    ownMax = Math.max(ownMax, merged.ownMax);
    // What this replica holds for those keys, and the peer lacks or holds differently.
    const mine = localRows(machine, batch);
    if (mine.length === 0) continue;
    bytes += mine.reduce((sum, r) => sum + r.encoded.length + r.key.length + ENTRY_OVERHEAD_BYTES, 0);
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
  return ok({ peer: peerRegion, keysRepaired, bytes, complete, begin, ownMax });
}
