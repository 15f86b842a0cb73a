/**
 * The replica as a state machine over its storage (in the manner of etcd raft: decisions here,
 * I/O with the caller). Given what storage holds and the time, it decides what a local write,
 * an incoming replicated entry, a whole state from a peer, a heartbeat or a cluster view
 * changes, inside one storage transaction each. It never awaits: the async flows around it
 * (synchronous acks, session catch-up, recovery, the outbox drain) live in `replica-node.ts`,
 * and the Durable Object and the simulator both drive this same code.
 *
 * The in-memory copies (clock, sequence number, view) move only after their transaction has
 * committed, so a transaction that throws leaves no gap in the sequence numbers peers wait for.
 */
import { assert } from "../assert.ts";
import { type Result, type ErrorData, fail, ok } from "../errors.ts";
import { type HlcStamp, compareHlc, formatHlc, hlcReceive, hlcZero, parseHlc } from "../hlc.ts";
import { type RegionId } from "../regions.ts";
import { EMPTY_VV, type VersionVector, vvEntries, vvFrom, vvGet, vvMerge } from "../version-vector.ts";
import { type ClusterView, EMPTY_VIEW, isTakenOut } from "./cluster.ts";
import {
  type KeySnapshot,
  type MoveState,
  type PeerLag,
  type ReplicaPulse,
  type ReplicaStatus,
  type StrongScope,
} from "./contract.ts";
import { type Layout, layoutOf, moveId } from "./layout.ts";
import { MERKLE_BUCKETS } from "../merkle.ts";
import { type TaggedState } from "./epochs.ts";
import { type KeyOp, decodeKeyState } from "./key-state.ts";
import { lwwEmpty } from "../crdt/lww-register.ts";
import { DelayWindows } from "./delays.ts";
import { type PrimaryPrefix, prefixOf } from "./primaries.ts";
import { progressLag } from "./progress.ts";
import { type KeyView, type WriteConditions, checkConditions, keyView, planWrite } from "./replica-core.ts";
import { sessionLagging } from "./session.ts";
import { type PrimaryRecord, type ReplicaStorage } from "./storage.ts";
import { enterUndigested, putKey } from "./tree.ts";
import { type ReplicationEntry } from "./wire.ts";

/** What a replica is configured with. */
export interface ReplicaSettings {
  readonly region: RegionId;
  /**
   * The shard this replica holds (`shared/shards.ts`; default 0): it replicates with the same
   * shard of every other region, and refuses messages meant for another shard.
   */
  readonly shard?: number;
  /** Shards per region as configured: the layout until a view says otherwise (default 1). */
  readonly shards?: number;
  /** Every region that holds a replica, this one included, in configured order. */
  readonly regions: readonly RegionId[];
  readonly primaryPrefixes: readonly PrimaryPrefix[];
  /** How long a peer may stay silent before a caught-up replica stops counting as current. */
  readonly silenceMsMax: number;
}

/** How stale a replica may be: a figure, or none with the reason. */
export type Staleness = { readonly ms: number } | { readonly ms: null; readonly unknown: string };

/** The staleness of an answer several replicas gave: the worst of theirs (any unknown makes it unknown). */
export function worstStaleness(all: readonly Staleness[]): Staleness {
  let max = 0;
  for (const one of all) {
    if (one.ms === null) return one;
    max = Math.max(max, one.ms);
  }
  return { ms: max };
}

/** A local write that committed: what to answer, and the entry to push for synchronous acks. */
export interface CommittedWrite {
  readonly seq: number;
  /** The key after the write; a register's value is left out (the writer has it). */
  readonly view: KeyView;
  /**
   * The write as a replication entry, with its whole state inline (for synchronous pushes);
   * null when there was nothing to write (a delete of a key this replica does not hold).
   */
  readonly entry: ReplicationEntry | null;
}

/**
 * A refusal decided inside a transaction: thrown to roll the transaction back, caught at its
 * edge and answered as a failed `Result`. Never escapes this module.
 */
export class Refusal extends Error {
  override readonly name = "Refusal";
  readonly error: ErrorData;
  constructor(error: ErrorData) {
    super(error.message);
    this.error = error;
  }
}

