/**
 * Routes that show the system itself: regions with their lag, the conflict log, dead letters
 * and Prometheus metrics.
 */
import { type Hono } from "hono";
import { LOG_PAGE_DEFAULT, LOG_PAGE_MAX, ROUTES } from "../../shared/api.ts";
import { mount } from "./mount.ts";
import { REGION_LOCATIONS, type RegionId } from "../../shared/regions.ts";
import { describeState } from "../../shared/store/describe.ts";
import { loadConfig } from "../config.ts";
import { type ReplicaStatus } from "../../shared/store/contract.ts";
import { type AppEnv } from "./env.ts";
import { callReplicaPlain, intParam } from "./http.ts";
import { type ShardStatuses, readingsOf, renderMetrics } from "./metrics.ts";
import { clockOffsets, isHealthy, isTakenOut } from "../../shared/store/cluster.ts";
import { replicaOf } from "../stubs.ts";
import { StoreError } from "../../shared/errors.ts";
import { type Staleness, worstStaleness } from "../../shared/store/replica-machine.ts";
import { eventualOnly, lagHeaders } from "./consistency.ts";
import { activeShards, layoutOf } from "../../shared/store/layout.ts";
import { type LogCursor, formatLogCursor, mergeLogPages, parseLogCursor } from "../../shared/store/listing.ts";
import { regionStatus } from "../../shared/store/region-status.ts";
import { regionPreference, servingRegion } from "./routing.ts";
import { clusterView } from "./view.ts";
import { bounded } from "../../shared/store/ports.ts";
import { platformClock } from "../clock.ts";

/** How long a status fan-out waits for a region before calling it unreachable. */
export const STATUS_TIMEOUT_MS = 2000;

/** Every configured region's status per shard (index = shard), null for a replica that did not answer in time. */
export async function gatherStatuses(env: Env): Promise<ShardStatuses> {
  const config = loadConfig(env);
  const shards = await shardsNow(env);
  const entries = await Promise.all(
    config.regions.map(async (region): Promise<[RegionId, Array<ReplicaStatus | null>]> => [
      region,
      await Promise.all(
        shards.map((shard) => bounded(platformClock, () => replicaOf(env, region, shard).status(), STATUS_TIMEOUT_MS)),
      ),
    ]),
  );
  return new Map(entries);
}

/**
 * Every shard index with a replica taking part now (`layout.ts`): the configured ones, and while
 * keys move between shards the old ones too.
 */
export async function shardsNow(env: Env): Promise<number[]> {
  return activeShards(layoutOf(await clusterView(env), loadConfig(env).shards));
}

/** The `cursor` of a log listed across `shards` shards (`invalid_query` when malformed). */
export function logCursor(raw: string | undefined, shards: number): LogCursor {
  const cursor = parseLogCursor(raw, shards);
  if (cursor === undefined)
    throw new StoreError("invalid_query", "cursor must be a cursor this endpoint returned, sent back unchanged");
  return cursor;
}

/** A shard's rows of a log, and how stale the shard may be when the log follows replication. */
export interface LogRows<T> {
  readonly rows: T[];
  readonly staleness?: Staleness;
}

/**
 * One page of a log kept per shard (conflicts, dead letters) of `region`: each shard's rows
 * after its cursor position, merged oldest first.
 */
export async function logPage<T extends { readonly id: number }>(
  env: Env,
  region: RegionId,
  raw: string | undefined,
  limit: number,
  fetchRows: (replica: ReturnType<typeof replicaOf>, after: number, count: number) => Promise<LogRows<T>>,
  before: (a: T, b: T) => number,
): Promise<{ page: Array<{ shard: number; row: T }>; cursor: string | null; staleness: Staleness }> {
  const shards = await shardsNow(env);
  const cursor = logCursor(raw, shards.length);
  const answers = await Promise.all(
    shards.map((shard) =>
      callReplicaPlain(region, () => fetchRows(replicaOf(env, region, shard), cursor[shard] ?? 0, limit + 1)),
    ),
  );
  const merged = mergeLogPages(
    answers.map((a) => a.rows),
    cursor,
    limit,
    before,
  );
  return {
    page: merged.page,
    cursor: merged.cursor === null ? null : formatLogCursor(merged.cursor),
    staleness: worstStaleness(answers.map((a) => a.staleness ?? { ms: 0 })),
  };
}

/** One pair's lag as `/v1/regions` shows it, from a (region or shard) status. */
function pairLags(id: RegionId, status: ReplicaStatus | null): Record<string, PairLag> {
  const lag: Record<string, PairLag> = {};
  for (const [peer, l] of Object.entries(status?.lag ?? {})) {
    const now =
      status?.bootstrapping === true
        ? {
            entries: l.entries,
            ms: null,
            reason: `region ${id} is bootstrapping: it lacks data it has not pulled yet`,
          }
        : l.ms === null
          ? { entries: l.entries, ms: null, reason: l.unknown }
          : { entries: l.entries, ms: l.ms };
    const delay = status?.delays[peer as RegionId];
    lag[peer] =
      delay === undefined ? now : { ...now, delay: { p50Ms: delay.p50Ms, p99Ms: delay.p99Ms, samples: delay.samples } };
  }
  return lag;
}

