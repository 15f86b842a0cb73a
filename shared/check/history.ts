/**
 * A checker over recorded client histories: every operation with its client, key, region,
 * consistency, start and end times, and the version (version vector text) it wrote or read.
 * It verifies the promises the consistency modes make:
 *
 * - read-your-writes: a session client's read starting after its own write of a key ended
 *   returns that write or something that causally follows it;
 * - monotonic reads: a session client's later read of a key never returns a causally older
 *   version than an earlier read of it;
 * - quorum visibility: a quorum or strong read starting after an `ack=quorum` or strong write
 *   of the key ended (by any client) returns that write or something that follows it;
 * - strong reads never go back: a strong read starting after another strong read of the key
 *   ended (by any client) returns what that one returned or something that follows it.
 *
 * Versions are compared causally (version vectors), so concurrent writers cannot fool it.
 */
import { type VersionVector, parseVv, vvDescends } from "../version-vector.ts";

/** One recorded operation. */
export interface HistoryOp {
  readonly client: string;
  readonly kind: "write" | "read";
  readonly key: string;
  readonly region: string;
  /** `session`, `quorum` or `strong` for reads; `quorum`, `strong` (or another ack) for writes. */
  readonly mode: string;
  readonly startMs: number;
  readonly endMs: number;
  /** Whether it succeeded; failed operations promise nothing and are skipped. */
  readonly ok: boolean;
  /** The version written, or read; null for a read that found nothing. */
  readonly version: string | null;
}

/** A broken promise, with the two operations that show it. */
export interface Violation {
  readonly rule: "read_your_writes" | "monotonic_reads" | "quorum_visibility" | "strong_read_went_back";
  readonly message: string;
  readonly earlier: HistoryOp;
  readonly later: HistoryOp;
}

/** Bound on operations checked in one history (the checks are quadratic per key). */
export const HISTORY_OPS_MAX = 50_000;

function vv(op: HistoryOp): VersionVector | undefined {
  return op.version === null ? undefined : parseVv(op.version);
}

/** Whether an operation is one that quorum visibility covers (quorum or strong). */
function durable(op: HistoryOp): boolean {
  return op.mode === "quorum" || op.mode === "strong";
}

/** Whether `later` observed at least what `earlier` wrote or read. */
function covers(later: HistoryOp, earlier: HistoryOp): boolean {
  const e = vv(earlier);
  if (e === undefined) return true;
  const l = vv(later);
  return l !== undefined && vvDescends(l, e);
}

function describe(op: HistoryOp): string {
  return `${op.client} ${op.kind} ${op.key} in ${op.region} (${op.mode}) [${op.startMs}..${op.endMs}] -> ${op.version ?? "none"}`;
}

/** Every violation in `history` (empty when all promises held). */
export function checkHistory(history: readonly HistoryOp[]): Violation[] {
  if (history.length > HISTORY_OPS_MAX) throw new RangeError(`history longer than ${HISTORY_OPS_MAX} operations`);
  const violations: Violation[] = [];
  const byKey = Map.groupBy(
    history.filter((op) => op.ok),
    (op) => op.key,
  );
  for (const ops of byKey.values()) {
    const writes = ops.filter((op) => op.kind === "write");
    const reads = ops.filter((op) => op.kind === "read");
    for (const read of reads) {
      for (const write of writes) {
        if (write.endMs > read.startMs) continue;
        if (read.mode === "session" && write.client === read.client && !covers(read, write)) {
          violations.push({
            rule: "read_your_writes",
            message: `${describe(read)} misses its own ${describe(write)}`,
            earlier: write,
            later: read,
          });
        }
        if (durable(read) && durable(write) && !covers(read, write)) {
          violations.push({
            rule: "quorum_visibility",
            message: `${describe(read)} misses acknowledged ${describe(write)}`,
            earlier: write,
            later: read,
          });
        }
      }
      if (read.mode === "strong") {
        for (const before of reads) {
          if (before.mode !== "strong" || before.endMs > read.startMs || before === read || covers(read, before))
            continue;
          violations.push({
            rule: "strong_read_went_back",
            message: `${describe(read)} is older than earlier ${describe(before)}`,
            earlier: before,
            later: read,
          });
        }
      }
      if (read.mode !== "session") continue;
      for (const before of reads) {
        if (
          before.client !== read.client ||
          before.mode !== "session" ||
          before.endMs > read.startMs ||
          before === read
        )
          continue;
        if (!covers(read, before)) {
          violations.push({
            rule: "monotonic_reads",
            message: `${describe(read)} is older than earlier ${describe(before)}`,
            earlier: before,
            later: read,
          });
        }
      }
    }
  }
  return violations;
}
