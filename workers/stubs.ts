/**
 * Stubs of the Durable Objects, in one place: a region's replica (created near it on first
 * use) and the global control object. This is the transport seam every cross-region call goes
 * through, so local WAN emulation lives here: with `WAN_EMULATION = "on"` a call from region
 * `from` to an object in region `to` waits the one-way latency before it is made and again
 * before its answer (or error) is seen, so production and emulation run the same code apart
 * from the wait. The control object is reached as if it lived in `DEFAULT_REGION`.
 */
import { Random } from "../shared/random.ts";
import { type RegionId } from "../shared/regions.ts";
import { hopDelayMs } from "../shared/wan-rtt.ts";
import { type WanSettings, loadConfig } from "./config.ts";
import type { Control } from "./control/control.ts";
import type { Replica } from "./replica/replica.ts";

/** One jitter generator per isolate and seed. */
let jitter: { seed: number; random: Random } | undefined;

function jitterRandom(wan: WanSettings): Random {
  if (jitter?.seed !== wan.seed) jitter = { seed: wan.seed, random: new Random(wan.seed) };
  return jitter.random;
}

function sleep(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}

/** How long one hop from `from` to `to` waits under `env`'s WAN emulation (0 when it is off). */
export function hopMs(env: Env, from: RegionId, to: RegionId): number {
  const { wan } = loadConfig(env);
  if (!wan.on || from === to) return 0;
  return hopDelayMs(from, to, wan.jitterMs, jitterRandom(wan));
}

/**
 * `stub` with every method call delayed: `out()` ms before the call is made, `back()` ms after
 * it settles (answer or error) and before the caller sees it. `wait` is the timer (a test's
 * fake records the waits).
 */
export function delayedCalls<T extends object>(
  stub: T,
  out: () => number,
  back: () => number,
  wait: (ms: number) => Promise<void> = sleep,
): T {
  return new Proxy(stub, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      return async (...args: unknown[]) => {
        await wait(out());
        try {
          // Reflect.apply, not value.apply: on an RPC stub, `.apply` would name a remote method.
          return await Reflect.apply(value as (...a: unknown[]) => unknown, target, args);
        } finally {
          await wait(back());
        }
      };
    },
  });
}

/** `stub` called from `from` over emulated WAN (itself when no wait applies). */
function overWan<T extends object>(env: Env, stub: T, from: RegionId | undefined, to: RegionId): T {
  if (from === undefined || hopMs(env, from, to) === 0) return stub;
  return delayedCalls(
    stub,
    () => hopMs(env, from, to),
    () => hopMs(env, to, from),
  );
}

/**
 * The replica stub of a region, created with its location hint on first use; called from
 * `from` (a replica's region, or the router's edge), over emulated WAN when it is on.
 */
export function replicaOf(env: Env, region: RegionId, from?: RegionId): DurableObjectStub<Replica> {
  const stub = env.REPLICA.getByName(region, { locationHint: region as DurableObjectLocationHint });
  return overWan(env, stub, from, region);
}

/** The control object's stub, called from `from` (over emulated WAN when it is on). */
export function controlOf(env: Env, from?: RegionId): DurableObjectStub<Control> {
  return overWan(env, env.CONTROL.getByName("control"), from, controlRegion(env));
}

/** Where the control object counts as living for WAN emulation: `DEFAULT_REGION`. */
export function controlRegion(env: Env): RegionId {
  return loadConfig(env).defaultRegion;
}