/**
 * One pair's lag in `/v1/regions`: how far behind the peer the region may be now, and how long
 * the peer's recent writes took to become visible in it (`delay`, once there were some).
 */
interface PairLag {
  readonly entries: number;
  readonly ms: number | null;
  readonly reason?: string;
  readonly delay?: { readonly p50Ms: number; readonly p99Ms: number; readonly samples: number };
}

/**
 * Whether a region serves: it answered, holds its peers' data, and the control object has it in
 * service; else why not.
 */
export function healthOf(
  status: ReplicaStatus | null,
  health: { readonly healthy: boolean; readonly reason?: string | null } | undefined,
): { healthy: boolean; reason: string | null } {
  const bootstrapping = status?.bootstrapping ?? false;
  const healthy = status !== null && !bootstrapping && (health?.healthy ?? true);
  const reason = status === null ? "unreachable" : bootstrapping ? "bootstrapping" : (health?.reason ?? null);
  return { healthy, reason };
}

/** Mounts the observation routes. */
export function mountObserve(app: Hono<AppEnv>): void {
  mount(app, ROUTES.regions, async (c) => {
    const config = loadConfig(c.env);
    const detail = c.req.query("detail");
    if (detail !== undefined && detail !== "shards")
      throw new StoreError("invalid_query", `detail must be "shards" (or absent); got "${detail}"`);
    const [statuses, view] = await Promise.all([gatherStatuses(c.env), clusterView(c.env)]);
    const offsets = clockOffsets(readingsOf(statuses), Date.now());
    const regions = config.regions.map((id) => {
      const shards = statuses.get(id) ?? [];
      // A region is as current as its least current shard (`region-status.ts`).
      const status = regionStatus(shards);
      const lag = pairLags(id, status);
      const bootstrapping = status?.bootstrapping ?? false;
      const { healthy, reason } = healthOf(status, view.health[id]);
      const clockOffsetMs = offsets.get(id) ?? null;
      return {
        id,
        location: REGION_LOCATIONS[id],
        healthy,
        ...(healthy ? {} : { reason }),
        bootstrapping,
        clockOffsetMs,
        lag,
        ...(detail === "shards"
          ? {
              shards: shards.map((s, shard) => ({
                shard,
                answered: s !== null,
                bootstrapping: s?.bootstrapping ?? false,
                keys: s?.keys ?? null,
                outboxPending: s?.outboxPending ?? null,
                lag: pairLags(id, s),
              })),
            }
          : {}),
      };
    });
    const primaries: Record<string, { region: string; epoch: number; ready: boolean; failover: boolean }> = {};
    for (const [prefix, p] of Object.entries(view.primaries)) primaries[prefix] = { ...p };
    const nearest = regionPreference(config, c.req.raw);
    const closest = nearest.find((r) => isHealthy(view, r)) ?? nearest[0];
    // The shard layout, and the move of keys between shards under way, if any (`layout.ts`).
    const layout = layoutOf(view, config.shards);
    const shards = {
      count: layout.shards,
      moving: layout.from === null ? null : { from: layout.from, routed: layout.routed },
    };
    return c.json({ regions, closest, primaries, shards });
  });

  mount(app, ROUTES.conflicts, async (c) => {
    const config = loadConfig(c.env);
    eventualOnly(c, "the conflict log");
    const region = servingRegion(config, c.req.raw, c.req.query("region"));
    const limit = intParam("limit", c.req.query("limit"), 1, LOG_PAGE_MAX, LOG_PAGE_DEFAULT);
    const { page, cursor, staleness } = await logPage(
      c.env,
      region,
      c.req.query("cursor"),
      limit,
      (replica, after, count) => replica.conflicts(after, count),
      (a, b) => a.detectedMs - b.detectedMs,
    );
    const conflicts = page.map(({ shard, row }) => ({
      id: row.id,
      shard,
      key: row.key,
      kind: row.kind,
      rule: row.rule,
      detectedAt: new Date(row.detectedMs).toISOString(),
      winner: describeState(row.winner),
      loser: describeState(row.loser),
    }));
    c.header("X-Served-By", region);
    lagHeaders(c, staleness);
    return c.json({ region, conflicts, cursor });
  });

  mount(app, ROUTES.metrics, async (c) => {
    const [statuses, view] = await Promise.all([gatherStatuses(c.env), clusterView(c.env)]);
    const health = new Map(
      loadConfig(c.env).regions.map((id) => [
        id,
        {
          healthy: healthOf(regionStatus(statuses.get(id) ?? []), view.health[id]).healthy,
          takenOut: isTakenOut(view, id),
        },
      ]),
    );
    const text = renderMetrics(statuses, Date.now(), health);
    return c.body(text, 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
  });
}
