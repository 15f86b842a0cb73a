/**
 * The printed summary: per variant, a table of floor and store figures with store/floor ratios
 * against their targets, the per-consistency-mode table, then convergence against its target.
 */
import { type ConvergenceSummary } from "./convergence.ts";
import { MODE, type ModesResult } from "./modes.ts";
import { type RoundsResult } from "./rounds.ts";
import { WATCHED_WRITE } from "./scenarios.ts";

/** The targets the store is held to. */
export const TARGETS = {
  writeP50RatioMax: 1.3,
  readP50RatioMax: 1.15,
  writeThroughputRatioMin: 0.7,
  /** Runtime CPU per acknowledged write (every region's share of it) against the floor's. */
  writeCpuRatioMax: 1.43,
  convergenceP99MsMax: 250,
  /** A session read of a caught-up replica against an eventual read, p50. */
  sessionToEventualP50RatioMax: 1.1,
  /** A strong read against an eventual read at the primary's region, p50. */
  strongReadToEventualP50RatioMax: 1.2,
  /** A strong write against an `ack=quorum` write, p50. */
  strongWriteToQuorumP50RatioMax: 1.2,
  /** With 8 shards and writes to fresh keys, the busiest replica object's applied writes against its region's mean. */
  objectLoadRatioMax: 1.15,
  /** SHARDS=2 against SHARDS=1: the store/floor ratios of write p50, read p50 and write CPU. */
  shardingCostRatioMax: 1.1,
  /** Writes with 100 change-feed watchers open against the same writes without: CPU per write. */
  watchedWriteCpuRatioMax: 1.05,
} as const;

/** The per-object load verdict of a store with `shards` shards (the target is stated for 8). */
export function objectLoadVerdict(maxToMean: number, shards: number): Verdict {
  const max = TARGETS.objectLoadRatioMax;
  return {
    name: `busiest shard / mean, ${shards} shards`,
    value: maxToMean,
    target: `<= ${max}x`,
    met: maxToMean <= max,
    official: shards === 8,
  };
}

/**
 * What sharding costs: a variant's store/floor ratios (write p50, read p50, write CPU, at the
 * first concurrency) over a baseline variant's, each held to the same bound.
 */
export function shardingCost(
  name: string,
  pass: LatencyPass | undefined,
  baseline: LatencyPass | undefined,
): Verdict[] {
  if (pass === undefined || baseline === undefined) return [];
  const max = TARGETS.shardingCostRatioMax;
  const pick: Array<[string, (p: LatencyPass) => number | undefined]> = [
    ["write p50", (p) => p.rounds.ratios["store write"]?.p50],
    ["read p50", (p) => p.rounds.ratios["store read"]?.p50],
    ["write CPU", (p) => p.rounds.ratios["store write"]?.cpu],
  ];
  return pick.flatMap(([what, of]) => {
    const a = of(pass);
    const b = of(baseline);
    if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b)) return [];
    const value = a / b;
    return [{ name: `${what} ${name}`, value, target: `<= ${max}x`, met: value <= max, official: true }];
  });
}

/** A target's verdict. */
export interface Verdict {
  readonly name: string;
  readonly value: number;
  readonly target: string;
  readonly met: boolean;
  /**
   * Whether this is one of the targets as stated (latency and throughput at the first, loaded
   * concurrency; convergence at the first rate) or the same bound applied elsewhere for reference.
   */
  readonly official: boolean;
}

/** One pass of interleaved rounds at one concurrency. */
export interface LatencyPass {
  readonly concurrency: number;
  readonly rounds: RoundsResult;
  /** Median time for replication to drain after a store write phase. */
  readonly drainMs: number;
}

function f(x: number, digits = 2): string {
  return Number.isFinite(x) ? x.toFixed(digits) : "n/a";
}

