// Bounded staleness: served by the nearest region within the bound, else another that is,
// else 503. Lag is induced by telling a replica that a peer has issued writes it has not seen.
import { describe, expect, it } from "vitest";
import { type RegionId } from "../../shared/regions.ts";
import { api, heartbeat, replica, uniqueKey } from "./helpers.ts";

/**
 * Makes `region` lag behind `peer` by about 10 s: caught up with the peer 10 s ago, and since
 * then the peer claims writes that never arrive.
 */
async function makeLag(region: RegionId, peer: RegionId): Promise<void> {
  const applied = (await replica(region).status()).lag[peer]!.appliedSeq;
  const results = await replica(region).applyReplication([
    heartbeat(peer, region, applied, Date.now() - 10_000),
    heartbeat(peer, region, applied + 1_000_000, Date.now()),
  ]);
  expect(results.every((r) => r.ok)).toBe(true);
  const status = await replica(region).status();
  expect(status.lag[peer]!.entries).toBeGreaterThan(0);
  expect(status.lag[peer]!.ms).toBeGreaterThan(5_000);
  expect(status.lag[peer]!.ms).toBeLessThan(60_000);
}

describe("bounded staleness", () => {
  it("serves from the preferred region when it is within the bound", async () => {
    const key = uniqueKey("fresh");
    await api(`/v1/kv/${key}?region=weur&ack=all`, { method: "PUT", body: "v" });
    const res = await api(`/v1/kv/${key}?region=weur&consistency=bounded&max_staleness_ms=5000`);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-served-by")).toBe("weur");
  });

  it("routes away from a lagging region, and answers 503 when no region is within the bound", async () => {
    const key = uniqueKey("lagging");
    await api(`/v1/kv/${key}?region=weur&ack=all`, { method: "PUT", body: "v" });
    await makeLag("weur", "apac");
    const res = await api(`/v1/kv/${key}?region=weur&consistency=bounded&max_staleness_ms=5000`);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-served-by")).not.toBe("weur");
    expect(Number(res.headers.get("x-replication-lag-ms"))).toBeLessThanOrEqual(5000);
    // A looser bound is met by weur itself.
    const loose = await api(`/v1/kv/${key}?region=weur&consistency=bounded&max_staleness_ms=600000`);
    expect(loose.headers.get("x-served-by")).toBe("weur");

    // Every region lags some peer that has not written here (only weur has).
    await makeLag("wnam", "apac");
    await makeLag("enam", "apac");
    await makeLag("apac", "wnam");
    const none = await api(`/v1/kv/${key}?consistency=bounded&max_staleness_ms=5000`);
    expect(none.status).toBe(503);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe("staleness_exceeded");
  });
});
