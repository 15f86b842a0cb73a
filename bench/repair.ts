/**
 * `npm run bench:repair`: what the repair path costs.
 *
 * 1. core: two replicas of the pure core (in-memory storage) holding the same N keys, then D keys
 *    changed on one side only. One anti-entropy round repairs them: its bytes (digests, entries
 *    and states exchanged, as the round counts them) against shipping the full state, its time,
 *    and how many rounds it took. Then an empty replica pulls all N keys by the same rounds (a
 *    bootstrap, in the core).
 * 2. bootstrap: the store as `npm start` runs it, started with three regions, N keys written,
 *    then restarted on the same state with a fourth region: the time the new region took to
 *    bootstrap (its own bootstrap_seconds_total, from its probe until done), the time from
 *    launching the store until its Merkle root equals the others', its rounds, and the
 *    anti-entropy bytes it exchanged (from /metrics).
 *
 * Nothing is asserted; figures go to stdout and bench/results/repair-<timestamp>.json.
 *
 * Settings (environment variables, with defaults):
 *   BENCH_REPAIR_PARTS   which parts to run: core,bootstrap
 *   BENCH_REPAIR_KEYS    keys in the core part: 100000
 *   BENCH_REPAIR_DIFF    keys changed on one side in the core part: 10
 *   BENCH_BOOT_KEYS      keys the new region bootstraps in the store part: 100000
 *   BENCH_BOOT_WORKERS   concurrent writers seeding the store: 32
 *   BENCH_BOOT_SEEDED    a directory to keep the seeded three-region state in (written when it
 *                        holds none, reused when it does): reruns skip the seeding
 *   BENCH_TOKEN          bearer token for the store: dev-token
 */
import { cpSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ok } from "../shared/errors.ts";
import { type RegionId } from "../shared/regions.ts";
import { aeBegin, antiEntropyRound, localChildren, localRows, mergeRows } from "../shared/store/anti-entropy.ts";
import { type PeerApi } from "../shared/store/contract.ts";
import { ReplicaMachine } from "../shared/store/replica-machine.ts";
import { MemoryStorage } from "../test/sim/memory-storage.ts";
import { closedLoop } from "./lib/load.ts";
import { machine as machineInfo } from "./lib/machine.ts";
import { runDir, startStore, stopAll } from "./lib/processes.ts";
import { snapshot } from "./lib/source.ts";

const PROJECT = path.resolve(import.meta.dirname, "..");
const env = (name: string, fallback: string): string => process.env[name] ?? fallback;
const PARTS = env("BENCH_REPAIR_PARTS", "core,bootstrap").split(",");
const CORE_KEYS = Number(env("BENCH_REPAIR_KEYS", "100000"));
const CORE_DIFF = Number(env("BENCH_REPAIR_DIFF", "10"));
const BOOT_KEYS = Number(env("BENCH_BOOT_KEYS", "100000"));
const BOOT_WORKERS = Number(env("BENCH_BOOT_WORKERS", "32"));
const TOKEN = env("BENCH_TOKEN", "dev-token");
const REGIONS: RegionId[] = ["wnam", "enam", "weur", "apac"];
const NOW = 1_800_000_000_000;

/** A replica of the core, ready (a store created with these regions). */
function replica(region: RegionId): ReplicaMachine {
  const m = new ReplicaMachine(
    new MemoryStorage(),
    { region, regions: REGIONS, primaryPrefixes: [], silenceMsMax: 3000 },
    NOW,
  );
  m.identify(0, false);
  return m;
}

const unused = (): never => {
  throw new Error("not used by anti-entropy");
};

/** The peer API of `m`, called in-process (what the Durable Object's RPC methods do). */
function peerOf(m: ReplicaMachine): PeerApi {
  return {
    aeBegin: async (from) => ok(aeBegin(m, from, NOW)),
    merkleChildren: async (level, indices) => ok(localChildren(m, level, indices)),
    bucketEntries: async (buckets) => ok(buckets.map((b) => m.storage.kv.bucket(b))),
    keyStates: async (keys) => ok(localRows(m, keys)),
    bucketRows: async (from, to, after, limit) => ok(m.storage.kv.bucketRows(from, to, after, limit)),
    repairStates: async (from, rows) => ok(mergeRows(m, from, rows, NOW).changed),
    applyReplication: unused,
    pushWrite: unused,
    snapshot: unused,
    covers: unused,
    prefixStates: unused,
  };
}

