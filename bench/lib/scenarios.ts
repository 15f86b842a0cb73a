/**
 * The latency scenarios: a named operation on the floor or the store, of kind write or read.
 * Each store scenario is compared with the floor scenario of the same kind measured in the same
 * round, and optionally with another store scenario (its `baseline`). To add one, add an entry
 * built from `storeTarget(..., { ack: "quorum" })` or the like; the rounds, the table and the
 * JSON pick it up. The per-consistency-mode scenarios are in `modes.ts`.
 */
import { type Operation } from "./load.ts";
import { type KvTarget } from "./targets.ts";

/** What a scenario does to its target. */
export type ScenarioKind = "write" | "read";

/** A measured operation. */
export interface Scenario {
  /** Unique and stable: a key of the results JSON. */
  readonly name: string;
  readonly kind: ScenarioKind;
  readonly system: "floor" | "store";
  readonly op: Operation;
  /**
   * A read scenario that also writes to the store (to set up what it reads): replication is
   * waited out after its phases too, as after every store write phase.
   */
  readonly writesStore?: boolean;
  /** Another store scenario, in the same rounds, that this one is also compared with (store/store). */
  readonly baseline?: string;
  /** CPU seconds the system's runtime has used so far: a phase's CPU per operation is taken from it. */
  readonly cpuSeconds?: () => number;
  /**
   * Runs each measured phase (from the CPU reading before it to the one after its replication
   * drained) inside a setting made for it, such as open watchers, made and undone outside it.
   */
  readonly around?: (phase: () => Promise<void>) => Promise<void>;
}

/** The store write scenario run with change-feed watchers open (bench/lib/watchers.ts). */
export const WATCHED_WRITE = "store write, watched";

/** Distinct values cycled through by writes, so consecutive writes do not send identical bytes. */
const VALUE_POOL_SIZE = 64;

/** `count` deterministic pseudo-random values of `bytes` bytes (xorshift32; no seed to manage). */
export function valuePool(bytes: number, count = VALUE_POOL_SIZE): Uint8Array[] {
  let x = 0x9e3779b9;
  return Array.from({ length: count }, () => {
    const value = new Uint8Array(bytes);
    for (let i = 0; i < bytes; i += 1) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      value[i] = x & 0xff;
    }
    return value;
  });
}

/** The benchmark's key space: `count` keys under `prefix`. */
export function keySpace(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(6, "0")}`);
}

/** Overwrites keys of `keys` in turn with values of `values`. */
export function writeOp(target: KvTarget, keys: readonly string[], values: readonly Uint8Array[]): Operation {
  return (n) => target.put(keys[n % keys.length] as string, values[n % values.length] as Uint8Array);
}

/**
 * Reads keys of `keys` in turn (walking with a stride so concurrent workers touch different
 * keys) and checks each holds a value of `valueBytes` bytes: a miss is an error, not a fast read.
 */
export function readOp(target: KvTarget, keys: readonly string[], valueBytes: number): Operation {
  return async (n) => {
    const key = keys[(n * 7919) % keys.length] as string;
    const value = await target.get(key);
    if (value === null) throw new Error(`${target.name}: ${key} is missing`);
    if (value.length !== valueBytes) throw new Error(`${target.name}: ${key} holds ${value.length} bytes`);
  };
}

/** The scenarios every run measures: plain writes and reads on the floor and on the store. */
export function baseScenarios(
  floor: KvTarget,
  store: KvTarget,
  keys: readonly string[],
  values: readonly Uint8Array[],
  cpu: { readonly floor?: () => number; readonly store?: () => number } = {},
): Scenario[] {
  const valueBytes = (values[0] as Uint8Array).length;
  const withCpu = (system: "floor" | "store") => (cpu[system] === undefined ? {} : { cpuSeconds: cpu[system] });
  return [
    { name: "floor write", kind: "write", system: "floor", op: writeOp(floor, keys, values), ...withCpu("floor") },
    { name: "store write", kind: "write", system: "store", op: writeOp(store, keys, values), ...withCpu("store") },
    { name: "floor read", kind: "read", system: "floor", op: readOp(floor, keys, valueBytes), ...withCpu("floor") },
    { name: "store read", kind: "read", system: "store", op: readOp(store, keys, valueBytes), ...withCpu("store") },
  ];
}
