/**
 * The control object's rounds: gather replica statuses, recompute health, fail over strong
 * prefixes whose primary is unhealthy, fence before recovering, drive the new primary's
 * recovery, and publish every change. One round runs at a time. The Durable Object and the
 * simulator both drive this same code.
 */
import { type RegionId } from "../regions.ts";
import { shardIndices } from "../shards.ts";
import { activeShards, moveId } from "./layout.ts";
import { type ClusterView, type PrimaryState, isHealthy } from "./cluster.ts";
import { type Result, fail, ok } from "../errors.ts";
import { type ReplicaAdminApi } from "./contract.ts";
import { type ControlMachine, type Statuses, allAnswered } from "./control-machine.ts";
import { type Clock, bounded } from "./ports.ts";

/** How long one status, view or recovery call may take before it counts as failed. */
export const CONTROL_CALL_TIMEOUT_MS = 1500;

/** How often a primary's move looks again while the new primary recovers. */
const MOVE_POLL_MS = 100;

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

  /** Every shard index taking part now, old and new during a move (bounded by `SHARDS_MAX`). */
  private get shards(): number[] {
    return activeShards(this.machine.layout);
  }

  private async gather(): Promise<Statuses> {
    const regions = this.machine.settings.regions;
    const results = await Promise.all(
      regions.map((r) =>
        Promise.all(
          this.shards.map((s) => bounded(this.ports, () => this.ports.replica(r, s).pulse(), CONTROL_CALL_TIMEOUT_MS)),
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
    this.handOver(statuses);
    for (const prefix of machine.needsFailover(ports.now())) {
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
    await this.moveStep(statuses, missed);
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
   * Moves the primaries operators asked to move (`movePrimary`) whose old lease has run out:
   * the target is promoted under the next epoch exactly as a failover's successor is. A target
   * out of service calls the move off; one that did not answer this round is waited for.
   */
  private handOver(statuses: Statuses): void {
    const { machine, ports } = this;
    for (const [prefix, target] of machine.handoversUnderWay()) {
      const p = machine.view.primaries[prefix];
      if (p === undefined || p.region === target || !isHealthy(machine.view, target)) {
        machine.endHandover(prefix);
        if (p !== undefined && p.region !== target)
          ports.warn(`move of "${prefix}" to ${target} called off: ${target} is out of service`);
        continue;
      }
      if (!allAnswered(statuses.get(target)) || ports.now() < machine.leaseUntil(prefix)) continue;
      machine.beginFailover(prefix, target, ports.now());
      machine.endHandover(prefix);
      ports.warn(`move of "${prefix}": ${p.region} -> ${target}, epoch ${p.epoch + 1}`);
    }
  }

  /**
   * Moves the primary of `prefix` to `target` (a failback, or a planned move), with the fencing
   * and recovery of a failover: the old primary's lease is no longer renewed, and once it has
   * run out `target` is promoted under the next epoch and recovers the prefix. Answers once the
   * new primary serves, or with `ready` false if its recovery outlasts `waitMs`; refuses (and
   * calls the move off) when the move cannot begin within `waitMs`.
   */
  async movePrimary(
    prefix: string,
    target: RegionId,
    waitMs: number,
  ): Promise<Result<{ from: RegionId; primary: PrimaryState }>> {
    const { machine, ports } = this;
    const asked = machine.requestHandover(prefix, target);
    if (!asked.ok) return asked;
    const from = asked.value;
    if (from.region === target) return ok({ from: target, primary: from });
    const deadline = ports.now() + waitMs;
    for (;;) {
      await this.tick();
      const p = machine.view.primaries[prefix];
      if (p === undefined) return fail("not_found", `"${prefix}" is no longer a strong prefix`);
      if (p.epoch > from.epoch && p.region !== target)
        return fail("primary_unavailable", `"${prefix}" failed over to ${p.region} meanwhile (epoch ${p.epoch})`, {
          prefix,
          region: p.region,
        });
      if (p.epoch > from.epoch && (p.ready || ports.now() >= deadline)) return ok({ from: from.region, primary: p });
      if (p.epoch === from.epoch && machine.handoverOf(prefix) !== target)
        return fail("region_unavailable", `${target} went out of service; "${prefix}" stays with ${from.region}`, {
          region: target,
        });
      if (p.epoch === from.epoch && ports.now() >= deadline) {
        machine.endHandover(prefix);
        return fail(
          "region_unavailable",
          `${target} did not answer the control object within ${waitMs} ms; the move is called off and "${prefix}" stays with ${from.region}`,
          { region: target },
        );
      }
      // Until the old lease runs out, then a round at a time while the new primary recovers.
      const wait = Math.max(machine.leaseUntil(prefix) - ports.now(), 0);
      await ports.timer(Math.min(Math.max(wait, MOVE_POLL_MS), Math.max(deadline - ports.now(), 0))).done;
    }
  }

  /**
   * Moves keys between shards when `SHARDS` changed (`layout.ts`): announces the move, routes by
   * the new count once every replica recorded it, and has every old shard hand its moving keys
   * over once their earlier writes reached every region; then the layout is stable again.
   */
  private async moveStep(statuses: Statuses, missed: Set<RegionId>): Promise<void> {
    const { machine, ports } = this;
    if (machine.beginMove(ports.now(), statuses)) {
      const layout = machine.layout;
      ports.warn(`shards: moving keys from ${layout.from} to ${layout.shards} shards per region`);
    }
    const layout = machine.layout;
    if (layout.from === null) return;
    const regions = machine.settings.regions;
    if (!layout.routed) {
      const recorded = await this.publish(machine.view);
      for (const r of regions) if (!recorded.has(r)) missed.add(r);
      if (recorded.size === regions.length) machine.routeMove(ports.now());
      return;
    }
    if (!machine.moveDelivered(statuses)) return;
    const id = moveId(layout) as string;
    const steps = await Promise.all(
      regions.flatMap((r) =>
        shardIndices(layout.from as number).map((s) =>
          bounded(
            ports,
            () => ports.replica(r, s).handOver(id),
            CONTROL_CALL_TIMEOUT_MS * 10,
            (error) => ports.warn(`hand-over of ${r}:${s} failed; retrying next round`, error),
          ),
        ),
      ),
    );
    if (!steps.every((step) => step !== null && step.ok && step.value.done)) return;
    machine.finishMove(ports.now());
    ports.warn(`shards: every key moved; ${layout.shards} shards per region`);
    // The shards past the new count retire: they take this last view, then fall quiet.
    const retiring = shardIndices(Math.max(layout.from, layout.shards));
    const recorded = await this.publish(machine.view, retiring);
    for (const r of regions) if (!recorded.has(r)) missed.add(r);
  }

  /**
   * Pushes the view to every replica of `shards` (default: those taking part; taken-out ones
   * too, so they know); the regions every shard of which recorded it.
   */
  private async publish(view: ClusterView, shards: readonly number[] = this.shards): Promise<Set<RegionId>> {
    const regions = this.machine.settings.regions;
    const results = await Promise.all(
      regions.map(async (r) => {
        const recorded = await Promise.all(
          shards.map((s) =>
            bounded(
              this.ports,
              () => this.ports.replica(r, s).applyView(view),
              CONTROL_CALL_TIMEOUT_MS,
              (error) => this.ports.warn(`could not publish the view to ${r}:${s}`, error),
            ),
          ),
        );
        return recorded.every((done) => done === true);
      }),
    );
    return new Set(regions.filter((_, i) => results[i] === true));
  }
}
