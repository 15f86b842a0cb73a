// The repair path inside workerd: the outbox keeps a write until every peer confirms it,
// anti-entropy repairs what a message lost for good left out, a replica whose storage is
// deleted comes back with everything (and its next counter increment counts everywhere), and a
// bootstrap interrupted by an eviction resumes where it stopped.
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { type RegionId } from "../../shared/regions.ts";
import { INCARNATION_SEQ_GAP } from "../../shared/store/replica-machine.ts";
import { type Replica } from "../../workers/replica/replica.ts";
import {
  SHARDS,
  api,
  heartbeatAll,
  keyInShard,
  okValue,
  registerText,
  replica,
  shardOfKey,
  uniqueKey,
  writeHeldBack,
} from "./helpers.ts";

const REGIONS: RegionId[] = ["wnam", "enam", "weur", "apac"];
const WAIT = { timeout: 10_000, interval: 50 };

function count(state: DurableObjectState, query: string, ...bindings: unknown[]): number {
  return state.storage.sql.exec<{ n: number }>(query, ...bindings).one().n;
}

interface Digest {
  region: string;
  keys: number;
  tombstones: number;
  root: string;
  bootstrapping: boolean;
}

/** The peers `region`'s bootstrap has finished with, as its `meta` row holds them. */
function bootstrapDone(region: RegionId, key: string): Promise<string | undefined> {
  return runInDurableObject(
    replica(region, key),
    (_i, state) =>
      state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE name = 'bootstrap'").toArray()[0]?.value,
  );
}

async function digest(region: RegionId): Promise<Digest> {
  const res = await api(`/v1/admin/regions/${region}/digest`);
  expect(res.status).toBe(200);
  return (await res.json()) as Digest;
}

