/**
 * Fault injection, for tests and drills (`FAULTS = "on"`; refused otherwise): what an operator
 * sets with `POST /v1/admin/faults`, and the decisions the adapters take from it. The adapters
 * apply it at the transport seam, where WAN emulation waits too:
 *
 * - `drop`: the share of replication messages lost on the way (never retried, never
 *   dead-lettered: only anti-entropy can heal them);
 * - `duplicate`: the share of replication messages delivered once more, later;
 * - `delayMs`: added to every cross-region hop (deliveries and calls);
 * - `partitions`: pairs of regions that cannot reach each other, both directions of every hop
 *   (calls fail as unreachable; queue deliveries wait and retry);
 * - `refuse`: pairs `[origin, target]` whose replication is refused, one way: direct pushes
 *   fail, and the consumer retries the queue's messages at once, so they run out of retries
 *   into the dead-letter queue within seconds (a rehearsal of dead letters and their replay);
 * - `skewMs`: how far each region's clock is moved (positive: ahead);
 * - `seed`: the seed of the generator that decides drops and duplicates.
 */
import { z } from "zod";
import { LOCATION_HINTS, type RegionId } from "./regions.ts";

/** Bound on an injected delay or skew: one hour. */
export const FAULT_MS_MAX = 3_600_000;

const regionSchema = z.enum(LOCATION_HINTS);

/** The body of `POST /v1/admin/faults`; every field optional (absent: no such fault). */
export const faultsBodySchema = z.strictObject({
  drop: z.number().min(0).max(1).optional(),
  duplicate: z.number().min(0).max(1).optional(),
  delayMs: z.number().int().min(0).max(FAULT_MS_MAX).optional(),
  partitions: z
    .array(
      z.tuple([regionSchema, regionSchema]).refine(([a, b]) => a !== b, "a partition separates two different regions"),
    )
    .max(64)
    .optional(),
  refuse: z
    .array(
      z.tuple([regionSchema, regionSchema]).refine(([a, b]) => a !== b, "a refusal is between two different regions"),
    )
    .max(64)
    .optional(),
  skewMs: z.partialRecord(regionSchema, z.number().int().min(-FAULT_MS_MAX).max(FAULT_MS_MAX)).optional(),
  seed: z.number().int().min(0).max(0xffff_ffff).optional(),
});

/** The faults in force. */
export interface Faults {
  readonly drop: number;
  readonly duplicate: number;
  readonly delayMs: number;
  /** Pairs of regions (validated pairs; arrays, as RPC carries them). */
  readonly partitions: ReadonlyArray<readonly RegionId[]>;
  /** Pairs `[origin, target]` whose replication is refused (one way). */
  readonly refuse: ReadonlyArray<readonly RegionId[]>;
  readonly skewMs: Readonly<Partial<Record<RegionId, number>>>;
  readonly seed: number;
}

/** No fault at all. */
export const NO_FAULTS: Faults = {
  drop: 0,
  duplicate: 0,
  delayMs: 0,
  partitions: [],
  refuse: [],
  skewMs: {},
  seed: 1,
};

/** The faults a validated body sets. */
export function faultsFrom(body: z.infer<typeof faultsBodySchema>): Faults {
  return {
    drop: body.drop ?? 0,
    duplicate: body.duplicate ?? 0,
    delayMs: body.delayMs ?? 0,
    partitions: body.partitions ?? [],
    refuse: body.refuse ?? [],
    skewMs: body.skewMs ?? {},
    seed: body.seed ?? 1,
  };
}

/** Whether a partition separates `a` and `b` (in either direction). */
export function partitioned(faults: Faults, a: RegionId, b: RegionId): boolean {
  return faults.partitions.some(([x, y]) => (x === a && y === b) || (x === b && y === a));
}

/** Whether replication from `origin` to `target` is refused (one way). */
export function refused(faults: Faults, origin: RegionId, target: RegionId): boolean {
  // Faults stored before `refuse` existed have none.
  return (faults.refuse ?? []).some(([o, t]) => o === origin && t === target);
}

/** How far `region`'s clock is moved. */
export function skewOf(faults: Faults, region: RegionId): number {
  return faults.skewMs[region] ?? 0;
}

/** Whether any fault is set. */
export function anyFault(faults: Faults): boolean {
  return (
    faults.drop > 0 ||
    faults.duplicate > 0 ||
    faults.delayMs > 0 ||
    faults.partitions.length > 0 ||
    (faults.refuse ?? []).length > 0 ||
    Object.values(faults.skewMs).some((ms) => ms !== 0)
  );
}
