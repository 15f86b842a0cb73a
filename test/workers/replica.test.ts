// The replica Durable Object: durable writes with their outbox, idempotent merges in any
// order, conflict logging, the skew guard, large-state pulls, lag figures, and restarts.
import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { hlcNow, hlcZero, type HlcStamp } from "../../shared/hlc.ts";
import { type RegionId } from "../../shared/regions.ts";
import { applyKeyOp, decodeKeyState, encodeKeyState, type KeyState } from "../../shared/store/key-state.ts";
import { type Replica } from "../../workers/replica/replica.ts";
import {
  codeOf,
  entries,
  heartbeat,
  okValue,
  registerText,
  replica,
  stateOf,
  uniqueKey,
  writeHeldBack,
  keyInShard,
  shardOfKey,
} from "./helpers.ts";

const text = (s: string) => new TextEncoder().encode(s);

/** Builds a history of register writes at `region`, each on top of the previous. */
function history(region: RegionId, values: string[], startMs: number): Array<{ state: KeyState; stamp: HlcStamp }> {
  let clock = hlcZero(region);
  let state: KeyState | undefined;
  return values.map((value, i) => {
    clock = hlcNow(clock, startMs + i);
    const next = applyKeyOp(
      state,
      { type: "register", op: { kind: "put", value: text(value), contentType: "text/plain" } },
      region,
      clock,
    );
    if (!next.ok) throw new Error(next.error.message);
    state = next.value;
    return { state: next.value, stamp: clock };
  });
}

function sqlCount(state: DurableObjectState, query: string, ...bindings: unknown[]): number {
  return state.storage.sql.exec<{ n: number }>(query, ...bindings).one().n;
}

describe("replica writes", () => {
  it("records its migrations once", async () => {
    const names = await runInDurableObject(replica("wnam"), (_i, state) =>
      state.storage.sql
        .exec<{ name: string }>("SELECT name FROM _migrations ORDER BY id")
        .toArray()
        .map((r) => r.name),
    );
    expect(names).toEqual([
      "0001_init",
      "0002_primaries",
      "0003_key_seqs",
      "0004_epochs",
      "0005_deferred",
      "0006_merkle",
      "0007_lifecycle",
      "0008_extras",
      "0009_changes",
    ]);
  });

  it("keeps a committed write in the outbox when the queue send fails, and drains it on the alarm", async () => {
    const key = uniqueKey("outbox");
    const stub = replica("wnam", key);
    await runInDurableObject(stub, async (instance: Replica, state) => {
      const real = env.REPLICATION_QUEUE;
      const failing = {
        ...real,
        sendBatch: () => Promise.reject(new Error("queue down")),
        send: () => Promise.reject(new Error("queue down")),
      };
      const holder = instance as unknown as { env: Env };
      holder.env = { ...env, REPLICATION_QUEUE: failing as unknown as Queue };
      const written = await instance.write(key, {
        type: "register",
        op: { kind: "put", value: text("v1"), contentType: "text/plain" },
      });
      expect(codeOf(written)).toBe("ok");
      // Let the failed background drain settle.
      await vi.waitFor(async () =>
        expect((await instance.status()).metrics.some((m) => m.name === "replication_send_errors_total")).toBe(true),
      );
      expect(sqlCount(state, "SELECT count(*) AS n FROM log WHERE key = ?", key)).toBe(1);
      holder.env = env;
    });
    // A restart loses nothing: the row is in SQLite, not memory.
    await evictDurableObject(stub);
    await runDurableObjectAlarm(stub);
    const seq = await runInDurableObject(
      stub,
      (_i, state) => state.storage.sql.exec<{ seq: number }>("SELECT seq FROM log WHERE key = ?", key).one().seq,
    );
    // The real queue delivers it to every other region.
    for (const region of ["enam", "weur", "apac"] as const) {
      await vi.waitFor(
        async () => {
          expect(registerText(await replica(region, key).read(key))).toBe("v1");
        },
        { timeout: 10_000, interval: 50 },
      );
    }
    // Handed to the queue for every peer, and kept until they confirm it (their heartbeats
    // carry how far they applied wnam's stream; see lifecycle.test.ts).
    await runInDurableObject(stub, (_i, state) => {
      expect(sqlCount(state, "SELECT count(*) AS n FROM peer_send WHERE sent_seq >= ?", seq)).toBe(3);
      expect(sqlCount(state, "SELECT count(*) AS n FROM log WHERE key = ?", key)).toBe(1);
    });
  });

  it("continues its clock and sequence after eviction", async () => {
    // Both keys in shard 0, the replica written to.
    const stub = replica("apac", 0);
    const first = await stub.write(keyInShard("restart", 0), { type: "counter", delta: 1 });
    const clockBefore = (await stub.status()).clock;
    await evictDurableObject(stub);
    // The restarted object starts from the stored position, not from zero.
    expect((await stub.status()).clock).toBe(clockBefore);
    const second = await stub.write(keyInShard("restart", 0), { type: "counter", delta: 1 });
    expect(okValue(second).seq).toBe(okValue(first).seq + 1);
    // Stamps are fixed-width hex, so string order is time order: the clock moved forward.
    expect((await stub.status()).clock > clockBefore).toBe(true);
  });
});

