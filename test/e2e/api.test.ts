// Black-box API behaviour: auth, bad input answered with its code and nothing lost, and the
// operational views (regions with lag, Prometheus metrics), and values that carry metadata and expire.
import { describe, expect, it } from "vitest";
import { READ_TOKEN, REGIONS, call, eventually, json, readValue, uniqueKey } from "./client.ts";

describe("health and auth", () => {
  it("serves /healthz without a token", async () => {
    expect(await json("/healthz", { token: null })).toEqual({ status: "ok", regions: [...REGIONS] });
  });

  it("requires a token with enough scope", async () => {
    const missing = await call("/v1/kv/x", { token: null });
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect((await call("/v1/kv/x", { token: "wrong" })).status).toBe(401);
    expect((await call("/v1/kv/x", { method: "PUT", body: "x", token: READ_TOKEN })).status).toBe(403);
    expect((await call("/metrics", { token: null })).status).toBe(401);
  });
});

describe("bad input loses nothing", () => {
  it("answers each bad request with its code while the stored value stays intact everywhere", async () => {
    const key = uniqueKey("guarded");
    const path = `/v1/kv/${encodeURIComponent(key)}`;
    expect((await call(`${path}?region=enam`, { method: "PUT", body: "precious" })).status).toBe(200);
    for (const region of REGIONS)
      await eventually(async () => expect((await readValue(key, region))?.text).toBe("precious"));

    const cases: Array<[string, RequestInit, number, string]> = [
      [`${path}?region=nowhere`, { method: "PUT", body: "x" }, 400, "unknown_region"],
      [`${path}?region=enam`, { method: "PUT", body: new Uint8Array(1024 * 1024 + 1) }, 413, "value_too_large"],
      [`${path}?region=enam&ack=sometimes`, { method: "PUT", body: "x" }, 400, "invalid_ack"],
      [`/v1/kv/${"x".repeat(600)}`, { method: "PUT", body: "x" }, 400, "invalid_key"],
      [`/v1/counters/${encodeURIComponent(key)}`, { method: "POST", body: '{"delta":1}' }, 409, "type_mismatch"],
      [
        `/v1/counters/${encodeURIComponent(uniqueKey("c"))}`,
        { method: "POST", body: '{"delta":0.5}' },
        400,
        "invalid_body",
      ],
      [`/v1/counters/${encodeURIComponent(uniqueKey("c"))}`, { method: "POST", body: "not json" }, 400, "invalid_body"],
      [`/v1/sets/${encodeURIComponent(uniqueKey("s"))}`, { method: "POST", body: '{"add":"a"}' }, 400, "invalid_body"],
      ["/v1/kv?limit=5000", {}, 400, "invalid_query"],
      ["/v1/kv?cursor=%%%", {}, 400, "invalid_cursor"],
      [`/v1/kv/${encodeURIComponent(uniqueKey("missing"))}`, {}, 404, "not_found"],
    ];
    for (const [url, init, status, code] of cases) {
      const res = await call(url, init);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect({ url, status: res.status, code: body.error.code }).toEqual({ url, status, code });
      expect(body.error.message.length).toBeGreaterThan(10);
    }
    for (const region of REGIONS) expect((await readValue(key, region))?.text).toBe("precious");
  });
});

describe("operations views", () => {
  it("reports every region healthy with lag per peer, caught up when idle, and each peer's delay", async () => {
    type Lag = { entries: number; ms: number; delay?: { p50Ms: number; p99Ms: number; samples: number } };
    const regions = async (): Promise<Array<{ id: string; healthy: boolean; lag: Record<string, Lag> }>> =>
      (
        await json<{ regions: Array<{ id: string; healthy: boolean; lag: Record<string, Lag> }> }>("/v1/regions", {
          token: READ_TOKEN,
        })
      ).regions;
    // A write in every region, seen everywhere: every pair has a delay figure.
    for (const origin of REGIONS)
      expect(
        (await call(`/v1/kv/${uniqueKey("delay")}?region=${origin}&ack=all`, { method: "PUT", body: "d" })).status,
      ).toBe(200);
    await eventually(
      async () => {
        const body = await regions();
        expect(body.map((r) => r.id)).toEqual([...REGIONS]);
        for (const region of body) {
          expect(region.healthy).toBe(true);
          for (const peer of REGIONS.filter((r) => r !== region.id)) {
            const { delay, ...now } = region.lag[peer] as Lag;
            expect(now).toEqual({ entries: 0, ms: 0 });
            expect(delay?.samples).toBeGreaterThan(0);
            expect(delay?.p50Ms).toBeGreaterThanOrEqual(0);
            expect(delay?.p99Ms).toBeGreaterThanOrEqual(delay?.p50Ms ?? Number.POSITIVE_INFINITY);
          }
        }
      },
      20_000,
      250,
    );
  });

  it("exposes Prometheus metrics with replication traffic", async () => {
    const key = uniqueKey("metrics");
    await call(`/v1/kv/${encodeURIComponent(key)}?region=wnam`, { method: "PUT", body: "x" });
    await eventually(async () => {
      const text = await (await call("/metrics", { token: READ_TOKEN })).text();
      expect(text).toMatch(/replication_messages_total\{region="enam",shard="\d+",peer="wnam"\} [1-9]/);
      expect(text).toMatch(/replication_bytes_total\{region="enam",shard="\d+",peer="wnam",kind="stream"\} [1-9]/);
      expect(text).toContain("# TYPE replication_lag_seconds gauge");
      expect(text).toContain("# TYPE replication_delay_seconds summary");
      expect(text).toMatch(/replication_delay_seconds\{region="enam",shard="\d+",peer="wnam",quantile="0\.99"\} \d/);
      expect(text).toMatch(/replication_delay_seconds_count\{region="enam",shard="\d+",peer="wnam"\} [1-9]/);
      expect(text).toContain("# TYPE replication_errors_total counter");
      expect(text).toContain("http_request_duration_seconds_bucket");
    });
  });
});

describe("metadata and expiration", () => {
  it("replicate with the value to every region, which all stop serving it once it expires", async () => {
    const key = uniqueKey("extras");
    const put = await call(`/v1/kv/${key}?region=weur&expiration_ttl=8`, {
      method: "PUT",
      body: "soon gone",
      headers: { "X-KV-Metadata": '{"owner":"e2e"}' },
    });
    expect(put.status).toBe(200);
    const expiration = Math.floor(Date.now() / 1000) + 8;
    // Every region shows it with its extras, and lists it with them, until it expires.
    for (const region of REGIONS) {
      const res = await eventually(async () => {
        const answer = await call(`/v1/kv/${key}?region=${region}`);
        expect(answer.status).toBe(200);
        return answer;
      });
      expect(JSON.parse(res.headers.get("x-kv-metadata") ?? "null")).toEqual({ owner: "e2e" });
      expect(Math.abs(Number(res.headers.get("x-kv-expiration")) - expiration)).toBeLessThanOrEqual(1);
    }
    const listed = await json<{ keys: Array<{ name: string; metadata?: unknown; expiration?: number }> }>(
      `/v1/kv?prefix=${encodeURIComponent(key)}&region=apac`,
    );
    expect(listed.keys).toMatchObject([{ name: key, metadata: { owner: "e2e" } }]);
    // Then 404 everywhere, and gone from listings.
    for (const region of REGIONS)
      await eventually(async () => expect((await call(`/v1/kv/${key}?region=${region}`)).status).toBe(404), 20_000);
    const after = await json<{ keys: unknown[] }>(`/v1/kv?prefix=${encodeURIComponent(key)}&region=wnam`);
    expect(after.keys).toEqual([]);
  });
});
