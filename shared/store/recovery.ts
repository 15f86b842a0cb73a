/**
 * A failover's two halves on the replicas, as resumable steps over storage.
 *
 * The new primary of a prefix, under epoch E, before it serves:
 * 1. merges every key of the prefix from each donor (replicas that durably know E, with itself
 *    at least a majority, so every write a quorum acknowledged under an older epoch is among
 *    them, and none of them takes a deposed primary's write any more);
 * 2. re-logs every key of the prefix under E. Replicas take a state of epoch E in place of any
 *    older one (`epochs.ts`), so this carries everything legitimate to them and replaces what
 *    a deposed primary left behind.
 *
 * Every other replica, once it has applied the new primary's stream up to the end of that
 * re-log (`recoveredSeq`), drops the keys of the prefix still from an older epoch: the new
 * primary never had them, so only a deposed primary wrote them. Then it is settled: content
 * from an older epoch that still arrives is refused and logged.
 *
 * Progress is kept in storage after every page, so a restart resumes, and each call does a
 * bounded amount of work.
 */
import { assert } from "../assert.ts";
import { type HlcStamp, formatHlc, hlcNow } from "../hlc.ts";
import { type RegionId } from "../regions.ts";
import { EMPTY_VV, vvMerge } from "../version-vector.ts";
import { judgeDeferred, logConflict } from "./apply.ts";
import { mergeTagged } from "./epochs.ts";
import { decodeKeyState, encodeKeyState } from "./key-state.ts";
import { prefixEnd } from "./keys.ts";
import { INLINE_STATE_BYTES_MAX, conflictRecord, fencedRecord } from "./replica-core.ts";
import { type ReplicaMachine, Refusal } from "./replica-machine.ts";
import { type KeyRow, type PrimaryRecord } from "./storage.ts";
import { dropKey, putKey } from "./tree.ts";

/** Keys per page when copying or re-logging a prefix. */
export const RECOVERY_PAGE_KEYS = 200;
/** Keys one settle step drops at most. */
export const SETTLE_PAGE_KEYS = 1000;

/** Where one prefix's recovery stands. */
export interface RecoveryState {
  readonly epoch: number;
  readonly donors: readonly RegionId[];
  /** Index in `donors` of the donor being copied; `donors.length` once every donor is merged. */
  readonly donor: number;
  /** Last key handled in the current pass (a donor's keys, then this replica's own). */
  readonly after: string | null;
  readonly merged: number;
  /** States of older epochs than this are a deposed primary's leftovers: not recovered. */
  readonly floorEpoch: number;
  /** Set once the re-log is complete: this replica's sequence number after it. */
  readonly recoveredSeq: number | null;
}

function metaName(prefix: string): string {
  return `recovery:${prefix}`;
}

/**
 * The recovery of `prefix` under `epoch` from `donors`, as stored: a finished one stays
 * finished (its re-log is what readiness and settling are measured against); an unfinished one
 * continues when the donors are the same, and starts over otherwise (merges are idempotent).
 */
export function recoveryOf(
  machine: ReplicaMachine,
  prefix: string,
  epoch: number,
  donors: readonly RegionId[],
  floorEpoch: number,
): RecoveryState {
  const text = machine.storage.meta.get(metaName(prefix));
  const stored = text === undefined ? undefined : (JSON.parse(text) as RecoveryState);
  if (
    stored !== undefined &&
    stored.epoch === epoch &&
    (stored.recoveredSeq !== null || sameRegions(stored.donors, donors))
  )
    return stored;
  return { epoch, donors: [...donors], donor: 0, after: null, merged: 0, floorEpoch, recoveredSeq: null };
}

function sameRegions(a: readonly RegionId[], b: readonly RegionId[]): boolean {
  return a.length === b.length && a.every((r) => b.includes(r));
}

/**
 * Refuses (rolling the page back) when this replica is no longer the primary of `prefix` at
 * `epoch`: a recovery that outlived its epoch across the awaits between pages must not bring
 * back keys the newer epoch has dropped.
 */
function stillPrimary(machine: ReplicaMachine, prefix: string, epoch: number): void {
  const known = machine.storage.primaries.all().get(prefix);
  if (known === undefined || known.epoch !== epoch || known.region !== machine.region)
    throw new Refusal({
      code: "fenced",
      message: `region ${machine.region} is no longer the primary of "${prefix}" at epoch ${epoch}`,
      details: { prefix },
    });
}

function save(machine: ReplicaMachine, prefix: string, state: RecoveryState): void {
  machine.storage.meta.set(metaName(prefix), JSON.stringify(state));
}

/**
 * Merges one page of the current donor's keys (`rows`, after `state.after`) and records the
 * progress, in one transaction. A short page ends that donor.
 */
