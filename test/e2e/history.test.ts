// Randomized concurrent workloads against `npm start`, recorded as histories and checked:
// session clients get read-your-writes and monotonic reads across regions, and quorum reads
// never miss an acknowledged quorum write.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type HistoryOp, checkHistory } from "../../shared/check/history.ts";
import { REGIONS, call, uniqueKey, useStore } from "./client.ts";
import { type RunningStore, startStore } from "./store.ts";

// Locally, replication takes milliseconds: too fast for a session read to ever find its
// replica behind. This file runs its own store whose replication messages wait a second in the
// queue, like a slow WAN link, so the session and quorum machinery is what keeps the promises.
let store: RunningStore | undefined;
beforeAll(async () => {
  store = await startStore({ REPLICATION_DELAY_SECONDS: "1" });
  useStore(store.baseUrl);
}, 120_000);
afterAll(async () => {
  useStore(undefined);
  await store?.stop();
});

/** A small seeded PRNG (mulberry32), so a failing workload can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = Number(process.env.HISTORY_SEED ?? 20261127);

async function timed(
  op: Omit<HistoryOp, "startMs" | "endMs" | "ok" | "version">,
  run: () => Promise<{ ok: boolean; version: string | null }>,
): Promise<HistoryOp> {
  const startMs = performance.now();
  const result = await run();
  return { ...op, startMs, endMs: performance.now(), ...result };
}

function etag(res: Response): string | null {
  return res.headers.get("etag")?.replace(/^"|"$/g, "") ?? null;
}

async function sessionClient(name: string, keys: string[], ops: number, random: () => number): Promise<HistoryOp[]> {
  const history: HistoryOp[] = [];
  let token: string | null = null;
  for (let i = 0; i < ops; i += 1) {
    const key = keys[Math.floor(random() * keys.length)] as string;
    const region = REGIONS[Math.floor(random() * REGIONS.length)] as string;
    const headers: Record<string, string> = token === null ? {} : { "X-Session-Token": token };
    const path = `/v1/kv/${encodeURIComponent(key)}?region=${region}`;
    if (random() < 0.4) {
      history.push(
        await timed({ client: name, kind: "write", key, region, mode: "session" }, async () => {
          const res = await call(path, { method: "PUT", body: `${name}-${i}`, headers });
          token = res.headers.get("x-session-token") ?? token;
          const body = (await res.json()) as { version?: string };
          return { ok: res.status === 200, version: body.version ?? null };
        }),
      );
    } else {
      history.push(
        await timed({ client: name, kind: "read", key, region, mode: "session" }, async () => {
          const res = await call(`${path}&consistency=session`, { headers });
          token = res.headers.get("x-session-token") ?? token;
          await res.arrayBuffer();
          return { ok: res.status === 200 || res.status === 404, version: res.status === 200 ? etag(res) : null };
        }),
      );
    }
  }
  return history;
}

async function quorumClient(
  name: string,
  keys: string[],
  ops: number,
  writer: boolean,
  random: () => number,
): Promise<HistoryOp[]> {
  const history: HistoryOp[] = [];
  for (let i = 0; i < ops; i += 1) {
    const key = keys[Math.floor(random() * keys.length)] as string;
    const region = REGIONS[Math.floor(random() * REGIONS.length)] as string;
    const path = `/v1/kv/${encodeURIComponent(key)}?region=${region}`;
    history.push(
      writer
        ? await timed({ client: name, kind: "write", key, region, mode: "quorum" }, async () => {
            const res = await call(`${path}&ack=quorum`, { method: "PUT", body: `${name}-${i}` });
            const body = (await res.json()) as { version?: string };
            return { ok: res.status === 200, version: body.version ?? null };
          })
        : await timed({ client: name, kind: "read", key, region, mode: "quorum" }, async () => {
            const res = await call(`${path}&consistency=quorum`);
            await res.arrayBuffer();
            return { ok: res.status === 200 || res.status === 404, version: res.status === 200 ? etag(res) : null };
          }),
    );
  }
  return history;
}

describe("recorded histories", () => {
  it(`keep session and quorum promises under randomized concurrent load (seed ${SEED})`, async () => {
    const random = prng(SEED);
    const sessionKeys = Array.from({ length: 4 }, (_, i) => uniqueKey(`hist-s${i}`));
    const quorumKeys = Array.from({ length: 3 }, (_, i) => uniqueKey(`hist-q${i}`));
    const clients = [
      ...Array.from({ length: 6 }, (_, i) =>
        sessionClient(`s${i}`, sessionKeys, 30, prng(Math.floor(random() * 2 ** 31))),
      ),
      ...Array.from({ length: 3 }, (_, i) =>
        quorumClient(`qw${i}`, quorumKeys, 15, true, prng(Math.floor(random() * 2 ** 31))),
      ),
      ...Array.from({ length: 3 }, (_, i) =>
        quorumClient(`qr${i}`, quorumKeys, 20, false, prng(Math.floor(random() * 2 ** 31))),
      ),
    ];
    const history = (await Promise.all(clients)).flat();
    const violations = checkHistory(history);
    expect(violations.map((v) => v.message)).toEqual([]);

    // The workload must actually exercise the promises: reads in another region after the
    // client's own write, and quorum reads after acknowledged quorum writes.
    const ok = history.filter((op) => op.ok);
    const crossRegion = ok.filter(
      (read) =>
        read.kind === "read" &&
        read.mode === "session" &&
        ok.some(
          (w) =>
            w.kind === "write" &&
            w.client === read.client &&
            w.key === read.key &&
            w.region !== read.region &&
            w.endMs <= read.startMs,
        ),
    );
    const quorumAfter = ok.filter(
      (read) =>
        read.kind === "read" &&
        read.mode === "quorum" &&
        ok.some((w) => w.kind === "write" && w.key === read.key && w.endMs <= read.startMs),
    );
    expect(crossRegion.length).toBeGreaterThan(20);
    expect(quorumAfter.length).toBeGreaterThan(10);
    expect(ok.length).toBe(history.length);
  });
});
