/**
 * The control object's rounds: gather replica statuses, recompute health, fail over strong
 * prefixes whose primary is unhealthy, fence before recovering, drive the new primary's
 * recovery, and publish every change. One round runs at a time. The Durable Object and the
 * simulator both drive this same code.
 */
import { type RegionId } from "../regions.ts";
import { shardIndices } from "../shards.ts";
import { type ClusterView, isHealthy } from "./cluster.ts";
import { type ReplicaAdminApi } from "./contract.ts";
import { type ControlMachine, type Statuses } from "./control-machine.ts";
import { type Clock, bounded } from "./ports.ts";

/** How long one status, view or recovery call may take before it counts as failed. */
export const CONTROL_CALL_TIMEOUT_MS = 1500;

/** What the control object reaches outside itself. */
export interface ControlPorts extends Clock {
  /** A region's replica of one shard. */
  replica(region: RegionId, shard: number): ReplicaAdminApi;
  warn(message: string, error?: unknown): void;
}

/** The outcome of an operator's health change. */
export interface HealthChange {
  readonly view: ClusterView;
  /** Healthy regions that did not record the new view (they pull it within a heartbeat). */
  readonly pending: RegionId[];
}

/** The control object's driver. */
export class ControlNode {
  readonly machine: ControlMachine;
  private readonly ports: ControlPorts;
  private rounds: Promise<unknown> = Promise.resolve();
  private lastPublished = "";

  constructor(machine: ControlMachine, ports: ControlPorts) {
    this.machine = machine;
    this.ports = ports;
  }

  /** Runs one round after any round already running; returns the regions that did not record a publish in it. */
  tick(): Promise<RegionId[]> {
    const round = this.rounds.then(() => this.round());
    this.rounds = round.catch(() => undefined);
    return round;
  }

  /** Takes a region out (`healthy` false) or puts it back, effective at once. */
  async setHealth(region: RegionId, healthy: boolean): Promise<HealthChange> {
    this.machine.setOverride(region, healthy, this.ports.now());
    const missed = await this.tick();
    const view = this.machine.view;
    return { view, pending: missed.filter((r) => isHealthy(view, r)) };
  }

  /** Every shard index (one fan-out per region and shard, bounded by `SHARDS_MAX`). */
  private get shards(): number[] {
    return shardIndices(this.machine.settings.shards ?? 1);
  }

  private async gather(): Promise<Statuses> {
    const regions = this.machine.settings.regions;
    const results = await Promise.all(
      regions.map((r) =>
        Promise.all(
          this.shards.map((s) => bounded(this.ports, () => this.ports.replica(r, s).status(), CONTROL_CALL_TIMEOUT_MS)),
        ),
      ),
    );
    return new Map(regions.map((r, i) => [r, results[i] ?? []]));
  }

  private async round(): Promise<RegionId[]> {
    const { machine, ports } = this;
    const statuses = await this.gather();
    machine.compose(ports.now(), statuses);
    const missed = new Set<RegionId>();
    for (const prefix of machine.needsFailover()) {
      const old = machine.view.primaries[prefix];
      const successor = old === undefined ? undefined : machine.successor(old.region, statuses);
      if (old === undefined || successor === undefined) continue;
      machine.beginFailover(prefix, successor, ports.now());
      ports.warn(`failover of "${prefix}": ${old.region} -> ${successor}, epoch ${old.epoch + 1}`);
    }
    for (const [prefix, p] of Object.entries(machine.view.primaries)) {
      if (p.ready || !isHealthy(machine.view, p.region)) continue;
      if (machine.readyIfReplicated(prefix, statuses, ports.now())) continue;
      // Fence first: the new primary recovers only from replicas that durably know its epoch.
      const recorded = await this.publish(machine.view);
      for (const r of machine.settings.regions) if (!recorded.has(r)) missed.add(r);
      const donors = machine.donors(prefix, recorded);
      if (donors === undefined) {
        ports.warn(`failover of "${prefix}" to ${p.region} waits: too few regions recorded epoch ${p.epoch}`);
        continue;
      }
      // Every shard of the new primary recovers its part of the prefix from the same shard of the donors.
      const progress = await Promise.all(
        this.shards.map(async (shard) => {
          const step = await bounded(
            ports,
            () => ports.replica(p.region, shard).recoverPrefix(prefix, p.epoch, donors, machine.floorEpoch(prefix)),
            CONTROL_CALL_TIMEOUT_MS * 10,
            (error) => ports.warn(`recovery of "${prefix}" in ${p.region}:${shard} failed; retrying next round`, error),
          );
          if (step !== null && !step.ok)
            ports.warn(`recovery of "${prefix}" in ${p.region}:${shard}: ${step.error.message}; retrying next round`);
          return step !== null && step.ok && step.value.done ? step.value.recoveredSeq : null;
        }),
      );
      // Ready once a majority has applied the re-log in every shard (checked from statuses in later rounds).
      if (progress.every((seq) => seq !== null)) machine.recovered(prefix, p.epoch, progress, ports.now());
    }
    const text = JSON.stringify({ ...machine.view, atMs: 0 });
    if (text !== this.lastPublished) {
      const recorded = await this.publish(machine.view);
      for (const r of machine.settings.regions) if (!recorded.has(r)) missed.add(r);
      // Published once every region has it; otherwise the next round tries again.
      if (recorded.size === machine.settings.regions.length) this.lastPublished = text;
    }
    return [...missed];
  }

  /**
   * Pushes the view to every replica (taken-out ones too, so they know); the regions every
   * shard of which recorded it.
   */
  private async publish(view: ClusterView): Promise<Set<RegionId>> {
    const regions = this.machine.settings.regions;
    const results = await Promise.all(
      regions.map(async (r) => {
        const shards = await Promise.all(
          this.shards.map((s) =>
            bounded(
              this.ports,
              () => this.ports.replica(r, s).applyView(view),
              CONTROL_CALL_TIMEOUT_MS,
              (error) => this.ports.warn(`could not publish the view to ${r}:${s}`, error),
            ),
          ),
        );
        return shards.every((recorded) => recorded === true);
      }),
    );
    return new Set(regions.filter((_, i) => results[i] === true));
  }
}
