/**
 * The benchmark's settings from BENCH_* environment variables (documented in bench/run.ts),
 * with full and quick (`BENCH_QUICK=1`) defaults. A malformed value fails loudly.
 */

/** Parsed settings. */
export interface BenchConfig {
  readonly quick: boolean;
  readonly rounds: number;
  readonly phaseMs: number;
  readonly warmupMs: number;
  readonly concurrency: number;
  readonly valueBytes: number;
  readonly keys: number;
  readonly region: string;
  readonly regions: readonly string[];
  /** DIRECT_PUSH values to run, each on a freshly started store. */
  readonly variants: readonly string[];
  /** Extra KV_VARS for every variant ("NAME:value,..."). */
  readonly extraVars: string;
  readonly convRatePerSec: number;
  readonly convMs: number;
  readonly convSampleEvery: number;
  readonly pollMs: number;
  readonly pollMsMax: number;
  readonly convTimeoutMs: number;
  readonly settleTimeoutMs: number;
  readonly errorsMax: number;
  readonly token: string;
  readonly keep: boolean;
}

function int(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min || value > max)
    throw new Error(`${name} must be an integer in [${min}, ${max}], got "${raw}"`);
  return value;
}

function text(name: string, fallback: string): string {
  const raw = process.env[name];
  return raw === undefined || raw === "" ? fallback : raw;
}

/** Reads the settings. */
export function loadBenchConfig(): BenchConfig {
  const quick = process.env.BENCH_QUICK === "1";
  const region = text("BENCH_REGION", "enam");
  const regions = text("BENCH_REGIONS", "wnam,enam,weur,apac")
    .split(",")
    .map((r) => r.trim());
  if (!regions.includes(region)) throw new Error(`BENCH_REGION ${region} is not one of BENCH_REGIONS`);
  const variants = text("BENCH_VARIANTS", "off,on")
    .split(",")
    .map((v) => v.trim());
  for (const v of variants) if (v !== "on" && v !== "off") throw new Error(`BENCH_VARIANTS: "${v}" is not on|off`);
  return {
    quick,
    rounds: int("BENCH_ROUNDS", quick ? 2 : 4, 1, 100),
    phaseMs: int("BENCH_PHASE_MS", quick ? 1500 : 4000, 100, 600_000),
    warmupMs: int("BENCH_WARMUP_MS", quick ? 1000 : 3000, 0, 600_000),
    concurrency: int("BENCH_CONCURRENCY", 8, 1, 1024),
    valueBytes: int("BENCH_VALUE_BYTES", 256, 1, 1024 * 1024),
    keys: int("BENCH_KEYS", 1000, 1, 1_000_000),
    region,
    regions,
    variants,
    extraVars: text("BENCH_EXTRA_VARS", ""),
    convRatePerSec: int("BENCH_CONV_RATE", 100, 1, 10_000),
    convMs: int("BENCH_CONV_MS", quick ? 8000 : 25_000, 1000, 600_000),
    convSampleEvery: int("BENCH_CONV_SAMPLE_EVERY", 5, 1, 1_000_000),
    pollMs: int("BENCH_POLL_MS", 5, 1, 10_000),
    pollMsMax: int("BENCH_POLL_MS_MAX", 50, 1, 10_000),
    convTimeoutMs: int("BENCH_CONV_TIMEOUT_MS", 10_000, 100, 600_000),
    settleTimeoutMs: int("BENCH_SETTLE_TIMEOUT_MS", 60_000, 1000, 600_000),
    errorsMax: int("BENCH_ERRORS_MAX", 50, 1, 1_000_000),
    token: text("BENCH_TOKEN", "dev-token"),
    keep: process.env.BENCH_KEEP === "1",
  };
}

/** The BENCH_* variables set for this run, as a shell prefix (for printing the exact command). */
export function benchEnvPrefix(): string {
  return Object.entries(process.env)
    .filter(([name]) => name.startsWith("BENCH_"))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, value]) => `${name}=${value ?? ""} `)
    .join("");
}
