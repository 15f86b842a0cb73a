// Bounded staleness while an operator has a region out: a region taken out takes no writes,
// so its silence alone is not staleness, and reads stay with the nearest region within the
// bound. (Its own file: the lag other bounded tests induce would linger in shared storage.)
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { api, heartbeatAll, replica, uniqueKey } from "./helpers.ts";

describe("bounded staleness with a region taken out", () => {
  it("does not count the silence of a region taken out as staleness", async () => {
    const key = uniqueKey("out");
    await api(`/v1/kv/${key}?region=enam&ack=all`, { method: "PUT", body: "v" });
    await heartbeatAll();
    // Every region last heard weur hours ago, with nothing of weur's outstanding: what a
    // region taken out of service (so writing nothing) looks like once its heartbeats stop.
    const longAgo = Date.now() - 4 * 3_600_000;
    for (const region of ["wnam", "enam", "apac"] as const) {
      await runInDurableObject(replica(region), (_i, state) => {
        state.storage.sql.exec(
          "INSERT INTO peer_recv (origin, applied_seq, known_seq, fresh_ms, heard_ms, pending) VALUES ('weur', 0, 0, ?1, ?1, '[]') ON CONFLICT (origin) DO UPDATE SET known_seq = applied_seq, fresh_ms = ?1, heard_ms = ?1, pending = '[]'",
          longAgo,
        );
      });
      await evictDurableObject(replica(region));
    }
    expect((await api(`/v1/admin/regions/weur/health`, { method: "POST", body: '{"healthy":false}' })).status).toBe(
      200,
    );
    try {
      for (const region of ["wnam", "enam", "apac"] as const) {
        const res = await api(`/v1/kv/${key}?region=${region}&consistency=bounded&max_staleness_ms=1000`);
        expect(res.status).toBe(200);
        expect(res.headers.get("x-served-by")).toBe(region);
        expect(Number(res.headers.get("x-replication-lag-ms"))).toBeLessThanOrEqual(1000);
      }
    } finally {
      await api(`/v1/admin/regions/weur/health`, { method: "POST", body: '{"healthy":true}' });
    }
  });
});
