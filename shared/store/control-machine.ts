/**
 * The control object's decisions, over its storage: region health from operator overrides and
 * heartbeat evidence, the primary and fencing epoch of each strong prefix, the choice of a
 * successor when a primary fails, and when a new primary may serve. The async rounds around
 * them (gathering statuses, publishing the view, driving recovery) are in `control-node.ts`.
 */
import { type Result, fail, ok } from "../errors.ts";
import { type RegionId } from "../regions.ts";
import {
  type ClusterView,
  EMPTY_VIEW,
  type PrimaryState,
  type RegionHealth,
  isHealthy,
  majority,
  regionHealth,
  skewedRegions,
} from "./cluster.ts";
import { type ReplicaPulse } from "./contract.ts";
import { HLC_SKEW_MS_MAX_DEFAULT } from "../hlc.ts";
import { PRIMARY_LEASE_MS, type PrimaryPrefix } from "./primaries.ts";
import { type Layout, activeShards, moveId, oldWritesDelivered, stableLayout } from "./layout.ts";

/** A strong prefix's primary as the control object stores it. */
export interface ControlPrimaryRow {
  readonly prefix: string;
  readonly region: RegionId;
  readonly epoch: number;
  readonly ready: boolean;
  /**
   * While a new primary is not ready: null until its recovery is done in every shard, then
   * each shard's sequence number at the end of its re-log (index = shard; it becomes ready once
   * a majority has applied that far in every shard).
   */
  readonly recoveredSeqs: readonly number[] | null;
  /** The latest epoch of this prefix that became ready and served. */
  readonly servedEpoch: number;
  readonly changedMs: number;
}

/** One failover, for operators. */
export interface FailoverRow {
  readonly prefix: string;
  readonly from: RegionId;
  readonly to: RegionId;
  readonly epoch: number;
  readonly atMs: number;
}

/** The control object's durable state, one group per table. */
export interface ControlStorage {
  transaction<T>(fn: () => T): T;
  readonly health: {
    /** Operator overrides: false takes a region out, true puts it back. */
    all(): ReadonlyMap<RegionId, { healthy: boolean; changedMs: number }>;
    set(region: RegionId, healthy: boolean, changedMs: number): void;
  };
  readonly primaries: {
    all(): ControlPrimaryRow[];
    /** Records a configured prefix at epoch 1 unless it is already known (a failed-over prefix keeps its primary). */
    seed(row: ControlPrimaryRow): void;
    put(row: ControlPrimaryRow): void;
  };
  readonly failovers: {
    insert(row: FailoverRow): void;
  };
  readonly layout: {
    /** The shard layout (null before the first start). */
    get(): Layout | null;
    put(layout: Layout, changedMs: number): void;
  };
  readonly evidence: {
    /** The latest time any peer reported hearing each region, kept across restarts. */
    all(): ReadonlyMap<RegionId, number>;
    put(region: RegionId, heardMs: number): void;
  };
}

/** What the control object is configured with. */
export interface ControlSettings {
  readonly regions: readonly RegionId[];
  readonly primaryPrefixes: readonly PrimaryPrefix[];
  /** A region no peer has heard from for this long is unhealthy. */
  readonly silenceMs: number;
  /** Replica objects per region as configured (`shared/shards.ts`; default 1): keys move to it when it changes. */
  readonly shards?: number;
  /** The lease a confirmed primary gets (default {@link PRIMARY_LEASE_MS}; `leases.ts`). */
  readonly leaseMs?: number;
}

/**
 * The replica statuses of one round, per region and shard (index = shard): null for a replica
 * that did not answer in time.
 */
export type Statuses = ReadonlyMap<RegionId, readonly (ReplicaPulse | null)[]>;

/** Whether every shard of a region answered this round. */
export function allAnswered(shards: readonly (ReplicaPulse | null)[] | undefined): shards is readonly ReplicaPulse[] {
  return shards !== undefined && shards.length > 0 && shards.every((s) => s !== null);
}

/** The shards of a region that answered this round. */
function answering(shards: readonly (ReplicaPulse | null)[] | undefined): ReplicaPulse[] {
  return (shards ?? []).filter((s) => s !== null);
}