/** Runs `fn` in a transaction; a {@link Refusal} thrown inside rolls it back and becomes a failed result. */
export function refusable<T>(storage: ReplicaStorage, fn: () => Result<T>): Result<T> {
  try {
    return storage.transaction(fn);
  } catch (error) {
    if (error instanceof Refusal) return { ok: false, error: error.error };
    throw error;
  }
}

const META_CLOCK = "clock";
/** When the replica's bootstrap began (ms), for the time it took. */
const META_BOOTSTRAP_STARTED = "bootstrap_started_ms";
const META_SEQ = "seq";
const META_FIRST = "first_written_ms";
const META_VIEW = "view";
/** The move of keys between shards this replica recorded (`MoveState` as JSON). */
const META_MOVE = "move";
const META_INCARNATION = "incarnation";
const META_PHASE = "phase";
const META_BASE = "base_seq";
const META_PRIOR = "prior_seq";
/** The collection horizon's meta row (written by `gc.ts`). */
export const META_GC_HORIZON = "gc_horizon";
/** The collectable frontier's meta row (written by `gc.ts`). */
export const META_GC_STABLE = "gc_stable";

/** A vector from its JSON object form (region -> number). */
export function vectorOf(object: object): VersionVector {
  return vvFrom(Object.entries(object) as Array<[RegionId, number]>);
}

/** A vector stored as JSON text (absent: empty). */
export function jsonVector(text: string | undefined): VersionVector {
  return text === undefined ? EMPTY_VV : vectorOf(JSON.parse(text) as object);
}

/**
 * Where a replica stands in its life. `probing`: its storage is new and it has not yet asked
 * its peers whether they hold data or know its region's earlier writes; `bootstrapping`: it is
 * pulling the full state from its peers through anti-entropy; `ready`: it serves as usual.
 */
export type ReplicaPhase = "probing" | "bootstrapping" | "ready";

/**
 * How far a restored replica's numbering starts above the highest of its region's sequence
 * numbers its peers know: writes of the lost incarnation still in a queue somewhere (their
 * numbers above what peers had seen) must never share a number, or a dot, with new writes.
 */
export const INCARNATION_SEQ_GAP = 1 << 20;

/** One region's replica: its identity, clock, sequence number and view, over its storage. */
export class ReplicaMachine {
  readonly storage: ReplicaStorage;
  readonly settings: ReplicaSettings;
  /** How long each peer's recent writes took to become visible here (in memory). */
  readonly delays = new DelayWindows();
  private clockStamp: HlcStamp;
  private seqNumber = 0;
  private firstMs = 0;
  private viewState: ClusterView = EMPTY_VIEW;
  private moveState: MoveState | null | undefined;
  private phaseState: ReplicaPhase = "ready";
  private incarnationId = "";
  private base = 0;
  private prior = 0;
  /** The collection horizon (`gc.ts`): a state for an absent key within it is a late copy of a collected one. */
  gcHorizon: VersionVector = EMPTY_VV;
  /** The collectable frontier (`gc.ts`): writes every region has merged. */
  gcStable: VersionVector = EMPTY_VV;

  /** `startMs` names a new incarnation when the storage turns out to be new. */
  constructor(storage: ReplicaStorage, settings: ReplicaSettings, startMs: number) {
    assert(settings.regions.includes(settings.region), "a replica's region is configured");
    this.storage = storage;
    this.settings = settings;
    this.clockStamp = hlcZero(settings.region);
    this.load(startMs);
  }

