/**
 * The deployment's settings, parsed once per isolate from `wrangler.toml` vars. A bad setting
 * is an operator error: it fails loudly with the variable's name instead of misrouting data.
 */
import { assert } from "../shared/assert.ts";
import { type RegionId, parseRegionId, parseRegionList } from "../shared/regions.ts";
import { SHARDS_MAX } from "../shared/shards.ts";
import { GC_DEFAULTS, type GcSettings } from "../shared/store/gc.ts";
import { PRIMARY_LEASE_MS, type PrimaryPrefix, parsePrimaryPrefixes } from "../shared/store/primaries.ts";

/** Parsed settings. */
export interface Config {
  /** Regions that hold a replica, in configured order. */
  readonly regions: readonly RegionId[];
  /** Served when a request carries no coordinates (local development). */
  readonly defaultRegion: RegionId;
  /** Replica objects per region (`shared/shards.ts`): a key lives in shard `hash(key) mod shards`. */
  readonly shards: number;
  /** How often each replica heartbeats its peers and re-drains its outbox. */
  readonly heartbeatIntervalMs: number;
  /** Whether replicas also push writes straight to their peers over RPC (the queue stays the durable path). */
  readonly directPush: boolean;
  /** Strong prefixes with their configured primaries. */
  readonly primaryPrefixes: readonly PrimaryPrefix[];
  /** Default bound on waiting for `ack=` beyond local, overridable per request with `timeout_ms`. */
  readonly ackTimeoutMs: number;
  /** How long a session read waits for replication before fetching what it lacks. */
  readonly sessionWaitMs: number;
  /** A region no peer has heard from for this long is unhealthy. */
  readonly healthSilenceMs: number;
  /** The lease the control object grants a strong prefix's primary (`shared/store/leases.ts`). */
  readonly primaryLeaseMs: number;
  /**
   * Fault injection for tests and drills: every replication message waits this long in the
   * queue (Queues' own `delaySeconds`), as a slow WAN link would. 0 in production.
   */
  readonly replicationDelaySeconds: number;
  /** How long a replica gathers writes before draining them to the queue as one message per peer. */
  readonly replicationBatchMs: number;
  /** Fault injection: the percentage of replication messages the consumer drops unapplied. */
  readonly replicationDropPercent: number;
  /** How often each replica runs an anti-entropy round with every healthy peer. */
  readonly antiEntropyIntervalMs: number;
  /** Collection of tombstones and of the conflict log (`shared/store/gc.ts`). */
  readonly gc: GcSettings;
  /** Local WAN emulation (`workers/stubs.ts`). */
  readonly wan: WanSettings;
  /** Whether fault injection may be used (`POST /v1/admin/faults`); off in production. */
  readonly faults: boolean;
  /** Origins whose pages may call the API from a browser (CORS); `*` for any; empty for none. */
  readonly corsOrigins: readonly string[];
}

/** Local WAN emulation: every cross-region hop waits the one-way latency between its regions. */
export interface WanSettings {
  readonly on: boolean;
  /** Each hop's delay varies uniformly by up to this many ms. */
  readonly jitterMs: number;
  /** Seed of the jitter's generator. */
  readonly seed: number;
}

/** Default for {@link Config.ackTimeoutMs}. */
export const ACK_TIMEOUT_MS_DEFAULT = 5000;
/** Default for {@link Config.sessionWaitMs}. */
export const SESSION_WAIT_MS_DEFAULT = 10;

/** Default anti-entropy period. */
export const ANTI_ENTROPY_INTERVAL_MS_DEFAULT = 30_000;

/** Default heartbeat period: short enough that idle lag and health are seen within seconds. */
export const HEARTBEAT_INTERVAL_MS_DEFAULT = 1000;

function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  assert(Number.isSafeInteger(value) && value > 0, `${name} must be a positive integer, got "${raw}"`);
  return value;
}

function nonNegativeInt(name: string, raw: string | undefined, fallback: number, max: number): number {
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  assert(
    Number.isSafeInteger(value) && value >= 0 && value <= max,
    `${name} must be an integer from 0 to ${max}, got "${raw}"`,
  );
  return value;
}

function flag(name: string, raw: string | undefined): boolean {
  const value = (raw ?? "").trim().toLowerCase();
  assert(value === "" || value === "on" || value === "off", `${name} must be "on" or "off", got "${raw}"`);
  return value === "on";
}

/** `CORS_ORIGINS`: comma-separated origins (`https://app.example.com`), or `*`; default none. */
function corsOrigins(raw: string | undefined): string[] {
  const origins = (raw ?? "")
    .split(",")
    .map((o) => o.trim())
    .filter((o) => o !== "");
  for (const origin of origins) {
    let parsed: string | undefined;
    try {
      parsed = new URL(origin).origin;
    } catch {
      parsed = undefined;
    }
    assert(
      origin === "*" || parsed === origin,
      `CORS_ORIGINS must list origins such as https://app.example.com, or *; got "${origin}"`,
    );
  }
  return origins;
}

