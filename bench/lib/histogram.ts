/**
 * A latency histogram with bounded memory and under 1% relative error, in the manner of
 * HdrHistogram: values in microseconds, exact below 256 µs, then 128 linear sub-buckets per
 * power of two. Histograms merge by adding counts, so rounds and workers can be combined.
 */

/** Sub-bucket resolution: 2^SUB_BITS exact values, then 2^(SUB_BITS-1) sub-buckets per octave. */
const SUB_BITS = 8;
const SUB_COUNT = 1 << SUB_BITS;
const HALF_COUNT = SUB_COUNT >> 1;
/** Largest recordable value: 2^31 µs (about 36 minutes); larger values are clamped. */
const VALUE_US_MAX = 2 ** 31 - 1;
const BUCKETS = SUB_COUNT + (31 - SUB_BITS + 1) * HALF_COUNT;

/** Counts of latencies, plus exact count, sum, min and max. */
export interface Histogram {
  readonly counts: Float64Array;
  count: number;
  sumMs: number;
  minMs: number;
  maxMs: number;
}

/** Summary figures of a histogram, all in milliseconds. */
export interface LatencySummary {
  readonly count: number;
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
}

/** An empty histogram. */
export function histogram(): Histogram {
  return { counts: new Float64Array(BUCKETS), count: 0, sumMs: 0, minMs: Infinity, maxMs: 0 };
}

function bucketOf(us: number): number {
  if (us < SUB_COUNT) return us;
  const msb = 31 - Math.clz32(us);
  const shift = msb - SUB_BITS + 1;
  return SUB_COUNT + (shift - 1) * HALF_COUNT + ((us >>> shift) - HALF_COUNT);
}

/** The midpoint of a bucket, in microseconds. */
function bucketMidUs(index: number): number {
  if (index < SUB_COUNT) return index;
  const shift = Math.floor((index - SUB_COUNT) / HALF_COUNT) + 1;
  const top = ((index - SUB_COUNT) % HALF_COUNT) + HALF_COUNT;
  return (top << shift) + (1 << (shift - 1));
}

/** Records one latency in milliseconds. */
export function record(h: Histogram, ms: number): void {
  const us = Math.min(VALUE_US_MAX, Math.max(0, Math.round(ms * 1000)));
  const index = bucketOf(us);
  h.counts[index] = (h.counts[index] ?? 0) + 1;
  h.count += 1;
  h.sumMs += ms;
  h.minMs = Math.min(h.minMs, ms);
  h.maxMs = Math.max(h.maxMs, ms);
}

/** Adds `from`'s counts into `into`. */
export function mergeInto(into: Histogram, from: Histogram): void {
  for (let i = 0; i < BUCKETS; i += 1) into.counts[i] = (into.counts[i] ?? 0) + (from.counts[i] ?? 0);
  into.count += from.count;
  into.sumMs += from.sumMs;
  into.minMs = Math.min(into.minMs, from.minMs);
  into.maxMs = Math.max(into.maxMs, from.maxMs);
}

/** The `q` quantile (0 < q <= 1) in milliseconds; NaN when empty. */
export function quantile(h: Histogram, q: number): number {
  if (h.count === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil(q * h.count));
  let seen = 0;
  for (let i = 0; i < BUCKETS; i += 1) {
    seen += h.counts[i] ?? 0;
    if (seen >= rank) return Math.min(h.maxMs, Math.max(h.minMs, bucketMidUs(i) / 1000));
  }
  return h.maxMs;
}

/** The usual figures of a histogram. */
export function summarize(h: Histogram): LatencySummary {
  return {
    count: h.count,
    meanMs: h.count === 0 ? Number.NaN : h.sumMs / h.count,
    p50Ms: quantile(h, 0.5),
    p90Ms: quantile(h, 0.9),
    p99Ms: quantile(h, 0.99),
    p999Ms: quantile(h, 0.999),
    maxMs: h.count === 0 ? Number.NaN : h.maxMs,
  };
}
