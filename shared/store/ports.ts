/**
 * What the replica's and the control object's async flows need from their host: time, timers,
 * the other objects, the queue, and a log. The Durable Objects pass the platform's (`Date.now`,
 * `setTimeout`, RPC stubs, the Queue binding); the simulator passes a virtual clock and a
 * seeded network. Nothing in `shared/` reaches the platform any other way.
 */
import { AssertionError } from "../assert.ts";
import { type RegionId } from "../regions.ts";
import { type ClusterView } from "./cluster.ts";
import { type PeerApi, type ReplicationQueue, type SiblingApi } from "./contract.ts";

/** A pending timer: resolves after its delay unless cancelled first. */
export interface Timer {
  readonly done: Promise<void>;
  cancel(): void;
}

/** Time as the host sees it. */
export interface Clock {
  /** Wall-clock milliseconds (a skewed clock in the simulator). */
  now(): number;
  /** A timer that fires after `ms` milliseconds. */
  timer(ms: number): Timer;
}

/** What a replica asks of the control object. */
export interface ControlApi {
  getView(): Promise<ClusterView>;
  /**
   * The fencing check: whether `region` is the ready primary of `prefix` under `epoch`, as the
   * length in milliseconds of the lease granted (0: it is not).
   */
  confirmPrimary(prefix: string, region: RegionId, epoch: number): Promise<number>;
}

/** Everything a replica node reaches outside itself. */
export interface ReplicaPorts extends Clock {
  peer(region: RegionId): PeerApi;
  /** This region's replica of another shard, while keys move between shards (`layout.ts`). */
  sibling?(shard: number): SiblingApi;
  readonly control: ControlApi;
  readonly queue: ReplicationQueue;
  /** Keeps the host alive for work that outlives the current call (`ctx.waitUntil`). */
  background(work: Promise<unknown>): void;
  /** Reports an operating problem (a peer down, a send that failed): logged, never thrown. */
  warn(message: string, error?: unknown): void;
}

/** Waits `ms` milliseconds. */
export function sleep(clock: Clock, ms: number): Promise<void> {
  return clock.timer(ms).done;
}

/** Whether `error` is a broken invariant (ours, or one that crossed an RPC boundary by name). */
export function isAssertion(error: unknown): boolean {
  return error instanceof AssertionError || (error instanceof Error && error.name === "AssertionError");
}

/**
 * The call's value, or null when it fails or takes longer than `timeoutMs`: for fan-outs that
 * must not hang on one slow or unreachable object. A broken invariant is a bug, not an
 * outage, and is rethrown rather than turned into null.
 */
export async function bounded<T>(
  clock: Clock,
  call: () => Promise<T>,
  timeoutMs: number,
  onError?: (error: unknown) => void,
): Promise<T | null> {
  const timer = clock.timer(timeoutMs);
  try {
    return await Promise.race([call(), timer.done.then(() => null)]);
  } catch (error) {
    if (isAssertion(error)) throw error;
    onError?.(error);
    return null;
  } finally {
    timer.cancel();
  }
}
