/**
 * The cluster view the control object publishes: which regions are healthy and which region
 * is the primary of each strong prefix under which fencing epoch. Routers and replicas cache
 * it; the control object pushes every change to the replicas at once.
 */
import { type RegionId } from "../regions.ts";
import type { Layout } from "./layout.ts";

/** Why a region counts as unhealthy. */
export type UnhealthyReason = "admin" | "unreachable" | "silent" | "bootstrapping" | "clock_skew";

/** One region's health. */
export interface RegionHealth {
  readonly healthy: boolean;
  readonly reason: UnhealthyReason | null;
}

/** The primary of one strong prefix. */
export interface PrimaryState {
  readonly region: RegionId;
  readonly epoch: number;
  /** False while a newly promoted primary recovers the prefix from its peers. */
  readonly ready: boolean;
  readonly failover: boolean;
  /**
   * Per shard (index = shard), the primary's sequence number at the end of its recovery's
   * re-log (empty for the configured first epoch): a replica of that shard that has applied
   * the primary's stream this far holds the recovered prefix. {@link recoveredSeqOf} reads it.
   */
  readonly recoveredSeqs: readonly number[];
}

/** What the control object publishes. */
export interface ClusterView {
  readonly atMs: number;
  readonly health: Readonly<Partial<Record<RegionId, RegionHealth>>>;
  readonly primaries: Readonly<Record<string, PrimaryState>>;
  /** The shard layout (`layout.ts`); absent from views of builds before shards could move. */
  readonly layout?: Layout;
}

/** Where shard `shard` of a strong prefix's primary ended its recovery's re-log (0: none needed). */
export function recoveredSeqOf(primary: PrimaryState, shard: number): number {
  return primary.recoveredSeqs[shard] ?? 0;
}

/** The view before the control object has said anything: every region healthy, no primaries. */
export const EMPTY_VIEW: ClusterView = { atMs: 0, health: {}, primaries: {} };

/** Whether `region` is healthy in `view` (regions the view does not mention are). */
export function isHealthy(view: ClusterView, region: RegionId): boolean {
  return view.health[region]?.healthy ?? true;
}

/** Whether an operator took `region` out. */
export function isTakenOut(view: ClusterView, region: RegionId): boolean {
  return view.health[region]?.reason === "admin";
}

/** The smallest number of regions that is a majority of `n`. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** What the control object knows of one region when it decides its health. */
export interface HealthEvidence {
  /** An operator's override: false takes the region out, true (or none) leaves it to evidence. */
  readonly override: boolean | undefined;
  /** Whether the region's replica answered the control object's last status call in time. */
  readonly answered: boolean;
  /**
   * Whether it answered that it is new and still pulling its peers' data (`lifecycle.ts`); when
   * it did not answer, whether it was last known to be.
   */
  readonly bootstrapping: boolean;
  /** The latest time any peer reported hearing the region's heartbeat (0: never). */
  readonly heardMs: number;
  /**
   * Whether at least one peer reported in this round: only then is `heardMs` current, and only
   * then may silence be judged. Without it the control object itself may be the one cut off.
   */
  readonly fresh: boolean;
  /** Heartbeats are not expected before this time (control start, or return to service). */
  readonly graceUntilMs: number;
  readonly nowMs: number;
  readonly silenceMs: number;
  /** The region's health before this round, kept when there is no evidence either way. */
  readonly previous: RegionHealth | undefined;
  /**
   * Whether its clock strays from the others' beyond the HLC's skew bound this round
   * ({@link skewedRegions}): its stamps are refused (or it refuses everyone's), so its writes
   * are held until the clocks agree again.
   */
  readonly skewed: boolean;
}

/**
 * Decides a region's health, changing it only on evidence. Heartbeats between replicas are the
 * evidence of life: a replica too busy to answer the control object in time but still
 * heartbeating is healthy; one that current reports say no peer has heard from within
 * `silenceMs` is not. When no peer reported this round, the previous verdict stands (or an
 * admin one is lifted), so a control object that cannot reach anyone declares no one dead.
 * A replica that says it is bootstrapping lacks data, so it is unhealthy until it is done; one
 * whose clock strays beyond the HLC's bound cannot replicate, so it is unhealthy until it agrees.
 */
export function regionHealth(e: HealthEvidence): RegionHealth {
  if (e.override === false) return { healthy: false, reason: "admin" };
  if (e.bootstrapping) return { healthy: false, reason: "bootstrapping" };
  if (e.skewed) return { healthy: false, reason: "clock_skew" };
  const previous = e.previous === undefined || e.previous.reason === "admin" ? HEALTHY : e.previous;
  if (!e.fresh) return previous;
  const silent = e.nowMs > e.graceUntilMs && e.nowMs - e.heardMs > e.silenceMs;
  if (!silent) return HEALTHY;
  return { healthy: false, reason: e.answered ? "silent" : "unreachable" };
}

const HEALTHY: RegionHealth = { healthy: true, reason: null };

/**
 * How far each region's clock reading strays from the median of all readings (`referenceMs`,
 * the caller's own clock, votes too, so two regions that disagree are judged by a third).
 * Readings are taken within one round of calls, whose latency is far below any bound used here.
 */
export function clockOffsets(readings: ReadonlyMap<RegionId, number>, referenceMs: number): Map<RegionId, number> {
  const sorted = [...readings.values(), referenceMs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median =
    sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  return new Map([...readings].map(([region, ms]) => [region, ms - median]));
}

/** The regions whose clocks stray more than `boundMs` from the median ({@link clockOffsets}). */
export function skewedRegions(
  readings: ReadonlyMap<RegionId, number>,
  referenceMs: number,
  boundMs: number,
): Set<RegionId> {
  const offsets = clockOffsets(readings, referenceMs);
  return new Set([...offsets].filter(([, offset]) => Math.abs(offset) > boundMs).map(([region]) => region));
}
