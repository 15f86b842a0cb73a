/**
 * `npm run bench`: the store against a storage floor, and its convergence, in one run.
 *
 * 1. Starts a storage floor (bench/floor: one Worker, one SQLite Durable Object, one statement per
 *    request) under the same wrangler, and the store as `npm start` does, once per variant
 *    (`BENCH_VARIANTS`: by default SHARDS = 1, 2 and 8), each with fresh state.
 * 2. Drives both with the same closed-loop load (fixed concurrency and value size, store pinned to
 *    one region): write and read latency (p50/p99), throughput and the runtime's CPU per operation
 *    (workerd's own counters; a store write's includes every region's share, until replication
 *    drained), in interleaved rounds, medians over rounds, store/floor ratios against targets.
 * 3. Per consistency mode, at a modest fixed concurrency and in the same interleaved rounds:
 *    writes with ack=local|quorum|all and reads with consistency=eventual|session|quorum, as
 *    ratios to the floor (lib/modes.ts); a session read of a caught-up replica is also held
 *    against the eventual read.
 * 4. Offers writes open-loop at a fixed rate to the store and measures, for a sample of them, the
 *    time from acknowledgement to visible in every other region.
 * 5. Prints a table and writes bench/results/<timestamp>.json. Nothing is asserted about time: this
 *    measures, tests never do. The exit status is 1 only when operations failed.
 *
 * Settings (environment variables; full-run default, then the BENCH_QUICK=1 default when different):
 *   BENCH_QUICK=1              quick run (about 2 minutes) instead of the full run (about 9 minutes)
 *   BENCH_ROUNDS               interleaved rounds of every scenario: 4 | 2
 *   BENCH_PHASE_MS             length of one closed-loop phase: 2500 | 1000
 *   BENCH_WARMUP_MS            warm-up per scenario, after writing every key once: 2000 | 500
 *   BENCH_CONCURRENCY          closed-loop workers, one pass of rounds each; the first pass is held
 *                              to the targets, 1 shows latency without queueing ("none" skips them): 8,1
 *   BENCH_VALUE_BYTES          value size: 256
 *   BENCH_KEYS                 keys written and read: 500 | 200
 *   BENCH_REGION               region the load is pinned to (writes and reads): enam
 *   BENCH_REGIONS              the store's regions (settling, modes, convergence): what its /healthz lists
 *   BENCH_MODES                1 runs the per-consistency-mode pass, 0 skips it: 1
 *   BENCH_MODES_CONCURRENCY    closed-loop workers of the per-mode pass, one pass each; the first is
 *                              held to the session target: 4
 *   BENCH_VARIANTS             store variants to run, each on a fresh store: NAME:value pairs joined by
 *                              "+" (KV_VARS), or on|off for DIRECT_PUSH: SHARDS:1,SHARDS:2,SHARDS:8
 *   BENCH_LOAD_WRITES          per-object load: writes to fresh keys (each shard's share counted): 1500
 *   BENCH_WATCHERS             change-feed watchers of the written keys open during the "store write,
 *                              watched" scenario, held against "store write" (0 drops it): 100
 *   BENCH_WATCH_PREFIX         the prefix those watchers watch ("bench": every written key): bench
 *   BENCH_WATCH_TRANSPORT      how they watch: ws (WebSockets at the region's watch hub) or sse: ws
 *   BENCH_EXTRA_VARS           more KV_VARS for every store (";"-separated), e.g. "REGIONS:enam" for a
 *                              single-region reference (the per-mode pass then has no remote write)
 *   BENCH_CONV_RATES           convergence: offered writes per second, one run each; "half" is half
 *                              the store write throughput of the first latency pass, and the first
 *                              rate is held to the target ("none" skips convergence; skipped anyway
 *                              with one region): half,100,20 | half
 *   BENCH_CONV_MS              convergence: how long writes are offered, per rate: 15000 | 6000
 *   BENCH_CONV_SAMPLES_PER_SEC convergence: writes followed per second (every n-th write): 20
 *   BENCH_POLL_MS              convergence: first poll interval: 5
 *   BENCH_POLL_MS_MAX          convergence: largest poll interval (back-off): 50
 *   BENCH_CONV_TIMEOUT_MS      convergence: a sample not converged by then counts as timed out: 10000
 *   BENCH_SETTLE_TIMEOUT_MS    longest wait for replication to drain between phases: 60000
 *   BENCH_ERRORS_MAX           a phase stops after this many failed operations: 50
 *   BENCH_TOKEN                bearer token for the store: dev-token (what `npm start` accepts)
 *   BENCH_SOURCE               what the servers run: "worktree" (a copy of the working tree taken
 *                              at the start, tracked and untracked files) or "HEAD" (the last commit)
 *   BENCH_KEEP=1               keep the temporary directory with the servers' logs, state and sources
 *
 * The servers run from a copy of the sources (see lib/source.ts): `wrangler dev` reloads on every
 * file change, and others edit this tree while a run is going.
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type Variant, benchEnvPrefix, loadBenchConfig } from "./lib/config.ts";
import { type ObjectLoad, measureObjectLoad } from "./lib/object-load.ts";
import { type ConvergenceSummary, measureConvergence, summarizeConvergence } from "./lib/convergence.ts";
import { closedLoop } from "./lib/load.ts";
import { machine } from "./lib/machine.ts";
import { type ModesResult, runModes } from "./lib/modes.ts";
import { type LogFinding, type Server, logFindings, runDir, startFloor, startStore, stopAll } from "./lib/processes.ts";
import {
  type LatencyPass,
  type Verdict,
  formatConvergence,
  formatVariant,
  objectLoadVerdict,
  shardingCost,
  verdicts,
} from "./lib/report.ts";
import { medianDrainMs, runRounds } from "./lib/rounds.ts";
import { WATCHED_WRITE, baseScenarios, keySpace, valuePool, writeOp } from "./lib/scenarios.ts";
import { type WatcherTally, withWatchers } from "./lib/watchers.ts";
import { settle } from "./lib/settle.ts";
import { snapshot } from "./lib/source.ts";
import { type KvTarget, floorTarget, storeHealthRegions, storeTarget, storeText } from "./lib/targets.ts";

const projectRoot = path.resolve(import.meta.dirname, "..");
const config = loadBenchConfig();
const log = (line: string): void => console.log(line);

/** Writes every key once, so reads find values and SQLite pages are warm. */
async function populate(target: KvTarget, keys: readonly string[], values: readonly Uint8Array[]): Promise<void> {
  const run = await closedLoop(writeOp(target, keys, values), {
    concurrency: Math.max(1, ...config.concurrencies, ...config.modesConcurrencies),
    durationMs: 600_000,
    errorsMax: config.errorsMax,
    opsMax: keys.length,
  });
  if (run.errors > 0) throw new Error(`populating ${target.name} failed: ${run.firstError}`);
}

