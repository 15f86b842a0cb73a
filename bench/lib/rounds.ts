/**
 * Interleaved rounds. The machine is shared and noisy, so a single long phase per scenario would
 * measure whatever else ran at the time. Instead every round runs each scenario once, floor and
 * store back to back (order alternating between rounds, so neither always goes first), and the
 * figures are medians over rounds. Ratios are taken within a round, then the median is reported.
 */
import os from "node:os";
import { type Histogram, type LatencySummary, histogram, mergeInto, quantile, summarize } from "./histogram.ts";
import { closedLoop } from "./load.ts";
import { type Scenario, type ScenarioKind } from "./scenarios.ts";

/** Settings of the rounds. */
export interface RoundsOptions {
  readonly rounds: number;
  readonly phaseMs: number;
  readonly concurrency: number;
  readonly errorsMax: number;
  /**
   * Runs after every phase that wrote to the store, before the next phase: waits out the
   * replication it caused.
   */
  readonly settleAfterStoreWrite: () => Promise<number>;
  readonly log: (line: string) => void;
}

/** One phase's figures. */
export interface PhaseFigures {
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly opsPerSec: number;
  readonly ok: number;
  readonly errors: number;
  readonly firstError: string | null;
  /** The machine's 1-minute load average at the end of the phase: how noisy the neighbours were. */
  readonly load1m: number;
  /** Phases that wrote to the store: how long replication took to drain after the phase ended. */
  readonly drainMs?: number;
  /**
   * CPU milliseconds the system's runtime spent per successful operation: from the phase's start
   * until its replication had drained (for a store write, every region's share of it, since they
   * all run in the one process). Absent when the scenario cannot read its CPU.
   */
  readonly cpuMsPerOp?: number;
}

/** A store scenario compared with the floor scenario of its kind (store / floor). */
export interface Ratio {
  readonly p50: number;
  readonly p99: number;
  readonly throughput: number;
  /** CPU per operation (NaN when either side could not read its CPU). */
  readonly cpu: number;
}

/** A store scenario compared with its `baseline`, another store scenario (this / baseline). */
export interface RelativeRatio extends Ratio {
  readonly baseline: string;
}

/** All rounds' results. */
export interface RoundsResult {
  readonly rounds: Array<Record<string, PhaseFigures>>;
  /** Median over rounds of each figure, per scenario. */
  readonly medians: Record<string, { p50Ms: number; p99Ms: number; opsPerSec: number; cpuMsPerOp: number }>;
  /** Median over rounds of the per-round ratio to the floor, per store scenario. */
  readonly ratios: Record<string, Ratio>;
  /** Median over rounds of the per-round ratio to its baseline, per store scenario that has one. */
  readonly relative: Record<string, RelativeRatio>;
  /** Every round's latencies merged, per scenario. */
  readonly merged: Record<string, LatencySummary>;
  readonly errors: number;
}

const ROUNDS_MAX = 100;

/** The median of `values` (NaN when empty). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function ordered(scenarios: readonly Scenario[], kind: ScenarioKind, round: number): Scenario[] {
  const ofKind = scenarios.filter((s) => s.kind === kind);
  const floors = ofKind.filter((s) => s.system === "floor");
  const stores = ofKind.filter((s) => s.system === "store");
  return round % 2 === 0 ? [...floors, ...stores] : [...stores, ...floors];
}

/** Median time replication took to drain after the phases that wrote to the store (NaN if none did). */
export function medianDrainMs(result: RoundsResult): number {
  return median(result.rounds.flatMap((r) => Object.values(r).flatMap((p) => p.drainMs ?? [])));
}