describe("applying replication", () => {
  it("converges under duplicated and reordered messages, and tracks the contiguous watermark", async () => {
    // enam originates no writes in this file, so its stream to weur starts here, at 1.
    const key = uniqueKey("reorder");
    const writes = history("enam", ["a", "b", "c"], 1_700_000_000_000).map((w) => ({ key, ...w }));
    const stub = replica("weur", key);
    const [m1, m2, m3] = writes.map((w, i) => entries("enam", "weur", i + 1, [w]));
    const progress = async () => (await stub.status()).lag.enam!.appliedSeq;
    const pending = () =>
      runInDurableObject(stub, (_i, state) =>
        JSON.parse(
          state.storage.sql.exec<{ pending: string }>("SELECT pending FROM peer_recv WHERE origin = 'enam'").one()
            .pending,
        ),
      );
    expect((await stub.applyReplication([m3!, m2!, m3!])).every((r) => r.ok)).toBe(true);
    // 2..3 arrived before 1: applied, but held as one early range above the watermark.
    expect(await progress()).toBe(0);
    expect(await pending()).toEqual([{ from: 2, to: 3, lastWrittenMs: writes[2]!.stamp.wallMs }]);
    expect((await stub.applyReplication([m1!, m1!, m2!])).every((r) => r.ok)).toBe(true);
    expect(await progress()).toBe(3);
    expect(await pending()).toEqual([]);
    const stored = await runInDurableObject(stub, (_i, state) => {
      const row = state.storage.sql.exec<{ state: ArrayBuffer }>("SELECT state FROM kv WHERE key = ?", key).one();
      return new Uint8Array(row.state);
    });
    expect(stored).toEqual(encodeKeyState(writes[2]!.state));
  });

  it("logs a conflict once per concurrent pair, whatever the delivery order and duplication", async () => {
    const key = uniqueKey("conflict");
    const [fromWnam] = history("wnam", ["west"], 1_700_000_000_000);
    const [fromApac] = history("apac", ["east"], 1_700_000_000_005);
    const stub = replica("enam", key);
    const a = entries("wnam", "enam", 1, [{ key, ...fromWnam! }]);
    const b = entries("apac", "enam", 1, [{ key, ...fromApac! }]);
    expect((await stub.applyReplication([b, a, a, b])).every((r) => r.ok)).toBe(true);
    const rows = await runInDurableObject(stub, (_i, state) =>
      state.storage.sql
        .exec<{ rule: string; winner_stamp: string; loser_stamp: string }>(
          "SELECT rule, winner_stamp, loser_stamp FROM conflicts WHERE key = ?",
          key,
        )
        .toArray(),
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]!.rule).toBe("hlc");
    expect(rows[0]!.winner_stamp.endsWith(".apac")).toBe(true);
    expect(registerText(await stub.read(key))).toBe("east");
  });

  it("refuses stamps beyond the skew bound without applying anything", async () => {
    const key = uniqueKey("skew");
    const [future] = history("wnam", ["from the future"], Date.now() + 3_600_000);
    const stub = replica("apac", key);
    const [result] = await stub.applyReplication([entries("wnam", "apac", 1, [{ key, ...future! }])]);
    expect(codeOf(result)).toBe("clock_skew");
    expect(okValue(await stub.read(key)).view).toBeNull();
  });

  it("rejects malformed and misaddressed messages", async () => {
    const stub = replica("apac");
    const results = await stub.applyReplication([
      { v: 1, kind: "entries" },
      heartbeat("wnam", "weur", 1, 1),
      heartbeat("apac", "apac", 1, 1),
      { ...heartbeat("wnam", "apac", 1, 1), v: 2 },
      // For this region, but another shard: its numbering is another stream.
      heartbeat("wnam", "apac", 1, 1, 1, 1),
    ]);
    expect(results.map((r) => (r.ok ? "ok" : r.error.code))).toEqual([
      "invalid_body",
      "invalid_body",
      "invalid_body",
      "invalid_body",
      "invalid_body",
    ]);
    const messages = results.map((r) => (r.ok ? "" : r.error.message));
    expect(messages[0]).toMatch(/malformed replication message/);
    expect(messages[1]).toBe("message from wnam for weur:0 reached apac:0");
    expect(messages[2]).toBe("message from apac for apac:0 reached apac:0");
    expect(messages[4]).toBe("message from wnam for apac:1 reached apac:0");
  });

  it("pulls a state too large for a queue message from its origin", async () => {
    const key = uniqueKey("large");
    const big = new Uint8Array(300 * 1024).fill(7);
    // Held back from the queue, so the outbox row is still there to look at.
    await writeHeldBack("wnam", key, big);
    const logged = await runInDurableObject(replica("wnam", key), (_i, state) =>
      state.storage.sql
        .exec<{ seq: number; state: ArrayBuffer | null }>("SELECT seq, state FROM log WHERE key = ?", key)
        .toArray(),
    );
    // By reference: too large to travel inline.
    expect(logged).toHaveLength(1);
    expect(logged[0]!.state).toBeNull();
    const message = entries("wnam", "weur", logged[0]!.seq, [
      { key, state: decodeKeyState((await stateOf("wnam", key))!), stamp: hlcNow(hlcZero("wnam"), Date.now()) },
    ]);
    message.entries[0]!.state = null;
    const [result] = await replica("weur", key).applyReplication([message]);
    expect(codeOf(result)).toBe("ok");
    const view = okValue(await replica("weur", key).read(key)).view;
    expect(view?.type === "register" ? view.value?.length : -1).toBe(big.length);
  });
});