  /** Reads the durable position and view, and records the configured strong prefixes at epoch 1. */
  private load(startMs: number): void {
    const { meta, primaries } = this.storage;
    this.clockStamp = parseHlc(meta.get(META_CLOCK) ?? "") ?? hlcZero(this.region);
    this.seqNumber = Number(meta.get(META_SEQ) ?? "0");
    this.firstMs = Number(meta.get(META_FIRST) ?? "0");
    assert(Number.isSafeInteger(this.seqNumber) && this.seqNumber >= 0, "the stored sequence number is valid");
    const view = meta.get(META_VIEW);
    if (view !== undefined) this.viewState = JSON.parse(view) as ClusterView;
    const incarnation = meta.get(META_INCARNATION);
    if (incarnation === undefined) {
      // New storage (never written, nothing merged) must learn from its peers before it
      // writes; storage from before incarnations existed just gets one.
      const counts = this.storage.kv.counts();
      const fresh = this.seqNumber === 0 && counts.live + counts.tombstones === 0 && this.clockStamp.wallMs === 0;
      this.phaseState = fresh && this.peers.length > 0 ? "probing" : "ready";
      this.incarnationId = String(startMs);
      this.storage.transaction(() => {
        meta.set(META_INCARNATION, this.incarnationId);
        meta.set(META_PHASE, this.phaseState);
      });
    } else {
      this.incarnationId = incarnation;
      this.phaseState = (meta.get(META_PHASE) as ReplicaPhase | undefined) ?? "ready";
      this.base = Number(meta.get(META_BASE) ?? "0");
      this.prior = Number(meta.get(META_PRIOR) ?? "0");
    }
    this.gcHorizon = jsonVector(meta.get(META_GC_HORIZON));
    this.gcStable = jsonVector(meta.get(META_GC_STABLE));
    // Keys stored before the Merkle tree existed are entered into it before anything compares trees.
    while (!enterUndigested(this.storage, (key, tag) => this.epochOf(key, tag)));
    this.storage.transaction(() => {
      // Configured strong prefixes start at epoch 1, already settled: there is nothing older.
      for (const p of this.settings.primaryPrefixes)
        if (!primaries.all().has(p.prefix)) primaries.put(p.prefix, { region: p.region, epoch: 1, settledEpoch: 1 });
    });
  }

  get region(): RegionId {
    return this.settings.region;
  }

  /** The shard this replica holds. */
  get shard(): number {
    return this.settings.shard ?? 0;
  }
  get seq(): number {
    return this.seqNumber;
  }
  get clock(): HlcStamp {
    return this.clockStamp;
  }
  /** Origin wall time of this region's first write (0: none yet); every message carries it. */
  get firstWrittenMs(): number {
    return this.firstMs;
  }
  /** The shard layout this replica follows (`layout.ts`). */
  get layout(): Layout {
    return layoutOf(this.viewState, this.settings.shards ?? 1);
  }

  /** Whether a view with the shard layout reached this replica (else {@link layout} is the configured one). */
  get layoutKnown(): boolean {
    return this.viewState.layout !== undefined;
  }

  /** The move of keys between shards it recorded last, if any (read once, then kept in memory). */
  get move(): MoveState | null {
    if (this.moveState === undefined) {
      const text = this.storage.meta.get(META_MOVE);
      this.moveState = text === undefined ? null : (JSON.parse(text) as MoveState);
    }
    return this.moveState;
  }

  /** Records progress of the hand-over of the move it recorded (call inside a transaction). */
  recordMove(move: MoveState): void {
    this.storage.meta.set(META_MOVE, JSON.stringify(move));
    // Read again after a rolled-back transaction.
    this.moveState = undefined;
  }

  get view(): ClusterView {
    return this.viewState;
  }
  /** Where this replica stands in its life (see {@link ReplicaPhase}). */
  get phase(): ReplicaPhase {
    return this.phaseState;
  }
  /** Whether this replica is new and does not yet hold what its peers do. */
  get bootstrapping(): boolean {
    return this.phaseState !== "ready";
  }
  /** Where this incarnation's numbering starts (0 for a region's first life). */
  get baseSeq(): number {
    return this.base;
  }
  /** The highest number of the region's earlier life its peers knew when this one began (0: none). */
  get priorSeq(): number {
    return this.prior;
  }
  /** This life of the replica: the time its storage was created. */
  get incarnation(): string {
    return this.incarnationId;
  }

