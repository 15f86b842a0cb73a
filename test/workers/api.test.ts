// The REST API through the router Worker: every answer shape and every error code.
import { describe, expect, it } from "vitest";
import { hlcNow, hlcZero } from "../../shared/hlc.ts";
import { applyKeyOp } from "../../shared/store/key-state.ts";
import { ADMIN, READER, WRITER, api, entries, heartbeatAll, replica, stateOf, uniqueKey } from "./helpers.ts";

async function errorOf(res: Response): Promise<{ status: number; code: string; message: string }> {
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(typeof body.error.message).toBe("string");
  expect(body.error.message.length).toBeGreaterThan(0);
  return { status: res.status, code: body.error.code, message: body.error.message };
}

describe("health and auth", () => {
  it("serves /healthz without a token", async () => {
    const res = await api("/healthz", { token: null });
    expect(await res.json()).toEqual({ status: "ok", regions: ["wnam", "enam", "weur", "apac"] });
  });

  it("answers 401 with WWW-Authenticate for a missing or unknown token", async () => {
    for (const token of [null, "nope"]) {
      const res = await api("/v1/kv/x", { token });
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
      expect(await errorOf(res)).toMatchObject({ status: 401, code: "unauthorized" });
    }
    expect((await api("/metrics", { token: null })).status).toBe(401);
  });

  it("answers 403 when the scope is too low, and lets write imply read", async () => {
    const key = uniqueKey("scope");
    expect(await errorOf(await api(`/v1/kv/${key}`, { method: "PUT", body: "x", token: READER }))).toMatchObject({
      status: 403,
      code: "forbidden",
    });
    expect((await api(`/v1/kv/${key}`, { method: "PUT", body: "x", token: WRITER })).status).toBe(200);
    expect((await api(`/v1/kv/${key}`, { token: WRITER })).status).toBe(200);
    expect((await api(`/v1/kv/${key}`, { token: READER })).status).toBe(200);
    expect(
      await errorOf(await api("/v1/admin/regions/enam/dead-letters/replay", { method: "POST", token: WRITER })),
    ).toMatchObject({ status: 403 });
  });
});

