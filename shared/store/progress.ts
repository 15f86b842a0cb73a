/**
 * What a replica knows about its progress on each peer's stream of writes, and the lag figures
 * derived from it. Every write a region originates gets the next sequence number of that
 * region; every message carries a contiguous range of them. Messages arrive at least once and
 * in any order, so the replica keeps the highest *contiguous* applied sequence (its
 * watermark) plus the ranges that arrived early, bounded by {@link PENDING_RANGES_MAX}.
 *
 * Lag is "how stale can a read here be with respect to that peer": zero when every write the
 * peer is known to have made is applied and the peer's heartbeat is recent; otherwise the time
 * since the peer's stream was last known complete here.
 */
import { assert } from "../assert.ts";

/**
 * Bound on gaps tracked per peer. A message that would open one more gap is refused (and
 * retried by the queue later, when earlier messages have filled gaps), never half-recorded.
 */
export const PENDING_RANGES_MAX = 1024;

/** A range of a peer's sequence numbers that arrived ahead of the watermark. */
export interface PendingRange {
  readonly from: number;
  readonly to: number;
  /** The peer's wall time when it wrote `to`. */
  readonly lastWrittenMs: number;
}

/** Progress on one peer's stream. */
export interface PeerProgress {
  /** Every sequence number up to this one is applied here. */
  readonly appliedSeq: number;
  /** The highest sequence number the peer is known to have issued (from entries and heartbeats). */
  readonly knownSeq: number;
  /** Peer wall time up to which this replica is known to hold everything the peer wrote. */
  readonly freshMs: number;
  /** Local time the last message (entries or heartbeat) from the peer arrived; 0 if never. */
  readonly heardMs: number;
  /** Ranges applied ahead of the watermark, sorted by `from`, disjoint. */
  readonly pending: readonly PendingRange[];
}

/**
 * Sorts ranges and merges those that overlap or touch, so duplicates and neighbours collapse
 * into one: the bound on pending ranges then counts real gaps, not deliveries.
 */
function coalesce(ranges: readonly PendingRange[]): PendingRange[] {
  const sorted = [...ranges].sort((a, b) => a.from - b.from || a.to - b.to);
  const out: PendingRange[] = [];
  for (const range of sorted) {
    const last = out.at(-1);
    if (last !== undefined && range.from <= last.to + 1) {
      out[out.length - 1] =
        range.to > last.to ? { from: last.from, to: range.to, lastWrittenMs: range.lastWrittenMs } : last;
    } else out.push(range);
  }
  return out;
}

/** Progress before anything from the peer arrived. */
export const EMPTY_PROGRESS: PeerProgress = { appliedSeq: 0, knownSeq: 0, freshMs: 0, heardMs: 0, pending: [] };

/**
 * Before its first write a peer had nothing to lack, so a replica that has applied none of its
 * writes is stale since that write (peer time `firstWrittenMs`), not since the Unix epoch.
 */
function sinceFirstWrite(p: PeerProgress, firstWrittenMs: number): number {
  return p.appliedSeq === 0 && firstWrittenMs > 0 ? Math.max(p.freshMs, firstWrittenMs - 1) : p.freshMs;
}

/**
 * Folds in that the range `from..to` of the peer's writes is now applied here; the peer's first
 * write was at its time `firstWrittenMs`.
 */
export function progressApplied(
  p: PeerProgress,
  from: number,
  to: number,
  lastWrittenMs: number,
  firstWrittenMs: number,
  nowMs: number,
): PeerProgress {
  assert(Number.isSafeInteger(from) && from >= 1 && to >= from, "a range is 1 <= from <= to");
  let appliedSeq = p.appliedSeq;
  let freshMs = sinceFirstWrite(p, firstWrittenMs);
  let pending = [...p.pending];
  if (from <= appliedSeq + 1) {
    if (to > appliedSeq) {
      appliedSeq = to;
      freshMs = Math.max(freshMs, lastWrittenMs);
    }
  } else {
    pending = coalesce([...pending, { from, to, lastWrittenMs }]);
  }
  // Absorb early ranges that now touch the watermark, in order.
  const rest: PendingRange[] = [];
  for (const range of pending) {
    if (range.from <= appliedSeq + 1) {
      if (range.to > appliedSeq) {
        appliedSeq = range.to;
        freshMs = Math.max(freshMs, range.lastWrittenMs);
      }
    } else rest.push(range);
  }
  assert(rest.length <= PENDING_RANGES_MAX, "callers check progressAccepts before applying");
  pending = rest;
  return {
    appliedSeq,
    knownSeq: Math.max(p.knownSeq, to, appliedSeq),
    freshMs,
    heardMs: Math.max(p.heardMs, nowMs),
    pending,
  };
}