  /**
   * Ends probing: numbers this incarnation's writes from `base` (0, or above every number its
   * peers know of the region, see {@link INCARNATION_SEQ_GAP}), and goes on to bootstrap, or
   * straight to ready when the peers hold nothing.
   */
  identify(base: number, bootstrap: boolean, prior = 0, nowMs = 0): void {
    assert(this.phaseState === "probing", "only a probing replica is identified");
    assert(Number.isSafeInteger(base) && base >= this.seqNumber, "a new numbering starts above the old");
    assert(prior <= base, "the earlier life's numbers are below the new ones");
    const phase: ReplicaPhase = bootstrap ? "bootstrapping" : "ready";
    this.storage.transaction(() => {
      if (base > this.seqNumber) this.storage.meta.set(META_SEQ, String(base));
      this.storage.meta.set(META_BASE, String(base));
      this.storage.meta.set(META_PRIOR, String(prior));
      this.storage.meta.set(META_PHASE, phase);
      if (bootstrap) this.storage.meta.set(META_BOOTSTRAP_STARTED, String(nowMs));
    });
    this.seqNumber = base;
    this.base = base;
    this.prior = prior;
    this.phaseState = phase;
  }

  /** Ends bootstrapping at `nowMs`, counting it and the time it took in the metrics. */
  bootstrapped(nowMs = 0): void {
    assert(this.phaseState === "bootstrapping", "only a bootstrapping replica finishes bootstrapping");
    const { storage } = this;
    storage.transaction(() => {
      storage.meta.set(META_PHASE, "ready");
      const started = Number(storage.meta.get(META_BOOTSTRAP_STARTED) ?? "");
      storage.metrics.add("bootstraps_total", this.region, 1);
      if (started > 0 && nowMs >= started) storage.metrics.add("bootstrap_ms_total", this.region, nowMs - started);
    });
    this.phaseState = "ready";
  }
  /** The other regions. */
  get peers(): RegionId[] {
    return this.settings.regions.filter((r) => r !== this.region);
  }

  /** Whether an operator took this region out: it then refuses everything, as if it were down. */
  takenOut(): boolean {
    return isTakenOut(this.viewState, this.region);
  }

  /** The refusal a taken-out replica answers. */
  unavailable<T>(): Result<T> {
    return fail("region_unavailable", `region ${this.region} is taken out of service`, { region: this.region });
  }

  /** Moves the clock after a transaction that observed remote stamps has committed. */
  observed(clock: HlcStamp): void {
    this.clockStamp = clock;
  }

  /**
   * Moves the clock past `stamp`, a tombstone this replica collects: a write to the key after its
   * collection must order after the delete it no longer sees, also where the tombstone came by a
   * repair (which does not move the clock). No skew bound: the stamp is past the grace period.
   */
  passCollected(stamp: HlcStamp, nowMs: number): void {
    if (compareHlc(stamp, this.clockStamp) <= 0) return;
    const moved = hlcReceive(this.clockStamp, stamp, nowMs, Number.MAX_SAFE_INTEGER);
    assert(moved.ok, "a receive without a skew bound cannot fail");
    this.storage.meta.set(META_CLOCK, formatHlc(moved.stamp));
    this.clockStamp = moved.stamp;
  }

  /**
   * Takes the control object's view and records it durably with the epochs it names, so a
   * restarted replica knows at once whether it is out and what to fence. Epochs only move
   * forward, so they are taken from any view; the rest of an older view (one from a control
   * object whose clock went back, or a late push) is ignored. True once its epochs are recorded
   * and its shard layout is the one this replica follows.
   */
  applyView(view: ClusterView): boolean {
    const newer = view.atMs >= this.viewState.atMs;
    this.storage.transaction(() => {
      if (newer) this.storage.meta.set(META_VIEW, JSON.stringify(view));
      for (const [prefix, p] of Object.entries(view.primaries)) this.advanceEpoch(prefix, p.region, p.epoch);
      // A move seen for the first time: every write of a key moving away from here is at or
      // below this number, since such keys are refused from now on (`layout.ts`).
      const id = newer && view.layout !== undefined ? moveId(view.layout) : null;
      if (id !== null && this.move?.id !== id)
        this.recordMove({ id, fenceSeq: this.seqNumber, handedOver: false, after: null });
    });
    if (newer) this.viewState = view;
    // An older view (a control object whose clock went back, a publish overtaken by a later one)
    // still records its epochs; it counts as recorded only if its shard layout is the one this
    // replica follows, so that no move is routed on the word of a replica that did not see it.
    return newer || JSON.stringify(view.layout) === JSON.stringify(this.viewState.layout);
  }