/**
 * How long ago a peer last heard `region`, judged from the shards of the peer that answered:
 * the longest of their silences (a region is alive only when every shard of it is heard), or
 * null when none answered or one never heard it.
 */
function silenceReported(shards: readonly (ReplicaPulse | null)[], region: RegionId): number | null {
  const reports = answering(shards).map((s) => s.lag[region]?.silentMs ?? null);
  if (reports.length === 0 || reports.some((ms) => ms === null)) return null;
  return Math.max(...(reports as number[]));
}

/** The control object's state machine. */
export class ControlMachine {
  readonly storage: ControlStorage;
  readonly settings: ControlSettings;
  private readonly startedMs: number;
  private current: ClusterView = EMPTY_VIEW;
  /** Per strong prefix, until when (this object's clock) the last lease it granted runs. */
  private readonly leases = new Map<string, number>();
  /**
   * Per strong prefix, the region an operator asked to move its primary to. Kept in memory: a
   * restart calls the move off, and the old primary, whose leases are renewed again, serves on.
   */
  private readonly handovers = new Map<string, RegionId>();

  constructor(storage: ControlStorage, settings: ControlSettings, startedMs: number) {
    this.storage = storage;
    this.settings = settings;
    this.startedMs = startedMs;
    storage.transaction(() => {
      if (storage.layout.get() === null) storage.layout.put(stableLayout(settings.shards ?? 1), startedMs);
      for (const p of settings.primaryPrefixes)
        storage.primaries.seed({
          prefix: p.prefix,
          region: p.region,
          epoch: 1,
          ready: true,
          recoveredSeqs: [],
          servedEpoch: 1,
          changedMs: startedMs,
        });
    });
    // A lease granted before this object (re)started may still run: none is known, so every
    // prefix waits a whole lease before its primary may be replaced.
    for (const p of settings.primaryPrefixes) this.leases.set(p.prefix, startedMs + this.leaseMs);
    this.compose(startedMs, undefined);
  }

  /** The last composed view. */
  get view(): ClusterView {
    return this.current;
  }

  /**
   * Recomputes the view from storage and, when given, this round's statuses (their reports of
   * when each region was last heard are kept as evidence).
   */
  compose(nowMs: number, statuses: Statuses | undefined): ClusterView {
    const { storage, settings } = this;
    if (statuses !== undefined) this.recordEvidence(statuses, nowMs);
    const overrides = storage.health.all();
    const heard = storage.evidence.all();
    const readings = new Map<RegionId, number>();
    for (const [region, shards] of statuses ?? []) {
      const first = answering(shards)[0];
      if (first !== undefined) readings.set(region, first.nowMs);
    }
    const skewed = skewedRegions(readings, nowMs, HLC_SKEW_MS_MAX_DEFAULT);
    const health: Partial<Record<RegionId, RegionHealth>> = {};
    for (const region of settings.regions) {
      const override = overrides.get(region);
      const fresh =
        statuses !== undefined &&
        settings.regions.some((peer) => peer !== region && answering(statuses.get(peer)).length > 0);
      health[region] = regionHealth({
        override: override?.healthy,
        answered: allAnswered(statuses?.get(region)),
        // Known only from this round's answer; without a round, the last verdict stands.
        bootstrapping:
          statuses === undefined
            ? this.current.health[region]?.reason === "bootstrapping"
            : answering(statuses.get(region)).some((s) => s.bootstrapping),
        heardMs: heard.get(region) ?? 0,
        fresh,
        // Heartbeats take a moment to resume after a start or a return to service.
        graceUntilMs: Math.max(this.startedMs, override?.changedMs ?? 0) + settings.silenceMs,
        nowMs,
        silenceMs: settings.silenceMs,
        previous: this.current.health[region],
        // Known only from this round's answers; without a round, the last verdict stands.
        skewed: statuses === undefined ? this.current.health[region]?.reason === "clock_skew" : skewed.has(region),
      });
    }
    const configured = new Map(settings.primaryPrefixes.map((p) => [p.prefix, p]));
    const primaries: Record<string, PrimaryState> = {};
    for (const row of storage.primaries.all()) {
      const config = configured.get(row.prefix);
      if (config === undefined) continue;
      primaries[row.prefix] = {
        region: row.region,
        epoch: row.epoch,
        ready: row.ready,
        failover: config.failover,
        recoveredSeqs: row.recoveredSeqs ?? [],
      };
    }
    this.current = { atMs: nowMs, health, primaries, layout: this.layout };
    return this.current;
  }

