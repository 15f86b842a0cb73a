// WAN emulation and fault injection against `npm start` (WAN_EMULATION and FAULTS on): a client
// located by X-Client-Location is served by its nearest region and everything still converges
// across emulated distances; a clock pushed beyond the HLC bound makes its region unhealthy
// with reason clock_skew, its writes are held (never lost) and arrive once the clock is back;
// partitions that cut a region off hold both the stream and anti-entropy until they are lifted.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Region, call, eventually, json, uniqueKey, useStore } from "./client.ts";
import { type RunningStore, startStore } from "./store.ts";

const ALL: readonly Region[] = ["wnam", "enam", "weur", "apac"];

interface Regions {
  regions: Array<{ id: string; healthy: boolean; reason?: string; clockOffsetMs: number | null }>;
}

let store: RunningStore | undefined;

beforeAll(async () => {
  store = await startStore({ WAN_EMULATION: "on", FAULTS: "on", ANTI_ENTROPY_INTERVAL_MS: "2000" });
  useStore(store.baseUrl);
}, 120_000);

afterAll(async () => {
  useStore(undefined);
  await store?.stop();
});

async function valueAt(key: string, region: Region): Promise<string | null> {
  const res = await call(`/v1/kv/${encodeURIComponent(key)}?region=${region}`);
  return res.status === 404 ? (await res.body?.cancel(), null) : await res.text();
}

async function digest(region: Region): Promise<{ root: string; keys: number }> {
  return json(`/v1/admin/regions/${region}/digest`);
}

async function regionInfo(id: Region): Promise<Regions["regions"][number]> {
  const found = (await json<Regions>("/v1/regions")).regions.find((r) => r.id === id);
  if (found === undefined) throw new Error(`${id} missing from /v1/regions`);
  return found;
}

