// Black-box replication across the regions of `npm start`: convergence, deletes, listing,
// counters, sets and concurrent register writes with their conflicts logged.
import { describe, expect, it } from "vitest";
import { parseVv } from "../../shared/version-vector.ts";
import { REGIONS, type Region, call, eventually, json, readValue, uniqueKey } from "./client.ts";

function put(key: string, region: Region, body: string): Promise<Response> {
  return call(`/v1/kv/${encodeURIComponent(key)}?region=${region}`, {
    method: "PUT",
    body,
    headers: { "Content-Type": "text/plain" },
  });
}

describe("replication", () => {
  it("makes a write in one region visible in every region", async () => {
    for (const origin of REGIONS) {
      const key = uniqueKey(`spread-${origin}`);
      expect((await put(key, origin, `from ${origin}`)).status).toBe(200);
      for (const region of REGIONS) {
        await eventually(async () => expect((await readValue(key, region))?.text).toBe(`from ${origin}`));
      }
    }
  });

  it("replicates deletes as tombstones: 404 everywhere", async () => {
    const key = uniqueKey("delete");
    await put(key, "weur", "soon gone");
    for (const region of REGIONS) await eventually(async () => expect(await readValue(key, region)).not.toBeNull());
    expect((await call(`/v1/kv/${encodeURIComponent(key)}?region=apac`, { method: "DELETE" })).status).toBe(200);
    for (const region of REGIONS) await eventually(async () => expect(await readValue(key, region)).toBeNull());
  });

  it("lists replicated keys page by page in another region", async () => {
    const prefix = `${uniqueKey("list")}/`;
    const names = Array.from({ length: 25 }, (_, i) => `${prefix}${String(i).padStart(3, "0")}`);
    await Promise.all(names.map((name, i) => put(name, REGIONS[i % REGIONS.length] as Region, "v")));
    await eventually(async () => {
      const seen: string[] = [];
      let cursor: string | null = null;
      for (let page = 0; page < 20; page += 1) {
        const q = new URLSearchParams({ prefix, limit: "10", region: "wnam", ...(cursor ? { cursor } : {}) });
        const body: { keys: Array<{ name: string }>; cursor: string | null } = await json(`/v1/kv?${q}`);
        seen.push(...body.keys.map((k) => k.name));
        cursor = body.cursor;
        if (cursor === null) break;
      }
      expect(seen).toEqual(names);
    });
  });

  it("converges counters exactly under concurrent updates from every region", async () => {
    const key = uniqueKey("counter");
    const deltas = Array.from({ length: 80 }, (_, i) => ((i * 7919) % 23) - 11);
    await Promise.all(
      deltas.map((delta, i) =>
        json(`/v1/counters/${encodeURIComponent(key)}?region=${REGIONS[i % REGIONS.length]}`, {
          method: "POST",
          body: JSON.stringify({ delta }),
        }),
      ),
    );
    const expected = deltas.reduce((a, b) => a + b, 0);
    for (const region of REGIONS) {
      await eventually(async () =>
        expect(await json(`/v1/counters/${encodeURIComponent(key)}?region=${region}`)).toEqual({
          key,
          value: expected,
        }),
      );
    }
  });

  it("converges sets under concurrent adds and removes, with add winning over a concurrent remove", async () => {
    const key = uniqueKey("set");
    const path = (region: Region) => `/v1/sets/${encodeURIComponent(key)}?region=${region}`;
    await json(path("enam"), { method: "POST", body: JSON.stringify({ add: ["shared"] }) });
    for (const region of REGIONS)
      await eventually(async () =>
        expect((await json<{ members: string[] }>(path(region))).members).toContain("shared"),
      );
    // Every region adds its own elements and removes one of them; meanwhile weur removes
    // "shared" while apac concurrently re-adds it.
    await Promise.all([
      ...REGIONS.map(async (region) => {
        await json(path(region), {
          method: "POST",
          body: JSON.stringify({ add: [`${region}-1`, `${region}-2`, `${region}-3`] }),
        });
        await json(path(region), { method: "POST", body: JSON.stringify({ remove: [`${region}-2`] }) });
      }),
      json(path("weur"), { method: "POST", body: JSON.stringify({ remove: ["shared"] }) }),
      json(path("apac"), { method: "POST", body: JSON.stringify({ add: ["shared"] }) }),
    ]);
    const expected = ["shared", ...REGIONS.flatMap((r) => [`${r}-1`, `${r}-3`])].sort();
    for (const region of REGIONS) {
      await eventually(async () => expect((await json<{ members: string[] }>(path(region))).members).toEqual(expected));
    }
  });

  it("converges concurrent register writes to one winner everywhere and logs every concurrent loser", async () => {
    // Writes issued at once may still be causally ordered (a region can receive another's
    // write before handling its own request), so the set of writes that must be logged is
    // computed from the versions the writes answered: a write that no other write saw is
    // "maximal"; every maximal write but the winner is a conflict LWW resolved.
    let attempt: { key: string; maximal: string[] } | undefined;
    for (let round = 0; round < 5 && attempt === undefined; round += 1) {
      const key = uniqueKey("race");
      const writes = await Promise.all(
        REGIONS.map(async (region) => {
          const res = await put(key, region, `value from ${region}`);
          const body = (await res.json()) as { version: string };
          const vv = parseVv(body.version);
          if (vv === undefined) throw new Error(`bad version ${body.version}`);
          return { region, value: `value from ${region}`, vv, dot: vv[region] ?? 0 };
        }),
      );
      const maximal = writes
        .filter((w) => !writes.some((o) => o !== w && (o.vv[w.region] ?? 0) >= w.dot))
        .map((w) => w.value);
      if (maximal.length >= 2) attempt = { key, maximal };
    }
    expect(attempt, "no round produced concurrent writes").toBeDefined();
    const { key, maximal } = attempt!;
    const final = await eventually(async () => {
      const reads = await Promise.all(REGIONS.map((region) => readValue(key, region)));
      expect(new Set(reads.map((r) => r?.text)).size).toBe(1);
      expect(new Set(reads.map((r) => r?.etag)).size).toBe(1);
      return reads[0]!;
    });
    expect(maximal).toContain(final.text);
    const losers = maximal.filter((v) => v !== final.text);
    await eventually(async () => {
      const logged = new Set<string>();
      for (const region of REGIONS) {
        const body: {
          conflicts: Array<{
            key: string;
            rule: string;
            winner: { valueBase64url: string };
            loser: { valueBase64url: string };
          }>;
        } = await json(`/v1/conflicts?region=${region}&limit=1000`);
        for (const c of body.conflicts.filter((entry) => entry.key === key)) {
          expect(["hlc", "region_tiebreak"]).toContain(c.rule);
          logged.add(Buffer.from(c.loser.valueBase64url, "base64url").toString());
        }
      }
      for (const loser of losers) expect(logged).toContain(loser);
    });
  });
});
