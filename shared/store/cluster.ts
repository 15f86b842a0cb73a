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

/** What the control object knows of one region when it decides its health. */
export interface HealthEvidence {
  /** An operator's override: false takes the region out, true (or none) leaves it to evidence. */
  readonly override: boolean | undefined;
  /** Whether the region's replica answered the last status call in time. */
  readonly answered: boolean;
  /** The latest time any peer heard the region's heartbeat (0: never). */
  readonly heardMs: number;
  /** Heartbeats are not expected before this time (control start, or return to service). */
  readonly graceUntilMs: number;
  readonly nowMs: number;
  readonly silenceMs: number;
  /** Whether the region has peers to hear it at all. */
  readonly hasPeers: boolean;
}

/**
 * Decides a region's health. Heartbeats between replicas are the evidence of life: a replica
 * too busy to answer the control object in time but still heartbeating is healthy, while one
 * no peer has heard from within `silenceMs` is not.
 */
export function regionHealth(e: HealthEvidence): RegionHealth {
  if (e.override === false) return { healthy: false, reason: "admin" };
  const silent = e.hasPeers && e.nowMs > e.graceUntilMs && e.nowMs - e.heardMs > e.silenceMs;
  if (!e.answered && (silent || !e.hasPeers)) return { healthy: false, reason: "unreachable" };
  if (silent) return { healthy: false, reason: "silent" };
  return { healthy: true, reason: null };
}
