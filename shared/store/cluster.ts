/**
 * The cluster view the control object publishes: which regions are healthy and which region
 * is the primary of each strong prefix under which fencing epoch. Routers and replicas cache
 * it; the control object pushes every change to the replicas at once.
 */
import { type RegionId } from "../regions.ts";

/** Why a region counts as unhealthy. */
export type UnhealthyReason = "admin" | "unreachable" | "silent";

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
}

/** What the control object publishes. */
export interface ClusterView {
  readonly atMs: number;
  readonly health: Readonly<Partial<Record<RegionId, RegionHealth>>>;
  readonly primaries: Readonly<Record<string, PrimaryState>>;
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
