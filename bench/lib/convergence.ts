/**
 * Convergence: how long after a write is acknowledged in one region it can be read, with the
 * written value, in every other region. Writes are offered open-loop at a fixed rate; every
 * `sampleEvery`-th write is followed from its acknowledgement by polling only its own key in each
 * other region, so the polling adds a small, bounded load next to the writes it measures.
 *
 * A sample's time is taken when the answer of the first poll that shows the value arrives: an
 * upper bound, late by at most one poll interval plus one read's latency. Polls start every
 * `pollMs` and back off to 5% of the time already waited (at most `pollMsMax`), so the error
 * stays within about 5% of the figure while a slow sample does not poll hundreds of times.
 */
import { type Histogram, type LatencySummary, histogram, record, summarize } from "./histogram.ts";
import { type RunResult, openLoop } from "./load.ts";
import { type KvTarget } from "./targets.ts";

/** Settings of one convergence run. */
export interface ConvergenceOptions {
  /** Distinguishes this run's keys from earlier runs'. */
  readonly label: string;
  readonly ratePerSec: number;
  readonly durationMs: number;
  readonly sampleEvery: number;
  readonly pollMs: number;
  readonly pollMsMax: number;
  /** A sample not visible everywhere after this long is recorded at this value and counted as timed out. */
  readonly timeoutMs: number;
  readonly valueBytes: number;
  readonly inFlightMax: number;
}

/** What a convergence run measured. */
export interface ConvergenceResult {
  readonly writes: RunResult;
  readonly samples: number;
  readonly timedOut: number;
  /** Samples skipped because too many were still being followed (the store fell far behind). */
  readonly skipped: number;
  /** Acknowledgement to visible in every other region. */
  readonly all: Histogram;
  /** Acknowledgement to visible, per other region. */
  readonly perRegion: Record<string, Histogram>;
  readonly polls: number;
  readonly pollErrors: number;
  readonly firstPollError: string | null;
}

/** A convergence run's figures, as reported and stored. */
export interface ConvergenceSummary {
  /** The store variant measured. */
  readonly variant: string;
  readonly offeredPerSec: number;
  readonly achievedPerSec: number;
  readonly writeErrors: number;
  /** Writes not offered because too many were in flight: the store could not keep up. */
  readonly skippedWrites: number;
  readonly firstWriteError: string | null;
  readonly samples: number;
  readonly timedOut: number;
  readonly skipped: number;
  readonly all: LatencySummary;
  readonly perRegion: Record<string, LatencySummary>;
  readonly ackLatency: LatencySummary;
  readonly pollsPerSec: number;
  readonly pollErrors: number;
  readonly firstPollError: string | null;
}

/** The reportable figures of a run. */
export function summarizeConvergence(
  result: ConvergenceResult,
  variant: string,
  offeredPerSec: number,
): ConvergenceSummary {
  const { writes } = result;
  return {
    variant,
    offeredPerSec,
    achievedPerSec: (writes.ok * 1000) / writes.elapsedMs,
    writeErrors: writes.errors,
    skippedWrites: writes.skipped,
    firstWriteError: writes.firstError,
    samples: result.samples,
    timedOut: result.timedOut,
    skipped: result.skipped,
    all: summarize(result.all),
    perRegion: Object.fromEntries(Object.entries(result.perRegion).map(([r, h]) => [r, summarize(h)])),
    ackLatency: summarize(writes.latency),
    pollsPerSec: (result.polls * 1000) / writes.elapsedMs,
    pollErrors: result.pollErrors,
    firstPollError: result.firstPollError,
  };
}

/** Samples followed at once, at most: a bound on the polling load if the store falls behind. */
const TRACKED_MAX = 256;
/** Back-off of the poll interval as a fraction of the time already waited. */
const POLL_BACKOFF_FRACTION = 0.05;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** A value unique to write `n` of run `label`, so a stale value can never pass for the new one. */
function uniqueValue(label: string, n: number, bytes: number): Uint8Array {
  const value = new Uint8Array(bytes);
  const tag = new TextEncoder().encode(`${label}:${n}:`);
  value.set(tag.subarray(0, bytes));
  for (let i = tag.length; i < bytes; i += 1) value[i] = (n * 31 + i * 7) & 0xff;
  return value;
}

/** Writes through `origin` at a fixed rate and follows sampled writes until `peers` all show them. */
export async function measureConvergence(
  origin: KvTarget,
  peers: readonly KvTarget[],
  options: ConvergenceOptions,
): Promise<ConvergenceResult> {
  const { label, ratePerSec, durationMs, sampleEvery, pollMs, pollMsMax, timeoutMs, valueBytes, inFlightMax } = options;
  const all = histogram();
  const perRegion: Record<string, Histogram> = Object.fromEntries(peers.map((p) => [p.name, histogram()]));
  const tracking = new Set<Promise<void>>();
  let samples = 0;
  let timedOut = 0;
  let skipped = 0;
  let polls = 0;
  let pollErrors = 0;
  let firstPollError: string | null = null;

  /** Ms from `ackedAt` until `peer` shows `value`, or null after `timeoutMs`. */
  const visibleAfter = async (
    peer: KvTarget,
    key: string,
    value: Uint8Array,
    ackedAt: number,
  ): Promise<number | null> => {
    for (;;) {
      const waited = performance.now() - ackedAt;
      if (waited > timeoutMs) return null;
      polls += 1;
      try {
        const got = await peer.get(key);
        if (got !== null && sameBytes(got, value)) return performance.now() - ackedAt;
      } catch (error) {
        pollErrors += 1;
        firstPollError ??= error instanceof Error ? error.message : String(error);
      }
      const elapsed = performance.now() - ackedAt;
      await sleep(Math.min(pollMsMax, Math.max(pollMs, elapsed * POLL_BACKOFF_FRACTION)));
    }
  };

  const follow = async (key: string, value: Uint8Array, ackedAt: number): Promise<void> => {
    const times = await Promise.all(peers.map((peer) => visibleAfter(peer, key, value, ackedAt)));
    let worst = 0;
    times.forEach((ms, i) => {
      const peer = peers[i] as KvTarget;
      record(perRegion[peer.name] as Histogram, ms ?? timeoutMs);
      worst = Math.max(worst, ms ?? timeoutMs);
    });
    if (times.some((ms) => ms === null)) timedOut += 1;
    record(all, worst);
  };

  const writes = await openLoop(
    async (n) => {
      const key = `conv-${label}-${n}`;
      const value = uniqueValue(label, n, valueBytes);
      await origin.put(key, value);
      if (n % sampleEvery !== 0) return;
      if (tracking.size >= TRACKED_MAX) {
        skipped += 1;
        return;
      }
      samples += 1;
      const run = follow(key, value, performance.now());
      tracking.add(run);
      void run.finally(() => tracking.delete(run));
    },
    { ratePerSec, durationMs, inFlightMax },
  );
  await Promise.all(tracking);
  return { writes, samples, timedOut, skipped, all, perRegion, polls, pollErrors, firstPollError };
}