  /** Records a newer epoch of `prefix` (call inside a transaction); older or equal ones change nothing. */
  advanceEpoch(prefix: string, region: RegionId, epoch: number): PrimaryRecord | undefined {
    const known = this.storage.primaries.all().get(prefix);
    if (known !== undefined && known.epoch >= epoch) return known;
    const record: PrimaryRecord = { region, epoch, settledEpoch: known?.settledEpoch ?? 0 };
    this.storage.primaries.put(prefix, record);
    return record;
  }

  /** The fencing state this replica knows for the strong prefix of `key`, if it has one. */
  strongOf(key: string): { prefix: string; known: PrimaryRecord | undefined } | undefined {
    const strong = prefixOf(key, this.settings.primaryPrefixes);
    return strong === undefined
      ? undefined
      : { prefix: strong.prefix, known: this.storage.primaries.all().get(strong.prefix) };
  }

  /**
   * The epoch a key's state belongs to, from its stored tag: 0 outside strong prefixes (so a
   * key whose prefix stopped being strong merges as a plain CRDT again), and at least 1 inside
   * one (content written before the prefix was made strong belongs to its first epoch).
   */
  epochOf(key: string, tag: number): number {
    return prefixOf(key, this.settings.primaryPrefixes) === undefined ? 0 : Math.max(1, tag);
  }

  /**
   * Whether this replica may act as the primary of `scope` right now: it knows that epoch with
   * itself as primary, and it has taken in that epoch's recovered state.
   */
  isPrimary(scope: StrongScope): boolean {
    const known = this.storage.primaries.all().get(scope.prefix);
    return (
      known !== undefined &&
      known.region === this.region &&
      known.epoch === scope.epoch &&
      known.settledEpoch === known.epoch
    );
  }

  fenced<T>(scope: StrongScope): Result<T> {
    return fail(
      "fenced",
      `region ${this.region} is not the primary of "${scope.prefix}" at epoch ${scope.epoch}; retry`,
      {
        prefix: scope.prefix,
      },
    );
  }

  /** The key as stored, tagged with its epoch; undefined when never written here. */
  tagged(key: string): { row: TaggedState; seqs: VersionVector } | undefined {
    const row = this.storage.kv.get(key);
    return row === null ? undefined : { row: { state: decodeKeyState(row.encoded), epoch: row.epoch }, seqs: row.seqs };
  }

