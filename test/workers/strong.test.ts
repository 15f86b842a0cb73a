// Strong prefixes: writes go to the primary and wait for a quorum, compare-and-set is exact,
// strong reads come from the primary under its lease, and failover promotes (once that lease ran
// out) the replica that applied the most of the old primary's writes under a new epoch that
// fences the old primary.
import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { hlcNow, hlcZero } from "../../shared/hlc.ts";
import { type RegionId } from "../../shared/regions.ts";
import { applyKeyOp, decodeKeyState } from "../../shared/store/key-state.ts";
import { SHARDS, api, codeOf, entries, okValue, replica, shardOfKey, stateOf, uniqueKey } from "./helpers.ts";

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

interface Primaries {
  primaries: Record<string, { region: RegionId; epoch: number; ready: boolean; recoveredSeqs: number[] }>;
}

/** `POST /v1/admin/primaries` with `body`, as the admin (or as `token`). */
function movePrimary(body: unknown, token?: string): Promise<Response> {
  return api("/v1/admin/primaries", { method: "POST", body: JSON.stringify(body), ...(token ? { token } : {}) });
}

async function regions(): Promise<Primaries> {
  return (await api("/v1/regions")).json() as Promise<Primaries>;
}

describe("strong prefixes", () => {
  it("forwards writes to the primary and acknowledges them with a quorum", async () => {
    const res = await api(`/v1/kv/strong/${uniqueKey("fwd")}?region=apac`, { method: "PUT", body: "v" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { region: string; acked: string[] };
    expect(body.region).toBe("enam");
    expect(body.acked.length).toBeGreaterThanOrEqual(3);
    expect((await regions()).primaries["strong/"]).toMatchObject({ region: "enam", epoch: 1, ready: true });
  });

  it("creates only once with If-None-Match: * and updates only at the matching ETag", async () => {
    const key = `strong/${uniqueKey("cas")}`;
    const created = await api(`/v1/kv/${key}`, { method: "PUT", body: "1", headers: { "If-None-Match": "*" } });
    expect(created.status).toBe(200);
    const again = await api(`/v1/kv/${key}`, { method: "PUT", body: "x", headers: { "If-None-Match": "*" } });
    expect(again.status).toBe(412);
    expect(await errorCode(again)).toBe("precondition_failed");
    const etag = created.headers.get("etag")!;
    const stale = await api(`/v1/kv/${key}`, { method: "PUT", body: "x", headers: { "If-Match": '"AAAA"' } });
    expect(stale.status).toBe(412);
    const updated = await api(`/v1/kv/${key}`, { method: "PUT", body: "2", headers: { "If-Match": etag } });
    expect(updated.status).toBe(200);
    const read = await api(`/v1/kv/${key}?consistency=strong`);
    expect(await read.text()).toBe("2");
    expect(read.headers.get("x-served-by")).toBe("enam");
  });

  it("lets exactly one of two racing compare-and-set writes win, every time", async () => {
    for (let round = 0; round < 10; round += 1) {
      const key = `strong/${uniqueKey("race")}`;
      const etag = (await api(`/v1/kv/${key}`, { method: "PUT", body: "start" })).headers.get("etag")!;
      const [a, b] = await Promise.all(
        (["weur", "apac"] as const).map((region) =>
          api(`/v1/kv/${key}?region=${region}`, {
            method: "PUT",
            body: `from ${region}`,
            headers: { "If-Match": etag },
          }),
        ),
      );
      expect([a!.status, b!.status].sort()).toEqual([200, 412]);
      const winner = a!.status === 200 ? "from weur" : "from apac";
      expect(await (await api(`/v1/kv/${key}?consistency=strong`)).text()).toBe(winner);
    }
  });

  it("refuses strong reads outside strong prefixes", async () => {
    const res = await api(`/v1/kv/${uniqueKey("weak")}?consistency=strong`);
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("invalid_consistency");
  });

  it("answers 503 primary_unavailable while a primary without failover is out", async () => {
    await api(`/v1/admin/regions/wnam/health`, { method: "POST", body: '{"healthy":false}' });
    const res = await api(`/v1/kv/manual/${uniqueKey("m")}`, { method: "PUT", body: "v" });
    expect(res.status).toBe(503);
    expect(await errorCode(res)).toBe("primary_unavailable");
    expect((await regions()).primaries["manual/"]).toMatchObject({ region: "wnam", epoch: 1 });
    await api(`/v1/admin/regions/wnam/health`, { method: "POST", body: '{"healthy":true}' });
    expect((await api(`/v1/kv/manual/${uniqueKey("m")}`, { method: "PUT", body: "v" })).status).toBe(200);
  });

  it("moves a primary to a chosen region and back (failback), keeping acked writes and fencing the old epoch", async () => {
    const key = `manual/${uniqueKey("moved")}`;
    expect((await api(`/v1/kv/${key}`, { method: "PUT", body: "before" })).status).toBe(200);
    const moved = await movePrimary({ prefix: "manual/", region: "weur" });
    expect(moved.status).toBe(200);
    const answer = (await moved.json()) as { region: string; from: string; epoch: number; ready: boolean };
    expect(answer).toMatchObject({ prefix: "manual/", from: "wnam", region: "weur", epoch: 2 });
    await vi.waitFor(
      async () => {
        await runDurableObjectAlarm(env.CONTROL.getByName("control"));
        expect((await regions()).primaries["manual/"]).toMatchObject({ region: "weur", epoch: 2, ready: true });
      },
      { timeout: 10_000, interval: 100 },
    );
    // The acknowledged write is there, and writes now go to the new primary.
    const read = await api(`/v1/kv/${key}?consistency=strong`);
    expect(read.headers.get("x-served-by")).toBe("weur");
    expect(await read.text()).toBe("before");
    const next = await api(`/v1/kv/${key}?region=apac`, { method: "PUT", body: "after" });
    expect(((await next.json()) as { region: string }).region).toBe("weur");
    // The old primary, under its old epoch, is fenced.
    const late = await replica("wnam", key).write(
      key,
      { type: "register", op: { kind: "put", value: new TextEncoder().encode("late"), contentType: "text/plain" } },
      { acks: 1, timeoutMs: 0, strong: { prefix: "manual/", epoch: 1 } },
    );
    expect(codeOf(late)).toBe("fenced");
    // Refusals: nothing moves.
    expect(await errorCode(await movePrimary({ prefix: "nope/", region: "wnam" }))).toBe("not_found");
    expect(await errorCode(await movePrimary({ prefix: "manual/", region: "mars" }))).toBe("invalid_body");
    expect(await errorCode(await movePrimary({ prefix: "manual/", region: "sam" }))).toBe("unknown_region");
    expect(await errorCode(await movePrimary({ prefix: "manual/" }))).toBe("invalid_body");
    expect((await movePrimary({ prefix: "manual/", region: "wnam" }, "test-write")).status).toBe(403);
    await api(`/v1/admin/regions/apac/health`, { method: "POST", body: '{"healthy":false}' });
    try {
      expect(await errorCode(await movePrimary({ prefix: "manual/", region: "apac" }))).toBe("region_unavailable");
    } finally {
      await api(`/v1/admin/regions/apac/health`, { method: "POST", body: '{"healthy":true}' });
    }
    expect((await regions()).primaries["manual/"]).toMatchObject({ region: "weur", epoch: 2 });
    // Failback: the first primary leads again, under a third epoch.
    const back = await movePrimary({ prefix: "manual/", region: "wnam" });
    expect(await back.json()).toMatchObject({ prefix: "manual/", from: "weur", region: "wnam", epoch: 3 });
    await vi.waitFor(
      async () => {
        await runDurableObjectAlarm(env.CONTROL.getByName("control"));
        expect((await regions()).primaries["manual/"]).toMatchObject({ region: "wnam", epoch: 3, ready: true });
      },
      { timeout: 10_000, interval: 100 },
    );
    expect(await (await api(`/v1/kv/${key}?consistency=strong`)).text()).toBe("after");
  }, 30_000);

  it("fails over to the most caught-up replica, keeps every quorum-acked write, and fences the old primary", async () => {
    // Quorum-acknowledged writes under the first primary.
    const keys = Array.from({ length: 6 }, (_, i) => `strong/${uniqueKey(`kept-${i}`)}`);
    for (const [i, key] of keys.entries()) {
      const res = await api(`/v1/kv/${key}?ack=quorum`, { method: "PUT", body: `value ${i}` });
      expect(res.status).toBe(200);
    }
    // Make apac the replica that has applied the most of enam's writes, yet missing half of
    // these keys (as if their deliveries were still in flight): recovery must bring them back.
    await vi.waitFor(async () => {
      for (const key of keys) expect(await stateOf("apac", key)).not.toBeNull();
    });
    for (let shard = 0; shard < SHARDS; shard += 1) {
      await runInDurableObject(replica("apac", shard), (_i, state) => {
        state.storage.sql.exec(
          "INSERT INTO peer_recv (origin, applied_seq, known_seq, fresh_ms, heard_ms, pending) VALUES ('enam', 1000000, 1000000, 1, 1, '[]') ON CONFLICT (origin) DO UPDATE SET applied_seq = applied_seq + 1000000, known_seq = known_seq + 1000000",
        );
        for (const key of keys.slice(0, 3))
          if (shardOfKey(key) === shard) state.storage.sql.exec("DELETE FROM kv WHERE key = ?", key);
      });
      // The replica keeps its progress in memory too; a restart makes it read the edited rows.
      await evictDurableObject(replica("apac", shard));
    }
    const taken = await api(`/v1/admin/regions/enam/health`, { method: "POST", body: '{"healthy":false}' });
    expect(taken.status).toBe(200);
    // The control object promotes a successor once the lease it last granted enam ran out
    // (`leases.ts`), and it serves once a majority has applied its re-log of the prefix: the
    // control object's rounds (its alarm, every heartbeat in production) see both.
    await vi.waitFor(
      async () => {
        await runDurableObjectAlarm(env.CONTROL.getByName("control"));
        expect((await regions()).primaries["strong/"]).toMatchObject({ region: "apac", epoch: 2, ready: true });
      },
      { timeout: 10_000, interval: 100 },
    );

    // No acknowledged write is lost, and the new primary takes writes.
    for (const [i, key] of keys.entries()) {
      const read = await api(`/v1/kv/${key}?consistency=strong`);
      expect(read.headers.get("x-served-by")).toBe("apac");
      expect(await read.text()).toBe(`value ${i}`);
    }
    const next = await api(`/v1/kv/${keys[0]}`, { method: "PUT", body: "after failover" });
    expect(next.status).toBe(200);
    expect(((await next.json()) as { region: string }).region).toBe("apac");

    // The old primary comes back as a follower: its writes under the old epoch are refused...
    await api(`/v1/admin/regions/enam/health`, { method: "POST", body: '{"healthy":true}' });
    const late = await replica("enam", keys[1]!).write(
      keys[1]!,
      { type: "register", op: { kind: "put", value: new Uint8Array([1]), contentType: "x" } },
      {
        acks: 3,
        timeoutMs: 500,
        strong: { prefix: "strong/", epoch: 1 },
      },
    );
    expect(codeOf(late)).toBe("fenced");
    // ...and a write it committed under epoch 1 that the new primary never had (built on what
    // enam holds, as a late write of a deposed primary is) is not merged anywhere.
    const held = decodeKeyState((await stateOf("enam", keys[2]!))!);
    const stamp = hlcNow(hlcZero("enam"), Date.now());
    const stale = applyKeyOp(
      held,
      { type: "register", op: { kind: "put", value: new TextEncoder().encode("late"), contentType: "text/plain" } },
      "enam",
      stamp,
    );
    const message = entries("enam", "weur", 5_000_000, [{ key: keys[2]!, state: okValue(stale), stamp }]);
    message.entries[0] = { ...message.entries[0]!, epoch: 1 };
    // Until weur has taken in the new primary's recovered prefix it cannot tell a late write
    // from one the new primary kept: it keeps the write aside, and its stream moves on.
    const weur = replica("weur", keys[2]!);
    const [early] = await weur.applyReplication([message]);
    expect(okValue(early!).fenced).toBe(0);
    const recoveredSeq = (await regions()).primaries["strong/"]!.recoveredSeqs[shardOfKey(keys[2]!)] ?? 0;
    await vi.waitFor(
      async () => expect((await weur.status()).lag.apac!.appliedSeq).toBeGreaterThanOrEqual(recoveredSeq),
      {
        timeout: 10_000,
        interval: 50,
      },
    );
    // Settling judges it: the new primary did not keep it, so it is refused and logged.
    await runDurableObjectAlarm(weur);
    const [applied] = await weur.applyReplication([message]);
    // Arriving again, it is refused at once: acked to the queue (it must not be retried), but
    // reported as fenced, so it never counts as an ack.
    expect(okValue(applied!).fenced).toBe(1);
    const weurRead = okValue(await weur.read(keys[2]!));
    expect(weurRead.view?.type === "register" ? new TextDecoder().decode(weurRead.view.value!) : null).toBe("value 2");
    const log = (await (await api("/v1/conflicts?region=weur&limit=1000")).json()) as {
      conflicts: Array<{ key: string; kind: string; rule: string }>;
    };
    expect(log.conflicts.find((c) => c.key === keys[2])).toMatchObject({ kind: "fenced", rule: "stale_epoch" });
    // conflicts_total counts every entry the log shows, fenced ones too.
    const statuses = await Promise.all(Array.from({ length: SHARDS }, (_, shard) => replica("weur", shard).status()));
    const metric = (name: string) =>
      statuses.flatMap((s) => s.metrics).reduce((n, m) => n + (m.name === name ? m.value : 0), 0);
    expect(metric("conflicts_total")).toBe(log.conflicts.length);
    expect(metric("replication_fenced_total")).toBe(log.conflicts.filter((c) => c.kind === "fenced").length);
    // Strong writes routed by the router keep going to the new primary.
    expect(
      (await (await api(`/v1/kv/${keys[3]}?region=enam`, { method: "PUT", body: "x" })).json()) as { region: string },
    ).toMatchObject({
      region: "apac",
    });
  }, 30_000);

  it("does not log a quorum-acknowledged write as fenced when it arrives again after a failover", async () => {
    const before = (await regions()).primaries["strong/"]!;
    const old = before.region;
    const key = `strong/${uniqueKey("k3")}`;
    // A: acknowledged by a quorum under the current epoch.
    const a = await api(`/v1/kv/${key}?ack=quorum`, { method: "PUT", body: "A" });
    expect(a.status).toBe(200);
    const stateA = decodeKeyState((await stateOf(old, key))!);
    const seqA = (await replica(old, key).status()).seq;
    // The primary goes out at once; its successor serves, and B overwrites A knowingly.
    expect((await api(`/v1/admin/regions/${old}/health`, { method: "POST", body: '{"healthy":false}' })).status).toBe(
      200,
    );
    let now: Primaries["primaries"][string] | undefined;
    await vi.waitFor(
      async () => {
        await runDurableObjectAlarm(env.CONTROL.getByName("control"));
        now = (await regions()).primaries["strong/"];
        expect(now).toMatchObject({ epoch: before.epoch + 1, ready: true });
      },
      { timeout: 10_000, interval: 100 },
    );
    expect((await api(`/v1/kv/${key}`, { method: "PUT", body: "B" })).status).toBe(200);
    await api(`/v1/admin/regions/${old}/health`, { method: "POST", body: '{"healthy":true}' });
    // A's stream message from the deposed primary arrives late everywhere (as when its outbox
    // drains after it comes back): it is already included, so it is a duplicate, not a conflict.
    const late = entries(old, old, seqA, [{ key, state: stateA, stamp: hlcNow(hlcZero(old), Date.now()) }]);
    late.entries[0] = { ...late.entries[0]!, epoch: before.epoch };
    for (const region of ["wnam", "enam", "weur", "apac"] as const) {
      if (region === old) continue;
      // Once the region holds the new primary's recovered prefix, it can judge old-epoch writes.
      await vi.waitFor(
        async () => {
          expect((await replica(region, key).status()).lag[now!.region]?.appliedSeq ?? Infinity).toBeGreaterThanOrEqual(
            now!.recoveredSeqs[shardOfKey(key)] ?? 0,
          );
        },
        { timeout: 10_000, interval: 50 },
      );
      await runDurableObjectAlarm(replica(region, key));
      const [applied] = await replica(region, key).applyReplication([{ ...late, target: region }]);
      expect(okValue(applied!).fenced).toBe(0);
      const log = (await (await api(`/v1/conflicts?region=${region}&limit=1000`)).json()) as {
        conflicts: Array<{ key: string; kind: string }>;
      };
      expect(log.conflicts.filter((c) => c.key === key)).toEqual([]);
      expect(await (await api(`/v1/kv/${key}?region=${region}`)).text()).toBe("B");
    }
    // The failover waits for the old primary's lease and several control rounds.
  }, 30_000);
});
