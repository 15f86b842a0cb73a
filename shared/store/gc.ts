/**
 * Garbage collection: tombstones (deleted registers), expired values and the conflict log.
 *
 * A tombstone is what keeps a delete from being undone by a late copy of the key's older state,
 * so it may go only once no such copy can still arrive and win. The rule is causal stability,
 * judged from what every region reports of itself in its heartbeats: its own sequence number
 * and how far it has applied every region's stream, as one snapshot (a {@link PeerReport}).
 *
 * From the latest reports of all regions (this one included) a replica takes two vectors:
 * `stable[o]`, the lowest of every region's applied watermark for origin `o`, and `writes[o]`,
 * region `o`'s own sequence number in the same snapshot. Every region has merged every write of
 * `o` up to `stable[o]`; and region `o`'s writes above `writes[o]` were made after it had
 * merged everything up to `stable`, so they descend from every state `stable` covers.
 *
 * Collection runs in two steps. A replica remembers one such pair as its candidate; once later
 * reports show every region has applied the candidate's `writes` (`writes <= stable` now), it
 * is confirmed:
 *
 * - a tombstone whose origin sequence numbers (`seqs`) are within the candidate's `stable` is
 *   collectable (after `TOMBSTONE_GRACE_MS`): every region holds it or a state descending from
 *   it, and every write concurrent with it (made before its region merged it, so numbered at
 *   most `writes`) has already been merged everywhere, so none can still arrive and undo it;
 * - the candidate's `writes` become the replica's horizon. A state arriving for a key the
 *   replica does not hold, whose `seqs` are within the horizon, contains only writes this
 *   replica merged long ago: it is a late or duplicated copy of something collected, and is
 *   dropped instead of resurrecting the key ({@link gated}). Horizons travel in heartbeats
 *   and in the probe of a replica restored empty, so it starts with the same protection.
 *
 * A value past its expiration reads as absent everywhere, as a tombstone does, and goes by the
 * same rule: once stable, and `TOMBSTONE_GRACE_MS` after its expiration (so that every region's
 * clock has passed it too).
 *
 * Anti-entropy never drops a live state on that ground (two replicas must converge whatever
 * happened), only tombstones it would collect anyway. A region that is silent, taken out or
 * restored empty holds the lowest watermarks, so collection pauses until it catches up.
 *
 * The conflict log keeps `CONFLICT_LOG_RETENTION_MS` of history and at most
 * `CONFLICT_LOG_MAX_ROWS` rows, oldest dropped first.
 */
import { assert } from "../assert.ts";
import { type RegionId } from "../regions.ts";
import { type VersionVector, vvDescends, vvEntries, vvFrom, vvMerge } from "../version-vector.ts";
import { lwwExpired } from "../crdt/lww-register.ts";
import { decodeKeyState } from "./key-state.ts";
import { META_GC_HORIZON, META_GC_STABLE, type ReplicaMachine, vectorOf } from "./replica-machine.ts";
import { type PeerReport } from "./storage.ts";
import { dropKey } from "./tree.ts";

/** How collection is tuned (from configuration). */
export interface GcSettings {
  /** A tombstone is kept at least this long after its delete, however stable. */
  readonly tombstoneGraceMs: number;
  /** Conflicts older than this are dropped from the log. */
  readonly conflictRetentionMs: number;
  /** The log keeps at most this many conflicts. */
  readonly conflictRowsMax: number;
}

/** Defaults (wrangler.toml sets the same). */
export const GC_DEFAULTS: GcSettings = {
  tombstoneGraceMs: 86_400_000,
  conflictRetentionMs: 7 * 86_400_000,
  conflictRowsMax: 100_000,
};

/** Tombstones examined per collection step (bounds one tick's work). */
export const GC_PAGE_KEYS = 500;
/** Conflicts dropped per step. */
const CONFLICT_PAGE_ROWS = 1000;

const META_CANDIDATE = "gc_candidate";
const META_CURSOR = "gc_cursor";

/** A stability snapshot: every region's lowest applied watermark per origin, and each origin's own number. */
export interface Frontier {
  readonly stable: VersionVector;
  readonly writes: VersionVector;
}

/** What one collection step did. */
export interface GcStep {
  readonly tombstonesCollected: number;
  readonly expiredCollected: number;
  readonly conflictsDropped: number;
}

/** Whether `a <= b` pointwise. */
function within(a: VersionVector, b: VersionVector): boolean {
  return vvDescends(b, a);
}

/** This replica's own report: its sequence number, and its applied watermark for every peer. */
export function ownReport(machine: ReplicaMachine): { seq: number; applied: Record<string, number> } {
  const applied: Record<string, number> = {};
  for (const peer of machine.peers) applied[peer] = machine.storage.peerRecv.get(peer).appliedSeq;
  return { seq: machine.seq, applied };
}

/** Folds in a peer's report and horizon from its heartbeat; call inside the heartbeat's transaction. */
export function recordReport(
  machine: ReplicaMachine,
  region: RegionId,
  report: PeerReport,
  horizon: VersionVector,
): void {
  machine.storage.peerReports.put(region, report);
  raiseHorizon(machine, horizon);
}

/** Raises this replica's horizon to include `horizon` (a peer's, or a confirmed candidate's). */
export function raiseHorizon(machine: ReplicaMachine, horizon: VersionVector): void {
  const current = machine.gcHorizon;
  if (within(horizon, current)) return;
  const merged = vvMerge(current, horizon);
  machine.storage.meta.set(META_GC_HORIZON, JSON.stringify(merged));
  machine.gcHorizon = merged;
}

