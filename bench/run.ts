/**
 * `npm run bench`: the store against a storage floor, and its convergence, in one run.
 *
 * 1. Starts a storage floor (bench/floor: one Worker, one SQLite Durable Object, one statement per
 *    request) under the same wrangler, and the store as `npm start` does, once per DIRECT_PUSH
 *    variant, each with fresh state.
 * 2. Drives both with the same closed-loop load (fixed concurrency and value size, store pinned to
 *    one region): write and read latency (p50/p99) and throughput, in interleaved rounds, medians
 *    over rounds, store/floor ratios against their targets.
 * 3. Offers writes open-loop at a fixed rate to the store and measures, for a sample of them, the
 *    time from acknowledgement to visible in every other region.
 * 4. Prints a table and writes bench/results/<timestamp>.json. Nothing is asserted about time: this
 *    measures, tests never do. The exit status is 1 only when operations failed.
 *
 * Settings (environment variables; full-run default, then the BENCH_QUICK=1 default when different):
 *   BENCH_QUICK=1              quick run (about a minute) instead of the full run (about 4 minutes)
 *   BENCH_ROUNDS               interleaved rounds of every scenario: 4 | 2
 *   BENCH_PHASE_MS             length of one closed-loop phase: 4000 | 1500
 *   BENCH_WARMUP_MS            warm-up per scenario, after writing every key once: 3000 | 1000
 *   BENCH_CONCURRENCY          closed-loop workers: 8
 *   BENCH_VALUE_BYTES          value size: 256
 *   BENCH_KEYS                 keys written and read: 1000
 *   BENCH_REGION               region the load is pinned to (writes and reads): enam
 *   BENCH_REGIONS              the store's regions, for convergence: wnam,enam,weur,apac
 *   BENCH_VARIANTS             DIRECT_PUSH values to run, each on a fresh store: off,on
 *   BENCH_EXTRA_VARS           more KV_VARS for every store, e.g. "HEARTBEAT_INTERVAL_MS:500"
 *   BENCH_CONV_RATE            convergence: offered writes per second: 100
 *   BENCH_CONV_MS              convergence: how long writes are offered: 25000 | 8000
 *   BENCH_CONV_SAMPLE_EVERY    convergence: follow every n-th write: 5
 *   BENCH_POLL_MS              convergence: first poll interval: 5
 *   BENCH_POLL_MS_MAX          convergence: largest poll interval (back-off): 50
 *   BENCH_CONV_TIMEOUT_MS      convergence: a sample not converged by then counts as timed out: 10000
 *   BENCH_SETTLE_TIMEOUT_MS    longest wait for replication to drain between phases: 60000
 *   BENCH_ERRORS_MAX           a phase stops after this many failed operations: 50
 *   BENCH_TOKEN                bearer token for the store: dev-token (what `npm start` accepts)
 *   BENCH_KEEP=1               keep the temporary directory with the servers' logs and state
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { benchEnvPrefix, loadBenchConfig } from "./lib/config.ts";
import { measureConvergence } from "./lib/convergence.ts";
import { summarize } from "./lib/histogram.ts";
import { closedLoop } from "./lib/load.ts";
import { type Server, logFindings, runDir, startFloor, startStore, stopAll } from "./lib/processes.ts";
import { type ConvergenceSummary, formatVariant, verdicts } from "./lib/report.ts";
import { median, runRounds } from "./lib/rounds.ts";
import { baseScenarios, keySpace, valuePool, writeOp } from "./lib/scenarios.ts";
import { settle } from "./lib/settle.ts";
import { type KvTarget, floorTarget, storeTarget, storeText } from "./lib/targets.ts";

const root = path.resolve(import.meta.dirname, "..");
const config = loadBenchConfig();
const log = (line: string): void => console.log(line);

function versionOf(packageJson: string): string {
  try {
    return (JSON.parse(readFileSync(path.join(root, packageJson), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

function git(args: string[]): string {
  try {
    return execFileSync("git", args, { cwd: root, encoding: "utf8" }).trim();
  } catch {
    return "unknown";
  }
}

function machine(): Record<string, unknown> {
  return {
    nproc: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    loadAverage: os.loadavg(),
    node: process.version,
    wrangler: versionOf("node_modules/wrangler/package.json"),
    platform: `${os.platform()} ${os.release()}`,
    commit: git(["rev-parse", "HEAD"]),
    dirtyFiles: git(["status", "--porcelain", "workers", "shared", "migrations", "wrangler.toml"])
      .split("\n")
      .filter(Boolean).length,
  };
}

/** Writes every key once, so reads find values and SQLite pages are warm. */
async function populate(target: KvTarget, keys: readonly string[], values: readonly Uint8Array[]): Promise<void> {
  const run = await closedLoop(writeOp(target, keys, values), {
    concurrency: config.concurrency,
    durationMs: 600_000,
    errorsMax: config.errorsMax,
    opsMax: keys.length,
  });
  if (run.errors > 0) throw new Error(`populating ${target.name} failed: ${run.firstError}`);
}