/** Whether the range can be recorded without exceeding {@link PENDING_RANGES_MAX} gaps. */
export function progressAccepts(p: PeerProgress, from: number, to: number): boolean {
  if (from <= p.appliedSeq + 1 || p.pending.length < PENDING_RANGES_MAX) return true;
  return p.pending.some((r) => from <= r.to + 1 && to + 1 >= r.from);
}

/**
 * Folds in a heartbeat: at peer time `atMs` the peer had issued `seq` writes, the first of them
 * at peer time `firstWrittenMs` (0 when it has written nothing).
 */
export function progressHeartbeat(
  p: PeerProgress,
  seq: number,
  atMs: number,
  firstWrittenMs: number,
  nowMs: number,
  baseSeq = 0,
  priorSeq = 0,
): PeerProgress {
  assert(Number.isSafeInteger(seq) && seq >= 0, "heartbeat seq is a non-negative integer");
  // A peer restored empty numbers its new life from `baseSeq`, above `priorSeq`, the highest of
  // its earlier numbers any region knew. Those up to `priorSeq` may still be held somewhere
  // and are waited for (anti-entropy with the restored peer covers them); the numbers between
  // were never known to anyone and belong to the lost life: they count as applied once the
  // watermark reaches them.
  const q =
    baseSeq > Math.max(p.appliedSeq, priorSeq)
      ? progressApplied(p, Math.max(p.appliedSeq, priorSeq) + 1, baseSeq, 0, firstWrittenMs, nowMs)
      : p;
  let freshMs = sinceFirstWrite(q, firstWrittenMs);
  // Everything up to `seq` (and everything else known of the peer) applied means this replica
  // held the peer's whole state at `atMs`.
  if (Math.max(seq, q.knownSeq) <= q.appliedSeq) freshMs = Math.max(freshMs, atMs);
  return {
    ...q,
    knownSeq: Math.max(q.knownSeq, seq),
    freshMs,
    heardMs: Math.max(q.heardMs, nowMs),
  };
}

/** The watermark raised to `seq`, absorbing early ranges that now touch it, as when a gap fills. */
function raised(
  p: PeerProgress,
  seq: number,
  freshMs: number,
): { appliedSeq: number; knownSeq: number; freshMs: number; pending: PendingRange[] } {
  let applied = Math.max(p.appliedSeq, seq);
  let fresh = freshMs;
  const rest: PendingRange[] = [];
  for (const range of p.pending) {
    if (range.to <= applied) continue;
    if (range.from <= applied + 1) {
      applied = range.to;
      fresh = Math.max(fresh, range.lastWrittenMs);
    } else rest.push(range);
  }
  return { appliedSeq: applied, knownSeq: Math.max(p.knownSeq, applied), freshMs: fresh, pending: rest };
}

/**
 * Lag behind one peer: writes known but not applied, and milliseconds of possible staleness, or
 * null with the reason when no honest figure exists.
 */
export type Lag =
  | { readonly entries: number; readonly ms: number }
  | { readonly entries: number; readonly ms: null; readonly unknown: string };

/**
 * The lag figures. `silenceMsMax` is how long the peer may stay silent (no heartbeat) before
 * a caught-up replica stops counting as current: a silent peer may be writing into a stalled
 * link, so from then on lag grows with the time since the stream was last known complete. A
 * peer an operator took out of service takes no writes, so its silence alone is no staleness:
 * only writes it made before and that are still missing here count (`takenOut`). A peer never
 * heard from has no figure: it is unknown.
 */
export function progressLag(p: PeerProgress, nowMs: number, silenceMsMax: number, takenOut = false): Lag {
  // Writes known and not applied: ranges applied ahead of the watermark do not count.
  const entries = p.knownSeq - p.appliedSeq - p.pending.reduce((sum, r) => sum + r.to - r.from + 1, 0);
  if (p.heardMs === 0 && p.knownSeq === 0) return { entries, ms: null, unknown: "never heard from the peer" };
  if (entries === 0 && (takenOut || nowMs - p.heardMs <= silenceMsMax)) return { entries, ms: 0 };
  // Every message says when its origin first wrote, so a peer with writes has a freshness
  // here; only progress kept by an older build can lack it, until the peer's next message.
  if (p.freshMs === 0) return { entries, ms: null, unknown: "no freshness known for the peer yet" };
  return { entries, ms: Math.max(0, nowMs - p.freshMs) };
}

/**
 * Folds in a complete anti-entropy round with the peer, begun when the peer had issued `seq`
 * writes at its time `atMs`: this replica now holds everything the peer held then, so every
 * one of those writes counts as applied, gaps included (lost or dead-lettered messages).
 */
export function progressCovered(p: PeerProgress, seq: number, atMs: number, nowMs: number): PeerProgress {
  assert(Number.isSafeInteger(seq) && seq >= 0, "a covered seq is a non-negative integer");
  // This replica held the peer's whole state at `atMs`.
  return { ...p, ...raised(p, seq, Math.max(p.freshMs, atMs)), heardMs: Math.max(p.heardMs, nowMs) };
}
