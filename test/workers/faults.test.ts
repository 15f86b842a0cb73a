// Fault injection (`shared/faults.ts`, `workers/faults.ts`): refused (404) while FAULTS is off;
// with it on, an admin sets and clears faults, malformed bodies change nothing, and the queue
// consumer drops (for good), holds across a partition, and duplicates as told; direct pushes are
// dropped alike.
import { env } from "cloudflare:workers";
import { createExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { NO_FAULTS } from "../../shared/faults.ts";
import { hlcNow, hlcZero } from "../../shared/hlc.ts";
import { applyKeyOp } from "../../shared/store/key-state.ts";
import { type EntriesMessage } from "../../shared/store/wire.ts";
import { lossyPushes, rememberFaults } from "../../workers/faults.ts";
import worker from "../../workers/index.ts";
import { ADMIN, READER, api, deliver, entries, replica, uniqueKey } from "./helpers.ts";

/** The bindings with fault injection on (the tests' wrangler vars leave it off). */
const faultsOn = { ...env, FAULTS: "on" } as Env;

/** The router called with `bindings`, as a client would. */
async function call(path: string, init: RequestInit & { token?: string } = {}, bindings: Env = faultsOn) {
  const headers = new Headers(init.headers);
  headers.set("Authorization", `Bearer ${init.token ?? ADMIN}`);
  const ctx = createExecutionContext();
  return worker.fetch(new Request(`http://kv.test${path}`, { ...init, headers }), bindings, ctx);
}

function setFaults(body: unknown): Promise<Response> {
  return call("/v1/admin/faults", { method: "POST", body: JSON.stringify(body) });
}

/** One replication message from wnam to weur carrying `key`'s new value. */
function message(key: string, seq: number): EntriesMessage {
  const stamp = hlcNow(hlcZero("wnam"), Date.now());
  const written = applyKeyOp(
    undefined,
    { type: "register", op: { kind: "put", value: new TextEncoder().encode(key), contentType: "text/plain" } },
    "wnam",
    stamp,
  );
  if (!written.ok) throw new Error(written.error.message);
  return entries("wnam", "weur", seq, [{ key, state: written.value, stamp }]);
}

/** One replication batch through the consumer with fault injection on (ids m0, m1, ...). */
function deliverFaulty(bodies: unknown[], bindings: Env = faultsOn) {
  return deliver("kv-replication", bodies, 1, bindings);
}

async function held(key: string): Promise<boolean> {
  const snapshot = await replica("weur", key).snapshot(key);
  return snapshot.ok && snapshot.value.state !== null;
}

describe("fault injection switched off", () => {
  it("answers 404 not_found for every faults route", async () => {
    for (const method of ["GET", "POST", "DELETE"]) {
      const res = await api("/v1/admin/faults", { method, ...(method === "POST" ? { body: '{"drop":1}' } : {}) });
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("not_found");
    }
  });
});

describe("fault injection switched on", () => {
  it("sets, shows and clears faults; malformed bodies answer invalid_body and change nothing", async () => {
    const faults = {
      drop: 0.3,
      duplicate: 0.1,
      delayMs: 20,
      partitions: [["weur", "apac"]],
      refuse: [["wnam", "enam"]],
      skewMs: { enam: 1500 },
      seed: 7,
    };
    const set = await setFaults(faults);
    expect(set.status).toBe(200);
    expect(await set.json()).toEqual({ faults });
    for (const bad of [
      "not json",
      "[]",
      '{"drop":1.5}',
      '{"drop":-0.1}',
      '{"delayMs":1.5}',
      '{"partitions":[["weur","weur"]]}',
      '{"partitions":[["weur","mars"]]}',
      '{"refuse":[["weur","weur"]]}',
      '{"refuse":[["weur"]]}',
      '{"skewMs":{"mars":1}}',
      '{"unknown":true}',
    ]) {
      const res = await call("/v1/admin/faults", { method: "POST", body: bad });
      expect([bad, res.status]).toEqual([bad, 400]);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_body");
    }
    expect(await (await call("/v1/admin/faults")).json()).toEqual({ faults });
    // Admin scope only.
    expect((await call("/v1/admin/faults", { method: "DELETE", token: READER })).status).toBe(403);
    const cleared = await call("/v1/admin/faults", { method: "DELETE" });
    expect(await cleared.json()).toEqual({ faults: NO_FAULTS });
    expect(await (await call("/v1/admin/faults")).json()).toEqual({ faults: NO_FAULTS });
  });

  it("drops replication messages for good: acked, never applied", async () => {
    rememberFaults({ ...NO_FAULTS, drop: 1 });
    expect((await setFaults({ drop: 1 })).status).toBe(200);
    const key = uniqueKey("dropped");
    const result = await deliverFaulty([message(key, 1_000_001)]);
    expect(result.explicitAcks).toEqual(["m0"]);
    expect(result.retryMessages).toEqual([]);
    expect(await held(key)).toBe(false);
    await call("/v1/admin/faults", { method: "DELETE" });
  });

  it("loses direct pushes as it loses queue deliveries, and passes every other call through", async () => {
    rememberFaults({ ...NO_FAULTS, drop: 1 });
    const key = uniqueKey("push-dropped");
    const lossy = lossyPushes(faultsOn, replica("weur", key), "wnam", "weur");
    const [answer] = await lossy.applyReplication([message(key, 1_000_010)]);
    expect(answer?.ok).toBe(true);
    expect(await held(key)).toBe(false);
    expect((await lossy.snapshot(key)).ok).toBe(true);
    rememberFaults(NO_FAULTS);
    const [delivered] = await lossy.applyReplication([message(key, 1_000_011)]);
    expect(delivered?.ok).toBe(true);
    expect(await held(key)).toBe(true);
    // With fault injection off, the stub is handed back untouched.
    const plain = replica("weur", key);
    expect(lossyPushes(env, plain, "wnam", "weur")).toBe(plain);
  });

  it("refuses replication one way: pushes fail, and queue messages are retried at once (toward dead letters)", async () => {
    expect((await setFaults({ refuse: [["wnam", "weur"]] })).status).toBe(200);
    rememberFaults({ ...NO_FAULTS, refuse: [["wnam", "weur"]] });
    try {
      const key = uniqueKey("refused");
      const body = message(key, 1_000_003);
      const cut = await deliverFaulty([body]);
      // Retried (the harness does not record delays; that the retries run out within seconds is
      // shown end to end in test/e2e/wan-faults.test.ts).
      expect(cut.retryMessages).toEqual([{ msgId: "m0" }]);
      expect(cut.explicitAcks).toEqual([]);
      await expect(
        lossyPushes(faultsOn, replica("weur", key), "wnam", "weur").applyReplication([body]),
      ).rejects.toThrow(/refused/);
      expect(await held(key)).toBe(false);
      // The other way, and every other call, pass.
      expect((await lossyPushes(faultsOn, replica("weur", key), "weur", "wnam").snapshot(key)).ok).toBe(true);
      expect((await lossyPushes(faultsOn, replica("weur", key), "enam", "weur").applyReplication([body]))[0]?.ok).toBe(
        true,
      );
      expect(await held(key)).toBe(true);
    } finally {
      await call("/v1/admin/faults", { method: "DELETE" });
      rememberFaults(NO_FAULTS);
    }
  });

  it("holds what crosses a partition for a retry, and delivers once it is lifted", async () => {
    expect((await setFaults({ partitions: [["wnam", "weur"]] })).status).toBe(200);
    const key = uniqueKey("partitioned");
    const body = message(key, 1_000_002);
    const cut = await deliverFaulty([body]);
    expect(cut.retryMessages.map((m) => m.msgId)).toEqual(["m0"]);
    expect(cut.explicitAcks).toEqual([]);
    expect(await held(key)).toBe(false);
    await call("/v1/admin/faults", { method: "DELETE" });
    const healed = await deliverFaulty([body]);
    expect(healed.explicitAcks).toEqual(["m0"]);
    expect(await held(key)).toBe(true);
  });

  it("duplicates replication messages: delivered now, and sent once more to arrive later", async () => {
    expect((await setFaults({ duplicate: 1 })).status).toBe(200);
    const sent: Array<{ bodies: unknown[]; delaySeconds: number | undefined }> = [];
    const queue = {
      async sendBatch(messages: Iterable<MessageSendRequest>, options?: QueueSendBatchOptions): Promise<void> {
        sent.push({ bodies: [...messages].map((m) => m.body), delaySeconds: options?.delaySeconds });
      },
    };
    const key = uniqueKey("duplicated");
    const body = message(key, 1_000_003);
    const result = await deliverFaulty([body], { ...faultsOn, REPLICATION_QUEUE: queue } as unknown as Env);
    expect(result.explicitAcks).toEqual(["m0"]);
    expect(await held(key)).toBe(true);
    expect(sent).toEqual([{ bodies: [body], delaySeconds: 1 }]);
    await call("/v1/admin/faults", { method: "DELETE" });
  });

  it("fails a replica-to-replica call across a partition as unreachable", async () => {
    expect((await setFaults({ partitions: [["enam", "apac"]] })).status).toBe(200);
    // The router runs at DEFAULT_REGION (enam): a read pinned to apac cannot reach it.
    const res = await call(`/v1/kv/${uniqueKey("cut")}?region=apac`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("region_unavailable");
    await call("/v1/admin/faults", { method: "DELETE" });
    expect((await call(`/v1/kv/${uniqueKey("cut")}?region=apac`)).status).toBe(404);
  });
});
