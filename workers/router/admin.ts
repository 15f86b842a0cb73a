/**
 * Operator routes (admin scope): taking regions out and back, replica digests, anti-entropy on
 * demand, the dead-letter queue's records and their replay, and (when enabled) fault injection.
 */
import { type Hono } from "hono";
import { LOG_PAGE_MAX, ROUTES, movePrimaryBody } from "../../shared/api.ts";
import { mount } from "./mount.ts";
import { StoreError, unwrap } from "../../shared/errors.ts";
import { NO_FAULTS, faultsBodySchema, faultsFrom } from "../../shared/faults.ts";
import { rememberFaults } from "../faults.ts";
import { fromJsonText } from "../../shared/store/wire.ts";
import { loadConfig } from "../config.ts";
import { type AppEnv } from "./env.ts";
import { z } from "zod";
import { callReplicaPlain, intParam, readJson } from "./http.ts";
import { controlOf } from "../stubs.ts";
import { clusterView, rememberView } from "./view.ts";
import { isHealthy } from "../../shared/store/cluster.ts";
import { logPage, shardsNow } from "./observe.ts";
import { regionDigest } from "../../shared/store/region-status.ts";
import { replicaOf } from "../stubs.ts";
import { parsePinnedRegion } from "./routing.ts";

const healthBodySchema = z.strictObject({ healthy: z.boolean() });

/** Refuses fault injection unless the deployment enables it: as if the routes did not exist. */
function faultsEnabled(env: Env): void {
  if (!loadConfig(env).faults)
    throw new StoreError("not_found", 'fault injection is off; it is enabled with FAULTS = "on" (never in production)');
}

