/**
 * `npm run bench:wan`: the store under local WAN emulation (`WAN_EMULATION = "on"`), where
 * every cross-region hop waits its measured one-way latency. Each client names where it is
 * with `X-Client-Location` (the coordinates of a region's city), so the router runs at its
 * edge, as it would on Cloudflare's network. It measures, as ratios to the physics:
 *
 * 1. convergence per origin -> target pair at BENCH_WAN_RATE writes/s (default 10): the time from
 *    a write's commit (written at the origin by a client there, `ack=local`; it is acknowledged
 *    right after) until it is visible at the target, as the target reports it, divided by the
 *    pair's one-way latency;
 * 2. `ack=quorum` write latency against its physical floor: the round trip to the peer that
 *    completes the nearest majority;
 * 3. a `consistency=session` read right after a write made in another region, against a plain
 *    read at the same place;
 * 4. reads from the closest region against a single-home store where every client reads enam.
 *
 * Nothing is asserted; figures go to stdout and bench/results/wan-<time>.json.
 *
 * `npm run bench` runs it after the main run (BENCH_WAN=0 skips it there).
 *
 * Settings (full-run default, then the BENCH_QUICK=1 default): BENCH_WAN_RATE (writes/s per
 * origin, 10), BENCH_WAN_MS (per origin: 20000, about 200 writes per pair | 5000),
 * BENCH_WAN_OPS (operations per client location in parts 2-4: 40 | 10), BENCH_WAN_VARS (more KV_VARS,
 * ";"-separated, e.g. "DIRECT_PUSH:on"), BENCH_TOKEN (dev-token).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { REGION_LOCATIONS, type RegionId } from "../shared/regions.ts";
import { WAN_RTT_MS, oneWayMs } from "../shared/wan-rtt.ts";
import { machine as machineInfo } from "./lib/machine.ts";
import { runDir, startStore, stopAll } from "./lib/processes.ts";
import { snapshot } from "./lib/source.ts";

const PROJECT = path.resolve(import.meta.dirname, "..");
const env = (name: string, fallback: string): string => process.env[name] ?? fallback;
const RATE = Number(env("BENCH_WAN_RATE", "10"));
const QUICK = process.env.BENCH_QUICK === "1";
const PER_ORIGIN_MS = Number(env("BENCH_WAN_MS", QUICK ? "5000" : "20000"));
const OPS = Number(env("BENCH_WAN_OPS", QUICK ? "10" : "40"));
const TOKEN = env("BENCH_TOKEN", "dev-token");
const REGIONS: RegionId[] = ["wnam", "enam", "weur", "apac"];

let base = "";

/** A request from a client located at `at`'s city. */
async function call(at: RegionId, pathAndQuery: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("Authorization", `Bearer ${TOKEN}`);
  const { lat, lon } = REGION_LOCATIONS[at];
  headers.set("X-Client-Location", `${lat},${lon}`);
  return fetch(`${base}${pathAndQuery}`, { ...init, headers });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A pause between parts, longer than the outbox's push grace. */
const QUIET_MS = 3000;

function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

interface RegionsBody {
  regions: Array<{
    id: RegionId;
    healthy: boolean;
    lag: Record<string, { delay?: { p50Ms: number; p99Ms: number; samples: number } }>;
  }>;
}

async function regionsNow(): Promise<RegionsBody> {
  return (await (await call("enam", "/v1/regions")).json()) as RegionsBody;
}

/**
 * Writes at RATE per origin, one origin after the other (`ack=local`, by a client at the
 * origin), then reads each target's own account of how long those writes took to become
 * visible there (`/v1/regions`, `lag[origin].delay`: from the write's commit at the origin to
 * its merge at the target, on the one clock every local region shares). The store is fresh, so
 * each pair's window holds exactly this phase's writes. An earlier version polled each target
 * from the client: every poll costs the local request path (wrangler's proxy, about 10 ms, see
 * the reads below) and loads the one workerd thread that also runs the store, so it measured
 * the poller as much as the replication.
 */
async function convergence(): Promise<Record<string, { p50: number; p99: number; oneWayMs: number; samples: number }>> {
  const written = new Map<RegionId, number>();
  for (const origin of REGIONS) {
    const writes: Array<Promise<void>> = [];
    const started = performance.now();
    for (let i = 0; performance.now() - started < PER_ORIGIN_MS; i += 1) {
      const due = started + (i * 1000) / RATE;
      if (due > performance.now()) await sleep(due - performance.now());
      const key = `wan/conv/${origin}/${Date.now().toString(36)}-${i}`;
      writes.push(
        (async () => {
          const res = await call(origin, `/v1/kv/${encodeURIComponent(key)}?region=${origin}&ack=local`, {
            method: "PUT",
            body: `v${i}`,
          });
          await res.arrayBuffer();
          if (res.status === 200) written.set(origin, (written.get(origin) ?? 0) + 1);
        })(),
      );
    }
    await Promise.all(writes);
  }
  // Every target has seen every write (bounded).
  let body = await regionsNow();
  const complete = (b: RegionsBody): boolean =>
    b.regions.every((t) =>
      REGIONS.filter((o) => o !== t.id).every((o) => (t.lag[o]?.delay?.samples ?? 0) >= (written.get(o) ?? 0)),
    );
  for (let i = 0; i < 50 && !complete(body); i += 1) {
    await sleep(200);
    body = await regionsNow();
  }
  const out: Record<string, { p50: number; p99: number; oneWayMs: number; samples: number }> = {};
  for (const origin of REGIONS)
    for (const target of body.regions) {
      const delay = target.lag[origin]?.delay;
      if (target.id === origin || delay === undefined) continue;
      const oneWay = oneWayMs(origin, target.id);
      out[`${origin}->${target.id}`] = {
        p50: delay.p50Ms / oneWay,
        p99: delay.p99Ms / oneWay,
        oneWayMs: oneWay,
        samples: delay.samples,
      };
    }
  return out;
}

/** The round trip to the peer that completes the nearest majority (this region counts as one). */
function quorumFloorMs(region: RegionId): number {
  const peers = REGIONS.filter((r) => r !== region)
    .map((r) => WAN_RTT_MS[region][r] as number)
    .sort((a, b) => a - b);
  const needed = Math.floor(REGIONS.length / 2) + 1 - 1;
  return peers[needed - 1] as number;
}

async function timedMs(run: () => Promise<Response>): Promise<number> {
  const started = performance.now();
  const res = await run();
  await res.arrayBuffer();
  return performance.now() - started;
}

async function quorumWrites(): Promise<Record<string, { p50Ms: number; floorMs: number; ratio: number }>> {
  const out: Record<string, { p50Ms: number; floorMs: number; ratio: number }> = {};
  for (const region of REGIONS) {
    const times: number[] = [];
    for (let i = 0; i < OPS; i += 1) {
      const key = `wan/quorum/${region}/${i}`;
      times.push(
        await timedMs(() =>
          call(region, `/v1/kv/${encodeURIComponent(key)}?region=${region}&ack=quorum`, { method: "PUT", body: "q" }),
        ),
      );
    }
    const p50Ms = quantile(times, 0.5);
    out[region] = { p50Ms, floorMs: quorumFloorMs(region), ratio: p50Ms / quorumFloorMs(region) };
  }
  return out;
}

async function sessionAfterRemoteWrite(): Promise<Record<string, { sessionP50Ms: number; plainP50Ms: number }>> {
  const out: Record<string, { sessionP50Ms: number; plainP50Ms: number }> = {};
  for (const [writer, reader] of [
    ["weur", "wnam"],
    ["enam", "apac"],
  ] as Array<[RegionId, RegionId]>) {
    const session: number[] = [];
    const plain: number[] = [];
    for (let i = 0; i < OPS; i += 1) {
      const key = `wan/session/${writer}/${Date.now().toString(36)}-${i}`;
      const put = await call(writer, `/v1/kv/${encodeURIComponent(key)}`, { method: "PUT", body: "s" });
      await put.arrayBuffer();
      const token = put.headers.get("x-session-token") ?? "";
      session.push(
        await timedMs(() =>
          call(reader, `/v1/kv/${encodeURIComponent(key)}?consistency=session`, {
            headers: { "X-Session-Token": token },
          }),
        ),
      );
      plain.push(await timedMs(() => call(reader, `/v1/kv/${encodeURIComponent(key)}`)));
    }
    out[`${writer} write, then ${reader} read`] = {
      sessionP50Ms: quantile(session, 0.5),
      plainP50Ms: quantile(plain, 0.5),
    };
  }
  return out;
}

async function closestVersusSingleHome(): Promise<Record<string, { closestP50Ms: number; enamP50Ms: number }>> {
  const key = "wan/read/shared";
  const put = await call("enam", `/v1/kv/${encodeURIComponent(key)}?ack=all`, { method: "PUT", body: "r" });
  await put.arrayBuffer();
  const out: Record<string, { closestP50Ms: number; enamP50Ms: number }> = {};
  for (const client of REGIONS) {
    const closest: number[] = [];
    const home: number[] = [];
    for (let i = 0; i < OPS; i += 1) {
      closest.push(await timedMs(() => call(client, `/v1/kv/${encodeURIComponent(key)}`)));
      home.push(await timedMs(() => call(client, `/v1/kv/${encodeURIComponent(key)}?region=enam`)));
    }
    out[`client at ${client}`] = { closestP50Ms: quantile(closest, 0.5), enamP50Ms: quantile(home, 0.5) };
  }
  return out;
}

async function main(): Promise<void> {
  const command = `${Object.entries(process.env)
    .filter(([k]) => k.startsWith("BENCH_"))
    .map(([k, v]) => `${k}=${v} `)
    .join("")}npm run bench:wan`;
  console.log(command);
  const dir = runDir();
  const source = snapshot(PROJECT, dir, (process.env.BENCH_SOURCE as "HEAD" | "worktree" | undefined) ?? "worktree");
  const results: Record<string, unknown> = {
    command,
    machine: machineInfo(PROJECT),
    startedAt: new Date().toISOString(),
  };
  try {
    const vars = ["WAN_EMULATION:on", ...(process.env.BENCH_WAN_VARS ?? "").split(";").filter((v) => v !== "")];
    results.vars = vars;
    const store = await startStore(source.root, dir, "wan", vars.join(";"), false);
    base = store.baseUrl;
    // Every region healthy (new replicas probe each other over the emulated WAN first).
    for (let i = 0; i < 120 && !(await regionsNow()).regions.every((r) => r.healthy); i += 1) await sleep(500);
    const conv = await convergence();
    results.convergence = conv;
    console.log(`convergence at ${RATE} writes/s per origin: (commit -> visible at target) / one-way latency`);
    console.log("  pair            one-way ms   p50     p99   samples");
    for (const [pair, c] of Object.entries(conv))
      console.log(
        `  ${pair.padEnd(15)} ${c.oneWayMs.toFixed(1).padStart(9)} ${c.p50.toFixed(2).padStart(6)} ${c.p99.toFixed(2).padStart(7)} ${String(c.samples).padStart(8)}`,
      );
    // Each part starts from a quiet store: the convergence writes' last deliveries and the
    // outbox's checks after them (up to the 2 s push grace) are over.
    await sleep(QUIET_MS);
    const quorum = await quorumWrites();
    results.quorum = quorum;
    console.log("ack=quorum write p50 from a client at each region, against the round trip to the nearest majority");
    for (const [region, q] of Object.entries(quorum))
      console.log(
        `  ${region.padEnd(6)} ${q.p50Ms.toFixed(0).padStart(5)} ms, floor ${q.floorMs} ms: ${q.ratio.toFixed(2)}x`,
      );
    const sessions = await sessionAfterRemoteWrite();
    results.sessionAfterRemoteWrite = sessions;
    console.log("consistency=session read right after a write in another region, against a plain read there");
    for (const [what, s] of Object.entries(sessions))
      console.log(`  ${what.padEnd(28)} session ${s.sessionP50Ms.toFixed(0)} ms, plain ${s.plainP50Ms.toFixed(0)} ms`);
    const reads = await closestVersusSingleHome();
    results.reads = reads;
    console.log("read p50: served by the closest region, against a single home (every read at enam)");
    for (const [client, r] of Object.entries(reads))
      console.log(`  ${client.padEnd(16)} closest ${r.closestP50Ms.toFixed(0)} ms, enam ${r.enamP50Ms.toFixed(0)} ms`);
    await store.stop();
  } finally {
    await stopAll();
  }
  const out = path.join(PROJECT, "bench", "results");
  mkdirSync(out, { recursive: true });
  const file = path.join(out, `wan-${new Date().toISOString().replaceAll(":", "-")}.json`);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`results: ${path.relative(PROJECT, file)}`);
}

// Part of `npm run bench` unless BENCH_WAN=0; `npm run bench:wan` always runs.
if (process.env.npm_lifecycle_event !== "bench" || process.env.BENCH_WAN !== "0") await main();
