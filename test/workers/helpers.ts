// Shared helpers for tests that run inside workerd.
import { env, exports } from "cloudflare:workers";
import {
  createExecutionContext,
  createMessageBatch,
  getQueueResult,
  runDurableObjectAlarm,
  runInDurableObject,
} from "cloudflare:test";
import { vi } from "vitest";
import { type RegionId } from "../../shared/regions.ts";
import { replicaName, shardOf } from "../../shared/shards.ts";
import { encodeKeyState, type KeyState } from "../../shared/store/key-state.ts";
import { type EntriesMessage, type HeartbeatMessage, WIRE_VERSION } from "../../shared/store/wire.ts";
import { formatHlc, type HlcStamp } from "../../shared/hlc.ts";
import { type Result } from "../../shared/errors.ts";
import { type ReadOutcome } from "../../shared/store/contract.ts";
import worker from "../../workers/index.ts";

export const ADMIN = "test-admin";
export const WRITER = "test-write";
export const READER = "test-read";

/** Calls the router as a client would. */
export function api(path: string, init: RequestInit & { token?: string | null } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const token = init.token === undefined ? ADMIN : init.token;
  if (token !== null) headers.set("Authorization", `Bearer ${token}`);
  return exports.default.fetch(new Request(`http://kv.test${path}`, { ...init, headers }));
}

/**
 * Runs every replica's alarm once, so that each has heartbeated every other (a replica that
 * never heard a peer reports its lag behind it as unknown).
 */
export async function heartbeatAll(regions: readonly RegionId[] = ["wnam", "enam", "weur", "apac"]): Promise<void> {
  for (const region of regions)
    for (let shard = 0; shard < SHARDS; shard += 1) await runDurableObjectAlarm(replica(region, shard));
}

/** Replica objects per region in these tests (wrangler.toml's `SHARDS`). */
export const SHARDS = Number(env.SHARDS);

/** The shard `key` lives in. */
export function shardOfKey(key: string): number {
  return shardOf(key, SHARDS);
}

/** A region's replica stub: of the shard that holds key `at`, or of shard `at` (default 0). */
export function replica(region: RegionId, at: string | number = 0) {
  return env.REPLICA.getByName(replicaName(region, typeof at === "number" ? at : shardOfKey(at)));
}

/** A unique key per call, since storage is shared by the tests of one file. */
let counter = 0;
export function uniqueKey(label: string): string {
  counter += 1;
  return `${label}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
}

/** A unique key (as {@link uniqueKey}) that lives in `shard`. */
export function keyInShard(label: string, shard: number): string {
  for (let i = 0; i < 1000; i += 1) {
    const key = uniqueKey(label);
    if (shardOfKey(key) === shard) return key;
  }
  throw new Error(`no key found in shard ${shard}`);
}

/**
 * An entries message carrying the given states as consecutive writes from `origin`, in the
 * shard of the first key (send it to `replica(target, key)`).
 */
export function entries(
  origin: RegionId,
  target: RegionId,
  from: number,
  writes: Array<{ key: string; state: KeyState; stamp: HlcStamp; writtenMs?: number }>,
): EntriesMessage {
  return {
    v: WIRE_VERSION,
    kind: "entries",
    shard: shardOfKey(writes[0]?.key ?? ""),
    origin,
    target,
    from,
    to: from + writes.length - 1,
    firstMs: 1,
    entries: writes.map((w, i) => ({
      seq: from + i,
      key: w.key,
      stamp: formatHlc(w.stamp),
      writtenMs: w.writtenMs ?? w.stamp.wallMs,
      state: encodeKeyState(w.state),
    })),
  };
}

/** A heartbeat from `origin` in `shard`, whose first write was at `firstMs` (default: long ago). */
export function heartbeat(
  origin: RegionId,
  target: RegionId,
  seq: number,
  atMs: number,
  firstMs = 1,
  shard = 0,
): HeartbeatMessage {
  return {
    v: WIRE_VERSION,
    kind: "heartbeat",
    shard,
    origin,
    target,
    seq,
    atMs,
    firstMs,
    baseSeq: 0,
    priorSeq: 0,
    horizon: {},
  };
}

/** The key's stored state in `region` (null when never written there). */
export async function stateOf(region: RegionId, key: string): Promise<Uint8Array | null> {
  return okValue(await replica(region, key).snapshot(key)).state;
}

/** The value of an ok result; fails the test with the error otherwise. */
export function okValue<T>(result: Result<T>): T {
  if (!result.ok) throw new Error(`expected ok, got ${result.error.code}: ${result.error.message}`);
  return result.value;
}

/** The error code of a result, or "ok". */
export function codeOf(result: Result<unknown> | undefined): string {
  if (result === undefined) return "missing";
  return result.ok ? "ok" : result.error.code;
}

/** The text of a register read through a replica stub, or null when absent or not a register. */
export function registerText(result: Result<ReadOutcome>): string | null {
  const view = okValue(result).view;
  return view?.type === "register" && view.value !== null ? new TextDecoder().decode(view.value) : null;
}

/**
 * Writes `value` in `region` while that replica's queue is unreachable, and waits until its
 * drain of the write has failed: afterwards only that region has the write (it stays in the
 * outbox until a later drain).
 */
export async function writeHeldBack(region: RegionId, key: string, value: string | Uint8Array): Promise<void> {
  await runInDurableObject(replica(region, key), async (instance) => {
    const failures = async (): Promise<number> =>
      (await instance.status()).metrics
        .filter((m) => m.name === "replication_send_errors_total")
        .reduce((sum, m) => sum + m.value, 0);
    const before = await failures();
    const holder = instance as unknown as { env: Env };
    holder.env = {
      ...env,
      REPLICATION_QUEUE: { sendBatch: () => Promise.reject(new Error("held back")) } as unknown as Queue,
    };
    try {
      okValue(
        await instance.write(key, {
          type: "register",
          op: {
            kind: "put",
            value: typeof value === "string" ? new TextEncoder().encode(value) : value,
            contentType: "text/plain",
          },
        }),
      );
      await vi.waitFor(async () => {
        if ((await failures()) <= before) throw new Error("the drain has not run yet");
      });
    } finally {
      holder.env = env;
    }
  });
}

/** Hands `bodies` to the Worker's queue consumer as one batch of `queue` (ids m0, m1, ...); what it acked and retried. */
export async function deliver(queue: string, bodies: unknown[], attempts = 1, bindings: Env = env) {
  const batch = createMessageBatch(
    queue,
    bodies.map((body, i) => ({ id: `m${i}`, timestamp: new Date(), attempts, body })),
  );
  const ctx = createExecutionContext();
  await worker.queue(batch, bindings);
  return getQueueResult(batch, ctx);
}
