// The queue consumers: ack after a durable merge, retry with backoff on refusal, dead-letter
// recording, and replay from the dead-letter record back through the real queue.
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { hlcNow, hlcZero } from "../../shared/hlc.ts";
import { WIRE_VERSION, type EntriesMessage } from "../../shared/store/wire.ts";
import { Replica } from "../../workers/replica/replica.ts";
import { PARK_DELAY_SECONDS, retryDelaySeconds } from "../../shared/store/delivery.ts";
import { applyKeyOp } from "../../shared/store/key-state.ts";
import {
  api,
  codeOf,
  deliver,
  entries,
  heartbeat,
  registerText,
  replica,
  shardOfKey,
  uniqueKey,
  writeHeldBack,
} from "./helpers.ts";

/** A message whose state must be pulled from wnam: it fails until wnam holds the key. */
function pullMessage(key: string, seq: number): EntriesMessage {
  const stamp = hlcNow(hlcZero("wnam"), Date.now());
  return {
    v: WIRE_VERSION,
    kind: "entries",
    shard: shardOfKey(key),
    origin: "wnam",
    target: "weur",
    from: seq,
    to: seq,
    firstMs: 1,
    entries: [
      {
        seq,
        key,
        stamp: `${stamp.wallMs.toString(16).padStart(12, "0")}0000.wnam`,
        writtenMs: stamp.wallMs,
        state: null,
      },
    ],
  };
}

describe("replication consumer", () => {
  it("acks messages once the target has merged them", async () => {
    const key = uniqueKey("merged");
    const stamp = hlcNow(hlcZero("apac"), Date.now());
    const written = applyKeyOp(
      undefined,
      {
        type: "register",
        op: { kind: "put", value: new TextEncoder().encode("delivered"), contentType: "text/plain" },
      },
      "apac",
      stamp,
    );
    if (!written.ok) throw new Error(written.error.message);
    const result = await deliver("kv-replication", [
      entries("apac", "weur", 700_000, [{ key, state: written.value, stamp }]),
      heartbeat("wnam", "enam", 0, Date.now()),
    ]);
    expect(result.explicitAcks.sort()).toEqual(["m0", "m1"]);
    expect(result.retryMessages).toEqual([]);
    // Acked only because weur merged it durably: it is there now.
    expect(registerText(await replica("weur", key).read(key))).toBe("delivered");
  });

  it("retries with growing backoff what the target refuses, and retries malformed messages toward the dead-letter queue", async () => {
    const key = uniqueKey("absent");
    const refused = pullMessage(key, 500_000);
    const first = await deliver("kv-replication", [refused, { nonsense: true }], 1);
    expect(first.explicitAcks).toEqual([]);
    expect(first.retryMessages.map((m) => m.msgId).sort()).toEqual(["m0", "m1"]);
    // getQueueResult does not report per-message delays, so the backoff schedule is checked directly.
    expect([1, 2, 3, 5, 7, 10].map(retryDelaySeconds)).toEqual([1, 2, 4, 16, 60, 60]);
    const status = await replica("weur", key).status();
    expect(status.metrics.some((m) => m.name === "replication_errors_total" && m.peer === "wnam" && m.value > 0)).toBe(
      true,
    );
  });
});

describe("regions taken out", () => {
  it("parks their messages (acked and re-sent with a delay) instead of using up retries", async () => {
    await api("/v1/admin/regions/apac/health", { method: "POST", body: '{"healthy":false}' });
    const resent: Array<{ bodies: unknown[]; delaySeconds: number | undefined }> = [];
    const queue = {
      ...env.REPLICATION_QUEUE,
      sendBatch: async (messages: Iterable<MessageSendRequest>, options?: QueueSendBatchOptions) => {
        resent.push({ bodies: [...messages].map((m) => m.body), delaySeconds: options?.delaySeconds });
      },
    } as unknown as Queue;
    const body = heartbeat("wnam", "apac", 0, Date.now());
    try {
      const result = await deliver("kv-replication", [body], 9, { ...env, REPLICATION_QUEUE: queue });
      expect(result.explicitAcks).toEqual(["m0"]);
      expect(result.retryMessages).toEqual([]);
      // The same message went back to the queue, to be looked at again after the park delay.
      expect(resent).toEqual([{ bodies: [body], delaySeconds: PARK_DELAY_SECONDS }]);
      // The replica itself refuses while out, as if it were down.
      expect(codeOf((await replica("apac").applyReplication([heartbeat("wnam", "apac", 0, Date.now())]))[0])).toBe(
        "region_unavailable",
      );
    } finally {
      await api("/v1/admin/regions/apac/health", { method: "POST", body: '{"healthy":true}' });
    }
    expect(codeOf((await replica("apac").applyReplication([heartbeat("wnam", "apac", 0, Date.now())]))[0])).toBe("ok");
  });
});