function passVerdicts(pass: LatencyPass, official: boolean): Verdict[] {
  const write = pass.rounds.ratios["store write"];
  const read = pass.rounds.ratios["store read"];
  const at = `, concurrency ${pass.concurrency}`;
  const out: Verdict[] = [];
  if (write !== undefined) {
    const max = TARGETS.writeP50RatioMax;
    out.push({
      name: `write p50 store/floor${at}`,
      value: write.p50,
      target: `<= ${max}x`,
      met: write.p50 <= max,
      official,
    });
  }
  if (read !== undefined) {
    const max = TARGETS.readP50RatioMax;
    out.push({
      name: `read p50 store/floor${at}`,
      value: read.p50,
      target: `<= ${max}x`,
      met: read.p50 <= max,
      official,
    });
  }
  // CPU per write: what the platform bills, whatever the concurrency.
  if (write !== undefined && Number.isFinite(write.cpu)) {
    const max = TARGETS.writeCpuRatioMax;
    out.push({
      name: `write CPU store/floor${at}`,
      value: write.cpu,
      target: `<= ${max}x`,
      met: write.cpu <= max,
      official,
    });
  }
  // What open watchers cost the write path, in the CPU the platform bills.
  const watched = pass.rounds.relative[WATCHED_WRITE];
  if (watched !== undefined && Number.isFinite(watched.cpu)) {
    const max = TARGETS.watchedWriteCpuRatioMax;
    out.push({
      name: `write CPU watched/unwatched${at}`,
      value: watched.cpu,
      target: `<= ${max}x`,
      met: watched.cpu <= max,
      official,
    });
  }
  // Throughput is a target only under load: one worker measures latency, not capacity.
  if (write !== undefined && official) {
    const min = TARGETS.writeThroughputRatioMin;
    out.push({
      name: `write throughput store/floor${at}`,
      value: write.throughput,
      target: `>= ${min}x`,
      met: write.throughput >= min,
      official,
    });
  }
  return out;
}

function modesVerdicts(modes: ModesResult, official: boolean): Verdict[] {
  const relative: ReadonlyArray<[string, string, number]> = [
    [MODE.readSession, "session/eventual read", TARGETS.sessionToEventualP50RatioMax],
    [MODE.readStrong, "strong/eventual read", TARGETS.strongReadToEventualP50RatioMax],
    [MODE.writeStrong, "strong/ack=quorum write", TARGETS.strongWriteToQuorumP50RatioMax],
  ];
  return relative.flatMap(([scenario, label, max]) => {
    const ratio = modes.rounds.relative[scenario];
    if (ratio === undefined) return [];
    return [
      {
        name: `${label} p50, concurrency ${modes.concurrency}`,
        value: ratio.p50,
        target: `<= ${max}x`,
        met: ratio.p50 <= max,
        official,
      },
    ];
  });
}

/**
 * The verdicts for one variant: the first latency pass, the first per-mode pass and the first
 * convergence run are the official ones.
 */
export function verdicts(
  passes: readonly LatencyPass[],
  modes: readonly ModesResult[],
  convergences: readonly ConvergenceSummary[],
): Verdict[] {
  const out = passes.flatMap((pass, i) => passVerdicts(pass, i === 0));
  modes.forEach((m, i) => out.push(...modesVerdicts(m, i === 0)));
  convergences.forEach((c, i) => {
    const max = TARGETS.convergenceP99MsMax;
    out.push({
      name: `convergence p99 at ${c.offeredPerSec} writes/s`,
      value: c.all.p99Ms,
      target: `<= ${max} ms`,
      met: c.timedOut === 0 && c.skippedWrites === 0 && c.all.p99Ms <= max,
      official: i === 0,
    });
  });
  return out;
}

function cols(cells: readonly string[], widths: readonly number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  ");
}

/** A convergence run, as lines. */
export function formatConvergence(c: ConvergenceSummary): string[] {
  const skipped = c.skippedWrites === 0 ? "" : `, ${c.skippedWrites} not sent (too many in flight)`;
  const per = Object.entries(c.perRegion).map(([region, s]) => `${region} ${f(s.p50Ms, 1)}/${f(s.p99Ms, 1)}`);
  return [
    `convergence at ${c.offeredPerSec} writes/s offered: p50 ${f(c.all.p50Ms, 1)} ms, p99 ${f(c.all.p99Ms, 1)} ms, ` +
      `max ${f(c.all.maxMs, 1)} ms (${c.samples} samples, ${c.timedOut} timed out)`,
    `  writes: ${f(c.achievedPerSec, 1)}/s acknowledged, ${c.writeErrors} failed${skipped}; ` +
      `ack latency p50 ${f(c.ackLatency.p50Ms)} ms, p99 ${f(c.ackLatency.p99Ms)} ms`,
    `  per region p50/p99 ms: ${per.join(", ")}; polling ${f(c.pollsPerSec, 0)} GET/s, ${c.pollErrors} failed polls`,
  ];
}

