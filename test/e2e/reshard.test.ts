// Changing SHARDS on a store that holds data, online: a store written with 2 shards per region is
// restarted with 4, then with 2 again, while clients keep writing and reading in every region. Throughout the move no
// key goes missing, a session reads its own writes in another region, counters stay exact; at
// the end the layout is stable at the new count, every region answers every key alike, listings hold every
// live key once, and the regions' digests are equal.
import { afterEach, describe, expect, it } from "vitest";
import { REGIONS, type Region, call, eventually, json, ownStore, uniqueKey } from "./client.ts";

interface Layout {
  shards: { count: number; moving: { from: number; routed: boolean } | null };
}

const own = ownStore("kv-e2e-reshard");

/** Starts the store with `shards` shards per region (on the state it had). */
function start(shards: number): Promise<void> {
  return own.start({ SHARDS: String(shards), ANTI_ENTROPY_INTERVAL_MS: "3000" });
}

const stop = own.stop;

afterEach(() => own.cleanup());

const enc = encodeURIComponent;

/** Every key of a listing under `prefix` in `region`, page by page (small pages, many cursors). */
async function listAll(prefix: string, region: Region): Promise<string[]> {
  const names: string[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 1000; page += 1) {
    const query: string = `prefix=${enc(prefix)}&limit=7&region=${region}${cursor === null ? "" : `&cursor=${enc(cursor)}`}`;
    const body = await json<{ keys: Array<{ name: string }>; cursor: string | null }>(`/v1/kv?${query}`);
    names.push(...body.keys.map((k) => k.name));
    cursor = body.cursor;
    if (cursor === null) break;
  }
  return names;
}