/** `SHARDS`: 1 to {@link SHARDS_MAX}, default 1. */
function shardCount(raw: string | undefined): number {
  const shards = positiveInt("SHARDS", raw, 1);
  assert(shards <= SHARDS_MAX, `SHARDS must be at most ${SHARDS_MAX}, got "${raw}"`);
  return shards;
}

let cached: { key: string; config: Config } | undefined;

/** The settings for `env`, parsed once per distinct set of values. */
export function loadConfig(env: Env): Config {
  const key = [
    env.REGIONS,
    env.DEFAULT_REGION,
    env.SHARDS,
    env.HEARTBEAT_INTERVAL_MS,
    env.DIRECT_PUSH,
    env.PRIMARY_PREFIXES,
    env.ACK_TIMEOUT_MS,
    env.SESSION_WAIT_MS,
    env.HEALTH_SILENCE_MS,
    env.PRIMARY_LEASE_MS,
    env.REPLICATION_DELAY_SECONDS,
    env.REPLICATION_BATCH_MS,
    env.ANTI_ENTROPY_INTERVAL_MS,
    env.REPLICATION_DROP_PERCENT,
    env.TOMBSTONE_GRACE_MS,
    env.CONFLICT_LOG_RETENTION_MS,
    env.CONFLICT_LOG_MAX_ROWS,
    env.WAN_EMULATION,
    env.WAN_JITTER_MS,
    env.WAN_SEED,
    env.FAULTS,
    env.CORS_ORIGINS,
  ].join("|");
  if (cached?.key === key) return cached.config;
  const list = parseRegionList(env.REGIONS);
  assert(list.ok, `REGIONS: ${list.ok ? "" : list.message}`);
  const defaultRegion = parseRegionId(env.DEFAULT_REGION.trim());
  assert(defaultRegion !== undefined && list.regions.includes(defaultRegion), "DEFAULT_REGION must be one of REGIONS");
  const heartbeatIntervalMs = positiveInt(
    "HEARTBEAT_INTERVAL_MS",
    env.HEARTBEAT_INTERVAL_MS,
    HEARTBEAT_INTERVAL_MS_DEFAULT,
  );
  const primaries = parsePrimaryPrefixes(env.PRIMARY_PREFIXES ?? "", list.regions);
  assert(primaries.ok, `PRIMARY_PREFIXES: ${primaries.ok ? "" : primaries.message}`);
  const config: Config = {
    regions: list.regions,
    defaultRegion,
    shards: shardCount(env.SHARDS),
    heartbeatIntervalMs,
    directPush: flag("DIRECT_PUSH", env.DIRECT_PUSH),
    primaryPrefixes: primaries.prefixes,
    ackTimeoutMs: positiveInt("ACK_TIMEOUT_MS", env.ACK_TIMEOUT_MS, ACK_TIMEOUT_MS_DEFAULT),
    sessionWaitMs: positiveInt("SESSION_WAIT_MS", env.SESSION_WAIT_MS, SESSION_WAIT_MS_DEFAULT),
    healthSilenceMs: positiveInt("HEALTH_SILENCE_MS", env.HEALTH_SILENCE_MS, 3 * heartbeatIntervalMs),
    primaryLeaseMs: positiveInt("PRIMARY_LEASE_MS", env.PRIMARY_LEASE_MS, PRIMARY_LEASE_MS),
    replicationDelaySeconds: nonNegativeInt("REPLICATION_DELAY_SECONDS", env.REPLICATION_DELAY_SECONDS, 0, 43_200),
    replicationBatchMs: nonNegativeInt("REPLICATION_BATCH_MS", env.REPLICATION_BATCH_MS, 50, 1000),
    replicationDropPercent: nonNegativeInt("REPLICATION_DROP_PERCENT", env.REPLICATION_DROP_PERCENT, 0, 100),
    antiEntropyIntervalMs: positiveInt(
      "ANTI_ENTROPY_INTERVAL_MS",
      env.ANTI_ENTROPY_INTERVAL_MS,
      ANTI_ENTROPY_INTERVAL_MS_DEFAULT,
    ),
    gc: {
      tombstoneGraceMs: nonNegativeInt(
        "TOMBSTONE_GRACE_MS",
        env.TOMBSTONE_GRACE_MS,
        GC_DEFAULTS.tombstoneGraceMs,
        Number.MAX_SAFE_INTEGER,
      ),
      conflictRetentionMs: positiveInt(
        "CONFLICT_LOG_RETENTION_MS",
        env.CONFLICT_LOG_RETENTION_MS,
        GC_DEFAULTS.conflictRetentionMs,
      ),
      conflictRowsMax: positiveInt("CONFLICT_LOG_MAX_ROWS", env.CONFLICT_LOG_MAX_ROWS, GC_DEFAULTS.conflictRowsMax),
    },
    wan: {
      on: flag("WAN_EMULATION", env.WAN_EMULATION),
      jitterMs: nonNegativeInt("WAN_JITTER_MS", env.WAN_JITTER_MS, 0, 10_000),
      seed: nonNegativeInt("WAN_SEED", env.WAN_SEED, 1, 0xffff_ffff),
    },
    faults: flag("FAULTS", env.FAULTS),
    corsOrigins: corsOrigins(env.CORS_ORIGINS),
  };
  cached = { key, config };
  return config;
}