export function mergeDonorPage(
  machine: ReplicaMachine,
  prefix: string,
  state: RecoveryState,
  rows: readonly KeyRow[],
  nowMs: number,
): RecoveryState {
  assert(state.donor < state.donors.length, "a donor page belongs to a donor still to copy");
  const donor = state.donors[state.donor] as RegionId;
  const { storage } = machine;
  return storage.transaction(() => {
    stillPrimary(machine, prefix, state.epoch);
    let merged = state.merged;
    for (const row of rows) {
      // What the last epoch that served did not keep is a deposed primary's leftover.
      const rowEpoch = machine.epochOf(row.key, row.epoch);
      if (rowEpoch < state.floorEpoch) continue;
      const stored = storage.kv.get(row.key);
      const local =
        stored === null
          ? undefined
          : { state: decodeKeyState(stored.encoded), epoch: machine.epochOf(row.key, stored.epoch) };
      // Otherwise no fencing: the donors hold exactly the older epochs' history this step gathers.
      const { merged: next, conflict } = mergeTagged(local, { state: decodeKeyState(row.encoded), epoch: rowEpoch });
      const encoded = encodeKeyState(next.state);
      putKey(storage, row.key, stored, next.state, encoded, vvMerge(stored?.seqs ?? EMPTY_VV, row.seqs), next.epoch);
      if (conflict !== undefined) logConflict(storage, row.key, conflictRecord(conflict), donor, nowMs);
      merged += 1;
    }
    const done = rows.length < RECOVERY_PAGE_KEYS;
    const next: RecoveryState = done
      ? { ...state, donor: state.donor + 1, after: null, merged }
      : { ...state, after: rows.at(-1)?.key ?? state.after, merged };
    save(machine, prefix, next);
    return next;
  });
}

/**
 * Re-logs one page of this replica's own keys of the prefix under the new epoch, in one
 * transaction, and finishes the recovery after the last page: the prefix is then settled here.
 */
export function relogPage(machine: ReplicaMachine, prefix: string, state: RecoveryState, nowMs: number): RecoveryState {
  assert(state.donor >= state.donors.length, "re-logging follows the donors");
  const { storage } = machine;
  let clock: HlcStamp = machine.clock;
  let seq = machine.seq;
  const next = storage.transaction(() => {
    stillPrimary(machine, prefix, state.epoch);
    const rows = storage.kv.rows(prefix, prefixEnd(prefix), state.after, RECOVERY_PAGE_KEYS);
    for (const row of rows) {
      if (machine.epochOf(row.key, row.epoch) < state.floorEpoch) {
        dropKey(storage, row.key, row);
        const record = fencedRecord(undefined, state.epoch, decodeKeyState(row.encoded), row.epoch);
        logConflict(storage, row.key, record, machine.region, nowMs);
        continue;
      }
      clock = hlcNow(clock, nowMs);
      seq += 1;
      putKey(storage, row.key, row, decodeKeyState(row.encoded), row.encoded, row.seqs, state.epoch);
      const inline = row.encoded.length <= INLINE_STATE_BYTES_MAX ? row.encoded : null;
      storage.log.append({
        seq,
        key: row.key,
        stamp: formatHlc(clock),
        writtenMs: nowMs,
        state: inline,
        epoch: state.epoch,
      });
    }
    if (seq !== machine.seq) machine.savePosition(formatHlc(clock), seq, nowMs);
    const last = rows.length < RECOVERY_PAGE_KEYS;
    const after: RecoveryState = last
      ? { ...state, after: null, recoveredSeq: seq }
      : { ...state, after: rows.at(-1)?.key ?? state.after };
    if (last) {
      const known = storage.primaries.all().get(prefix) as PrimaryRecord;
      storage.primaries.put(prefix, { ...known, settledEpoch: state.epoch });
      // Writes of older epochs it kept aside while recovering are judged now (the tick judges
      // what one page leaves).
      judgeDeferred(machine, prefix, nowMs);
    }
    save(machine, prefix, after);
    return after;
  });
  machine.advancedTo(seq, clock, nowMs);
  return next;
}

/**
 * One bounded step of settling `prefix` at `epoch` on a replica that has applied its new
 * primary's stream through the re-log: drops keys of the prefix still from an older epoch, and
 * marks the prefix settled after the last page. Returns whether it is settled.
 */
export function settleStep(machine: ReplicaMachine, prefix: string, epoch: number, nowMs: number): boolean {
  const { storage } = machine;
  const name = `settle:${prefix}`;
  return storage.transaction(() => {
    const known = storage.primaries.all().get(prefix);
    if (known === undefined || known.epoch !== epoch) return false;
    if (known.settledEpoch >= epoch) return true;
    // The cursor belongs to one epoch: a settle overtaken by a newer epoch starts over.
    const [cursorEpoch, ...rest] = (storage.meta.get(name) ?? "").split(":");
    const after = Number(cursorEpoch) === epoch && rest.length > 0 ? rest.join(":") : null;
    const rows = storage.kv.rows(prefix, prefixEnd(prefix), after, SETTLE_PAGE_KEYS);
    for (const row of rows) {
      if (machine.epochOf(row.key, row.epoch) >= epoch) continue;
      dropKey(storage, row.key, row);
      // Only a deposed primary wrote this key: it is dropped, and the drop is logged.
      logConflict(
        storage,
        row.key,
        fencedRecord(undefined, epoch, decodeKeyState(row.encoded), row.epoch),
        known.region,
        nowMs,
      );
    }
    const last = rows.length < SETTLE_PAGE_KEYS;
    storage.meta.set(name, last ? "" : `${epoch}:${rows.at(-1)?.key ?? ""}`);
    if (!last) return false;
    storage.primaries.put(prefix, { ...known, settledEpoch: epoch });
    // Settled: the older epochs' writes kept aside meanwhile can be judged now (a page here,
    // the rest at the next ticks).
    judgeDeferred(machine, prefix, nowMs);
    return true;
  });
}