/**
 * The stability snapshot from the latest reports of every configured region, or null while
 * some region has never reported (a new or restored one, or one never heard).
 */
export function frontier(machine: ReplicaMachine): Frontier | null {
  const own = ownReport(machine);
  const reports = new Map<RegionId, { seq: number; applied: Readonly<Record<string, number>> }>([
    [machine.region, own],
  ]);
  const stored = machine.storage.peerReports.all();
  for (const peer of machine.peers) {
    const report = stored.get(peer);
    if (report === undefined) return null;
    reports.set(peer, report);
  }
  const regions = machine.settings.regions;
  const stable: Array<[RegionId, number]> = [];
  const writes: Array<[RegionId, number]> = [];
  for (const origin of regions) {
    const seq = (reports.get(origin) as { seq: number }).seq;
    let low = seq;
    for (const region of regions) {
      if (region === origin) continue;
      low = Math.min(low, (reports.get(region) as { applied: Readonly<Record<string, number>> }).applied[origin] ?? 0);
    }
    stable.push([origin, low]);
    writes.push([origin, seq]);
  }
  return { stable: vvFrom(stable), writes: vvFrom(writes) };
}

/**
 * Confirms the stored candidate when every region has applied its writes, and takes the current
 * snapshot as the next candidate. Returns the collectable frontier (`stable` of the newest
 * confirmed candidate). Call inside a transaction.
 */
export function advance(machine: ReplicaMachine): VersionVector {
  const { meta } = machine.storage;
  let stable = machine.gcStable;
  const now = frontier(machine);
  if (now === null) return stable;
  const text = meta.get(META_CANDIDATE);
  if (text !== undefined) {
    const candidate = JSON.parse(text) as { stable: object; writes: object };
    const writes = vectorOf(candidate.writes);
    if (!within(writes, now.stable)) return stable;
    stable = vvMerge(stable, vectorOf(candidate.stable));
    meta.set(META_GC_STABLE, JSON.stringify(stable));
    machine.gcStable = stable;
    raiseHorizon(machine, writes);
  }
  meta.set(META_CANDIDATE, JSON.stringify(now));
  return stable;
}

/**
 * Whether a state arriving for `key` with origin sequence numbers `seqs` is a late copy of a
 * collected key: this replica does not hold the key and has merged every one of those writes.
 */
export function gated(machine: ReplicaMachine, seqs: VersionVector): boolean {
  const horizon = machine.gcHorizon;
  return vvEntries(seqs).length > 0 && within(seqs, horizon);
}

/** Whether `seqs` lie within the collectable frontier (a tombstone this replica would collect). */
export function collectable(machine: ReplicaMachine, seqs: VersionVector): boolean {
  return within(seqs, machine.gcStable);
}

/**
 * One bounded step of collection: advances the frontier, collects a page of stable tombstones
 * older than the grace period (resuming where the last step stopped), and trims the conflict
 * log. Each part commits on its own.
 */
export function gcStep(machine: ReplicaMachine, settings: GcSettings, nowMs: number): GcStep {
  const { storage } = machine;
  const stable = storage.transaction(() => advance(machine));
  let tombstonesCollected = 0;
  let expiredCollected = 0;
  const graceEndMs = nowMs - settings.tombstoneGraceMs;
  if (vvEntries(stable).length > 0)
    storage.transaction(() => {
      const cursor = storage.meta.get(META_CURSOR) || null;
      const page = storage.kv.tombstones(cursor, GC_PAGE_KEYS, graceEndMs);
      for (const row of page) {
        // Strong prefixes keep their tombstones: their fencing judges old epochs' writes against
        // what is stored (a limit for now, documented in docs/replication.md).
        if (!within(row.seqs, stable) || machine.strongOf(row.key) !== undefined) continue;
        const state = decodeKeyState(row.encoded);
        assert(state.type === "register", "only registers leave tombstones or expire");
        const { register } = state;
        const expired = register.value !== null;
        if (expired ? !lwwExpired(register, graceEndMs) : register.stamp.wallMs > graceEndMs) continue;
        dropKey(storage, row.key, row);
        machine.passCollected(register.stamp, nowMs);
        if (expired) expiredCollected += 1;
        else tombstonesCollected += 1;
      }
      storage.meta.set(META_CURSOR, page.length < GC_PAGE_KEYS ? "" : (page.at(-1) as { key: string }).key);
      if (tombstonesCollected > 0)
        storage.metrics.add("gc_tombstones_collected_total", machine.region, tombstonesCollected);
      if (expiredCollected > 0) storage.metrics.add("gc_expired_collected_total", machine.region, expiredCollected);
    });
  const conflictsDropped = storage.transaction(() => trimConflicts(machine, settings, nowMs));
  return { tombstonesCollected, expiredCollected, conflictsDropped };
}

/** Drops the oldest conflicts beyond the row bound, then those past retention, a page at most. */
function trimConflicts(machine: ReplicaMachine, settings: GcSettings, nowMs: number): number {
  const { conflicts } = machine.storage;
  const excess = Math.max(0, conflicts.count() - settings.conflictRowsMax);
  const oldest = conflicts.page(0, Math.min(CONFLICT_PAGE_ROWS, Math.max(excess, 100)));
  const drop: number[] = [];
  for (const [i, row] of oldest.entries()) {
    if (i < excess || row.detectedMs < nowMs - settings.conflictRetentionMs) drop.push(row.id);
    else break;
  }
  if (drop.length > 0) {
    conflicts.delete(drop);
    machine.storage.metrics.add("conflicts_dropped_total", machine.region, drop.length);
  }
  return drop.length;
}
