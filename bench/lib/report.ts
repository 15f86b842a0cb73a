/**
 * The printed summary: per variant, a table of floor and store figures with store/floor ratios
 * against their targets, then convergence against its target.
 */
import { type LatencySummary } from "./histogram.ts";
import { type RoundsResult } from "./rounds.ts";

/** The targets the store is held to. */
export const TARGETS = {
  writeP50RatioMax: 1.3,
  readP50RatioMax: 1.15,
  writeThroughputRatioMin: 0.7,
  convergenceP99MsMax: 250,
} as const;

/** A target's verdict. */
export interface Verdict {
  readonly name: string;
  readonly value: number;
  readonly target: string;
  readonly met: boolean;
}

/** Convergence figures as reported. */
export interface ConvergenceSummary {
  readonly directPush: string;
  readonly offeredPerSec: number;
  readonly achievedPerSec: number;
  readonly writeErrors: number;
  readonly samples: number;
  readonly timedOut: number;
  readonly skipped: number;
  readonly all: LatencySummary;
  readonly perRegion: Record<string, LatencySummary>;
  readonly ackLatency: LatencySummary;
  readonly pollsPerSec: number;
  readonly pollErrors: number;
}

const f = (x: number, digits = 2): string => (Number.isFinite(x) ? x.toFixed(digits) : "n/a");

/** The verdicts for one variant's rounds and convergence. */
export function verdicts(rounds: RoundsResult, convergence: ConvergenceSummary | null): Verdict[] {
  const write = rounds.ratios["store write"];
  const read = rounds.ratios["store read"];
  const out: Verdict[] = [];
  if (write !== undefined) {
    out.push({
      name: "write p50 store/floor",
      value: write.p50,
      target: `<= ${TARGETS.writeP50RatioMax}x`,
      met: write.p50 <= TARGETS.writeP50RatioMax,
    });
  }
  if (read !== undefined) {
    out.push({
      name: "read p50 store/floor",
      value: read.p50,
      target: `<= ${TARGETS.readP50RatioMax}x`,
      met: read.p50 <= TARGETS.readP50RatioMax,
    });
  }
  if (write !== undefined) {
    out.push({
      name: "write throughput store/floor",
      value: write.throughput,
      target: `>= ${TARGETS.writeThroughputRatioMin}x`,
      met: write.throughput >= TARGETS.writeThroughputRatioMin,
    });
  }
  if (convergence !== null) {
    out.push({
      name: `convergence p99 at ${convergence.offeredPerSec}/s`,
      value: convergence.all.p99Ms,
      target: `<= ${TARGETS.convergenceP99MsMax} ms`,
      met: convergence.timedOut === 0 && convergence.all.p99Ms <= TARGETS.convergenceP99MsMax,
    });
  }
  return out;
}

function cols(cells: readonly string[], widths: readonly number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  ");
}

/** The table of one variant, as lines. */
export function formatVariant(
  directPush: string,
  rounds: RoundsResult,
  drainMs: number,
  convergence: ConvergenceSummary | null,
): string[] {
  const lines: string[] = [];
  const widths = [14, 10, 10, 10, 11, 11];
  lines.push(`DIRECT_PUSH=${directPush}: median over ${rounds.rounds.length} rounds`);
  lines.push(cols(["scenario", "p50 ms", "p99 ms", "ops/s", "p50 ratio", "ops ratio"], widths));
  for (const [name, m] of Object.entries(rounds.medians)) {
    const r = rounds.ratios[name];
    lines.push(
      cols(
        [
          name,
          f(m.p50Ms),
          f(m.p99Ms),
          f(m.opsPerSec, 0),
          r === undefined ? "" : `${f(r.p50)}x`,
          r === undefined ? "" : `${f(r.throughput)}x`,
        ],
        widths,
      ),
    );
  }
  lines.push(`replication drain after a store write phase (median): ${f(drainMs, 0)} ms`);
  if (convergence !== null) {
    const c = convergence;
    lines.push(
      `convergence at ${c.offeredPerSec}/s offered (${f(c.achievedPerSec, 1)}/s acked, ${c.writeErrors} errors), ` +
        `${c.samples} samples, ${c.timedOut} timed out: p50 ${f(c.all.p50Ms, 1)} ms, p99 ${f(c.all.p99Ms, 1)} ms, ` +
        `max ${f(c.all.maxMs, 1)} ms`,
    );
    const per = Object.entries(c.perRegion).map(([region, s]) => `${region} p50 ${f(s.p50Ms, 1)}/p99 ${f(s.p99Ms, 1)}`);
    lines.push(`  per region (ms): ${per.join(", ")}`);
    lines.push(
      `  write ack latency p50 ${f(c.ackLatency.p50Ms)} ms, p99 ${f(c.ackLatency.p99Ms)} ms; ` +
        `polling ${f(c.pollsPerSec, 0)} GET/s`,
    );
  }
  for (const v of verdicts(rounds, convergence)) {
    const value = v.name.startsWith("convergence") ? `${f(v.value, 1)} ms` : `${f(v.value)}x`;
    lines.push(`  ${v.met ? "MET    " : "NOT MET"} ${v.name.padEnd(32)} ${value.padStart(10)}  target ${v.target}`);
  }
  return lines;
}
