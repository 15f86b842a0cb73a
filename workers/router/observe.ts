/**
 * Routes that show the system itself: regions with their lag, the conflict log, dead letters
 * and Prometheus metrics.
 */
import { type Hono } from "hono";
import { REGION_LOCATIONS, type RegionId } from "../../shared/regions.ts";
import { describeState } from "../../shared/store/describe.ts";
import { loadConfig } from "../config.ts";
import { type ReplicaStatus } from "../../shared/store/contract.ts";
import { type AppEnv } from "./env.ts";
import { callReplicaPlain, intParam } from "./http.ts";
import { readingsOf, renderMetrics } from "./metrics.ts";
import { clockOffsets, isHealthy } from "../../shared/store/cluster.ts";
import { replicaOf } from "../stubs.ts";
import { regionPreference, servingRegion } from "./routing.ts";
import { clusterView } from "./view.ts";
import { bounded } from "../../shared/store/ports.ts";
import { platformClock } from "../clock.ts";

/** How long a status fan-out waits for a region before calling it unreachable. */
export const STATUS_TIMEOUT_MS = 2000;
/** Page size bounds for the conflict log and dead letters. */
export const LOG_PAGE_MAX = 1000;
const LOG_PAGE_DEFAULT = 100;

/** Every configured region's status, null for a region that did not answer in time. */
export async function gatherStatuses(env: Env): Promise<Map<RegionId, ReplicaStatus | null>> {
  const config = loadConfig(env);
  const entries = await Promise.all(
    config.regions.map(async (region): Promise<[RegionId, ReplicaStatus | null]> => [
      region,
      await bounded(platformClock, () => replicaOf(env, region).status(), STATUS_TIMEOUT_MS),
    ]),
  );
  return new Map(entries);
}

function pageCursor(raw: string | undefined): number {
  return intParam("cursor", raw, 0, Number.MAX_SAFE_INTEGER, 0);
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

/** Mounts the observation routes. */
export function mountObserve(app: Hono<AppEnv>): void {
  app.get("/v1/regions", async (c) => {
    const config = loadConfig(c.env);
    const [statuses, view] = await Promise.all([gatherStatuses(c.env), clusterView(c.env)]);
    const offsets = clockOffsets(readingsOf(statuses), Date.now());
    const regions = config.regions.map((id) => {
      const status = statuses.get(id) ?? null;
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
          delay === undefined
            ? now
            : { ...now, delay: { p50Ms: delay.p50Ms, p99Ms: delay.p99Ms, samples: delay.samples } };
      }
      const health = view.health[id];
      const bootstrapping = status?.bootstrapping ?? false;
      const healthy = status !== null && !bootstrapping && (health?.healthy ?? true);
      const reason = status === null ? "unreachable" : bootstrapping ? "bootstrapping" : (health?.reason ?? null);
      const clockOffsetMs = offsets.get(id) ?? null;
      return {
        id,
        location: REGION_LOCATIONS[id],
        healthy,
        ...(healthy ? {} : { reason }),
        bootstrapping,
        clockOffsetMs,
        lag,
      };
    });
    const primaries: Record<string, { region: string; epoch: number; ready: boolean; failover: boolean }> = {};
    for (const [prefix, p] of Object.entries(view.primaries)) primaries[prefix] = { ...p };
    const nearest = regionPreference(config, c.req.raw);
    const closest = nearest.find((r) => isHealthy(view, r)) ?? nearest[0];
    return c.json({ regions, closest, primaries });
  });

  app.get("/v1/conflicts", async (c) => {
    const config = loadConfig(c.env);
    const region = servingRegion(config, c.req.raw, c.req.query("region"));
    const limit = intParam("limit", c.req.query("limit"), 1, LOG_PAGE_MAX, LOG_PAGE_DEFAULT);
    const after = pageCursor(c.req.query("cursor"));
    const rows = await callReplicaPlain(region, () => replicaOf(c.env, region).conflicts(after, limit + 1));
    const page = rows.slice(0, limit);
    const conflicts = page.map((row) => ({
      id: row.id,
      key: row.key,
      kind: row.kind,
      rule: row.rule,
      detectedAt: new Date(row.detectedMs).toISOString(),
      winner: describeState(row.winner),
      loser: describeState(row.loser),
    }));
    const last = page.at(-1);
    c.header("X-Served-By", region);
    return c.json({ region, conflicts, cursor: rows.length > limit && last !== undefined ? String(last.id) : null });
  });

  app.get("/metrics", async (c) => {
    const text = renderMetrics(await gatherStatuses(c.env), Date.now());
    return c.body(text, 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
  });
}
