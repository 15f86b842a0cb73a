/**
 * The control object: one global Durable Object that decides region health and the primary of
 * each strong prefix, and keeps the faults injected for drills (`FAULTS = "on"`). It is an adapter: the decisions are `shared/store/control-machine.ts`'s
 * and the rounds `shared/store/control-node.ts`'s (which the simulator runs too); this class
 * supplies storage, ports and the alarm.
 */
import { DurableObject } from "cloudflare:workers";
import { type Faults, NO_FAULTS } from "../../shared/faults.ts";
import { type RegionId } from "../../shared/regions.ts";
import { type ClusterView, type PrimaryState } from "../../shared/store/cluster.ts";
import { type Result } from "../../shared/errors.ts";
import { ControlMachine } from "../../shared/store/control-machine.ts";
import { ControlNode, type HealthChange } from "../../shared/store/control-node.ts";
import { platformClock } from "../clock.ts";
import { type Config, loadConfig } from "../config.ts";
import { CONTROL_MIGRATIONS, migrate } from "../migrations.ts";
import { controlRegion, replicaOf } from "../stubs.ts";
import { controlStore } from "./store.ts";

/** How long a primary's move waits for the new primary's recovery, beyond the old lease. */
const MOVE_WAIT_MS = 10_000;

/** Where the faults in force are kept. */
const FAULTS_KEY = "faults";

export class Control extends DurableObject<Env> {
  private readonly node: ControlNode;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const now = Date.now();
    migrate(ctx.storage, CONTROL_MIGRATIONS, now);
    const config = this.config;
    const machine = new ControlMachine(
      controlStore(ctx.storage),
      {
        regions: config.regions,
        primaryPrefixes: config.primaryPrefixes,
        silenceMs: config.healthSilenceMs,
        leaseMs: config.primaryLeaseMs,
        shards: config.shards,
      },
      now,
    );
    this.node = new ControlNode(machine, {
      ...platformClock,
      replica: (region, shard) => replicaOf(this.env, region, shard, controlRegion(this.env)),
      warn: (message, error) => (error === undefined ? console.warn(message) : console.warn(`${message}:`, error)),
    });
    void ctx.blockConcurrencyWhile(async () => {
      if ((await ctx.storage.getAlarm()) === null) await ctx.storage.setAlarm(now + config.heartbeatIntervalMs);
    });
  }

  private get config(): Config {
    return loadConfig(this.env);
  }

  /** The current view. */
  async getView(): Promise<ClusterView> {
    return this.node.machine.view;
  }

  /**
   * Takes a region out (`healthy` false) or puts it back, effective at once: the new view is
   * pushed to every replica, and a failover it triggers starts before this answers.
   */
  async setHealth(region: RegionId, healthy: boolean): Promise<HealthChange> {
    return this.node.setHealth(region, healthy);
  }

  /**
   * Moves the primary of `prefix` to `region` (`ControlNode.movePrimary`), waiting out the old
   * lease and up to 10 s of the new primary's recovery.
   */
  async movePrimary(prefix: string, region: RegionId): Promise<Result<{ from: RegionId; primary: PrimaryState }>> {
    return this.node.movePrimary(prefix, region, this.config.primaryLeaseMs + MOVE_WAIT_MS);
  }

  /** The faults in force (`shared/faults.ts`): none until an operator sets some. */
  async getFaults(): Promise<Faults> {
    return (await this.ctx.storage.get<Faults>(FAULTS_KEY)) ?? NO_FAULTS;
  }

  /** Sets the faults in force (NO_FAULTS clears them); every isolate takes them within a moment. */
  async setFaults(faults: Faults): Promise<Faults> {
    await this.ctx.storage.put(FAULTS_KEY, faults);
    return faults;
  }

  /** The fencing check: the lease in milliseconds granted to `region` as primary of `prefix` under `epoch`, or 0. */
  async confirmPrimary(prefix: string, region: RegionId, epoch: number): Promise<number> {
    return this.node.machine.confirmPrimary(prefix, region, epoch, Date.now());
  }

  override async alarm(): Promise<void> {
    await this.ctx.storage.setAlarm(Date.now() + this.config.heartbeatIntervalMs);
    await this.node.tick();
  }
}