  /**
   * Applies a local write and records it in the outbox, in one transaction. On a strong prefix
   * the epoch is checked inside that transaction, so a primary deposed while the caller awaited
   * its confirmation commits nothing.
   */
  write(
    key: string,
    op: KeyOp,
    conditions: WriteConditions,
    strong: StrongScope | undefined,
    nowMs: number,
  ): Result<CommittedWrite> {
    if (this.takenOut()) return this.unavailable();
    const prefix = prefixOf(key, this.settings.primaryPrefixes);
    if (prefix !== undefined && strong?.prefix !== prefix.prefix)
      return fail("fenced", `"${key}" is under the strong prefix "${prefix.prefix}": write it through its primary`, {
        prefix: prefix.prefix,
      });
    const committed = this.storage.transaction((): Result<{ commit: CommittedWrite; stamp: HlcStamp }> => {
      if (strong !== undefined && !this.isPrimary(strong)) return this.fenced(strong);
      const row = this.storage.kv.get(key);
      const current = row === null ? undefined : decodeKeyState(row.encoded);
      const checked = checkConditions(current, conditions, nowMs);
      if (!checked.ok) return checked;
      // A delete of a key this replica does not hold writes nothing: a tombstone would fix the
      // key's type, and a counter or set could never be created there. It answers the view of
      // the key as never written (the stable context: what every region has merged).
      if (current === undefined && op.type === "register" && op.op.kind === "delete") {
        const absent = keyView({ type: "register", register: { ...lwwEmpty(), vv: this.gcStable } }, nowMs);
        if (!absent.ok) return absent;
        return ok({ commit: { seq: 0, view: absent.value, entry: null }, stamp: this.clockStamp });
      }
      // A key not held may have been collected: a new write descends from everything stable.
      const plan = planWrite(
        current,
        op,
        this.region,
        this.clockStamp,
        this.seqNumber,
        nowMs,
        this.gcStable,
        this.baseSeq,
      );
      if (!plan.ok) return plan;
      const { state, encoded, stamp, seq, logState } = plan.value;
      const view = keyView(state, nowMs);
      if (!view.ok) return view;
      const epoch = strong?.epoch ?? 0;
      putKey(
        this.storage,
        key,
        row,
        state,
        encoded,
        vvMerge(row?.seqs ?? EMPTY_VV, vvFrom([[this.region, seq]])),
        epoch,
      );
      const stampText = formatHlc(stamp);
      this.storage.log.append({
        seq,
        key,
        stamp: stampText,
        writtenMs: nowMs,
        state: logState,
        epoch: strong?.epoch ?? null,
      });
      this.storage.metrics.add("writes_applied_total", this.region, 1);
      this.savePosition(stampText, seq, nowMs);
      const summary: KeyView = view.value.type === "register" ? { ...view.value, value: null } : view.value;
      const entry: ReplicationEntry = {
        seq,
        key,
        stamp: stampText,
        writtenMs: nowMs,
        state: encoded,
        ...(strong ? { epoch } : {}),
      };
      return ok({ commit: { seq, view: summary, entry }, stamp });
    });
    if (!committed.ok) return committed;
    if (committed.value.commit.entry === null) return ok(committed.value.commit);
    this.clockStamp = committed.value.stamp;
    this.seqNumber = committed.value.commit.seq;
    if (this.firstMs === 0) this.firstMs = nowMs;
    return ok(committed.value.commit);
  }

  /** Saves the clock and sequence number after a local write or re-log (inside its transaction). */
  savePosition(stamp: string, seq: number, nowMs: number): void {
    this.storage.meta.set(META_CLOCK, stamp);
    this.storage.meta.set(META_SEQ, String(seq));
    if (this.firstMs === 0) this.storage.meta.set(META_FIRST, String(nowMs));
  }

  /** Takes a sequence number and position saved by a committed re-log (recovery). */
  advancedTo(seq: number, clock: HlcStamp, nowMs: number): void {
    assert(seq >= this.seqNumber, "the sequence number never goes back");
    this.seqNumber = seq;
    this.clockStamp = clock;
    if (this.firstMs === 0 && seq > 0) this.firstMs = nowMs;
  }

  /** The key's view as stored here at `nowMs` (this replica's clock), with its origin sequence numbers. */
  readLocal(key: string, nowMs: number): Result<{ view: KeyView | null; seqs: VersionVector }> {
    const row = this.storage.kv.get(key);
    if (row === null) return ok({ view: null, seqs: EMPTY_VV });
    const view = keyView(decodeKeyState(row.encoded), nowMs);
    return view.ok ? ok({ view: view.value, seqs: row.seqs }) : view;
  }

  /** The key's stored state, for quorum reads, session fetches and read repair. */
  snapshot(key: string): KeySnapshot {
    const row = this.storage.kv.get(key);
    return { state: row?.encoded ?? null, seqs: row?.seqs ?? EMPTY_VV, epoch: this.epochOf(key, row?.epoch ?? 0) };
  }