describe("key-value", () => {
  it("stores any bytes with their content type and answers the write's metadata", async () => {
    const key = uniqueKey("bytes");
    const value = new Uint8Array([0, 255, 1, 254, 13, 10]);
    const put = await api(`/v1/kv/${key}?region=weur`, {
      method: "PUT",
      body: value,
      headers: { "Content-Type": "application/x-thing" },
    });
    expect(put.status).toBe(200);
    const body = (await put.json()) as { key: string; region: string; version: string; acked: string[] };
    expect(body).toMatchObject({ key, region: "weur", acked: ["weur"] });
    expect(put.headers.get("etag")).toBe(`"${body.version}"`);
    expect(put.headers.get("x-served-by")).toBe("weur");
    expect(put.headers.get("x-session-token")).toMatch(/^s3\./);
    // Once every region has heard every other, each has a lag figure.
    await heartbeatAll();
    const get = await api(`/v1/kv/${key}?region=weur`);
    expect(get.status).toBe(200);
    expect(get.headers.get("content-type")).toBe("application/x-thing");
    expect(get.headers.get("etag")).toBe(`"${body.version}"`);
    expect(get.headers.get("x-served-by")).toBe("weur");
    // Present, a whole number of milliseconds, and no absurd figure (never measured from 1970).
    const lag = get.headers.get("x-replication-lag-ms");
    expect(lag).toMatch(/^\d+$/);
    expect(Number(lag)).toBeLessThan(3_600_000);
    expect(new Uint8Array(await get.arrayBuffer())).toEqual(value);
  });

  it("accepts keys with slashes, spaces and non-ASCII, percent-encoded", async () => {
    const key = `${uniqueKey("odd")}/a b/ключ/🔑`;
    const path = `/v1/kv/${encodeURIComponent(key)}?region=enam`;
    expect((await api(path, { method: "PUT", body: "v" })).status).toBe(200);
    expect(await (await api(path)).text()).toBe("v");
  });

  it("deletes with a tombstone: 404 afterwards, and a re-write brings it back", async () => {
    const key = uniqueKey("delete");
    await api(`/v1/kv/${key}?region=enam`, { method: "PUT", body: "1" });
    const del = await api(`/v1/kv/${key}?region=enam`, { method: "DELETE" });
    expect(del.status).toBe(200);
    const deleted = (await del.json()) as { version: string };
    expect(deleted).toMatchObject({ key, region: "enam", acked: ["enam"] });
    const gone = await api(`/v1/kv/${key}?region=enam`);
    // The 404 names the delete's version (and the region that answered).
    expect(gone.headers.get("ETag")).toBe(`"${deleted.version}"`);
    expect(gone.headers.get("X-Served-By")).toBe("enam");
    expect(await errorOf(gone)).toMatchObject({ status: 404, code: "not_found" });
    const never = await api(`/v1/kv/${uniqueKey("never")}?region=enam`);
    expect(never.headers.get("ETag")).toBeNull();
    expect(never.status).toBe(404);
    await api(`/v1/kv/${key}?region=enam`, { method: "PUT", body: "2" });
    expect(await (await api(`/v1/kv/${key}?region=enam`)).text()).toBe("2");
  });

  it("refuses bad keys, unknown regions and oversized values, keeping what was stored", async () => {
    const key = uniqueKey("guard");
    await api(`/v1/kv/${key}?region=enam`, { method: "PUT", body: "kept" });
    expect(await errorOf(await api(`/v1/kv/${"k".repeat(513)}`, { method: "PUT", body: "x" }))).toMatchObject({
      status: 400,
      code: "invalid_key",
    });
    expect(await errorOf(await api("/v1/kv/%E0%A4%A", { method: "PUT", body: "x" }))).toMatchObject({
      status: 400,
      code: "invalid_key",
    });
    expect(await errorOf(await api(`/v1/kv/${key}?region=mars`, { method: "PUT", body: "x" }))).toMatchObject({
      status: 400,
      code: "unknown_region",
    });
    expect(await errorOf(await api(`/v1/kv/${key}?region=sam`))).toMatchObject({ status: 400, code: "unknown_region" });
    const big = new Uint8Array(1024 * 1024 + 1);
    expect(await errorOf(await api(`/v1/kv/${key}?region=enam`, { method: "PUT", body: big }))).toMatchObject({
      status: 413,
      code: "value_too_large",
    });
    expect((await api(`/v1/kv/${key}?region=enam`, { method: "PUT", body: new Uint8Array(1024 * 1024) })).status).toBe(
      200,
    );
    expect(await errorOf(await api(`/v1/kv/${key}?ack=bogus`, { method: "PUT", body: "x" }))).toMatchObject({
      status: 400,
      code: "invalid_ack",
    });
    expect((await (await api(`/v1/kv/${key}?region=enam`)).arrayBuffer()).byteLength).toBe(1024 * 1024);
  });

  it("answers 512-byte keys and refuses 513", async () => {
    const exact = "é".repeat(256); // 512 bytes of UTF-8
    expect((await api(`/v1/kv/${encodeURIComponent(exact)}`, { method: "PUT", body: "x" })).status).toBe(200);
    expect((await api(`/v1/kv/${encodeURIComponent(`${exact}a`)}`, { method: "PUT", body: "x" })).status).toBe(400);
  });

  it("lists by prefix in pages with a cursor, skipping deleted keys", async () => {
    const prefix = `${uniqueKey("list")}/`;
    const names = Array.from({ length: 7 }, (_, i) => `${prefix}${String(i).padStart(2, "0")}`);
    for (const name of names) await api(`/v1/kv/${name}?region=apac`, { method: "PUT", body: "v" });
    await api(`/v1/kv/${names[3]}?region=apac`, { method: "DELETE" });
    await api(`/v1/kv/${prefix.slice(0, -1)}x?region=apac`, { method: "PUT", body: "outside" });
    // Counters and sets are listed too, by name and version only.
    await api(`/v1/counters/${prefix}c?region=apac`, { method: "POST", body: '{"delta":1}' });
    await api(`/v1/sets/${prefix}s?region=apac`, { method: "POST", body: '{"add":["m"]}' });
    const seen: Array<{ name: string; version: string }> = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10; page += 1) {
      const q = new URLSearchParams({ prefix, limit: "2", region: "apac", ...(cursor ? { cursor } : {}) });
      const res = await api(`/v1/kv?${q}`);
      const body = (await res.json()) as { keys: Array<{ name: string; version: string }>; cursor: string | null };
      expect(body.keys.length).toBeLessThanOrEqual(2);
      for (const k of body.keys) expect(k.version).toMatch(/^[A-Za-z0-9_-]+$/);
      seen.push(...body.keys);
      cursor = body.cursor;
      if (cursor === null) break;
    }
    expect(seen.map((k) => k.name)).toEqual([...names.filter((_, i) => i !== 3), `${prefix}c`, `${prefix}s`]);
    expect(Object.keys(seen.at(-1)!).sort()).toEqual(["name", "version"]);
  });

  it("validates listing parameters", async () => {
    expect(await errorOf(await api("/v1/kv?limit=0"))).toMatchObject({ status: 400, code: "invalid_query" });
    expect(await errorOf(await api("/v1/kv?limit=1001"))).toMatchObject({ status: 400, code: "invalid_query" });
    expect(await errorOf(await api("/v1/kv?limit=abc"))).toMatchObject({ status: 400, code: "invalid_query" });
    expect(await errorOf(await api("/v1/kv?cursor=!!!"))).toMatchObject({ status: 400, code: "invalid_cursor" });
  });

  it("reports a listing's lag like every read, and refuses a consistency it cannot give", async () => {
    await heartbeatAll();
    const res = await api("/v1/kv?region=weur&consistency=eventual");
    expect(res.status).toBe(200);
    expect(res.headers.get("x-served-by")).toBe("weur");
    expect(res.headers.get("x-replication-lag-ms")).toMatch(/^\d+$/);
    for (const asked of ["session", "quorum", "strong", "bogus"]) {
      expect(await errorOf(await api(`/v1/kv?consistency=${asked}`))).toMatchObject({
        status: 400,
        code: "invalid_consistency",
      });
    }
  });
});