function put(m: ReplicaMachine, key: string, value: string): void {
  const written = m.write(
    key,
    { type: "register", op: { kind: "put", value: new TextEncoder().encode(value), contentType: "text/plain" } },
    {},
    undefined,
    NOW,
  );
  if (!written.ok) throw new Error(written.error.message);
}

/** Rounds until one completes; their total bytes and time. */
async function repair(into: ReplicaMachine, from: ReplicaMachine, keysMax?: number) {
  const started = performance.now();
  let rounds = 0;
  let bytes = 0;
  let keysRepaired = 0;
  for (;;) {
    rounds += 1;
    const result = await antiEntropyRound(into, from.region, peerOf(from), () => NOW, keysMax);
    if (!result.ok) throw new Error(result.error.message);
    bytes += result.value.bytes;
    keysRepaired += result.value.keysRepaired;
    if (result.value.complete) break;
  }
  return { rounds, bytes, keysRepaired, ms: Math.round(performance.now() - started) };
}

async function core(): Promise<Record<string, unknown>> {
  console.log(`core: ${CORE_KEYS} keys on two replicas, ${CORE_DIFF} changed on one side`);
  const a = replica("enam");
  const b = replica("weur");
  const keys = Array.from({ length: CORE_KEYS }, (_, i) => `user/${i.toString(36).padStart(6, "0")}`);
  for (const key of keys) put(a, key, `value of ${key} `.padEnd(64, "."));
  for (let i = 0; i < keys.length; i += 1000) mergeRows(b, "enam", localRows(a, keys.slice(i, i + 1000)), NOW);
  const fullBytes = localRows(a, keys).reduce((sum, r) => sum + r.key.length + r.encoded.length, 0);
  for (let i = 0; i < CORE_DIFF; i += 1) put(a, keys[(i * 7919) % keys.length] as string, `changed ${i}`);
  const diff = await repair(b, a);
  const equal = Buffer.compare(a.storage.merkle.root(), b.storage.merkle.root()) === 0;
  const empty = replica("apac");
  const boot = await repair(empty, a, 10_000);
  const result = {
    keys: CORE_KEYS,
    differing: CORE_DIFF,
    fullStateBytes: fullBytes,
    repair: { ...diff, ratioToFullState: diff.bytes / fullBytes, rootsEqual: equal },
    bootstrap: { ...boot, ratioToFullState: boot.bytes / fullBytes },
  };
  console.log(
    `  repair: ${diff.keysRepaired} keys, ${diff.bytes} B in ${diff.rounds} round(s), ${diff.ms} ms; ` +
      `full state ${fullBytes} B; ratio ${(100 * result.repair.ratioToFullState).toFixed(3)}%; roots equal: ${equal}`,
  );
  console.log(
    `  bootstrap (core): ${boot.keysRepaired} keys, ${boot.bytes} B in ${boot.rounds} rounds, ${boot.ms} ms ` +
      `(${(100 * result.bootstrap.ratioToFullState).toFixed(1)}% of the full state)`,
  );
  return result;
}

async function call(base: string, pathAndQuery: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("Authorization", `Bearer ${TOKEN}`);
  return fetch(`${base}${pathAndQuery}`, { ...init, headers });
}

async function digest(base: string, region: string): Promise<{ root: string; keys: number; bootstrapping: boolean }> {
  const res = await call(base, `/v1/admin/regions/${region}/digest`);
  if (res.status !== 200) throw new Error(`digest of ${region}: ${res.status} ${await res.text()}`);
  return (await res.json()) as { root: string; keys: number; bootstrapping: boolean };
}

