// Bounded staleness: served by the nearest region within the bound, else another that is,
// else 503. Lag is induced by recording in a replica that a peer has issued writes it has not seen.
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import { type RegionId } from "../../shared/regions.ts";
import { api, heartbeatAll, replica, uniqueKey } from "./helpers.ts";

/**
 * Makes `region` lag behind `peer` by about 10 s: it holds everything the peer wrote up to 10 s
 * ago, and the peer has since issued writes that never arrive (stored as the replica would
 * have recorded it; the object is then evicted so that it reads the row again), in the shard
 * that holds `key`.
 */
async function makeLag(region: RegionId, peer: RegionId, key: string): Promise<void> {
  await runInDurableObject(replica(region, key), (_i, state) => {
    state.storage.sql.exec(
      "UPDATE peer_recv SET known_seq = applied_seq + 1000000, fresh_ms = ?2, heard_ms = ?3 WHERE origin = ?1",
      peer,
      Date.now() - 10_000,
      Date.now(),
    );
  });
  await evictDurableObject(replica(region, key));
  const status = await replica(region, key).status();
  expect(status.lag[peer]!.entries).toBeGreaterThan(0);
  expect(status.lag[peer]!.ms).toBeGreaterThan(5_000);
  expect(status.lag[peer]!.ms).toBeLessThan(60_000);
}

describe("bounded staleness", () => {
  // A region that never heard a peer has no lag figure, and no bound is met by unknown lag.
  beforeEach(() => heartbeatAll());

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
    await makeLag("weur", "apac", key);
    const res = await api(`/v1/kv/${key}?region=weur&consistency=bounded&max_staleness_ms=5000`);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-served-by")).not.toBe("weur");
    expect(Number(res.headers.get("x-replication-lag-ms"))).toBeLessThanOrEqual(5000);
    // A looser bound is met by weur itself.
    const loose = await api(`/v1/kv/${key}?region=weur&consistency=bounded&max_staleness_ms=600000`);
    expect(loose.headers.get("x-served-by")).toBe("weur");

    // Every region lags some peer that has not written here (only weur has).
    await makeLag("wnam", "apac", key);
    await makeLag("enam", "apac", key);
    await makeLag("apac", "wnam", key);
    const none = await api(`/v1/kv/${key}?consistency=bounded&max_staleness_ms=5000`);
    expect(none.status).toBe(503);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe("staleness_exceeded");
  });
});
