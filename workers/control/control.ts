/**
 * The control object: one global Durable Object that decides region health and the primary of
 * each strong prefix. Health combines operator overrides with heartbeats (a region no peer has
 * heard from recently is unhealthy). When a strong prefix's primary is unhealthy and failover
 * is on, it promotes the healthy replica that has applied the most of the old primary's writes,
 * under a new fencing epoch, and has it recover the prefix from its peers before it serves.
 * Every change is pushed to all replicas at once; routers cache the view briefly.
 */
import { DurableObject } from "cloudflare:workers";
import { type RegionId } from "../../shared/regions.ts";
import {
  type ClusterView,
  type PrimaryState,
  type RegionHealth,
  isHealthy,
  regionHealth,
} from "../../shared/store/cluster.ts";
import { type Config, loadConfig } from "../config.ts";
import { CONTROL_MIGRATIONS, migrate } from "../migrations.ts";
import { type ReplicaStatus } from "../replica/replica.ts";
import { replicaOf } from "../router/routing.ts";
import { withTimeout as bounded } from "../timeout.ts";

function withTimeout<T>(call: () => Promise<T>, timeoutMs = CALL_TIMEOUT_MS): Promise<T | null> {
  return bounded(call, timeoutMs);
}

/** How long one status or push call may take before the region counts as unreachable. */
const CALL_TIMEOUT_MS = 1500;