async function until<T>(check: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch {
      // Not yet.
    }
    if (performance.now() > deadline) throw new Error(`not done within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Seeds a three-region store with BOOT_KEYS keys and waits until the three agree; its state directory. */
async function seedThree(source: string, dir: string): Promise<{ stateDir: string; seedMs: number; errors: number }> {
  const three = await startStore(source, dir, "three", "REGIONS:wnam,enam,weur", true);
  const seedStarted = performance.now();
  const value = "x".repeat(64);
  let done = 0;
  const progress = setInterval(() => console.log(`  seeding: ${done} of ${BOOT_KEYS} keys`), 30_000);
  const seeded = await closedLoop(
    async (n) => {
      const res = await call(three.baseUrl, `/v1/kv/user/${n.toString(36)}?region=enam`, {
        method: "PUT",
        body: value,
      });
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`PUT ${res.status}`);
      done += 1;
    },
    { concurrency: BOOT_WORKERS, durationMs: 3_600_000, errorsMax: 100, opsMax: BOOT_KEYS },
  ).finally(() => clearInterval(progress));
  const seedMs = Math.round(performance.now() - seedStarted);
  console.log(`  seeded ${BOOT_KEYS} keys in ${seedMs} ms (${seeded.errors} errors); waiting for the three to agree`);
  await until(async () => {
    const ds = await Promise.all(["wnam", "enam", "weur"].map((r) => digest(three.baseUrl, r)));
    return ds.every((d) => d.root === ds[0]?.root && d.keys === BOOT_KEYS) ? true : undefined;
  }, 600_000);
  await three.stop();
  return { stateDir: three.stateDir, seedMs, errors: seeded.errors };
}

/** The sum of a metric's samples for `region` in a Prometheus exposition. */
function metricOf(text: string, name: string, region: string, extra = ""): number {
  const pattern = new RegExp(`^${name}\\{region="${region}",shard="\\d+",peer="\\w+"${extra}\\} ([0-9.e+-]+)$`, "gm");
  return [...text.matchAll(pattern)].map((m) => Number(m[1])).reduce((a, b) => a + b, 0);
}

async function bootstrap(): Promise<Record<string, unknown>> {
  console.log(`bootstrap: ${BOOT_KEYS} keys in a three-region store, then a fourth region added`);
  const dir = runDir();
  const source = snapshot(PROJECT, dir, "worktree");
  // A seeded state kept from an earlier run (BENCH_BOOT_SEEDED) spares the ten minutes of seeding.
  const kept = process.env.BENCH_BOOT_SEEDED;
  let seed: { stateDir: string; seedMs: number | null; errors: number };
  if (kept !== undefined && existsSync(path.join(kept, "state"))) {
    const stateDir = path.join(dir, "seeded");
    cpSync(kept, stateDir, { recursive: true });
    seed = { stateDir, seedMs: null, errors: 0 };
    console.log(`  reusing the seeded state in ${kept}`);
  } else {
    seed = await seedThree(source.root, dir);
    if (kept !== undefined) cpSync(seed.stateDir, kept, { recursive: true });
  }
  // From the launch of the four-region store: its start, then apac's probe and bootstrap (the
  // first heartbeat a peer sends it wakes it), until its root equals enam's.
  const started = performance.now();
  const four = await startStore(source.root, dir, "four", "", true, seed.stateDir);
  const done = await until(async () => {
    const [apac, enam] = await Promise.all([digest(four.baseUrl, "apac"), digest(four.baseUrl, "enam")]);
    return !apac.bootstrapping && apac.root === enam.root ? apac : undefined;
  }, 600_000);
  const wallMs = Math.round(performance.now() - started);
  const metrics = await (await call(four.baseUrl, "/metrics")).text();
  await four.stop();
  const bytes = metricOf(metrics, "replication_bytes_total", "apac", ',kind="anti_entropy"');
  const bootstrapSeconds = metricOf(metrics, "bootstrap_seconds_total", "apac");
  const rounds = metricOf(metrics, "anti_entropy_rounds_total", "apac");
  console.log(
    `  apac bootstrapped ${done.keys} keys in ${bootstrapSeconds.toFixed(1)} s (its own figure, probe to done; ` +
      `${(wallMs / 1000).toFixed(1)} s from launching the store to equal roots), ${rounds} rounds, ${bytes} B of anti-entropy`,
  );
  return {
    keys: BOOT_KEYS,
    seedMs: seed.seedMs,
    seedErrors: seed.errors,
    bootstrapSeconds,
    wallMsFromLaunch: wallMs,
    rounds,
    antiEntropyBytes: bytes,
    apacKeys: done.keys,
  };
}

async function main(): Promise<void> {
  const command = `${Object.entries(process.env)
    .filter(([k]) => k.startsWith("BENCH_"))
    .map(([k, v]) => `${k}=${v} `)
    .join("")}npm run bench:repair`;
  console.log(command);
  const results: Record<string, unknown> = {
    command,
    machine: machineInfo(PROJECT),
    startedAt: new Date().toISOString(),
  };
  try {
    if (PARTS.includes("core")) results.core = await core();
    if (PARTS.includes("bootstrap")) results.bootstrap = await bootstrap();
  } finally {
    await stopAll();
  }
  const out = path.join(PROJECT, "bench", "results");
  mkdirSync(out, { recursive: true });
  const file = path.join(out, `repair-${new Date().toISOString().replaceAll(":", "-")}.json`);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`results: ${path.relative(PROJECT, file)}`);
}

await main();
