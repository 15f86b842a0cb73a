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
  /** Closed-loop workers per pass; the first pass is held to the targets. */
  readonly concurrencies: readonly number[];
  readonly valueBytes: number;
  readonly keys: number;
  readonly region: string;
  /** The store's regions as BENCH_REGIONS lists them; null: as the store's /healthz lists them. */
  readonly regions: readonly string[] | null;
  /** Closed-loop workers of the per-consistency-mode passes, one pass each (empty: skipped). */
  readonly modesConcurrencies: readonly number[];
  /** The store variants to run, each on a freshly started store. */
  readonly variants: readonly Variant[];
  /** Writes to fresh keys of the per-object load measurement. */
  readonly loadWrites: number;
  /** Change-feed watchers open during the "store write, watched" scenario (0: no such scenario). */
  readonly watchers: number;
  /** The prefix they watch: by default the written keys' ("bench"), so each gets every write. */
  readonly watchPrefix: string;
  /** How they watch: Server-Sent Events (`sse`) or WebSockets at the region's watch hub (`ws`). */
  readonly watchTransport: "sse" | "ws";
  /** Extra KV_VARS for every variant ("NAME:value;..."). */
  readonly extraVars: string;
  /** Offered write rates of the convergence runs; the first is the one held to the target. */
  /**
   * Convergence: offered writes per second, one run each; "half" is half the store write
   * throughput its first latency pass measured (the "half the store's own capacity").
   */
  readonly convRatesPerSec: ReadonlyArray<number | "half">;
  readonly convMs: number;
  /** Samples followed per second (every n-th write is followed, n = rate / this, at least 1). */
  readonly convSamplesPerSec: number;
  readonly pollMs: number;
  readonly pollMsMax: number;
  readonly convTimeoutMs: number;
  readonly settleTimeoutMs: number;
  readonly errorsMax: number;
  readonly token: string;
  readonly keep: boolean;
  readonly source: "worktree" | "HEAD";
}

function int(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min || value > max)
    throw new Error(`${name} must be an integer in [${min}, ${max}], got "${raw}"`);
  return value;
}

function intList(name: string, fallback: readonly number[], min: number, max: number): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return [...fallback];
  return raw.split(",").map((part) => {
    const value = Number(part.trim());
    if (!Number.isSafeInteger(value) || value < min || value > max)
      throw new Error(`${name} must list integers in [${min}, ${max}], got "${raw}"`);
    return value;
  });
}

/** BENCH_CONV_RATES: integers and "half", or "none". */
function convRates(quick: boolean): Array<number | "half"> {
  const raw = process.env.BENCH_CONV_RATES;
  if (raw === "none") return [];
  if (raw === undefined || raw === "") return quick ? ["half"] : ["half", 100, 20];
  return raw.split(",").map((part) => {
    const rate = part.trim();
    if (rate === "half") return "half";
    const value = Number(rate);
    if (!Number.isSafeInteger(value) || value < 1 || value > 10_000)
      throw new Error(`BENCH_CONV_RATES must list "half" or integers in [1, 10000], got "${raw}"`);
    return value;
  });
}

function text(name: string, fallback: string): string {
  const raw = process.env[name];
  return raw === undefined || raw === "" ? fallback : raw;
}

function flag(name: string, fallback: boolean): boolean {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  if (raw !== "0" && raw !== "1") throw new Error(`${name} must be 0 or 1, got "${raw}"`);
  return raw === "1";
}

function sourceKind(raw: string): "worktree" | "HEAD" {
  if (raw !== "worktree" && raw !== "HEAD") throw new Error(`BENCH_SOURCE must be worktree or HEAD, got "${raw}"`);
  return raw;
}

/** Reads the settings. */
/** A store variant: its name in the report, and the KV_VARS it is started with. */
export interface Variant {
  readonly name: string;
  readonly vars: string;
}

/**
 * One entry of `BENCH_VARIANTS`: `on` or `off` (a DIRECT_PUSH value, as before), or
 * `NAME:value` pairs joined by `+` (for example `SHARDS:2+DIRECT_PUSH:off`).
 */
function parseVariant(raw: string): Variant {
  if (raw === "on" || raw === "off") return { name: `DIRECT_PUSH=${raw}`, vars: `DIRECT_PUSH:${raw}` };
  const pairs = raw.split("+").map((p) => p.trim());
  if (!pairs.every((p) => /^[A-Z_]+:[^;:+]+$/.test(p)))
    throw new Error(`BENCH_VARIANTS: "${raw}" is neither on|off nor NAME:value pairs joined by "+"`);
  return { name: pairs.map((p) => p.replace(":", "=")).join(" "), vars: pairs.join(";") };
}

export function loadBenchConfig(): BenchConfig {
  const quick = process.env.BENCH_QUICK === "1";
  const region = text("BENCH_REGION", "enam");
  const regionsRaw = process.env.BENCH_REGIONS;
  const regions = regionsRaw === undefined || regionsRaw === "" ? null : regionsRaw.split(",").map((r) => r.trim());
  if (regions !== null && !regions.includes(region))
    throw new Error(`BENCH_REGION ${region} is not one of BENCH_REGIONS`);
  const variants = text("BENCH_VARIANTS", "SHARDS:1,SHARDS:2,SHARDS:8")
    .split(",")
    .map((v) => parseVariant(v.trim()));
  return {
    quick,
    rounds: int("BENCH_ROUNDS", quick ? 2 : 4, 1, 100),
    phaseMs: int("BENCH_PHASE_MS", quick ? 1000 : 2500, 100, 600_000),
    warmupMs: int("BENCH_WARMUP_MS", quick ? 500 : 2000, 0, 600_000),
    concurrencies: process.env.BENCH_CONCURRENCY === "none" ? [] : intList("BENCH_CONCURRENCY", [8, 1], 1, 1024),
    valueBytes: int("BENCH_VALUE_BYTES", 256, 1, 1024 * 1024),
    keys: int("BENCH_KEYS", quick ? 200 : 500, 1, 1_000_000),
    region,
    regions,
    modesConcurrencies: flag("BENCH_MODES", true) ? intList("BENCH_MODES_CONCURRENCY", [4], 1, 1024) : [],
    variants,
    extraVars: text("BENCH_EXTRA_VARS", ""),
    loadWrites: int("BENCH_LOAD_WRITES", 1500, 10, 1_000_000),
    watchers: int("BENCH_WATCHERS", 100, 0, 1000),
    watchPrefix: text("BENCH_WATCH_PREFIX", "bench"),
    watchTransport: text("BENCH_WATCH_TRANSPORT", "ws") === "sse" ? "sse" : "ws",
    convRatesPerSec: convRates(quick),
    convMs: int("BENCH_CONV_MS", quick ? 6000 : 15_000, 1000, 600_000),
    convSamplesPerSec: int("BENCH_CONV_SAMPLES_PER_SEC", 20, 1, 10_000),
    pollMs: int("BENCH_POLL_MS", 5, 1, 10_000),
    pollMsMax: int("BENCH_POLL_MS_MAX", 50, 1, 10_000),
    convTimeoutMs: int("BENCH_CONV_TIMEOUT_MS", 10_000, 100, 600_000),
    settleTimeoutMs: int("BENCH_SETTLE_TIMEOUT_MS", 60_000, 1000, 600_000),
    errorsMax: int("BENCH_ERRORS_MAX", 50, 1, 1_000_000),
    token: text("BENCH_TOKEN", "dev-token"),
    keep: process.env.BENCH_KEEP === "1",
    source: sourceKind(text("BENCH_SOURCE", "worktree")),
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