/** The per-mode table, as lines. */
export function formatModes(modes: ModesResult): string[] {
  const { rounds } = modes;
  const nameWidth = Math.max(...Object.keys(rounds.medians).map((name) => name.length));
  const widths = [nameWidth, 9, 9, 8, 10, 10, 14];
  const ratio = (x: number | undefined): string => (x === undefined ? "" : `${f(x)}x`);
  const lines = [
    `  per consistency mode at ${modes.concurrency} workers, median over ${rounds.rounds.length} rounds ` +
      `(session token from a write at ${modes.anchorRegion}; remote writes at ${modes.remoteRegion ?? "none"})`,
    `  ${cols(["scenario", "p50 ms", "p99 ms", "ops/s", "p50/floor", "p99/floor", "p50/baseline"], widths)}`,
  ];
  for (const [name, m] of Object.entries(rounds.medians)) {
    const r = rounds.ratios[name];
    const rel = rounds.relative[name];
    const baseline = rel === undefined ? "" : `${ratio(rel.p50)} ${rel.baseline.replace(/^read /, "")}`;
    lines.push(
      `  ${cols([name, f(m.p50Ms), f(m.p99Ms), f(m.opsPerSec, 0), ratio(r?.p50), ratio(r?.p99), baseline], widths)}`,
    );
  }
  lines.push(`  replication drained ${f(modes.drainMs, 0)} ms after a phase that wrote (median)`);
  return lines;
}

/** The table of one variant, as lines. */
export function formatVariant(
  variant: string,
  passes: readonly LatencyPass[],
  modes: readonly ModesResult[],
  convergences: readonly ConvergenceSummary[],
): string[] {
  const lines: string[] = [];
  const nameWidth = Math.max(14, ...passes.flatMap((p) => Object.keys(p.rounds.medians).map((n) => n.length)));
  const widths = [nameWidth, 10, 10, 10, 11, 11, 10, 10];
  lines.push(variant);
  for (const { concurrency, rounds, drainMs } of passes) {
    lines.push(
      `  concurrency ${concurrency}, median over ${rounds.rounds.length} rounds (ratios: median of per-round ratios)`,
    );
    lines.push(
      `  ${cols(["scenario", "p50 ms", "p99 ms", "ops/s", "p50 ratio", "ops ratio", "CPU ms/op", "CPU ratio"], widths)}`,
    );
    for (const [name, m] of Object.entries(rounds.medians)) {
      const r = rounds.ratios[name];
      const ratio = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? "" : `${f(x)}x`);
      const cells = [name, f(m.p50Ms), f(m.p99Ms), f(m.opsPerSec, 0), ratio(r?.p50), ratio(r?.throughput)];
      lines.push(`  ${cols([...cells, f(m.cpuMsPerOp, 3), ratio(r?.cpu)], widths)}`);
    }
    lines.push(`  replication drained ${f(drainMs, 0)} ms after a store write phase ended (median)`);
  }
  for (const m of modes) lines.push(...formatModes(m));
  for (const c of convergences) lines.push(...formatConvergence(c).map((line) => `  ${line}`));
  for (const v of verdicts(passes, modes, convergences)) {
    // Three decimals: a ratio printed as 1.10x must not hide whether it is above or below 1.1.
    const value = v.name.startsWith("convergence") ? `${f(v.value, 1)} ms` : `${f(v.value, 3)}x`;
    const verdict = `${v.met ? "MET" : "NOT MET"}${v.official ? "" : " (ref)"}`;
    lines.push(`  ${verdict.padEnd(13)} ${v.name.padEnd(44)} ${value.padStart(10)}  target ${v.target}`);
  }
  return lines;
}