/** What one store variant measured, as stored in the results file. */
interface VariantResult {
  readonly variant: string;
  readonly kvVars: string;
  readonly regions: readonly string[];
  readonly passes: readonly LatencyPass[];
  /** The per-consistency-mode passes, one per concurrency (none when BENCH_MODES=0). */
  readonly modes: readonly ModesResult[];
  readonly convergences: readonly ConvergenceSummary[];
  /** How long replication took to drain after the last convergence run. */
  readonly finalDrainMs: number;
  readonly verdicts: readonly Verdict[];
  /** Failed operations (latency phases and convergence writes). */
  readonly errors: number;
  readonly table: readonly string[];
  /** How evenly the shards of each region shared writes to fresh keys. */
  readonly objectLoad: ObjectLoad;
  /** The store's /metrics samples at the end of the variant. */
  readonly metrics: readonly string[];
  readonly logFindings: LogFinding[];
}

/** Everything measured on one started store (`server`); stops it at the end. */
async function runVariant(
  server: Server,
  floor: KvTarget,
  floorCpu: () => number,
  variant: Variant,
): Promise<VariantResult> {
  try {
    const regions = await storeRegions(server.baseUrl);
    const store = storeTarget(server.baseUrl, config.token, config.region);
    const peers = regions.filter((r) => r !== config.region).map((r) => storeTarget(server.baseUrl, config.token, r));
    const settleStore = (): Promise<number> =>
      settle(server.baseUrl, config.token, store, peers, config.settleTimeoutMs);
    const keys = keySpace("bench", config.keys);
    const values = valuePool(config.valueBytes);
    const scenarios = baseScenarios(floor, store, keys, values, { floor: floorCpu, store: () => server.cpuSeconds() });
    // The same writes with change-feed watchers of the written keys open: what they cost the write path.
    const tally: WatcherTally = { events: 0 };
    if (config.watchers > 0) {
      scenarios.push({
        name: WATCHED_WRITE,
        kind: "write",
        system: "store",
        op: writeOp(store, keys, values),
        cpuSeconds: () => server.cpuSeconds(),
        baseline: "store write",
        around: withWatchers(
          server.baseUrl,
          config.token,
          config.region,
          config.watchPrefix,
          config.watchers,
          tally,
          config.watchTransport,
        ),
      });
    }

    log(`warm-up: ${keys.length} keys written once to each, then ${config.warmupMs} ms per scenario`);
    await populate(floor, keys, values);
    await populate(store, keys, values);
    await settleStore();
    // The per-mode pass warms its own scenarios up.
    for (const s of config.concurrencies.length === 0 ? [] : scenarios) {
      const { warmupMs, errorsMax } = config;
      await closedLoop(s.op, { concurrency: Math.max(...config.concurrencies), durationMs: warmupMs, errorsMax });
      if (s.system === "store" && s.kind === "write") await settleStore();
    }

    const passes: LatencyPass[] = [];
    for (const concurrency of config.concurrencies) {
      log(`latency: ${config.rounds} rounds, ${config.phaseMs} ms per phase, concurrency ${concurrency}`);
      const rounds = await runRounds(scenarios, {
        rounds: config.rounds,
        phaseMs: config.phaseMs,
        concurrency,
        errorsMax: config.errorsMax,
        settleAfterStoreWrite: settleStore,
        log,
      });
      passes.push({ concurrency, rounds, drainMs: medianDrainMs(rounds) });
      if (config.watchers > 0) log(`  ${config.watchers} watchers received ${tally.events} change events so far`);
    }

    const modes: ModesResult[] = [];
    for (const concurrency of config.modesConcurrencies) {
      const setup = { config, baseUrl: server.baseUrl, regions, keys, values, settle: settleStore, log };
      modes.push(await runModes(setup, floor, concurrency));
    }

    const convergences: ConvergenceSummary[] = [];
    if (peers.length === 0 && config.convRatesPerSec.length > 0) log("convergence: skipped, the store has one region");
    // Half the store's own measured write capacity (the first latency pass, 8 workers by default).
    const capacity = passes[0]?.rounds.medians["store write"]?.opsPerSec;
    const rates = config.convRatesPerSec.flatMap((r) =>
      r !== "half" ? [r] : capacity === undefined ? [] : [Math.max(1, Math.round(capacity / 2))],
    );
    if (rates.length < config.convRatesPerSec.length) log('convergence: no latency pass, so no "half" rate');
    for (const rate of peers.length === 0 ? [] : rates) {
      const sampleEvery = Math.max(1, Math.round(rate / config.convSamplesPerSec));
      log(`convergence: ${rate} writes/s to ${config.region} for ${config.convMs} ms, 1 in ${sampleEvery} followed`);
      await settleStore();
      const result = await measureConvergence(store, peers, {
        label: `${variant.name}-${rate}`,
        ratePerSec: rate,
        durationMs: config.convMs,
        sampleEvery,
        pollMs: config.pollMs,
        pollMsMax: config.pollMsMax,
        timeoutMs: config.convTimeoutMs,
        valueBytes: config.valueBytes,
        // Four seconds' worth of writes in flight means the store is far behind; offering more only piles up.
        inFlightMax: 4 * rate,
      });
      const summary = summarizeConvergence(result, variant.name, rate);
      convergences.push(summary);
      for (const line of formatConvergence(summary)) log(line);
    }
    log(`object load: ${config.loadWrites} writes to fresh keys at concurrency 8`);
    const objectLoad = await measureObjectLoad(server.baseUrl, config.token, store, values[0] as Uint8Array, {
      concurrency: 8,
      opsMax: config.loadWrites,
      durationMs: 300_000,
      errorsMax: config.errorsMax,
      settle: settleStore,
    });
    const finalDrainMs = await settleStore();
    const metrics = await storeText(server.baseUrl, config.token, "/metrics");
    const shards = Object.values(objectLoad.perRegion)[0]?.length ?? 1;
    const loadVerdicts = shards > 1 ? [objectLoadVerdict(objectLoad.maxToMean, shards)] : [];
    const table = [
      ...formatVariant(variant.name, passes, modes, convergences),
      ...loadVerdicts.map(
        (v) =>
          `  ${`${v.met ? "MET" : "NOT MET"}${v.official ? "" : " (ref)"}`.padEnd(13)} ${v.name.padEnd(44)} ${`${v.value.toFixed(3)}x`.padStart(10)}  target ${v.target}`,
      ),
      `  object load: ${objectLoad.writes} writes to fresh keys; busiest shard / mean of its region ${objectLoad.maxToMean.toFixed(3)}x (${JSON.stringify(objectLoad.perRegion)})`,
    ];
    return {
      variant: variant.name,
      objectLoad,
      kvVars: storeVars(variant),
      regions,
      passes,
      modes,
      convergences,
      finalDrainMs,
      verdicts: [...verdicts(passes, modes, convergences), ...loadVerdicts],
      errors:
        passes.reduce((sum, p) => sum + p.rounds.errors, 0) +
        modes.reduce((sum, m) => sum + m.rounds.errors, 0) +
        convergences.reduce((sum, c) => sum + c.writeErrors, 0),
      table,
      metrics: metrics.split("\n").filter((l) => l !== "" && !l.startsWith("#")),
      logFindings: logFindings(server.logPath),
    };
  } finally {
    await server.stop();
  }
}