describe("dead letters", () => {
  it("records exhausted messages in the target region and replays them once the cause is gone", async () => {
    const key = uniqueKey("dlq");
    const seq = 900_000;
    const message = pullMessage(key, seq);
    // The consumer refuses it: wnam does not hold the key yet.
    expect((await deliver("kv-replication", [message], 11)).retryMessages).toHaveLength(1);
    // After max_retries the platform moves it to the dead-letter queue, whose consumer records it.
    const recorded = await deliver("kv-replication-dlq", [message], 11);
    expect(recorded.explicitAcks).toEqual(["m0"]);
    const listed = await api("/v1/admin/regions/weur/dead-letters");
    expect(listed.status).toBe(200);
    const body = (await listed.json()) as {
      deadLetters: Array<{ origin: string; attempts: number; reason: string; message: { from: number } }>;
    };
    const letter = body.deadLetters.find((d) => d.message.from === seq);
    expect(letter).toMatchObject({ origin: "wnam", attempts: 11, reason: "retries exhausted" });
    // Reading dead letters needs admin scope.
    expect((await api("/v1/admin/regions/weur/dead-letters", { token: "test-write" })).status).toBe(403);

    // Fix the cause: wnam now holds the key. Its own replication must not deliver it for us,
    // so the write goes in with the queue unreachable (it stays in wnam's outbox).
    await writeHeldBack("wnam", key, "recovered");

    const replay = await api("/v1/admin/regions/weur/dead-letters/replay", { method: "POST" });
    expect(replay.status).toBe(200);
    expect(await replay.json()).toMatchObject({ region: "weur", replayed: 1, remaining: 0 });
    // The replayed message travels the real queue and is applied: its range shows in weur's progress.
    await vi.waitFor(
      async () => {
        expect(registerText(await replica("weur", key).read(key))).toBe("recovered");
        const pending = await runInDurableObject(
          replica("weur", key),
          (_i, state) =>
            state.storage.sql.exec<{ pending: string }>("SELECT pending FROM peer_recv WHERE origin = 'wnam'").one()
              .pending,
        );
        expect(pending).toContain(`"from":${seq}`);
      },
      { timeout: 10_000, interval: 50 },
    );
  });
});

describe("dead letters that their region cannot record", () => {
  it("are recorded in another region, with the region they were for", async () => {
    const message = pullMessage(uniqueKey("dlq-fallback"), 950_000);
    // weur's replica cannot record anything (its storage is failing, say); the others can.
    const proto = Replica.prototype as unknown as {
      recordDeadLetters: (this: { ctx: DurableObjectState }, ...args: unknown[]) => Promise<void>;
    };
    const original = proto.recordDeadLetters;
    proto.recordDeadLetters = async function (this: { ctx: DurableObjectState }, ...args: unknown[]) {
      if (this.ctx.id.name === "weur" || this.ctx.id.name?.startsWith("weur:") === true)
        throw new Error("weur cannot record");
      return original.apply(this, args);
    };
    try {
      const recorded = await deliver("kv-replication-dlq", [message], 11);
      expect(recorded.explicitAcks).toEqual(["m0"]);
      expect(recorded.retryMessages).toEqual([]);
    } finally {
      proto.recordDeadLetters = original;
    }
    const elsewhere = (await (await api("/v1/admin/regions/wnam/dead-letters")).json()) as {
      deadLetters: Array<{ reason: string; message: { from: number; target: string } }>;
    };
    const letter = elsewhere.deadLetters.find((d) => d.message.from === 950_000);
    expect(letter?.message.target).toBe("weur");
    expect(letter?.reason).toContain("recorded in wnam because weur could not record it");
  });
});
