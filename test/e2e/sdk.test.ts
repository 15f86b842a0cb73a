// The typed client and GeoKVNamespace against the store as `npm start` runs it: a session that
// writes in one region and reads in another with no token handling here, typed answers and
// errors, and the Workers KV conformance suite.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { GeoKVError, GeoKVNamespace, createClient } from "../../client/index.ts";
import { kvConformance } from "../kv-conformance.ts";
import { ADMIN_TOKEN, READ_TOKEN, uniqueKey } from "./client.ts";
import { type RunningStore, startStore } from "./store.ts";

const url = () => inject("baseUrl");

describe("a session across regions", () => {
  // A store of its own whose replication is slow (no direct pushes, queue messages held 3 s), so
  // a read in another region right after a write finds it only through the session.
  let store: RunningStore | undefined;
  let dir: string | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "kv-e2e-sdk-"));
    store = await startStore({ DIRECT_PUSH: "off", REPLICATION_DELAY_SECONDS: "3" }, dir);
  }, 120_000);
  afterAll(async () => {
    await store?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("reads its own writes in another region, with no token handling in the caller", async () => {
    const kv = createClient({ url: store!.baseUrl, token: ADMIN_TOKEN });
    const stranger = createClient({ url: store!.baseUrl, token: ADMIN_TOKEN, consistency: "eventual" });
    let strangerMissed = 0;
    for (let i = 0; i < 10; i += 1) {
      const key = uniqueKey(`sdk-session-${i}`);
      const written = await kv.put(key, `value ${i}`, { region: "wnam", metadata: { i } });
      expect(written.region).toBe("wnam");
      if ((await stranger.get(key, { region: "apac" })) === null) strangerMissed += 1;
      const read = await kv.get(key, { region: "apac" });
      expect(read?.text()).toBe(`value ${i}`);
      expect(read?.metadata).toEqual({ i });
      expect(read?.region).toBe("apac");
      expect(read?.version).toBe(written.version);
      // A delete is seen at once, elsewhere again.
      await kv.delete(key, { region: "enam" });
      expect(await kv.get(key, { region: "weur" })).toBeNull();
    }
    // Replication really was behind: a client without the session missed the writes.
    expect(strangerMissed).toBeGreaterThan(0);
    const counter = uniqueKey("sdk-counter");
    await kv.addToCounter(counter, 5, { region: "enam" });
    await kv.addToCounter(counter, -2, { region: "apac" });
    expect(await kv.getCounter(counter, { region: "weur" })).toBe(3);
    const set = uniqueKey("sdk-set");
    await kv.updateSet(set, { add: ["a", "b"] }, { region: "weur" });
    await kv.updateSet(set, { remove: ["a"] }, { region: "wnam" });
    expect(await kv.getSet(set, { region: "enam" })).toEqual(["b"]);
  });
});

describe("createClient over npm start", () => {
  it("answers typed listings and views, and throws typed errors", async () => {
    const kv = createClient({ url: url(), token: ADMIN_TOKEN, ack: "all" });
    const prefix = uniqueKey("sdk-list") + "/";
    await kv.put(prefix + "b", "2", { expirationTtl: 3600 });
    await kv.put(prefix + "a", "1");
    const page = await kv.list({ prefix, limit: 1 });
    expect(page.keys.map((k) => k.name)).toEqual([prefix + "a"]);
    expect(page.cursor).not.toBeNull();
    const rest = await kv.list({ prefix, cursor: page.cursor });
    expect(rest.keys[0]?.expiration).toBeGreaterThan(Date.now() / 1000);
    const regions = await kv.call("regions", {});
    expect(regions.regions.map((r) => r.id).sort()).toEqual(["apac", "enam", "weur", "wnam"]);
    const digest = await kv.call("regionDigest", { params: { id: "wnam" } });
    expect(typeof digest.root).toBe("string");

    const reader = createClient({ url: url(), token: READ_TOKEN });
    const refused = await reader.put(prefix + "c", "x").catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(GeoKVError);
    expect(refused).toMatchObject({ code: "forbidden", status: 403 });
    await expect(kv.put(prefix + "d", "x", { expiration: 5 })).rejects.toMatchObject({
      code: "invalid_query",
      status: 400,
    });
    await expect(kv.put(prefix + "a", "x", { ifNotExists: true })).rejects.toMatchObject({
      code: "precondition_failed",
      status: 412,
    });
    const unreachable = createClient({ url: "http://127.0.0.1:9", token: ADMIN_TOKEN, retries: 1, retryBaseMs: 1 });
    await expect(unreachable.get("x")).rejects.toMatchObject({ code: "network_error", status: 0 });
  });
});

kvConformance("GeoKVNamespace over npm start", () => new GeoKVNamespace({ url: url(), token: ADMIN_TOKEN }));