describe("counters and sets", () => {
  it("adds to a PN-counter and reads it back", async () => {
    const key = uniqueKey("counter");
    const post = (delta: unknown) =>
      api(`/v1/counters/${key}?region=enam`, { method: "POST", body: JSON.stringify({ delta }) });
    expect(await (await post(5)).json()).toMatchObject({ key, value: 5, region: "enam" });
    expect(await (await post(-7)).json()).toMatchObject({ value: -2 });
    expect(await (await api(`/v1/counters/${key}?region=enam`)).json()).toEqual({ key, value: -2 });
  });

  it("refuses bad counter bodies and overflow", async () => {
    const key = uniqueKey("counter-bad");
    const post = (body: string) => api(`/v1/counters/${key}?region=enam`, { method: "POST", body });
    for (const body of [
      "{",
      "[]",
      '{"delta":"1"}',
      '{"delta":1.5}',
      `{"delta":${2 ** 53}}`,
      '{"delta":1,"x":2}',
      "{}",
    ]) {
      expect(await errorOf(await post(body))).toMatchObject({ status: 400, code: "invalid_body" });
    }
    expect((await post(`{"delta":${Number.MAX_SAFE_INTEGER}}`)).status).toBe(200);
    expect(await errorOf(await post('{"delta":1}'))).toMatchObject({ status: 409, code: "counter_overflow" });
    expect(await (await api(`/v1/counters/${key}?region=enam`)).json()).toEqual({
      key,
      value: Number.MAX_SAFE_INTEGER,
    });
  });

  it("adds and removes set members (add wins within one request)", async () => {
    const key = uniqueKey("set");
    const post = (body: unknown) => api(`/v1/sets/${key}?region=weur`, { method: "POST", body: JSON.stringify(body) });
    expect(await (await post({ add: ["b", "a", "c"] })).json()).toMatchObject({ key, members: ["a", "b", "c"] });
    expect(await (await post({ remove: ["b", "zzz"] })).json()).toMatchObject({ members: ["a", "c"] });
    expect(await (await post({ add: ["d"], remove: ["d"] })).json()).toMatchObject({ members: ["a", "c", "d"] });
    expect(await (await api(`/v1/sets/${key}?region=weur`)).json()).toEqual({ key, members: ["a", "c", "d"] });
    expect(await errorOf(await post({ add: [1] }))).toMatchObject({ status: 400, code: "invalid_body" });
    expect(await errorOf(await post({ add: [""] }))).toMatchObject({ status: 400, code: "invalid_body" });
  });

  it("keeps one type per key: 409 type_mismatch across types", async () => {
    const key = uniqueKey("typed");
    await api(`/v1/counters/${key}?region=enam`, { method: "POST", body: '{"delta":1}' });
    expect(await errorOf(await api(`/v1/kv/${key}?region=enam`, { method: "PUT", body: "x" }))).toMatchObject({
      status: 409,
      code: "type_mismatch",
    });
    expect(await errorOf(await api(`/v1/kv/${key}?region=enam`))).toMatchObject({ status: 409, code: "type_mismatch" });
    expect(
      await errorOf(await api(`/v1/sets/${key}?region=enam`, { method: "POST", body: '{"add":["a"]}' })),
    ).toMatchObject({ status: 409, code: "type_mismatch" });
    expect(await (await api(`/v1/counters/${key}?region=enam`)).json()).toEqual({ key, value: 1 });
    const reg = uniqueKey("typed-reg");
    await api(`/v1/kv/${reg}?region=enam`, { method: "PUT", body: "x" });
    await api(`/v1/kv/${reg}?region=enam`, { method: "DELETE" });
    // A deleted register keeps its type (its tombstone must keep winning over older writes).
    expect(
      await errorOf(await api(`/v1/counters/${reg}?region=enam`, { method: "POST", body: '{"delta":1}' })),
    ).toMatchObject({ status: 409, code: "type_mismatch" });
  });

  it("does not fix a type when deleting a key that was never written", async () => {
    const counter = uniqueKey("never-counter");
    const set = uniqueKey("never-set");
    for (const key of [counter, set]) {
      const res = await api(`/v1/kv/${key}?region=enam&ack=all`, { method: "DELETE" });
      expect(res.status).toBe(200);
      expect(res.headers.get("etag")).toBeNull();
      expect(await res.json()).toEqual({ key, region: "enam", version: null, acked: ["enam"] });
      // Nothing was written: no region holds a state of the key.
      for (const region of ["wnam", "enam", "weur", "apac"] as const) expect(await stateOf(region, key)).toBeNull();
    }
    expect((await api(`/v1/counters/${counter}?region=enam`, { method: "POST", body: '{"delta":2}' })).status).toBe(
      200,
    );
    expect(await (await api(`/v1/counters/${counter}?region=enam`)).json()).toEqual({ key: counter, value: 2 });
    expect((await api(`/v1/sets/${set}?region=enam`, { method: "POST", body: '{"add":["a"]}' })).status).toBe(200);
    // A delete with If-Match still needs the key.
    expect(
      await errorOf(await api(`/v1/kv/${uniqueKey("never")}`, { method: "DELETE", headers: { "if-match": "*" } })),
    ).toMatchObject({ status: 412, code: "precondition_failed" });
  });

  it("answers 404 for counters and sets never written", async () => {
    expect(await errorOf(await api(`/v1/counters/${uniqueKey("none")}`))).toMatchObject({
      status: 404,
      code: "not_found",
    });
    expect(await errorOf(await api(`/v1/sets/${uniqueKey("none")}`))).toMatchObject({ status: 404, code: "not_found" });
  });
});

