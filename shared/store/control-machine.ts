/**
 * The control object's decisions, over its storage: region health from operator overrides and
 * heartbeat evidence, the primary and fencing epoch of each strong prefix, the choice of a
 * successor when a primary fails, and when a new primary may serve. The async rounds around
 * them (gathering statuses, publishing the view, driving recovery) are in `control-node.ts`.
 */
import { type RegionId } from "../regions.ts";
import {
  type ClusterView,
  EMPTY_VIEW,
  type PrimaryState,
  type RegionHealth,
  isHealthy,
  majority,
  regionHealth,
} from "./cluster.ts";
import { type ReplicaStatus } from "./contract.ts";
import { type PrimaryPrefix } from "./primaries.ts";

/** A strong prefix's primary as the control object stores it. */
export interface ControlPrimaryRow {
  readonly prefix: string;
  readonly region: RegionId;
  readonly epoch: number;
  readonly ready: boolean;
  readonly recoveredSeq: number;
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
}

/** The replica statuses of one round: null for a region that did not answer in time. */
export type Statuses = ReadonlyMap<RegionId, ReplicaStatus | null>;

/** The control object's state machine. */
export class ControlMachine {
  readonly storage: ControlStorage;
  readonly settings: ControlSettings;
  private readonly startedMs: number;
  private current: ClusterView = EMPTY_VIEW;

  constructor(storage: ControlStorage, settings: ControlSettings, startedMs: number) {
    this.storage = storage;
    this.settings = settings;
    this.startedMs = startedMs;
    storage.transaction(() => {
      for (const p of settings.primaryPrefixes)
        storage.primaries.seed({
          prefix: p.prefix,
          region: p.region,
          epoch: 1,
          ready: true,
          recoveredSeq: 0,
          changedMs: startedMs,
        });
    });
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
    if (statuses !== undefined) this.recordEvidence(statuses);
    const overrides = storage.health.all();
    const heard = storage.evidence.all();
    const health: Partial<Record<RegionId, RegionHealth>> = {};
    for (const region of settings.regions) {
      const override = overrides.get(region);
      const fresh =
        statuses !== undefined &&
        settings.regions.some((peer) => peer !== region && (statuses.get(peer) ?? null) !== null);
      health[region] = regionHealth({
        override: override?.healthy,
        answered: (statuses?.get(region) ?? null) !== null,
        heardMs: heard.get(region) ?? 0,
        fresh,
        // Heartbeats take a moment to resume after a start or a return to service.
        graceUntilMs: Math.max(this.startedMs, override?.changedMs ?? 0) + settings.silenceMs,
        nowMs,
        silenceMs: settings.silenceMs,
        previous: this.current.health[region],
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
        recoveredSeq: row.recoveredSeq,
      };
    }
    this.current = { atMs: nowMs, health, primaries };
    return this.current;
  }

  private recordEvidence(statuses: Statuses): void {
    const { storage, settings } = this;
    const known = storage.evidence.all();
    storage.transaction(() => {
      for (const region of settings.regions) {
        let heardMs = known.get(region) ?? 0;
        for (const [peer, status] of statuses)
          if (peer !== region) heardMs = Math.max(heardMs, status?.lag[region]?.heardMs ?? 0);
        if (heardMs > (known.get(region) ?? 0)) storage.evidence.put(region, heardMs);
      }
    });
  }

  /** Records an operator's override. */
  setOverride(region: RegionId, healthy: boolean, nowMs: number): void {
    this.storage.transaction(() => this.storage.health.set(region, healthy, nowMs));
  }

  /** Whether `region` is the ready primary of `prefix` under `epoch`: the fencing check. */
  confirmPrimary(prefix: string, region: RegionId, epoch: number): boolean {
    const p = this.current.primaries[prefix];
    return p !== undefined && p.region === region && p.epoch === epoch && p.ready && isHealthy(this.current, region);
  }

  /** The prefixes whose primary is unhealthy and may be replaced automatically. */
  needsFailover(): string[] {
    return Object.entries(this.current.primaries)
      .filter(([, p]) => p.failover && !isHealthy(this.current, p.region))
      .map(([prefix]) => prefix);
  }

  /**
   * The successor of `old`: among healthy regions that answered this round, the one that has
   * applied the most of `old`'s stream (ties go to configuration order). Only fresh statuses
   * count: a remembered figure may be from before a restart.
   */
  successor(old: RegionId, statuses: Statuses): RegionId | undefined {
    let best: { region: RegionId; applied: number } | undefined;
    for (const region of this.settings.regions) {
      const status = statuses.get(region) ?? null;
      if (region === old || status === null || !isHealthy(this.current, region)) continue;
      const applied = status.lag[old]?.appliedSeq ?? 0;
      if (best === undefined || applied > best.applied) best = { region, applied };
    }
    return best?.region;
  }

  /** Promotes `successor` for `prefix` under the next epoch; it is not ready until it has recovered. */
  beginFailover(prefix: string, successor: RegionId, nowMs: number): void {
    const row = this.storage.primaries.all().find((r) => r.prefix === prefix);
    if (row === undefined) return;
    this.storage.transaction(() => {
      this.storage.primaries.put({
        prefix,
        region: successor,
        epoch: row.epoch + 1,
        ready: false,
        recoveredSeq: 0,
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

  /** Marks the new primary of `prefix` ready once its recovery is done. */
  markReady(prefix: string, epoch: number, recoveredSeq: number, nowMs: number): void {
    const row = this.storage.primaries.all().find((r) => r.prefix === prefix);
    if (row === undefined || row.epoch !== epoch || row.ready) return;
    this.storage.transaction(() => this.storage.primaries.put({ ...row, ready: true, recoveredSeq, changedMs: nowMs }));
    this.compose(nowMs, undefined);
  }
}