  /**
   * The regions whose writes this replica may still lack for `key`, given a session that has
   * seen `seen`: a region's writes are covered when its ordered stream is applied that far, or
   * when the key's state already includes one of its writes that far (a region's writes to one
   * key are causally ordered, so the later one carries the earlier ones).
   */
  lagging(key: string, seen: VersionVector): RegionId[] {
    const seqs = this.storage.kv.get(key)?.seqs ?? EMPTY_VV;
    const missing = (region: RegionId): boolean => vvGet(seqs, region) < vvGet(seen, region);
    // While a strong prefix is unsettled here, applied stream entries may have been kept aside
    // rather than merged: only the key's own sequence numbers count.
    const known = this.strongOf(key)?.known;
    if (known !== undefined && known.settledEpoch < known.epoch)
      return vvEntries(seen)
        .map(([region]) => region)
        .filter(missing);
    const applied = vvFrom([
      [this.region, this.seqNumber],
      ...this.peers.map((p) => [p, this.storage.peerRecv.get(p).appliedSeq] as const),
    ]);
    return sessionLagging(applied, seen).filter(missing);
  }

  /** Lag behind each peer. */
  lags(nowMs: number): Partial<Record<RegionId, PeerLag>> {
    const out: Partial<Record<RegionId, PeerLag>> = {};
    for (const peer of this.peers) {
      const progress = this.storage.peerRecv.get(peer);
      const lag = progressLag(progress, nowMs, this.settings.silenceMsMax, isTakenOut(this.viewState, peer));
      const silentMs = progress.heardMs === 0 ? null : Math.max(0, nowMs - progress.heardMs);
      out[peer] = { ...lag, heardMs: progress.heardMs, silentMs, appliedSeq: progress.appliedSeq };
    }
    return out;
  }

  /**
   * How stale this replica may be: its largest lag over its peers, or unknown (with the reason)
   * when it is bootstrapping or some peer's lag has no honest figure.
   */
  staleness(nowMs: number): Staleness {
    if (this.bootstrapping)
      return { ms: null, unknown: `region ${this.region} is new and still taking in its peers' data` };
    let max = 0;
    for (const [peer, lag] of Object.entries(this.lags(nowMs))) {
      if (lag.ms === null) return { ms: null, unknown: `lag behind ${peer}: ${lag.unknown}` };
      max = Math.max(max, lag.ms);
    }
    return { ms: max };
  }

  /** Refuses a read that may be staler than `maxStalenessMs` (or whose staleness is unknown). */
  checkStaleness(maxStalenessMs: number, nowMs: number): Result<Staleness> {
    const staleness = this.staleness(nowMs);
    if (staleness.ms !== null && staleness.ms <= maxStalenessMs) return ok(staleness);
    const why =
      staleness.ms === null ? `its staleness is unknown (${staleness.unknown})` : `it may be ${staleness.ms} ms stale`;
    return fail("staleness_exceeded", `region ${this.region}: ${why} (bound ${maxStalenessMs} ms)`, {
      region: this.region,
      lagMs: staleness.ms,
    });
  }

  /** Health, progress and counters. */
  /** The light status of the control object's rounds: from memory only. */
  pulse(nowMs: number): ReplicaPulse {
    return {
      region: this.region,
      nowMs,
      bootstrapping: this.bootstrapping,
      lag: this.lags(nowMs),
      move: this.move,
      cleaning: this.cleaning,
    };
  }

  /** Whether a finished move left copies here that its clean-up has not dropped yet (`moves.ts`). */
  get cleaning(): boolean {
    const move = this.move;
    return (
      this.layout.from === null &&
      move !== null &&
      move.handedOver &&
      (move.after === null || move.after.bucket < MERKLE_BUCKETS)
    );
  }

  status(nowMs: number): ReplicaStatus {
    return {
      region: this.region,
      seq: this.seqNumber,
      clock: formatHlc(this.clockStamp),
      nowMs,
      takenOut: this.takenOut(),
      bootstrapping: this.bootstrapping,
      incarnation: this.incarnationId,
      outboxPending: this.storage.log.count(),
      deadLetters: this.storage.deadLetters.count(),
      keys: this.storage.kv.counts(),
      lag: this.lags(nowMs),
      delays: Object.fromEntries(
        this.peers.flatMap((peer) => {
          const summary = this.delays.summary(peer);
          return summary === undefined ? [] : [[peer, summary]];
        }),
      ),
      metrics: this.storage.metrics.all(),
      move: this.move,
    };
  }
}