  /** The stored shard layout. */
  get layout(): Layout {
    return this.storage.layout.get() ?? stableLayout(this.settings.shards ?? 1);
  }

  /**
   * Announces a move to the configured shard count when the layout is stable at another one
   * (`layout.ts`), and only once this round's `statuses` show every replica answering, none
   * still cleaning up after the last move, and every strong prefix's primary ready (a recovery
   * counts per shard of the layout it began in). A change of `SHARDS` during a move waits for it
   * to finish. True when it did.
   */
  beginMove(nowMs: number, statuses: Statuses): boolean {
    const layout = this.layout;
    const target = this.settings.shards ?? 1;
    if (layout.from !== null || layout.shards === target) return false;
    const shards = activeShards(layout);
    for (const region of this.settings.regions) {
      const pulses = statuses.get(region);
      if (pulses === undefined || !shards.every((s) => (pulses[s] ?? null) !== null && pulses[s]?.cleaning !== true))
        return false;
    }
    if (Object.values(this.current.primaries).some((p) => !p.ready)) return false;
    this.storage.transaction(() =>
      this.storage.layout.put({ shards: target, from: layout.shards, routed: false }, nowMs),
    );
    this.compose(nowMs, undefined);
    return true;
  }

  /** Routes by the new count, once every replica recorded the announced move. */
  routeMove(nowMs: number): void {
    const layout = this.layout;
    if (layout.from === null || layout.routed) return;
    this.storage.transaction(() => this.storage.layout.put({ ...layout, routed: true }, nowMs));
    this.compose(nowMs, undefined);
  }

  /** Whether every old shard's writes from before the move reached every region (`layout.ts`). */
  moveDelivered(statuses: Statuses): boolean {
    const layout = this.layout;
    if (layout.from === null || !layout.routed) return false;
    const id = moveId(layout);
    return oldWritesDelivered(
      this.settings.regions,
      layout.from,
      (region, shard) => {
        const move = statuses.get(region as RegionId)?.[shard]?.move;
        return move?.id === id ? move.fenceSeq : undefined;
      },
      (region, shard, peer) => statuses.get(region as RegionId)?.[shard]?.lag[peer as RegionId]?.appliedSeq,
    );
  }

  /** Ends a move every old shard has handed over: the layout is stable at the new count. */
  finishMove(nowMs: number): void {
    const layout = this.layout;
    if (layout.from === null || !layout.routed) return;
    this.storage.transaction(() => this.storage.layout.put(stableLayout(layout.shards), nowMs));
    this.compose(nowMs, undefined);
  }

  /**
   * Keeps, per region, the latest time (on this object's clock) any peer reports having heard
   * it. Peers report how long ago, by their own clocks, so no two clocks are ever compared.
   */
  private recordEvidence(statuses: Statuses, nowMs: number): void {
    const { storage, settings } = this;
    const known = storage.evidence.all();
    storage.transaction(() => {
      for (const region of settings.regions) {
        let heardMs = known.get(region) ?? 0;
        for (const [peer, shards] of statuses) {
          const silentMs = peer === region ? null : silenceReported(shards, region);
          if (silentMs !== null) heardMs = Math.max(heardMs, nowMs - silentMs);
        }
        if (heardMs > (known.get(region) ?? 0)) storage.evidence.put(region, heardMs);
      }
    });
  }

  /** Records an operator's override. */
  setOverride(region: RegionId, healthy: boolean, nowMs: number): void {
    this.storage.transaction(() => this.storage.health.set(region, healthy, nowMs));
  }

