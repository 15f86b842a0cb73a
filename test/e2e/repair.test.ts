// The repair path against `npm start`, each case from real persisted state: a region added to a
// store that holds data converges to identical digests; a region whose SQLite file is removed
// comes back with everything (no pinned 404 meanwhile, never a lag of 0 while it lacks data, and
// the increment made after the restart counts everywhere); and with 30% of replication messages
// dropped (never dead-lettered), anti-entropy brings every region to the same digest.
import { rmSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { type Region, call, eventually, json, ownStore, uniqueKey } from "./client.ts";
import { SHARDS, replicaFiles } from "./store.ts";

const ALL: readonly Region[] = ["wnam", "enam", "weur", "apac"];

interface Digest {
  region: string;
  keys: number;
  tombstones: number;
  root: string;
  bootstrapping: boolean;
}

interface Regions {
  regions: Array<{
    id: string;
    healthy: boolean;
    reason?: string;
    bootstrapping: boolean;
    lag: Record<string, { entries: number; ms: number | null; reason?: string }>;
  }>;
}

const own = ownStore("kv-e2e-repair");
const start = own.start;
const stop = own.stop;

afterEach(() => own.cleanup());

/** Registers, a delete, a counter at 5 and a set, written in `region` and acknowledged by every region. */
async function seed(region: Region, regionCount: number): Promise<{ keys: string[]; counter: string; set: string }> {
  const keys = Array.from({ length: 20 }, (_, i) => uniqueKey(`repair-${i}`));
  for (const key of keys)
    await json(`/v1/kv/${encodeURIComponent(key)}?region=${region}&ack=all`, { method: "PUT", body: `v-${key}` });
  const deleted = keys.pop() as string;
  await json(`/v1/kv/${encodeURIComponent(deleted)}?region=${region}&ack=all`, { method: "DELETE" });
  const counter = uniqueKey("repair-counter");
  for (let i = 0; i < 5; i += 1)
    await json(`/v1/counters/${encodeURIComponent(counter)}?region=${region}&ack=all`, {
      method: "POST",
      body: '{"delta":1}',
    });
  const set = uniqueKey("repair-set");
  await json(`/v1/sets/${encodeURIComponent(set)}?region=${region}&ack=all`, {
    method: "POST",
    body: '{"add":["a","b","c"],"remove":[]}',
  });
  expect(regionCount).toBeGreaterThan(0);
  return { keys, counter, set };
}

async function digests(regions: readonly Region[]): Promise<Digest[]> {
  return Promise.all(regions.map((r) => json<Digest>(`/v1/admin/regions/${r}/digest`)));
}

/** Waits until every region has finished bootstrapping and all hold identical states. */
async function converged(regions: readonly Region[], timeoutMs = 60_000): Promise<Digest[]> {
  return eventually(
    async () => {
      const all = await digests(regions);
      expect(all.every((d) => !d.bootstrapping)).toBe(true);
      expect(new Set(all.map((d) => d.root)).size).toBe(1);
      return all;
    },
    timeoutMs,
    250,
  );
}

async function counterAt(region: Region, key: string): Promise<number> {
  return (await json<{ value: number }>(`/v1/counters/${encodeURIComponent(key)}?region=${region}`)).value;
}

describe("repair against npm start", () => {
  it("brings a region added to a store that holds data to identical digests", async () => {
    await start({ REGIONS: "wnam,enam,weur" });
    const { keys, counter, set } = await seed("enam", 3);
    await stop();

    await start();
    // apac was never written to: it bootstraps, and its digest ends equal to every other's.
    const all = await converged(ALL);
    expect(all.every((d) => d.keys === all[0]?.keys && d.tombstones === all[0]?.tombstones)).toBe(true);
    for (const key of keys.slice(0, 5))
      expect(await (await call(`/v1/kv/${encodeURIComponent(key)}?region=apac`)).text()).toBe(`v-${key}`);
    expect(await counterAt("apac", counter)).toBe(5);
    const members = await json<{ members: string[] }>(`/v1/sets/${encodeURIComponent(set)}?region=apac`);
    expect(members.members.sort()).toEqual(["a", "b", "c"]);
    // The bootstrap is counted, with the time it took; nothing else bootstrapped.
    const metrics = await (await call("/metrics")).text();
    // Every shard of apac bootstrapped once.
    expect(metrics.match(/^bootstraps_total\{region="apac",shard="\d+",peer="apac"\} 1$/gm)).toHaveLength(SHARDS);
    expect(metrics).toMatch(/^bootstrap_seconds_total\{region="apac",shard="\d+",peer="apac"\} \d/m);
    expect(metrics).not.toMatch(/^bootstraps_total\{region="(wnam|enam|weur)"/m);
  }, 180_000);

  it("restores a region whose SQLite file was removed, counting its next increment everywhere", async () => {
    await start();
    const { keys, counter } = await seed("weur", 4);
    // Every region has heard weur's heartbeats (they say how far it had written).
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    await stop();
    for (const file of replicaFiles(own.stateDir, "weur", SHARDS)) rmSync(file);

    await start();
    // While weur takes its peers' data back in: no pinned 404 for a key another region holds,
    // and no lag of 0 reported for it.
    for (const key of keys) {
      const res = await call(`/v1/kv/${encodeURIComponent(key)}?region=weur`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe(`v-${key}`);
      const weur = (await json<Regions>("/v1/regions")).regions.find((r) => r.id === "weur");
      const digest = await json<Digest>("/v1/admin/regions/weur/digest");
      const lacking = weur?.bootstrapping === true || digest.bootstrapping;
      const reported = lacking ? Object.values(weur?.lag ?? {}) : [];
      expect(reported.filter((lag) => lag.ms !== null || (lag.reason ?? "") === "")).toEqual([]);
    }
    expect(await counterAt("weur", counter)).toBe(5);
    await json(`/v1/counters/${encodeURIComponent(counter)}?region=weur&ack=all`, {
      method: "POST",
      body: '{"delta":1}',
    });
    for (const region of ALL) expect(await counterAt(region, counter)).toBe(6);
    await converged(ALL);
    // Once it is done, its lag figures are numbers again.
    await eventually(
      async () => {
        const weur = (await json<Regions>("/v1/regions")).regions.find((r) => r.id === "weur");
        expect(weur?.bootstrapping).toBe(false);
        for (const lag of Object.values(weur?.lag ?? {})) expect(lag.ms).not.toBeNull();
      },
      15_000,
      250,
    );
  }, 180_000);

  it("converges with 30% of replication messages dropped, through anti-entropy", async () => {
    await start({ REPLICATION_DROP_PERCENT: "30" });
    const keys = Array.from({ length: 40 }, (_, i) => uniqueKey(`lossy-${i}`));
    for (const [i, key] of keys.entries())
      await json(`/v1/kv/${encodeURIComponent(key)}?region=${ALL[i % ALL.length]}`, { method: "PUT", body: key });
    // Some messages were lost for good; one anti-entropy round between every pair repairs them.
    const before = await digests(ALL);
    const report = await json<{ pairs: Array<{ a: string; b: string; keysRepaired: number; complete: boolean }> }>(
      "/v1/admin/anti-entropy",
      { method: "POST" },
    );
    expect(report.pairs).toHaveLength(6);
    const after = await converged(ALL, 30_000);
    expect(after.every((d) => d.keys === keys.length)).toBe(true);
    // The loss was real: the digests differed before the round, and the round repaired keys.
    expect(new Set(before.map((d) => d.root)).size > 1 || report.pairs.some((p) => p.keysRepaired > 0)).toBe(true);
  }, 180_000);
});