async function counterAt(region: RegionId, key: string): Promise<number> {
  const res = await api(`/v1/counters/${key}?region=${region}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { value: number }).value;
}

describe("the outbox", () => {
  it("keeps a write until every peer confirms it through its heartbeats, then drops it", async () => {
    const key = uniqueKey("confirm");
    const written = okValue(
      await replica("wnam", key).write(key, { type: "counter", delta: 1 }, { acks: 1, timeoutMs: 0 }),
    );
    for (const region of ["enam", "weur", "apac"] as const)
      await vi.waitFor(async () => expect(await counterAt(region, key)).toBe(1), WAIT);
    // Delivered everywhere, but no peer has said so yet.
    const rows = () =>
      runInDurableObject(replica("wnam", key), (_i, state) =>
        count(state, "SELECT count(*) AS n FROM log WHERE seq = ?", written.seq),
      );
    expect(await rows()).toBe(1);
    await heartbeatAll(["enam", "weur", "apac"]);
    await runDurableObjectAlarm(replica("wnam", key));
    expect(await rows()).toBe(0);
  });
});

describe("anti-entropy", () => {
  it("repairs a write whose message was lost for good (dead-lettered, never replayed)", async () => {
    const key = uniqueKey("lost");
    await writeHeldBack("enam", key, "only here");
    // The message is gone: its outbox row dropped and every watermark past it, as after a
    // dead letter nobody replays. Nothing in the stream will ever bring it.
    await runInDurableObject(replica("enam", key), (_i, state) => {
      const seq = state.storage.sql.exec<{ seq: number }>("SELECT seq FROM log WHERE key = ?", key).one().seq;
      state.storage.sql.exec("DELETE FROM log WHERE seq <= ?", seq);
      for (const target of ["wnam", "weur", "apac"])
        state.storage.sql.exec(
          "INSERT INTO peer_send (target, sent_seq) VALUES (?1, ?2) ON CONFLICT (target) DO UPDATE SET sent_seq = max(sent_seq, ?2)",
          target,
          seq,
        );
    });
    await evictDurableObject(replica("enam", key));
    for (const region of ["wnam", "weur", "apac"] as const)
      expect(registerText(await replica(region, key).read(key))).toBe(null);
    const res = await api("/v1/admin/anti-entropy", { method: "POST" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      pairs: Array<{ a: string; b: string; keysRepaired: number; bytes: number; complete: boolean }>;
    };
    // Every pair once: 4 regions make 6 pairs.
    expect(body.pairs.map((p) => `${p.a}-${p.b}`).sort()).toEqual(
      ["weur-apac", "enam-apac", "enam-weur", "wnam-apac", "wnam-enam", "wnam-weur"].sort(),
    );
    expect(body.pairs.every((p) => p.complete && p.bytes > 0)).toBe(true);
    expect(body.pairs.filter((p) => p.a === "enam" || p.b === "enam").some((p) => p.keysRepaired > 0)).toBe(true);
    for (const region of REGIONS) expect(registerText(await replica(region, key).read(key))).toBe("only here");
    const roots = new Set((await Promise.all(REGIONS.map(digest))).map((d) => d.root));
    expect(roots.size).toBe(1);
    // A second round finds nothing left to repair.
    const again = (await (await api("/v1/admin/anti-entropy", { method: "POST" })).json()) as {
      pairs: Array<{ keysRepaired: number }>;
    };
    expect(again.pairs.every((p) => p.keysRepaired === 0)).toBe(true);
  });

  it("shows each region's digest, and refuses an unknown region with JSON", async () => {
    const d = await digest("weur");
    expect(d).toMatchObject({ region: "weur", bootstrapping: false });
    expect(d.root).toMatch(/^[0-9a-f]{64}$/);
    expect(d.keys).toBeGreaterThan(0);
    const bad = await api("/v1/admin/regions/mars/digest");
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe("unknown_region");
    expect((await api("/v1/admin/regions/weur/digest", { token: "test-read" })).status).toBe(403);
  });
});

describe("a replica whose storage is deleted", () => {
  it("comes back with everything, and its next counter increment counts everywhere", async () => {
    const counter = uniqueKey("restored-counter");
    const kept = uniqueKey("restored-kept");
    const gone = uniqueKey("restored-gone");
    for (let i = 0; i < 5; i += 1)
      expect(
        (await api(`/v1/counters/${counter}?region=weur&ack=all`, { method: "POST", body: '{"delta":1}' })).status,
      ).toBe(200);
    expect((await api(`/v1/kv/${kept}?region=weur&ack=all`, { method: "PUT", body: "kept" })).status).toBe(200);
    expect((await api(`/v1/kv/${gone}?region=weur&ack=all`, { method: "PUT", body: "x" })).status).toBe(200);
    expect((await api(`/v1/kv/${gone}?region=weur&ack=all`, { method: "DELETE" })).status).toBe(200);
    const before = (await replica("weur", counter).status()).seq;
    await heartbeatAll();

    // Every shard's SQLite database is wiped and the objects restart: a region restored empty.
    for (let shard = 0; shard < SHARDS; shard += 1) {
      await runInDurableObject(replica("weur", shard), (_i, state) => state.storage.deleteAll());
      await evictDurableObject(replica("weur", shard));
    }

    // Pinned reads never answer 404 for a key another region holds, bootstrapping or not.
    const read = await api(`/v1/kv/${kept}?region=weur`);
    expect(read.status).toBe(200);
    expect(await read.text()).toBe("kept");
    expect((await api(`/v1/kv/${gone}?region=weur`)).status).toBe(404);
    expect(await counterAt("weur", counter)).toBe(5);
    // The increment made after the restore counts in every region: 6, not 5.
    const inc = await api(`/v1/counters/${counter}?region=weur&ack=all`, { method: "POST", body: '{"delta":1}' });
    expect(inc.status).toBe(200);
    for (const region of REGIONS) expect(await counterAt(region, counter)).toBe(6);
    // Its new life numbers writes above anything its peers knew of the old one.
    const status = await replica("weur", counter).status();
    expect(status.seq).toBeGreaterThan(before + INCARNATION_SEQ_GAP);

    // Bootstrapped, it holds exactly what every other region holds.
    await vi.waitFor(async () => {
      for (let shard = 0; shard < SHARDS; shard += 1) await runDurableObjectAlarm(replica("weur", shard));
      expect((await digest("weur")).bootstrapping).toBe(false);
    }, WAIT);
    await heartbeatAll();
    const digests = await Promise.all(REGIONS.map(digest));
    expect(new Set(digests.map((d) => d.root)).size).toBe(1);
    expect(new Set(digests.map((d) => d.keys)).size).toBe(1);
  });
});

describe("bootstrap", () => {
  it("resumes after an eviction, without redoing the peers it finished", async () => {
    const key = uniqueKey("resume");
    expect((await api(`/v1/kv/${key}?region=apac&ack=all`, { method: "PUT", body: "v" })).status).toBe(200);
    // A key only apac holds, so that wnam's round with apac has something to descend into.
    const only = keyInShard("resume-only", shardOfKey(key));
    await writeHeldBack("apac", only, "apac's");
    // apac cannot serve the tree for now: a round with it fails half-way.
    await runInDurableObject(replica("apac", key), (instance: Replica) => {
      (instance as unknown as { merkleChildren: () => never }).merkleChildren = () => {
        throw new Error("apac's tree is unavailable");
      };
    });
    await runInDurableObject(replica("wnam", key), (_i, state) => state.storage.deleteAll());
    await evictDurableObject(replica("wnam", key));
    // The first request probes; the bootstrap then completes with every peer but apac.
    expect((await api(`/v1/kv/${key}?region=wnam`)).status).toBe(200);
    await vi.waitFor(
      async () => expect(JSON.parse((await bootstrapDone("wnam", key)) ?? "[]")).toEqual(["enam", "weur"]),
      WAIT,
    );
    expect((await replica("wnam", key).status()).bootstrapping).toBe(true);
    const regions = (await (await api("/v1/regions")).json()) as {
      regions: Array<{
        id: string;
        healthy: boolean;
        reason?: string;
        bootstrapping: boolean;
        lag: Record<string, { ms: number | null }>;
      }>;
    };
    const wnam = regions.regions.find((r) => r.id === "wnam");
    expect(wnam).toMatchObject({ healthy: false, reason: "bootstrapping", bootstrapping: true });
    // It knows it lacks data: no lag figure, let alone 0.
    expect(Object.values(wnam?.lag ?? {}).every((l) => l.ms === null)).toBe(true);

    // Evicted mid-way, and apac serves again: the next alarm finishes with apac alone.
    await evictDurableObject(replica("wnam", key));
    await evictDurableObject(replica("apac", key));
    await runDurableObjectAlarm(replica("wnam", key));
    // The alarm starts the next bootstrap stretch beside its heartbeats.
    const status = await vi.waitFor(async () => {
      const s = await replica("wnam", key).status();
      expect(s.bootstrapping).toBe(false);
      return s;
    }, WAIT);
    const rounds = Object.fromEntries(
      status.metrics.filter((m) => m.name === "anti_entropy_rounds_total").map((m) => [m.peer, m.value]),
    );
    expect(rounds).toEqual({ enam: 1, weur: 1, apac: 1 });
    expect(registerText(await replica("wnam", key).read(key))).toBe("v");
    expect(registerText(await replica("wnam", only).read(only))).toBe("apac's");
  });
});