describe("WAN emulation", () => {
  it("serves a located client from its nearest region and converges across the distances", async () => {
    // Every region is up and healthy first (new replicas probe each other over the WAN).
    await eventually(
      async () => expect((await json<Regions>("/v1/regions")).regions.every((r) => r.healthy)).toBe(true),
      60_000,
      250,
    );
    const key = uniqueKey("wan");
    const sydney = { "X-Client-Location": "-33.87,151.21" };
    const put = await call(`/v1/kv/${encodeURIComponent(key)}?ack=all`, {
      method: "PUT",
      body: "far",
      headers: sydney,
    });
    expect(put.status).toBe(200);
    expect(put.headers.get("X-Served-By")).toBe("apac");
    for (const region of ALL) expect(await valueAt(key, region)).toBe("far");
    const paris = await call(`/v1/kv/${encodeURIComponent(key)}`, { headers: { "X-Client-Location": "48.86,2.35" } });
    expect(paris.headers.get("X-Served-By")).toBe("weur");
    expect(Number(paris.headers.get("X-Replication-Lag-Ms"))).toBeGreaterThanOrEqual(0);
    const bad = await call(`/v1/kv/${encodeURIComponent(key)}`, { headers: { "X-Client-Location": "here" } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe("invalid_header");
  }, 120_000);
});

describe("faults", () => {
  it("rehearses dead letters: a refused pair's messages run out of retries in seconds, and replay", async () => {
    // The rehearsal docs/operations.md shows: refuse wnam -> weur, write in wnam, see the
    // dead letters in weur, lift the fault, replay them.
    await json("/v1/admin/faults", { method: "POST", body: JSON.stringify({ refuse: [["wnam", "weur"]] }) });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const key = uniqueKey("dead");
    await json(`/v1/kv/${encodeURIComponent(key)}?region=wnam&ack=local`, { method: "PUT", body: "rehearsed" });
    interface DeadLetters {
      region: string;
      deadLetters: Array<{ id: number; shard: number; origin: string; attempts: number; reason: string }>;
      cursor: string | null;
    }
    const listed = await eventually(
      async () => {
        const page = await json<DeadLetters>("/v1/admin/regions/weur/dead-letters");
        expect(page.deadLetters.filter((d) => d.origin === "wnam").length).toBeGreaterThan(0);
        return page;
      },
      60_000,
      500,
    );
    expect(listed.region).toBe("weur");
    expect(listed.deadLetters[0]).toMatchObject({ origin: "wnam", reason: "retries exhausted" });
    await json("/v1/admin/faults", { method: "DELETE" });
    const replayed = await json<{ region: string; replayed: number; remaining: number }>(
      "/v1/admin/regions/weur/dead-letters/replay",
      { method: "POST" },
    );
    expect(replayed.region).toBe("weur");
    expect(replayed.replayed).toBeGreaterThan(0);
    expect(replayed.remaining).toBe(0);
    await eventually(async () => expect(await valueAt(key, "weur")).toBe("rehearsed"), 30_000, 250);
  }, 120_000);

  it("holds a skewed region's writes while its clock is beyond the bound, then delivers them", async () => {
    await json("/v1/admin/faults", { method: "POST", body: JSON.stringify({ skewMs: { wnam: 65_000 } }) });
    const skewed = await eventually(
      async () => {
        const info = await regionInfo("wnam");
        expect(info.reason).toBe("clock_skew");
        return info;
      },
      30_000,
      250,
    );
    expect(skewed.healthy).toBe(false);
    expect(skewed.clockOffsetMs).toBeGreaterThan(60_000);
    const metrics = await (await call("/metrics")).text();
    expect(Number(/^region_clock_offset_seconds\{region="wnam"\} ([\d.e+-]+)$/m.exec(metrics)?.[1])).toBeGreaterThan(
      60,
    );
    // A write pinned to the skewed region is acknowledged there, and held everywhere else.
    const key = uniqueKey("skewed");
    await json(`/v1/kv/${encodeURIComponent(key)}?region=wnam`, { method: "PUT", body: "from the future" });
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(await valueAt(key, "wnam")).toBe("from the future");
    expect(await valueAt(key, "enam")).toBeNull();
    // The clock comes back: once real time reaches the write's stamp minus the bound (5 s
    // here), it is taken everywhere, and wnam is healthy again.
    await json("/v1/admin/faults", { method: "DELETE" });
    await eventually(
      async () => {
        for (const region of ALL) expect(await valueAt(key, region)).toBe("from the future");
        expect((await regionInfo("wnam")).healthy).toBe(true);
      },
      90_000,
      500,
    );
  }, 180_000);

  it("cuts a region off by partitions, and it converges once they are lifted", async () => {
    const cut = [
      ["apac", "wnam"],
      ["apac", "enam"],
      ["apac", "weur"],
    ];
    await json("/v1/admin/faults", { method: "POST", body: JSON.stringify({ partitions: cut }) });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const key = uniqueKey("partition");
    await json(`/v1/kv/${encodeURIComponent(key)}?region=weur&ack=local`, { method: "PUT", body: "cut off" });
    await eventually(async () => expect(await valueAt(key, "enam")).toBe("cut off"), 30_000, 250);
    // The router runs at enam: apac cannot be reached through it either.
    expect((await call(`/v1/kv/${encodeURIComponent(key)}?region=apac`)).status).toBe(503);
    // Neither the stream nor anti-entropy (every 2 s here) crosses: apac's digest stays behind.
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    const [apac, enam] = await Promise.all([digest("apac"), digest("enam")]);
    expect(apac.root).not.toBe(enam.root);
    await json("/v1/admin/faults", { method: "DELETE" });
    await eventually(async () => expect(await valueAt(key, "apac")).toBe("cut off"), 90_000, 500);
    await eventually(
      async () => {
        const roots = await Promise.all(ALL.map(async (r) => (await digest(r)).root));
        expect(new Set(roots).size).toBe(1);
      },
      60_000,
      500,
    );
  }, 180_000);
});
