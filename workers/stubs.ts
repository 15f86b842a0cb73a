/**
 * Stubs of the Durable Objects, in one place: a region's replica (created near it on first
 * use) and the global control object. This is the transport seam every cross-region call goes
 * through, so local WAN emulation lives here: with `WAN_EMULATION = "on"` a call from region
 * `from` to an object in region `to` waits the one-way latency before it is made and again
 * before its answer (or error) is seen, so production and emulation run the same code apart
 * from the wait. The control object is reached as if it lived in `DEFAULT_REGION`. Injected
 * faults (`FAULTS = "on"`, `workers/faults.ts`) act here too: extra delay, and partitions that
 * fail a call as an unreachable peer would.
 */
import { partitioned } from "../shared/faults.ts";
import { Random } from "../shared/random.ts";
import { type RegionId } from "../shared/regions.ts";
import { type ShardIndex, replicaName } from "../shared/shards.ts";
import { hopDelayMs } from "../shared/wan-rtt.ts";
import { type WanSettings, loadConfig } from "./config.ts";
import { faultsNow } from "./faults.ts";
import type { Control } from "./control/control.ts";
import type { Replica } from "./replica/replica.ts";
import type { Watchers } from "./watch/watchers.ts";

/** One jitter generator per isolate and seed. */
let jitter: { seed: number; random: Random } | undefined;

function jitterRandom(wan: WanSettings): Random {
  if (jitter?.seed !== wan.seed) jitter = { seed: wan.seed, random: new Random(wan.seed) };
  return jitter.random;
}

function sleep(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * How long one hop from `from` to `to` waits: 0 within a region; else the emulated one-way
 * latency (when WAN emulation is on) plus any injected `delayMs` (when faults are on).
 */
export function hopMs(env: Env, from: RegionId, to: RegionId): number {
  if (from === to) return 0;
  const { wan } = loadConfig(env);
  return (wan.on ? hopDelayMs(from, to, wan.jitterMs, jitterRandom(wan)) : 0) + faultsNow(env).delayMs;
}

/** Throws as an unreachable peer would when an injected partition separates `from` and `to`. */
function reachable(env: Env, from: RegionId, to: RegionId): void {
  if (partitioned(faultsNow(env), from, to))
    throw new Error(`network partition between ${from} and ${to} (injected fault)`);
}

/**
 * `stub` with every method call delayed: `out()` ms before the call is made, `back()` ms after
 * it settles (answer or error) and before the caller sees it; `check` may throw instead of
 * making the call (a partition). `wait` is the timer (a test's fake records the waits).
 */
export function delayedCalls<T extends object>(
  stub: T,
  out: () => number,
  back: () => number,
  wait: (ms: number) => Promise<void> = sleep,
  check: () => void = () => undefined,
): T {
  return new Proxy(stub, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      return async (...args: unknown[]) => {
        await wait(out());
        try {
          check();
          // Reflect.apply, not value.apply: on an RPC stub, `.apply` would name a remote method.
          return await Reflect.apply(value as (...a: unknown[]) => unknown, target, args);
        } finally {
          await wait(back());
        }
      };
    },
  });
}

/** `stub` called from `from` over emulated WAN and injected faults (itself when neither is on). */
function overWan<T extends object>(env: Env, stub: T, from: RegionId | undefined, to: RegionId): T {
  const config = loadConfig(env);
  if (from === undefined || from === to || (!config.wan.on && !config.faults)) return stub;
  return delayedCalls(
    stub,
    () => hopMs(env, from, to),
    () => hopMs(env, to, from),
    sleep,
    () => reachable(env, from, to),
  );
}

/**
 * The stub of a region's replica of `shard` (`<region>:<shard>`), created with the region's
 * location hint on first use; called from `from` (a replica's region, or the router's edge),
 * over emulated WAN when it is on.
 */
export function replicaOf(env: Env, region: RegionId, shard: ShardIndex, from?: RegionId): DurableObjectStub<Replica> {
  const stub = env.REPLICA.getByName(replicaName(region, shard), {
    locationHint: region as DurableObjectLocationHint,
  });
  return overWan(env, stub, from, region);
}

/** The stub of a region's watch hub (WebSocket watchers of its change feed), in the region. */
export function watchersOf(env: Env, region: RegionId): DurableObjectStub<Watchers> {
  return env.WATCHERS.getByName(region, { locationHint: region as DurableObjectLocationHint });
}

/** The control object's stub, called from `from` (over emulated WAN when it is on). */
export function controlOf(env: Env, from?: RegionId): DurableObjectStub<Control> {
  return overWan(env, env.CONTROL.getByName("control"), from, controlRegion(env));
}

/** Where the control object counts as living for WAN emulation: `DEFAULT_REGION`. */
export function controlRegion(env: Env): RegionId {
  return loadConfig(env).defaultRegion;
}