export class Control extends DurableObject<Env> {
  private readonly startedMs = Date.now();
  private view: ClusterView = { atMs: 0, health: {}, primaries: {} };
  private statuses = new Map<RegionId, ReplicaStatus | null>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      const now = Date.now();
      migrate(ctx.storage, CONTROL_MIGRATIONS, now);
      // Configured prefixes start at epoch 1 under their configured primary; a prefix that
      // already failed over keeps its current primary.
      for (const p of this.config.primaryPrefixes) {
        ctx.storage.sql.exec(
          "INSERT INTO primaries (prefix, region, epoch, ready, changed_ms) VALUES (?, ?, 1, 1, ?) ON CONFLICT (prefix) DO NOTHING",
          p.prefix,
          p.region,
          now,
        );
      }
      this.view = this.compose(now);
      if ((await ctx.storage.getAlarm()) === null) await ctx.storage.setAlarm(now + this.config.heartbeatIntervalMs);
    });
  }

  private get config(): Config {
    return loadConfig(this.env);
  }

  /** The current view. */
  async getView(): Promise<ClusterView> {
    return this.view;
  }

  /**
   * Takes a region out (`healthy` false) or puts it back, effective at once: the new view is
   * pushed to every replica, and a failover it triggers runs before this answers.
   */
  async setHealth(region: RegionId, healthy: boolean): Promise<ClusterView> {
    this.ctx.storage.sql.exec(
      "INSERT INTO health (region, healthy, changed_ms) VALUES (?1, ?2, ?3) ON CONFLICT (region) DO UPDATE SET healthy = ?2, changed_ms = ?3",
      region,
      healthy ? 1 : 0,
      Date.now(),
    );
    await this.tick(true);
    return this.view;
  }

  /** Whether `region` is the ready primary of `prefix` under `epoch`: the fencing check. */
  async confirmPrimary(prefix: string, region: RegionId, epoch: number): Promise<boolean> {
    const p = this.view.primaries[prefix];
    return p !== undefined && p.region === region && p.epoch === epoch && p.ready && isHealthy(this.view, region);
  }

  /** Failovers so far, newest first. */
  async failovers(): Promise<Array<{ prefix: string; from: string; to: string; epoch: number; atMs: number }>> {
    return this.ctx.storage.sql
      .exec<{ prefix: string; from_region: string; to_region: string; epoch: number; at_ms: number }>(
        "SELECT prefix, from_region, to_region, epoch, at_ms FROM failovers ORDER BY id DESC LIMIT 100",
      )
      .toArray()
      .map((r) => ({ prefix: r.prefix, from: r.from_region, to: r.to_region, epoch: r.epoch, atMs: r.at_ms }));
  }

  override async alarm(): Promise<void> {
    await this.ctx.storage.setAlarm(Date.now() + this.config.heartbeatIntervalMs);
    await this.tick(true);
  }

  /** Gathers replica statuses, recomputes health, fails over, recovers, and publishes. */
  private async tick(gather: boolean): Promise<void> {
    const regions = this.config.regions;
    if (gather) {
      const results = await Promise.all(regions.map((r) => withTimeout(() => replicaOf(this.env, r).status())));
      this.statuses = new Map(regions.map((r, i) => [r, results[i] ?? null]));
    }
    let view = this.compose(Date.now());
    for (const [prefix, primary] of Object.entries(view.primaries)) {
      if (!isHealthy(view, primary.region) && primary.failover) {
        const successor = this.successor(view, primary.region);
        if (successor !== undefined) {
          const now = Date.now();
          this.ctx.storage.transactionSync(() => {
            this.ctx.storage.sql.exec(
              "UPDATE primaries SET region = ?, epoch = epoch + 1, ready = 0, changed_ms = ? WHERE prefix = ?",
              successor,
              now,
              prefix,
            );
            this.ctx.storage.sql.exec(
              "INSERT INTO failovers (prefix, from_region, to_region, epoch, at_ms) VALUES (?, ?, ?, ?, ?)",
              prefix,
              primary.region,
              successor,
              primary.epoch + 1,
              now,
            );
          });
          console.warn(`failover of "${prefix}": ${primary.region} -> ${successor}, epoch ${primary.epoch + 1}`);
          view = this.compose(now);
          // Fence first: every replica learns the new epoch before the new primary serves.
          await this.publish(view);
        }
      }
      const current = view.primaries[prefix] as PrimaryState;
      if (!current.ready && isHealthy(view, current.region)) {
        const donors = regions.filter((r) => r !== current.region && isHealthy(view, r));
        const recovered = await withTimeout(
          () => replicaOf(this.env, current.region).recoverPrefix(prefix, current.epoch, donors),
          30_000,
        );
        if (recovered !== null) {
          this.ctx.storage.sql.exec(
            "UPDATE primaries SET ready = 1, changed_ms = ? WHERE prefix = ? AND epoch = ?",
            Date.now(),
            prefix,
            current.epoch,
          );
          view = this.compose(Date.now());
        }
      }
    }
    const changed = JSON.stringify({ ...view, atMs: 0 }) !== JSON.stringify({ ...this.view, atMs: 0 });
    this.view = view;
    if (changed) await this.publish(view);
  }

  /** The healthy region that has applied the most of `old`'s writes; ties go to configuration order. */
  private successor(view: ClusterView, old: RegionId): RegionId | undefined {
    let best: { region: RegionId; applied: number } | undefined;
    for (const region of this.config.regions) {
      if (region === old || !isHealthy(view, region)) continue;
      const applied = this.statuses.get(region)?.lag[old]?.appliedSeq ?? -1;
      if (best === undefined || applied > best.applied) best = { region, applied };
    }
    return best?.region;
  }

  /** Pushes the view to every replica (taken-out ones included, so they know). */
  private async publish(view: ClusterView): Promise<void> {
    await Promise.all(this.config.regions.map((r) => withTimeout(() => replicaOf(this.env, r).applyView(view))));
  }

  /** Builds the view from storage (overrides, primaries) and the last gathered statuses. */
  private compose(now: number): ClusterView {
    const sql = this.ctx.storage.sql;
    const overrides = new Map(
      sql
        .exec<{ region: string; healthy: number; changed_ms: number }>("SELECT region, healthy, changed_ms FROM health")
        .toArray()
        .map((r) => [r.region, r]),
    );
    const silenceMs = this.config.healthSilenceMs;
    const health: Partial<Record<RegionId, RegionHealth>> = {};
    for (const region of this.config.regions) {
      const override = overrides.get(region);
      let heardMs = 0;
      for (const [peer, status] of this.statuses)
        if (peer !== region) heardMs = Math.max(heardMs, status?.lag[region]?.heardMs ?? 0);
      health[region] = regionHealth({
        override: override === undefined ? undefined : override.healthy === 1,
        answered: this.statuses.size === 0 || (this.statuses.get(region) ?? null) !== null,
        heardMs,
        // Heartbeats take a moment to resume after a start or a return to service.
        graceUntilMs: Math.max(this.startedMs, override?.changed_ms ?? 0) + silenceMs,
        nowMs: now,
        silenceMs,
        hasPeers: this.config.regions.length > 1,
      });
    }
    const configured = new Map(this.config.primaryPrefixes.map((p) => [p.prefix, p]));
    const primaries: Record<string, PrimaryState> = {};
    for (const row of sql
      .exec<{ prefix: string; region: RegionId; epoch: number; ready: number }>(
        "SELECT prefix, region, epoch, ready FROM primaries",
      )
      .toArray()) {
      const config = configured.get(row.prefix);
      if (config === undefined) continue;
      primaries[row.prefix] = {
        region: row.region,
        epoch: row.epoch,
        ready: row.ready === 1,
        failover: config.failover,
      };
    }
    return { atMs: now, health, primaries };
  }
}