  /**
   * The fencing check: when `region` is the ready and healthy primary of `prefix` under
   * `epoch`, grants it a lease and answers its length in milliseconds (`settings.leaseMs`);
   * otherwise 0. Until the lease runs out the prefix is not failed over.
   */
  confirmPrimary(prefix: string, region: RegionId, epoch: number, nowMs: number): number {
    const p = this.current.primaries[prefix];
    const confirmed =
      p !== undefined &&
      p.region === region &&
      p.epoch === epoch &&
      p.ready &&
      isHealthy(this.current, region) &&
      !this.handovers.has(prefix);
    if (!confirmed) return 0;
    this.leases.set(prefix, Math.max(this.leases.get(prefix) ?? 0, nowMs + this.leaseMs));
    return this.leaseMs;
  }

  private get leaseMs(): number {
    return this.settings.leaseMs ?? PRIMARY_LEASE_MS;
  }

  /** Until when (this object's clock) the last lease granted for `prefix` runs. */
  leaseUntil(prefix: string): number {
    return this.leases.get(prefix) ?? 0;
  }

  /**
   * Asks to move the primary of `prefix` to `target` (a failback, or a planned move): from now
   * on the current primary's lease is not renewed, and once it has run out the control object's
   * round promotes `target` under the next epoch, with the same fencing and recovery as a
   * failover. Answers the primary as it stands. Refused for an unknown prefix, an unknown or
   * unhealthy target, or while a failover of the prefix is still recovering.
   */
  requestHandover(prefix: string, target: RegionId): Result<PrimaryState> {
    const p = this.current.primaries[prefix];
    if (p === undefined) {
      const known = Object.keys(this.current.primaries).map((k) => `"${k}"`);
      return fail(
        "not_found",
        `"${prefix}" is not a strong prefix (PRIMARY_PREFIXES has ${known.join(", ") || "none"})`,
      );
    }
    if (!this.settings.regions.includes(target))
      return fail(
        "unknown_region",
        `${target} is not one of the configured regions (${this.settings.regions.join(", ")})`,
      );
    if (p.region === target) return ok(p);
    if (!p.ready)
      return fail(
        "primary_unavailable",
        `"${prefix}" is still recovering under ${p.region} (epoch ${p.epoch}); move it once it is ready`,
        { prefix, region: p.region },
      );
    if (!isHealthy(this.current, target))
      return fail("region_unavailable", `${target} is out of service; put it back before moving a primary to it`, {
        region: target,
      });
    this.handovers.set(prefix, target);
    return ok(p);
  }

  /** The region `prefix`'s primary is being moved to, if a move is under way. */
  handoverOf(prefix: string): RegionId | undefined {
    return this.handovers.get(prefix);
  }

  /** Every move under way: prefix and target. */
  handoversUnderWay(): Array<[string, RegionId]> {
    return [...this.handovers];
  }

  /** Calls a move off (done, or its target can no longer take over); leases are granted again. */
  endHandover(prefix: string): void {
    this.handovers.delete(prefix);
  }

  /**
   * The prefixes whose primary is unhealthy and may be replaced automatically now: those
   * whose last lease ran out (the old primary may serve until then).
   */
  needsFailover(nowMs: number): string[] {
    return Object.entries(this.current.primaries)
      .filter(([prefix, p]) => p.failover && !isHealthy(this.current, p.region) && nowMs >= this.leaseUntil(prefix))
      .map(([prefix]) => prefix);
  }

  /**
   * The successor of `old`: among healthy regions whose every shard answered this round, the
   * one that has applied the most of `old`'s streams (summed over shards; ties go to
   * configuration order). Only fresh statuses count: a remembered figure may be from before a
   * restart.
   */
  successor(old: RegionId, statuses: Statuses): RegionId | undefined {
    let best: { region: RegionId; applied: number } | undefined;
    for (const region of this.settings.regions) {
      const shards = statuses.get(region);
      if (region === old || !allAnswered(shards) || !isHealthy(this.current, region)) continue;
      const applied = shards.reduce((sum, s) => sum + (s.lag[old]?.appliedSeq ?? 0), 0);
      if (best === undefined || applied > best.applied) best = { region, applied };
    }
    return best?.region;
  }