/**
 * The store's regions: what its /healthz lists, which must equal BENCH_REGIONS when that is set
 * and must include the pinned region.
 */
async function storeRegions(baseUrl: string): Promise<string[]> {
  const served = await storeHealthRegions(baseUrl);
  if (config.regions !== null && served.join(",") !== config.regions.join(","))
    throw new Error(`BENCH_REGIONS is ${config.regions.join(",")} but the store serves ${served.join(",")}`);
  if (!served.includes(config.region))
    throw new Error(`BENCH_REGION ${config.region} is not one of the store's regions (${served.join(",")})`);
  return served;
}

/** The KV_VARS a variant's store is started with. */
function storeVars(variant: Variant): string {
  return [variant.vars, config.extraVars].filter(Boolean).join(";");
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
    const host = machine(projectRoot);
    log(`$ ${command}`);
    log(`machine: ${JSON.stringify(host)}`);
    log(`servers' logs and state: ${dir}${config.keep ? " (kept)" : " (removed at the end)"}`);
    const source = snapshot(projectRoot, dir, config.source);
    log(`sources: ${config.source} at ${source.commit} (${source.changedFiles.length} files changed since)`);
    const [first, ...rest] = config.variants;
    if (first === undefined) throw new Error("BENCH_VARIANTS is empty");
    log(`starting the floor and the store (KV_VARS="${storeVars(first)}")`);
    // The floor and the first store start together: each start bundles and boots workerd.
    const [floorServer, firstStore] = await Promise.all([
      startFloor(source.root, dir, config.keep),
      startStore(source.root, dir, "store-0", storeVars(first), config.keep),
    ]);
    const floor = floorTarget(floorServer.baseUrl);
    const variants: VariantResult[] = [];
    log(`\n== store with KV_VARS="${storeVars(first)}"`);
    variants.push(await runVariant(firstStore, floor, () => floorServer.cpuSeconds(), first));
    for (const [i, variant] of rest.entries()) {
      log(`\n== store with KV_VARS="${storeVars(variant)}" (restarted with fresh state)`);
      const server = await startStore(source.root, dir, `store-${i + 1}`, storeVars(variant), config.keep);
      variants.push(await runVariant(server, floor, () => floorServer.cpuSeconds(), variant));
    }
    const floorFindings = logFindings(floorServer.logPath);
    await floorServer.stop();
    const finishedAt = new Date();
    const results = {
      command,
      startedAt,
      finishedAt,
      config,
      machine: { ...host, loadAverageAtEnd: os.loadavg() },
      source,
      variants,
      floorLogFindings: floorFindings,
    };
    const resultsDir = path.join(projectRoot, "bench", "results");
    mkdirSync(resultsDir, { recursive: true });
    const file = path.join(resultsDir, `${startedAt.toISOString().replace(/[:.]/g, "-")}.json`);
    writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);

    log(`\n== summary (${((finishedAt.getTime() - startedAt.getTime()) / 1000).toFixed(0)} s)`);
    log(`$ ${command}`);
    log(
      `${host.nproc} CPUs, load average ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(" ")}`,
    );
    for (const v of variants) for (const line of v.table) log(line);
    // What sharding costs, when the run has the variants to tell (the default one does).
    const named = (name: string): VariantResult | undefined => variants.find((v) => v.variant === name);
    const cost = shardingCost("SHARDS=2 / SHARDS=1", named("SHARDS=2")?.passes[0], named("SHARDS=1")?.passes[0]);
    if (cost.length > 0) log("\nsharding cost (ratios of store/floor ratios, first concurrency)");
    for (const v of cost)
      log(
        `  ${(v.met ? "MET" : "NOT MET").padEnd(13)} ${v.name.padEnd(44)} ${`${v.value.toFixed(3)}x`.padStart(10)}  target ${v.target}`,
      );
    const findingsOf: Array<[string, LogFinding[]]> = [
      ...variants.map((v): [string, LogFinding[]] => [`store (KV_VARS="${v.kvVars}")`, v.logFindings]),
      ["floor", floorFindings],
    ];
    for (const [name, findings] of findingsOf) {
      if (findings.length === 0) continue;
      log(`\n${name} log lines that look like trouble:`);
      for (const finding of findings) log(`  ${String(finding.count).padStart(6)} x ${finding.line}`);
    }
    log(`\nresults: ${path.relative(projectRoot, file)}`);
    const errors = variants.reduce((sum, v) => sum + v.errors, 0);
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