/** weur's region_up per shard and its region_taken_out, as /metrics shows them. */
async function weurUp(): Promise<{ up: string[]; out: string | undefined }> {
  const text = await (await api("/metrics")).text();
  return {
    up: [...text.matchAll(/^region_up\{region="weur",shard="\d+"\} (\d)$/gm)].map((m) => m[1] ?? ""),
    out: /^region_taken_out\{region="weur"\} (\d)$/m.exec(text)?.[1],
  };
}

async function near(latitude: string, longitude: string): Promise<{ closest: string }> {
  const res = await api("/v1/regions", { cf: { latitude, longitude } } as RequestInit);
  return (await res.json()) as { closest: string };
}

describe("observability", () => {
  it("lists regions with location, health and lag per peer", async () => {
    const res = await api("/v1/regions", { token: READER });
    const body = (await res.json()) as {
      regions: Array<{
        id: string;
        location: { lat: number; lon: number };
        healthy: boolean;
        lag: Record<string, { entries: number; ms: number }>;
      }>;
      closest: string;
    };
    expect(body.regions.map((r) => r.id)).toEqual(["wnam", "enam", "weur", "apac"]);
    expect(body.closest).toBe("enam");
    for (const region of body.regions) {
      expect(region.healthy).toBe(true);
      expect(Object.keys(region.lag).sort()).toEqual(
        body.regions
          .map((r) => r.id)
          .filter((id) => id !== region.id)
          .sort(),
      );
    }
  });

  it("picks the region nearest to the client's coordinates", async () => {
    expect((await near("48.85", "2.35")).closest).toBe("weur"); // Paris
    expect((await near("35.68", "139.69")).closest).toBe("apac"); // Tokyo
    expect((await near("34.05", "-118.24")).closest).toBe("wnam"); // Los Angeles
  });

  it("serves Prometheus metrics with replication series and latency histograms", async () => {
    await api(`/v1/kv/${uniqueKey("m")}`, { method: "PUT", body: "x" });
    await heartbeatAll();
    const res = await api("/metrics", { token: READER });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    for (const name of [
      "replication_lag_seconds",
      "replication_errors_total",
      "replication_bytes_total",
      "replication_messages_total",
      "http_request_duration_seconds_bucket",
    ]) {
      expect(text).toContain(`# TYPE ${name.replace(/_bucket$/, "")}`);
    }
    // Every shard of every region has its series.
    for (const shard of ["0", "1"])
      expect(text).toMatch(new RegExp(`replication_lag_seconds\\{region="wnam",shard="${shard}",peer="enam"\\} \\d`));
    expect(text).toMatch(/http_request_duration_seconds_count\{method="PUT",route="\/v1\/kv\/\*",status="200"\} \d+/);
    // Counters nothing has counted yet are there at zero, for real peers only.
    expect(text).not.toContain('peer=""');
    expect(text).toContain('replication_dead_letters_total{region="wnam",shard="0",peer="enam"} 0');
    expect(text).toContain('bootstraps_total{region="wnam",shard="0",peer="wnam"} 0');
  });

  it("reports a region an admin took out as not up, until it is put back", async () => {
    expect(await weurUp()).toEqual({ up: ["1", "1"], out: "0" });
    await api("/v1/admin/regions/weur/health", { method: "POST", body: '{"healthy":false}' });
    try {
      expect(await weurUp()).toEqual({ up: ["0", "0"], out: "1" });
    } finally {
      await api("/v1/admin/regions/weur/health", { method: "POST", body: '{"healthy":true}' });
    }
    expect(await weurUp()).toEqual({ up: ["1", "1"], out: "0" });
  });

  it("pages through the conflict log and validates its parameters", async () => {
    // Three concurrent writes to one key from three regions reach enam: two conflicts there.
    const key = uniqueKey("conflicts");
    const writes = (["wnam", "weur", "apac"] as const).map((origin, i) => {
      const stamp = hlcNow(hlcZero(origin), 1_700_000_000_000 + i);
      const state = applyKeyOp(
        undefined,
        { type: "register", op: { kind: "put", value: new TextEncoder().encode(origin), contentType: "text/plain" } },
        origin,
        stamp,
      );
      if (!state.ok) throw new Error(state.error.message);
      return entries(origin, "enam", 1_000_000 + i, [{ key, state: state.value, stamp }]);
    });
    expect((await replica("enam", key).applyReplication(writes)).every((r) => r.ok)).toBe(true);
    const seen: Array<{ key: string; kind: string; rule: string; loser: { region: string } }> = [];
    let cursor: string | null = null;
    for (let page = 0; page < 1000; page += 1) {
      const res = await api(`/v1/conflicts?region=enam&limit=1${cursor === null ? "" : `&cursor=${cursor}`}`, {
        token: ADMIN,
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { region: string; conflicts: typeof seen; cursor: string | null };
      expect(body.region).toBe("enam");
      expect(body.conflicts.length).toBeLessThanOrEqual(1);
      seen.push(...body.conflicts);
      cursor = body.cursor;
      if (cursor === null) break;
    }
    const mine = seen.filter((c) => c.key === key);
    expect(mine).toHaveLength(2);
    expect(mine.every((c) => c.kind === "register" && c.rule === "hlc")).toBe(true);
    // The latest stamp (apac's) wins; the other two are the losers, each logged once.
    expect(mine.map((c) => c.loser.region).sort()).toEqual(["weur", "wnam"]);
    expect(await errorOf(await api("/v1/conflicts?limit=0"))).toMatchObject({ status: 400, code: "invalid_query" });
    await heartbeatAll();
    const logged = await api("/v1/conflicts?region=enam&consistency=eventual");
    expect(logged.headers.get("x-replication-lag-ms")).toMatch(/^\d+$/);
    expect(await errorOf(await api("/v1/conflicts?consistency=quorum"))).toMatchObject({
      status: 400,
      code: "invalid_consistency",
    });
    expect(await errorOf(await api("/v1/conflicts?cursor=abc"))).toMatchObject({ status: 400, code: "invalid_query" });
  });

  it("answers 405 with Allow for a method a route does not take", async () => {
    const res = await api(`/v1/kv/${uniqueKey("m")}`, { method: "PATCH", body: "x" });
    expect(res.headers.get("allow")).toBe("GET, HEAD, PUT, DELETE");
    expect(await errorOf(res)).toMatchObject({ status: 405, code: "method_not_allowed" });
    expect(await errorOf(await api(`/v1/counters/x`, { method: "PUT", body: "{}" }))).toMatchObject({ status: 405 });
    // Every path of the API, admin routes too.
    const health = await api("/v1/admin/regions/enam/health");
    expect(health.headers.get("allow")).toBe("POST");
    expect(await errorOf(health)).toMatchObject({ status: 405, code: "method_not_allowed" });
    const regions = await api("/v1/regions", { method: "DELETE" });
    expect(regions.headers.get("allow")).toBe("GET, HEAD");
    expect(await errorOf(regions)).toMatchObject({ status: 405 });
  });

  it("answers HEAD with the headers and Content-Length of the GET, and no body", async () => {
    const key = uniqueKey("head");
    await api(`/v1/kv/${key}?region=enam`, {
      method: "PUT",
      body: "hello, head",
      headers: { "content-type": "text/plain" },
    });
    const get = await api(`/v1/kv/${key}?region=enam`);
    const head = await api(`/v1/kv/${key}?region=enam`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe("11");
    expect(head.headers.get("etag")).toBe(get.headers.get("etag"));
    expect(head.headers.get("content-type")).toBe("text/plain");
    expect(await head.text()).toBe("");
    const listing = await api(`/v1/kv?prefix=${key}`);
    const listed = await api(`/v1/kv?prefix=${key}`, { method: "HEAD" });
    expect(listed.headers.get("content-length")).toBe(String((await listing.arrayBuffer()).byteLength));
    const missing = await api(`/v1/kv/${uniqueKey("head-missing")}`, { method: "HEAD" });
    expect(missing.status).toBe(404);
    expect(Number(missing.headers.get("content-length"))).toBeGreaterThan(0);
  });

  it("answers a URL too long with a JSON 414", async () => {
    const res = await api(`/v1/kv/k?prefix=${"a".repeat(9000)}`);
    expect(await errorOf(res)).toMatchObject({ status: 414, code: "uri_too_long" });
  });

  it("answers unknown routes with a JSON 404", async () => {
    expect(await errorOf(await api("/v2/nothing"))).toMatchObject({ status: 404, code: "not_found" });
  });
});

describe("conditional requests (RFC 9110)", () => {
  it("If-Match: * writes only an existing key; a weak tag never matches; a malformed one is refused", async () => {
    const key = uniqueKey("cond");
    const path = `/v1/kv/${key}?region=enam`;
    const missing = await api(path, { method: "PUT", body: "x", headers: { "If-Match": "*" } });
    expect(missing.status).toBe(412);
    const created = await api(path, { method: "PUT", body: "1" });
    const etag = created.headers.get("etag")!;
    expect((await api(path, { method: "PUT", body: "2", headers: { "If-Match": "*" } })).status).toBe(200);
    const current = (await api(path)).headers.get("etag")!;
    const weak = await api(path, { method: "PUT", body: "3", headers: { "If-Match": `W/${current}` } });
    expect(weak.status).toBe(412);
    expect((await api(path, { method: "PUT", body: "3", headers: { "If-Match": `${etag}, ${current}` } })).status).toBe(
      200,
    );
    for (const bad of ["no-quotes", '"a" "b"']) {
      const res = await api(path, { method: "PUT", body: "4", headers: { "If-Match": bad } });
      expect(res.status).toBe(400);
      expect((await errorOf(res)).code).toBe("invalid_precondition");
    }
    const create = await api(path, { method: "PUT", body: "5", headers: { "If-None-Match": '"x"' } });
    expect((await errorOf(create)).code).toBe("invalid_precondition");
    expect(await (await api(path)).text()).toBe("3");
  });

  it("GET with a matching If-None-Match answers 304 with the ETag and no body", async () => {
    const key = uniqueKey("cond-get");
    const path = `/v1/kv/${key}?region=enam`;
    await api(path, { method: "PUT", body: "v" });
    const etag = (await api(path)).headers.get("etag")!;
    for (const header of [etag, `W/${etag}`, `"other", ${etag}`, "*"]) {
      const res = await api(path, { headers: { "If-None-Match": header } });
      expect([header, res.status, res.headers.get("etag")]).toEqual([header, 304, etag]);
      expect(await res.text()).toBe("");
    }
    expect((await api(path, { headers: { "If-None-Match": '"other"' } })).status).toBe(200);
    const bad = await api(path, { headers: { "If-None-Match": "nope" } });
    expect([bad.status, (await errorOf(bad)).code]).toEqual([400, "invalid_precondition"]);
  });
});
