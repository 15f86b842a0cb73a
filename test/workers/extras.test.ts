// Workers KV's extras through the HTTP API: metadata and expiration are stored with the value,
// replicate with it, come back on reads and listings, and an expired value reads as absent;
// bad values are refused with nothing stored.
import { describe, expect, it, vi } from "vitest";
import { api, heartbeatAll, uniqueKey } from "./helpers.ts";

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

interface Listing {
  keys: Array<{ name: string; version: string; expiration?: number; metadata?: unknown }>;
}

describe("metadata and expiration", () => {
  it("are stored with the value, replicate with it, and come back on reads and listings", async () => {
    const key = uniqueKey("extras");
    const before = Math.floor(Date.now() / 1000);
    const put = await api(`/v1/kv/${key}?region=enam&ack=all&expiration_ttl=3600`, {
      method: "PUT",
      body: "v",
      headers: { "X-KV-Metadata": '{ "owner": "ada", "n": [1, 2] }' },
    });
    expect(put.status).toBe(200);
    // Read in another region: what replicated is what was written.
    const read = await api(`/v1/kv/${key}?region=apac`);
    expect(read.status).toBe(200);
    expect(await read.text()).toBe("v");
    expect(JSON.parse(read.headers.get("x-kv-metadata")!)).toEqual({ owner: "ada", n: [1, 2] });
    const expiration = Number(read.headers.get("x-kv-expiration"));
    expect(expiration).toBeGreaterThanOrEqual(before + 3600);
    expect(expiration).toBeLessThanOrEqual(Math.floor(Date.now() / 1000) + 3600);
    // Every replica new to this file first takes in its peers' data (a tick each), then lists.
    const listing = await vi.waitFor(
      async () => {
        await heartbeatAll();
        const res = await api(`/v1/kv?prefix=${key}&region=apac`);
        expect(res.status).toBe(200);
        return (await res.json()) as Listing;
      },
      { timeout: 10_000, interval: 50 },
    );
    expect(listing.keys).toEqual([
      { name: key, version: expect.any(String), expiration, metadata: { owner: "ada", n: [1, 2] } },
    ]);

    // A later plain write replaces both, as in Workers KV.
    expect((await api(`/v1/kv/${key}?region=enam&ack=all`, { method: "PUT", body: "w" })).status).toBe(200);
    const plain = await api(`/v1/kv/${key}?region=apac`);
    expect([plain.headers.get("x-kv-metadata"), plain.headers.get("x-kv-expiration")]).toEqual([null, null]);
    const relisted = (await (await api(`/v1/kv?prefix=${key}&region=apac`)).json()) as Listing;
    expect(relisted.keys).toEqual([{ name: key, version: expect.any(String) }]);
  });

  it("takes an absolute expiration and metadata beyond ASCII (answered as \\u escapes)", async () => {
    const key = uniqueKey("absolute");
    const at = Math.floor(Date.now() / 1000) + 7200;
    const put = await api(`/v1/kv/${key}?expiration=${at}`, {
      method: "PUT",
      body: "v",
      headers: { "X-KV-Metadata": '{"name":"\\u00e9t\\u00e9 \\ud83d\\udd11"}' },
    });
    expect(put.status).toBe(200);
    const read = await api(`/v1/kv/${key}`);
    expect(read.headers.get("x-kv-expiration")).toBe(String(at));
    const header = read.headers.get("x-kv-metadata")!;
    expect(header).toMatch(/^[\x20-\x7e]+$/);
    expect(JSON.parse(header)).toEqual({ name: "été 🔑" });
  });

  it("reads an expired value as absent, lists it no more, and lets If-None-Match: * create it again", async () => {
    const key = uniqueKey("expiring");
    expect((await api(`/v1/kv/${key}?expiration_ttl=1`, { method: "PUT", body: "v" })).status).toBe(200);
    await vi.waitFor(
      async () => {
        const res = await api(`/v1/kv/${key}`);
        expect(res.status).toBe(404);
        expect(await errorCode(res)).toBe("not_found");
      },
      { timeout: 5000, interval: 100 },
    );
    expect(((await (await api(`/v1/kv?prefix=${key}`)).json()) as Listing).keys).toEqual([]);
    const again = await api(`/v1/kv/${key}`, { method: "PUT", body: "new", headers: { "If-None-Match": "*" } });
    expect(again.status).toBe(200);
    expect(await (await api(`/v1/kv/${key}`)).text()).toBe("new");
  });

  it("refuses bad values with 400 and stores nothing", async () => {
    const now = Math.floor(Date.now() / 1000);
    const cases: Array<{ query: string; metadata?: string; code: string }> = [
      { query: `expiration=${now - 10}`, code: "invalid_query" },
      { query: "expiration=1.5", code: "invalid_query" },
      { query: "expiration=soon", code: "invalid_query" },
      { query: "expiration_ttl=0", code: "invalid_query" },
      { query: "expiration_ttl=-5", code: "invalid_query" },
      { query: `expiration=${now + 100}&expiration_ttl=100`, code: "invalid_query" },
      { query: "", metadata: "{not json", code: "invalid_body" },
      { query: "", metadata: JSON.stringify({ pad: "x".repeat(1020) }), code: "invalid_body" },
    ];
    for (const { query, metadata, code } of cases) {
      const key = uniqueKey("bad");
      const res = await api(`/v1/kv/${key}?${query}`, {
        method: "PUT",
        body: "v",
        headers: metadata === undefined ? {} : { "X-KV-Metadata": metadata },
      });
      expect([query, metadata, res.status, await errorCode(res)]).toEqual([query, metadata, 400, code]);
      expect((await api(`/v1/kv/${key}`)).status).toBe(404);
    }
    // Exactly at the bound is taken.
    const largest = JSON.stringify({ pad: "x".repeat(1024 - '{"pad":""}'.length) });
    const ok = await api(`/v1/kv/${uniqueKey("bound")}`, {
      method: "PUT",
      body: "v",
      headers: { "X-KV-Metadata": largest },
    });
    expect(ok.status).toBe(200);
  });
});