/** Everything measured on one store variant. */
async function runVariant(floor: KvTarget, dir: string, directPush: string): Promise<Record<string, unknown>> {
  const vars = [`DIRECT_PUSH:${directPush}`, config.extraVars].filter(Boolean).join(",");
  log(`\n== store with KV_VARS="${vars}"`);
  const server: Server = await startStore(root, dir, `push-${directPush}`, vars, config.keep);
  try {
    const store = storeTarget(server.baseUrl, config.token, config.region);
    const peers = config.regions
      .filter((r) => r !== config.region)
      .map((r) => storeTarget(server.baseUrl, config.token, r));
    const settleStore = (): Promise<number> =>
      settle(server.baseUrl, config.token, store, peers, config.settleTimeoutMs);
    const keys = keySpace("bench", config.keys);
    const values = valuePool(config.valueBytes);
    const scenarios = baseScenarios(floor, store, keys, values);

    log(`warm-up: ${keys.length} keys written once to each, then ${config.warmupMs} ms per scenario`);
    await populate(floor, keys, values);
    await populate(store, keys, values);
    await settleStore();
    for (const s of scenarios) {
      await closedLoop(s.op, {
        concurrency: config.concurrency,
        durationMs: config.warmupMs,
        errorsMax: config.errorsMax,
      });
      if (s.system === "store" && s.kind === "write") await settleStore();
    }

    log(`latency: ${config.rounds} rounds, ${config.phaseMs} ms per phase, concurrency ${config.concurrency}`);
    const rounds = await runRounds(scenarios, {
      rounds: config.rounds,
      phaseMs: config.phaseMs,
      concurrency: config.concurrency,
      errorsMax: config.errorsMax,
      settleAfterStoreWrite: settleStore,
      log,
    });
    const drainMs = median(
      rounds.rounds.flatMap((r) => (r["store write"]?.drainMs === undefined ? [] : [r["store write"].drainMs])),
    );

    log(
      `convergence: ${config.convRatePerSec} writes/s to ${config.region} for ${config.convMs} ms, every ${config.convSampleEvery}th followed`,
    );
    await settleStore();
    const conv = await measureConvergence(store, peers, {
      label: `push-${directPush}`,
      ratePerSec: config.convRatePerSec,
      durationMs: config.convMs,
      sampleEvery: config.convSampleEvery,
      pollMs: config.pollMs,
      pollMsMax: config.pollMsMax,
      timeoutMs: config.convTimeoutMs,
      valueBytes: config.valueBytes,
      inFlightMax: 4 * config.convRatePerSec,
    });
    const convergence: ConvergenceSummary = {
      directPush,
      offeredPerSec: config.convRatePerSec,
      achievedPerSec: (conv.writes.ok * 1000) / config.convMs,
      writeErrors: conv.writes.errors,
      samples: conv.samples,
      timedOut: conv.timedOut,
      skipped: conv.skipped,
      all: summarize(conv.all),
      perRegion: Object.fromEntries(Object.entries(conv.perRegion).map(([r, h]) => [r, summarize(h)])),
      ackLatency: summarize(conv.writes.latency),
      pollsPerSec: (conv.polls * 1000) / conv.writes.elapsedMs,
      pollErrors: conv.pollErrors,
    };
    const finalDrainMs = await settleStore();
    const metrics = await storeText(server.baseUrl, config.token, "/metrics");
    const table = formatVariant(directPush, rounds, drainMs, convergence);
    for (const line of table) log(line);
    return {
      directPush,
      kvVars: vars,
      rounds,
      drainMsMedian: drainMs,
      convergence: { ...convergence, firstWriteError: conv.writes.firstError, firstPollError: conv.firstPollError },
      finalDrainMs,
      verdicts: verdicts(rounds, convergence),
      errors: rounds.errors + conv.writes.errors,
      table,
      metrics: metrics.split("\n").filter((l) => l !== "" && !l.startsWith("#")),
      logFindings: logFindings(server.logPath),
    };
  } finally {
    await server.stop();
  }
}

async function main(): Promise<number> {
  const startedAt = new Date();
  const command = `${benchEnvPrefix()}npm run bench`;
  const dir = runDir();
  const cleanup = async (): Promise<void> => {
    await stopAll();
    if (!config.keep) rmSync(dir, { recursive: true, force: true });
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: stopping the servers`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    const host = machine();
    log(`$ ${command}`);
    log(`machine: ${JSON.stringify(host)}`);
    log(`servers' logs and state: ${dir}${config.keep ? " (kept)" : " (removed at the end)"}`);
    const floorServer = await startFloor(root, dir, config.keep);
    const floor = floorTarget(floorServer.baseUrl);
    const variants: Array<Record<string, unknown>> = [];
    for (const directPush of config.variants) variants.push(await runVariant(floor, dir, directPush));
    const floorFindings = logFindings(floorServer.logPath);
    await floorServer.stop();
    const finishedAt = new Date();
    const results = {
      command,
      startedAt,
      finishedAt,
      config,
      machine: host,
      variants,
      floorLogFindings: floorFindings,
    };
    const resultsDir = path.join(root, "bench", "results");
    mkdirSync(resultsDir, { recursive: true });
    const file = path.join(resultsDir, `${startedAt.toISOString().replace(/[:.]/g, "-")}.json`);
    writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);

    log(`\n== summary (${((finishedAt.getTime() - startedAt.getTime()) / 1000).toFixed(0)} s)`);
    log(`$ ${command}`);
    for (const v of variants) for (const line of v.table as string[]) log(line);
    for (const v of variants) {
      const findings = v.logFindings as Array<{ line: string; count: number }>;
      if (findings.length === 0) continue;
      log(`\nstore (DIRECT_PUSH=${String(v.directPush)}) log lines that look like trouble:`);
      for (const f of findings) log(`  ${String(f.count).padStart(6)} x ${f.line}`);
    }
    log(`\nresults: ${path.relative(root, file)}`);
    const errors = variants.reduce((sum, v) => sum + (v.errors as number), 0);
    if (errors > 0) console.error(`${errors} operations failed; see the results file`);
    return errors > 0 ? 1 : 0;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