describe("lag", () => {
  it("reports writes known but not applied, stale since the first of them, and zero once caught up", async () => {
    const key = uniqueKey("lag");
    const stub = replica("enam", key);
    const now = Date.now();
    // weur says it has issued 5 writes, the first 2 s ago; none applied here yet (no other test
    // in this file replicates weur's writes to enam).
    await stub.applyReplication([heartbeat("weur", "enam", 5, now - 1000, now - 2000, shardOfKey(key))]);
    let status = await stub.status();
    expect(status.lag.weur?.entries).toBe(5);
    // Stale since weur's first write: about 2 s, never measured from the Unix epoch.
    expect(status.lag.weur?.ms).toBeGreaterThanOrEqual(2000);
    expect(status.lag.weur?.ms).toBeLessThan(60_000);
    const writes = history("weur", ["1", "2", "3", "4", "5"], now - 2000).map((w) => ({ key, ...w }));
    await stub.applyReplication([entries("weur", "enam", 1, writes)]);
    await stub.applyReplication([heartbeat("weur", "enam", 5, Date.now(), now - 2000, shardOfKey(key))]);
    status = await stub.status();
    expect(status.lag.weur).toMatchObject({ entries: 0, ms: 0 });
    expect(registerText(await stub.read(key))).toBe("5");
  });

  it("decodes every stored state it wrote", async () => {
    const key = uniqueKey("decode");
    const stub = replica("wnam", key);
    await stub.write(key, { type: "set", add: ["x", "y"], remove: [] });
    const bytes = await stateOf("wnam", key);
    expect(bytes).not.toBeNull();
    const state = decodeKeyState(bytes!);
    expect(state.type).toBe("set");
  });
});
