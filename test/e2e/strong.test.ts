// Strong mode under `npm start`: the default strong/ prefix with primary enam, compare-and-set,
// and automatic failover when the primary is taken out.
import { describe, expect, it } from "vitest";
import { call, eventually, json, uniqueKey } from "./client.ts";

interface Regions {
  regions: Array<{ id: string; healthy: boolean }>;
  primaries: Record<string, { region: string; epoch: number; ready: boolean }>;
}

async function setHealth(region: string, healthy: boolean): Promise<void> {
  await json(`/v1/admin/regions/${region}/health`, { method: "POST", body: JSON.stringify({ healthy }) });
}

describe("strong prefix", () => {
  it("writes through the primary with compare-and-set, and fails over within seconds", async () => {
    const before: Regions = await json("/v1/regions");
    const primary = before.primaries["strong/"]!;
    expect(primary.ready).toBe(true);
    const key = `strong/${uniqueKey("account")}`;
    const created = await call(`/v1/kv/${encodeURIComponent(key)}`, {
      method: "PUT",
      body: "100",
      headers: { "If-None-Match": "*" },
    });
    expect(created.status).toBe(200);
    expect(((await created.json()) as { region: string }).region).toBe(primary.region);
    const etag = created.headers.get("etag")!;
    const racers = await Promise.all(
      ["wnam", "apac"].map((region) =>
        call(`/v1/kv/${encodeURIComponent(key)}?region=${region}`, {
          method: "PUT",
          body: region,
          headers: { "If-Match": etag },
        }),
      ),
    );
    expect(racers.map((r) => r.status).sort()).toEqual([200, 412]);

    await setHealth(primary.region, false);
    try {
      const after = await eventually(
        async () => {
          const view: Regions = await json("/v1/regions");
          const p = view.primaries["strong/"]!;
          expect(p.region).not.toBe(primary.region);
          expect(p.ready).toBe(true);
          expect(view.regions.find((r) => r.id === primary.region)?.healthy).toBe(false);
          return p;
        },
        10_000,
        100,
      );
      expect(after.epoch).toBeGreaterThan(primary.epoch);
      const winner = await (await call(`/v1/kv/${encodeURIComponent(key)}?consistency=strong`)).text();
      expect(["wnam", "apac"]).toContain(winner);
      const next = await call(`/v1/kv/${encodeURIComponent(key)}`, { method: "PUT", body: "200" });
      expect(next.status).toBe(200);
      expect(((await next.json()) as { region: string }).region).toBe(after.region);
    } finally {
      await setHealth(primary.region, true);
    }
  });
});