/** Mounts the admin routes. */
export function mountAdmin(app: Hono<AppEnv>): void {
  // Fault injection for tests and drills (`shared/faults.ts`): what is set replaces what was.
  mount(app, ROUTES.getFaults, async (c) => {
    faultsEnabled(c.env);
    return c.json({ faults: await controlOf(c.env).getFaults() });
  });
  mount(app, ROUTES.setFaults, async (c) => {
    faultsEnabled(c.env);
    const faults = faultsFrom(await readJson(c.req.raw, faultsBodySchema));
    rememberFaults(await controlOf(c.env).setFaults(faults));
    return c.json({ faults });
  });
  mount(app, ROUTES.clearFaults, async (c) => {
    faultsEnabled(c.env);
    rememberFaults(await controlOf(c.env).setFaults(NO_FAULTS));
    return c.json({ faults: NO_FAULTS });
  });

  // Takes a region out of service (or puts it back) as if it were down: nothing is routed to
  // it, deliveries to it wait, and a strong prefix it leads fails over if configured to.
  mount(app, ROUTES.setRegionHealth, async (c) => {
    const region = parsePinnedRegion(loadConfig(c.env), c.req.param("id") ?? "");
    const body = await readJson(c.req.raw, healthBodySchema);
    const { view, pending } = await controlOf(c.env).setHealth(region, body.healthy);
    rememberView(view);
    if (pending.length > 0) {
      // The change is stored and every replica pulls it within a heartbeat, but the operator
      // must not read "done" while healthy regions have not recorded it.
      throw new StoreError(
        "region_unavailable",
        `region ${region} is now ${body.healthy ? "in" : "out of"} service in the control object, but ${pending.join(", ")} did not record the change; they pull it within a heartbeat (retry to confirm)`,
        { pending },
      );
    }
    return c.json({ region, healthy: body.healthy, health: view.health, primaries: view.primaries });
  });

  // A failback, or a planned move of a strong prefix's primary.
  mount(app, ROUTES.movePrimary, async (c) => {
    const config = loadConfig(c.env);
    const body = await readJson(c.req.raw, movePrimaryBody);
    const region = parsePinnedRegion(config, body.region);
    const { from, primary } = unwrap(await controlOf(c.env).movePrimary(body.prefix, region));
    rememberView(await controlOf(c.env).getView());
    return c.json({ prefix: body.prefix, from, region: primary.region, epoch: primary.epoch, ready: primary.ready });
  });

  // A region's digest: key counts and its Merkle root over every shard (equal roots mean
  // identical regions), with each shard's own digest.
  mount(app, ROUTES.regionDigest, async (c) => {
    const config = loadConfig(c.env);
    const region = parsePinnedRegion(config, c.req.param("id") ?? "");
    const shards = await Promise.all(
      (await shardsNow(c.env)).map((shard) => callReplicaPlain(region, () => replicaOf(c.env, region, shard).digest())),
    );
    return c.json(regionDigest(shards));
  });

  // One anti-entropy round between every pair of healthy regions in every shard, now: each pair
  // once, run by the first of the two in configured order (a round repairs both ways); a
  // pair's figures are summed over its shards.
  mount(app, ROUTES.antiEntropy, async (c) => {
    const config = loadConfig(c.env);
    const view = await clusterView(c.env);
    const healthy = config.regions.filter((r) => isHealthy(view, r));
    const runs = await Promise.all(
      healthy.map(async (a, i) => {
        const peers = healthy.slice(i + 1);
        if (peers.length === 0) return [];
        const perShard = await Promise.all(
          (await shardsNow(c.env)).map((shard) =>
            callReplicaPlain(a, () => replicaOf(c.env, a, shard).antiEntropy(peers)),
          ),
        );
        return peers.map((b) => {
          const reports = perShard.map((shardReports) => shardReports.find((r) => r.peer === b));
          if (reports.some((r) => r === undefined))
            return { a, b, keysRepaired: 0, bytes: 0, complete: false, error: `${b} did not answer` };
          const done = reports.filter((r) => r !== undefined);
          return {
            a,
            b,
            keysRepaired: done.reduce((n, r) => n + r.keysRepaired, 0),
            bytes: done.reduce((n, r) => n + r.bytes, 0),
            complete: done.every((r) => r.complete),
          };
        });
      }),
    );
    return c.json({ pairs: runs.flat(), skipped: config.regions.filter((r) => !healthy.includes(r)) });
  });

  mount(app, ROUTES.deadLetters, async (c) => {
    const region = parsePinnedRegion(loadConfig(c.env), c.req.param("id") ?? "");
    const limit = intParam("limit", c.req.query("limit"), 1, LOG_PAGE_MAX, 100);
    const { page, cursor } = await logPage(
      c.env,
      region,
      c.req.query("cursor"),
      limit,
      async (replica, after, count) => ({ rows: await replica.deadLetters(after, count) }),
      (a, b) => a.receivedMs - b.receivedMs,
    );
    return c.json({
      region,
      deadLetters: page.map(({ shard, row }) => ({
        id: row.id,
        shard,
        origin: row.origin,
        receivedAt: new Date(row.receivedMs).toISOString(),
        attempts: row.attempts,
        reason: row.reason,
        message: summarize(fromJsonText(new TextDecoder().decode(row.body))),
      })),
      cursor,
    });
  });

  mount(app, ROUTES.replayDeadLetters, async (c) => {
    const config = loadConfig(c.env);
    const region = parsePinnedRegion(config, c.req.param("id") ?? "");
    const results = await Promise.all(
      (await shardsNow(c.env)).map((shard) =>
        callReplicaPlain(region, () => replicaOf(c.env, region, shard).replayDeadLetters()),
      ),
    );
    return c.json({
      region,
      replayed: results.reduce((n, r) => n + r.replayed, 0),
      remaining: results.reduce((n, r) => n + r.remaining, 0),
    });
  });
}

/** A readable summary of a recorded message (states replaced by their sizes). */
function summarize(message: unknown): unknown {
  if (typeof message !== "object" || message === null) return message;
  const m = message as Record<string, unknown>;
  if (!Array.isArray(m.entries)) return m;
  return {
    ...m,
    entries: m.entries.map((e: unknown) => {
      const entry = e as Record<string, unknown>;
      return { ...entry, state: entry.state instanceof Uint8Array ? { sizeBytes: entry.state.length } : entry.state };
    }),
  };
}
