/**
 * The faults in force, as this isolate knows them (`shared/faults.ts`). The control object keeps
 * them; each isolate caches its copy for {@link FAULTS_CACHE_MS} and refreshes it in the
 * background, so a change reaches every router, replica and consumer within about a second
 * (the isolate that made it sees it at once). With `FAULTS = "off"` there are never any, and
 * nothing is fetched.
 */
import { type Faults, NO_FAULTS, refused } from "../shared/faults.ts";
import { type RegionId } from "../shared/regions.ts";
import { Random } from "../shared/random.ts";
import { loadConfig } from "./config.ts";

/** Longest an isolate acts on its cached copy before it asks the control object again. */
export const FAULTS_CACHE_MS = 250;

let cached: { faults: Faults; fetchedMs: number } = { faults: NO_FAULTS, fetchedMs: 0 };
/**
 * When this isolate last asked the control object. Each request awaits only a fetch it started
 * itself: Workers settle a promise only in the request that created it, so one shared across
 * requests would never settle once its request ended (and every later await of it would fail).
 */
let askedMs = 0;
let random: { seed: number; random: Random } | undefined;

async function fetchFaults(env: Env): Promise<Faults> {
  // Undelayed: the faults are the emulator's own state, not traffic of the store.
  const faults = await env.CONTROL.getByName("control").getFaults();
  cached = { faults, fetchedMs: Date.now() };
  return faults;
}

function refresh(env: Env): Promise<Faults> {
  askedMs = Date.now();
  return fetchFaults(env).catch(() => cached.faults);
}

/**
 * The faults in force now, from the cache. A stale cache is refreshed beside the request, at
 * most once per {@link FAULTS_CACHE_MS} (a refresh whose request ended is simply lost).
 */
export function faultsNow(env: Env): Faults {
  if (!loadConfig(env).faults) return NO_FAULTS;
  const now = Date.now();
  if (now - cached.fetchedMs > FAULTS_CACHE_MS && now - askedMs > FAULTS_CACHE_MS) void refresh(env);
  return cached.faults;
}

/** The faults in force, fetched when the cache is stale. */
export async function currentFaults(env: Env): Promise<Faults> {
  if (!loadConfig(env).faults) return NO_FAULTS;
  if (Date.now() - cached.fetchedMs <= FAULTS_CACHE_MS) return cached.faults;
  return refresh(env);
}

/** Takes faults this isolate just set, at once. */
export function rememberFaults(faults: Faults): void {
  cached = { faults, fetchedMs: Date.now() };
}

/**
 * A peer stub, called from `from`, whose stream deliveries (`applyReplication`, the direct push)
 * are lost as the injected `drop` share (or `REPLICATION_DROP_PERCENT`) says, as the queue's
 * consumer loses them: a lost push answers as if applied, so only the outbox's resend or
 * anti-entropy brings it back. Pushes (`applyReplication`, `pushWrite`) from `from` to `to`
 * throw while an injected `refuse` names the pair. Other calls pass through. With neither set,
 * the stub itself.
 */
export function lossyPushes<T extends object>(env: Env, stub: T, from: RegionId, to: RegionId): T {
  const config = loadConfig(env);
  if (!config.faults && config.replicationDropPercent === 0) return stub;
  return new Proxy(stub, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      const call = (...args: unknown[]): unknown => Reflect.apply(value as (...a: unknown[]) => unknown, target, args);
      if (property !== "applyReplication" && property !== "pushWrite") return call;
      return (...args: unknown[]) => {
        const faults = faultsNow(env);
        if (refused(faults, from, to))
          return Promise.reject(new Error(`replication from ${from} to ${to} is refused (injected fault)`));
        if (property === "pushWrite") return call(...args);
        const bodies = args[0] as readonly unknown[];
        const share = Math.max(config.replicationDropPercent / 100, faults.drop);
        if (share === 0 || faultRandom(faults).next() >= share) return call(bodies);
        return Promise.resolve(bodies.map(() => ({ ok: true, value: { fenced: 0 } })));
      };
    },
  });
}

/** The generator that decides drops and duplicates, seeded with the faults' seed. */
export function faultRandom(faults: Faults): Random {
  if (random?.seed !== faults.seed) random = { seed: faults.seed, random: new Random(faults.seed) };
  return random.random;
}
