/**
 * The load generator: any async operation, timed into a histogram, driven closed-loop (a fixed
 * number of workers, each issuing its next operation when the last one answers) or open-loop
 * (a fixed offered rate, whatever the answers do). Scenarios are plain `Operation`s, so a new
 * one (a quorum write, a session read) is a function, not a new loop. An operation that needs a
 * set-up step it should not be timed for (a write before the read it measures) restarts its
 * stopwatch after the set-up.
 */
import { type Histogram, histogram, record } from "./histogram.ts";

/** Lets an operation leave its own set-up out of its latency. */
export interface Stopwatch {
  /** The operation's latency is measured from now on (the work before it is not counted). */
  restart(): void;
}

/**
 * One unit of work. `n` numbers the operations of a run from 0; throwing counts as an error.
 * Operations that time all of their work ignore the stopwatch.
 */
export type Operation = (n: number, stopwatch: Stopwatch) => Promise<void>;

/** What a run measured. */
export interface RunResult {
  /** Latencies of successful operations (closed loop: service time; open loop: from the scheduled start). */
  readonly latency: Histogram;
  readonly ok: number;
  readonly errors: number;
  /** Open loop only: operations not started because `inFlightMax` were still running (overload). */
  readonly skipped: number;
  readonly firstError: string | null;
  readonly elapsedMs: number;
  /** Successful operations per second over the run. */
  readonly opsPerSec: number;
}

/** Closed-loop settings. */
export interface ClosedLoopOptions {
  readonly concurrency: number;
  readonly durationMs: number;
  /** The run stops early once this many operations have failed: a broken target is not a figure. */
  readonly errorsMax: number;
  /** The run stops after this many operations (default: unbounded, time decides). */
  readonly opsMax?: number;
}

/** Open-loop settings. */
export interface OpenLoopOptions {
  readonly ratePerSec: number;
  readonly durationMs: number;
  /** Operations allowed in flight; a scheduled operation beyond it is skipped (and counted as skipped). */
  readonly inFlightMax: number;
}

const CONCURRENCY_MAX = 1024;
const RATE_PER_SEC_MAX = 100_000;

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/**
 * Runs `op` once and records its latency into `into` if it succeeds (a failure is thrown to the
 * caller and not recorded). The latency runs from `startedAt` (default: now), or from the last
 * `stopwatch.restart()` the operation made. Returns the latency in milliseconds.
 */
export async function measure(
  into: Histogram,
  op: (stopwatch: Stopwatch) => Promise<void>,
  startedAt = performance.now(),
): Promise<number> {
  let started = startedAt;
  await op({
    restart() {
      started = performance.now();
    },
  });
  const ms = performance.now() - started;
  record(into, ms);
  return ms;
}

/** Drives `op` with `concurrency` workers for `durationMs`. */
export async function closedLoop(op: Operation, options: ClosedLoopOptions): Promise<RunResult> {
  const { concurrency, durationMs, errorsMax, opsMax = Number.POSITIVE_INFINITY } = options;
  if (!(concurrency >= 1 && concurrency <= CONCURRENCY_MAX))
    throw new Error(`concurrency out of range: ${concurrency}`);
  const latency = histogram();
  let ok = 0;
  let errors = 0;
  let firstError: string | null = null;
  let n = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline && errors < errorsMax && n < opsMax) {
      const index = n;
      n += 1;
      try {
        await measure(latency, (stopwatch) => op(index, stopwatch));
        ok += 1;
      } catch (error) {
        errors += 1;
        firstError ??= describe(error);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsedMs = performance.now() - started;
  return { latency, ok, errors, skipped: 0, firstError, elapsedMs, opsPerSec: (ok * 1000) / elapsedMs };
}

/**
 * Offers `op` at `ratePerSec` for `durationMs`, then waits for the operations in flight. Latency
 * is measured from each operation's scheduled start, so a stall shows up in every operation it
 * delays (no coordinated omission).
 */
export async function openLoop(op: Operation, options: OpenLoopOptions): Promise<RunResult> {
  const { ratePerSec, durationMs, inFlightMax } = options;
  if (!(ratePerSec > 0 && ratePerSec <= RATE_PER_SEC_MAX)) throw new Error(`rate out of range: ${ratePerSec}`);
  const latency = histogram();
  const intervalMs = 1000 / ratePerSec;
  const total = Math.floor((durationMs / 1000) * ratePerSec);
  let ok = 0;
  let errors = 0;
  let firstError: string | null = null;
  let inFlight = 0;
  let skipped = 0;
  const pending = new Set<Promise<void>>();
  const started = performance.now();
  for (let n = 0; n < total; n += 1) {
    const scheduled = started + n * intervalMs;
    await sleep(scheduled - performance.now());
    if (inFlight >= inFlightMax) {
      skipped += 1;
      continue;
    }
    inFlight += 1;
    const run = (async () => {
      try {
        await measure(latency, (stopwatch) => op(n, stopwatch), scheduled);
        ok += 1;
      } catch (error) {
        errors += 1;
        firstError ??= describe(error);
      } finally {
        inFlight -= 1;
      }
    })();
    pending.add(run);
    void run.then(() => pending.delete(run));
  }
  await Promise.all(pending);
  const elapsedMs = performance.now() - started;
  return { latency, ok, errors, skipped, firstError, elapsedMs, opsPerSec: (ok * 1000) / elapsedMs };
}