/** Runs `options.rounds` interleaved rounds of `scenarios`. */
export async function runRounds(scenarios: readonly Scenario[], options: RoundsOptions): Promise<RoundsResult> {
  const { rounds, phaseMs, concurrency, errorsMax, settleAfterStoreWrite, log } = options;
  if (!(rounds >= 1 && rounds <= ROUNDS_MAX)) throw new Error(`rounds out of range: ${rounds}`);
  const names = new Set(scenarios.map((s) => s.name));
  if (names.size !== scenarios.length) throw new Error("scenario names must be unique");
  for (const s of scenarios) {
    if (s.baseline !== undefined && !names.has(s.baseline))
      throw new Error(`${s.name}: baseline ${s.baseline} is not a scenario of these rounds`);
  }
  const nameWidth = Math.max(...scenarios.map((s) => s.name.length));
  const merged = new Map<string, Histogram>(scenarios.map((s) => [s.name, histogram()]));
  const results: Array<Record<string, PhaseFigures>> = [];
  let errors = 0;
  for (let round = 0; round < rounds; round += 1) {
    const figures: Record<string, PhaseFigures> = {};
    for (const kind of ["write", "read"] as const) {
      for (const scenario of ordered(scenarios, kind, round)) {
        let cpuBefore: number | undefined;
        let cpuAfter: number | undefined;
        let run: Awaited<ReturnType<typeof closedLoop>> | undefined;
        let drainMs: number | undefined;
        const wroteStore = scenario.system === "store" && (scenario.kind === "write" || scenario.writesStore === true);
        const measured = async (): Promise<void> => {
          cpuBefore = scenario.cpuSeconds?.();
          run = await closedLoop(scenario.op, { concurrency, durationMs: phaseMs, errorsMax });
          drainMs = wroteStore ? await settleAfterStoreWrite() : undefined;
          cpuAfter = scenario.cpuSeconds?.();
        };
        await (scenario.around === undefined ? measured() : scenario.around(measured));
        if (run === undefined) throw new Error(`${scenario.name}: the phase did not run`);
        mergeInto(merged.get(scenario.name) as Histogram, run.latency);
        errors += run.errors;
        const cpuMsPerOp =
          cpuBefore === undefined || cpuAfter === undefined || run.ok === 0
            ? Number.NaN
            : ((cpuAfter - cpuBefore) * 1000) / run.ok;
        const phase: PhaseFigures = {
          p50Ms: quantile(run.latency, 0.5),
          p99Ms: quantile(run.latency, 0.99),
          opsPerSec: run.opsPerSec,
          ok: run.ok,
          errors: run.errors,
          firstError: run.firstError,
          load1m: os.loadavg()[0] ?? Number.NaN,
          ...(drainMs === undefined ? {} : { drainMs }),
          ...(Number.isFinite(cpuMsPerOp) ? { cpuMsPerOp } : {}),
        };
        figures[scenario.name] = phase;
        const drained = drainMs === undefined ? "" : `, replication drained ${drainMs.toFixed(0)} ms after`;
        const cpu = Number.isFinite(cpuMsPerOp) ? `, CPU ${cpuMsPerOp.toFixed(2)} ms/op` : "";
        const failed = run.errors === 0 ? "" : `, ${run.errors} errors (first: ${run.firstError})`;
        log(
          `  round ${round + 1}/${rounds} ${scenario.name.padEnd(nameWidth)} p50 ${phase.p50Ms.toFixed(2)} ms, ` +
            `p99 ${phase.p99Ms.toFixed(2)} ms, ${phase.opsPerSec.toFixed(0)}/s${cpu}, load ${phase.load1m.toFixed(1)}${drained}${failed}`,
        );
      }
    }
    results.push(figures);
  }
  const pick = (name: string, f: (p: PhaseFigures) => number): number[] =>
    results.map((r) => r[name]).flatMap((p) => (p === undefined ? [] : [f(p)]));
  const medians: RoundsResult["medians"] = {};
  for (const s of scenarios) {
    medians[s.name] = {
      p50Ms: median(pick(s.name, (p) => p.p50Ms)),
      p99Ms: median(pick(s.name, (p) => p.p99Ms)),
      opsPerSec: median(pick(s.name, (p) => p.opsPerSec)),
      cpuMsPerOp: median(pick(s.name, (p) => p.cpuMsPerOp ?? Number.NaN).filter(Number.isFinite)),
    };
  }
  /** Median over rounds of `name`'s per-round figures divided by `other`'s. */
  const ratioOf = (name: string, other: string): Ratio => {
    const per = (f: (p: PhaseFigures) => number): number =>
      median(
        results.flatMap((r) => {
          const a = r[name];
          const b = r[other];
          const value = a === undefined || b === undefined ? Number.NaN : f(a) / f(b);
          return Number.isFinite(value) ? [value] : [];
        }),
      );
    return {
      p50: per((p) => p.p50Ms),
      p99: per((p) => p.p99Ms),
      throughput: per((p) => p.opsPerSec),
      cpu: per((p) => p.cpuMsPerOp ?? Number.NaN),
    };
  };
  const ratios: RoundsResult["ratios"] = {};
  const relative: RoundsResult["relative"] = {};
  for (const s of scenarios.filter((x) => x.system === "store")) {
    const floor = scenarios.find((x) => x.system === "floor" && x.kind === s.kind);
    if (floor !== undefined) ratios[s.name] = ratioOf(s.name, floor.name);
    if (s.baseline !== undefined) relative[s.name] = { baseline: s.baseline, ...ratioOf(s.name, s.baseline) };
  }
  const summaries: RoundsResult["merged"] = {};
  for (const [name, h] of merged) summaries[name] = summarize(h);
  return { rounds: results, medians, ratios, relative, merged: summaries, errors };
}