describe("changing SHARDS online", () => {
  it("moves a store from 2 to 4 shards and back to 2 under a write load with nothing lost", async () => {
    await start(2);
    const prefix = uniqueKey("reshard");
    // Before: registers (one deleted), counters, a set and strong keys, acknowledged everywhere.
    const values = new Map<string, string>();
    for (let i = 0; i < 60; i += 1) {
      const key = `${prefix}/k${i}`;
      const region = REGIONS[i % REGIONS.length] as Region;
      await json(`/v1/kv/${enc(key)}?region=${region}&ack=all`, { method: "PUT", body: `before-${i}` });
      values.set(key, `before-${i}`);
    }
    const deleted = `${prefix}/k0`;
    await json(`/v1/kv/${enc(deleted)}?region=weur&ack=all`, { method: "DELETE" });
    values.delete(deleted);
    const counters = Array.from({ length: 4 }, (_, i) => `${prefix}/c${i}`);
    const expected = new Map(counters.map((c) => [c, 0]));
    for (const [i, counter] of counters.entries())
      for (const region of REGIONS) {
        await json(`/v1/counters/${enc(counter)}?region=${region}&ack=all`, {
          method: "POST",
          body: `{"delta":${i + 1}}`,
        });
        expected.set(counter, (expected.get(counter) ?? 0) + i + 1);
      }
    const strong = Array.from({ length: 6 }, (_, i) => `strong/${prefix}/s${i}`);
    for (const key of strong) await json(`/v1/kv/${enc(key)}?ack=quorum`, { method: "PUT", body: `strong-${key}` });
    for (const shards of [4, 2]) {
      // apac out of service holds the move after its routing step: its old shards cannot take
      // the others' writes, so nothing is handed over until it is back, and the clients below
      // (in the other regions) work while every moving key is served by pulls alone.
      await json("/v1/admin/regions/apac/health", { method: "POST", body: '{"healthy":false}' });
      await stop();

      // After: `shards` shards, and clients at work while keys move.
      await start(shards);
      const seenMoving = new Set<string>();
      const problems: string[] = [];
      let writes = 0;
      const until = performance.now() + 10_000;
      const watch = (async () => {
        while (performance.now() < until) {
          const layout = await json<Layout>("/v1/regions");
          if (layout.shards.moving !== null) seenMoving.add(JSON.stringify(layout.shards.moving));
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      })();
      const working: Region[] = ["wnam", "enam", "weur"];
      const worker = async (w: number): Promise<void> => {
        const region = working[w % working.length] as Region;
        const other = working[(w + 1) % working.length] as Region;
        for (let round = 0; performance.now() < until; round += 1) {
          // An overwrite (each worker has keys of its own: 1 + w, 5 + w, ... up to 36), read back in
          // another region with the session token it returned.
          const key = `${prefix}/k${1 + ((round * 4 + w) % 36)}`;
          const value = `w${w}-r${round}`;
          const put = await call(`/v1/kv/${enc(key)}?region=${region}`, { method: "PUT", body: value });
          if (put.status !== 200) {
            problems.push(`PUT ${key} in ${region}: ${put.status} ${await put.text()}`);
            continue;
          }
          writes += 1;
          values.set(key, value);
          const token = put.headers.get("x-session-token") ?? "";
          const read = await call(`/v1/kv/${enc(key)}?region=${other}&consistency=session`, {
            headers: { "X-Session-Token": token },
          });
          const text = await read.text();
          if (read.status !== 200 || text !== value)
            problems.push(`session read of ${key} in ${other}: ${read.status} ${text} (wrote ${value})`);
          // A counter increment, exactly once.
          const counter = counters[(w + round) % counters.length] as string;
          const inc = await call(`/v1/counters/${enc(counter)}?region=${region}`, {
            method: "POST",
            body: '{"delta":1}',
          });
          if (inc.status === 200) expected.set(counter, (expected.get(counter) ?? 0) + 1);
          else problems.push(`POST ${counter} in ${region}: ${inc.status} ${await inc.text()}`);
          // A key written before the move, not overwritten by anyone: never missing.
          const untouched = `${prefix}/k${37 + ((round * 4 + w) % 23)}`;
          const before = await call(`/v1/kv/${enc(untouched)}?region=${other}`);
          if (before.status !== 200)
            problems.push(`GET ${untouched} in ${other}: ${before.status} ${await before.text()}`);
          const gone = await call(`/v1/kv/${enc(deleted)}?region=${region}`);
          if (gone.status !== 404) problems.push(`GET ${deleted} (deleted) in ${region}: ${gone.status}`);
        }
      };
      await Promise.all([watch, ...Array.from({ length: 4 }, (_, w) => worker(w))]);
      expect(problems).toEqual([]);
      expect(writes).toBeGreaterThan(20);
      // The clients worked while keys were routed to their new shards, and it was still so after.
      const routed = JSON.stringify({ from: shards === 4 ? 2 : 4, routed: true });
      expect([...seenMoving]).toContain(routed);
      expect(JSON.stringify((await json<Layout>("/v1/regions")).shards.moving)).toBe(routed);
      // With apac back, the move finishes.
      await json("/v1/admin/regions/apac/health", { method: "POST", body: '{"healthy":true}' });
      await eventually(
        async () => {
          const layout = await json<Layout>("/v1/regions");
          expect(layout.shards).toEqual({ count: shards, moving: null });
        },
        60_000,
        250,
      );

      // Every region answers every key alike, with the last value written.
      const live = [...values.keys()].sort();
      await eventually(
        async () => {
          for (const region of REGIONS) {
            for (const [key, value] of values) {
              const res = await call(`/v1/kv/${enc(key)}?region=${region}`);
              expect([key, region, res.status, await res.text()]).toEqual([key, region, 200, value]);
            }
            for (const [counter, value] of expected)
              expect(await json(`/v1/counters/${enc(counter)}?region=${region}`)).toEqual({ key: counter, value });
            expect((await call(`/v1/kv/${enc(deleted)}?region=${region}`)).status).toBe(404);
          }
        },
        30_000,
        250,
      );
      for (const key of strong)
        expect(await (await call(`/v1/kv/${enc(key)}?consistency=strong`)).text()).toBe(`strong-${key}`);
      // Listings hold every live key once, in every region, across small pages.
      await eventually(
        async () => {
          for (const region of REGIONS) expect(await listAll(`${prefix}/k`, region)).toEqual(live);
        },
        30_000,
        250,
      );
      // The old shards dropped what they handed over: the regions' digests meet.
      await eventually(
        async () => {
          const digests = await Promise.all(
            REGIONS.map((r) => json<{ root: string; shards: unknown[] }>(`/v1/admin/regions/${r}/digest`)),
          );
          expect(digests.every((d) => d.shards.length === shards)).toBe(true);
          expect(new Set(digests.map((d) => d.root)).size).toBe(1);
        },
        60_000,
        500,
      );
    }
  }, 400_000);
});