  /**
   * Promotes `successor` for `prefix` under the next epoch; it is not ready until it has
   * recovered. Nothing happens while the current primary's lease runs.
   */
  beginFailover(prefix: string, successor: RegionId, nowMs: number): void {
    const row = this.storage.primaries.all().find((r) => r.prefix === prefix);
    if (row === undefined || nowMs < this.leaseUntil(prefix)) return;
    this.storage.transaction(() => {
      this.storage.primaries.put({
        prefix,
        region: successor,
        epoch: row.epoch + 1,
        ready: false,
        recoveredSeqs: null,
        servedEpoch: row.servedEpoch,
        changedMs: nowMs,
      });
      this.storage.failovers.insert({ prefix, from: row.region, to: successor, epoch: row.epoch + 1, atMs: nowMs });
    });
    this.compose(nowMs, undefined);
  }

  /**
   * The donors a new primary must recover from, given the regions that durably recorded its
   * epoch: those of them that are healthy (readable), but itself. Enough of them that they and
   * the new primary make `n - majority + 1` regions, or undefined: any write quorum then
   * shares a region with them, so every write a quorum acknowledged under the old epoch is
   * among their states; and since each of them knows the new epoch before it is read, the old
   * primary can no longer gather a quorum for another write.
   */
  donors(prefix: string, recorded: ReadonlySet<RegionId>): RegionId[] | undefined {
    const p = this.current.primaries[prefix];
    if (p === undefined || !recorded.has(p.region)) return undefined;
    const n = this.settings.regions.length;
    const readable = this.settings.regions.filter((r) => recorded.has(r) && isHealthy(this.current, r));
    if (readable.length < n - majority(n) + 1) return undefined;
    return readable.filter((r) => r !== p.region);
  }

  /**
   * The oldest epoch whose content a new primary of `prefix` recovers: the last epoch that
   * served re-tagged everything it kept, so only a deposed primary's leftovers are older. (The
   * configured first epoch keeps everything, including keys written before the prefix was
   * made strong.)
   */
  floorEpoch(prefix: string): number {
    const row = this.row(prefix);
    return row === undefined || row.servedEpoch <= 1 ? 0 : row.servedEpoch;
  }

  private row(prefix: string): ControlPrimaryRow | undefined {
    return this.storage.primaries.all().find((r) => r.prefix === prefix);
  }

  /**
   * Records that the new primary of `prefix` finished recovering in every shard, re-logging up
   * to `recoveredSeqs` (index = shard).
   */
  recovered(prefix: string, epoch: number, recoveredSeqs: readonly number[], nowMs: number): void {
    const row = this.row(prefix);
    if (row === undefined || row.epoch !== epoch || row.ready || row.recoveredSeqs !== null) return;
    this.storage.transaction(() =>
      this.storage.primaries.put({ ...row, recoveredSeqs: [...recoveredSeqs], changedMs: nowMs }),
    );
  }

  /**
   * Marks the new primary of `prefix` ready once a majority (itself included) has applied its
   * re-log in every shard: whatever the next failover's donors are, one of them then holds
   * every key as this epoch recovered it, so what this epoch dropped can never come back.
   */
  readyIfReplicated(prefix: string, statuses: Statuses, nowMs: number): boolean {
    const row = this.row(prefix);
    if (row === undefined || row.ready || row.recoveredSeqs === null) return false;
    const seqs = row.recoveredSeqs;
    const holders = this.settings.regions.filter((r) => {
      if (r === row.region) return true;
      const shards = statuses.get(r) ?? [];
      return seqs.every((seq, shard) => (shards[shard]?.lag[row.region]?.appliedSeq ?? -1) >= seq);
    });
    if (holders.length < majority(this.settings.regions.length)) return false;
    this.storage.transaction(() =>
      this.storage.primaries.put({ ...row, ready: true, servedEpoch: row.epoch, changedMs: nowMs }),
    );
    this.compose(nowMs, undefined);
    return true;
  }
}
