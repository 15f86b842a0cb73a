/**
 * A replica's async flows around its state machine: synchronous acks, session catch-up,
 * replication in (with pulls of large states), heartbeats, the cluster view, and a new
 * primary's recovery. Every decision is the machine's (or a pure function's); this class only
 * sequences calls through its ports, so the Durable Object and the simulator run the same code.
 */
import { type Result, fail, ok } from "../errors.ts";
import { type RegionId } from "../regions.ts";
import { type VersionVector, parseVv, vvDescends, vvGet } from "../version-vector.ts";
import { type AckResult, awaitAcks, requiredAcks } from "./acks.ts";
import {
  type Pulled,
  applyEntries,
  applyHeartbeat,
  entryStates,
  judgeDeferred,
  mergeSnapshot,
  parseMessage,
} from "./apply.ts";
import { type ClusterView, isHealthy, isTakenOut, majority, recoveredSeqOf } from "./cluster.ts";
import {
  type AeBegin,
  type AeReport,
  type Applied,
  type KeySnapshot,
  type ReadOptions,
  type ReadOutcome,
  type ReplicaDigest,
  type RecoveryProgress,
  type StrongScope,
  type WriteOptions,
  type WriteOutcome,
} from "./contract.ts";
import { Drain, type DrainSettings } from "./drain.ts";
import { aeBegin, localChildren, localRows, mergeRows } from "./anti-entropy.ts";
import { type GcSettings, gcStep, ownReport } from "./gc.ts";
import { Lifecycle, type LifecycleSettings } from "./lifecycle.ts";
import { HeldStates, PrimaryLeases } from "./leases.ts";
import { bytesToHex } from "@noble/hashes/utils.js";
import { type MerkleEntry } from "../merkle.ts";
import { type KeyOp, decodeKeyState, keyVersion, keyVv } from "./key-state.ts";
import { keyView } from "./replica-core.ts";
import { prefixEnd } from "./keys.ts";
import { type ReplicaPorts, bounded, sleep } from "./ports.ts";
import { formatHlc } from "../hlc.ts";
import { RECOVERY_PAGE_KEYS, mergeDonorPage, recoveryOf, relogPage, settleStep } from "./recovery.ts";
import { type ReplicaMachine, Refusal, type Staleness } from "./replica-machine.ts";
import { placement } from "./layout.ts";
import { cleanUpStep, handOverStep, placeKey, takeMoved } from "./moves.ts";
import { type ConflictRow, type KeyListing, type KeyRow } from "./storage.ts";
import { type EntriesMessage, type HeartbeatMessage, type ReplicationEntry, WIRE_VERSION } from "./wire.ts";

/** Rows one `bucketRows` call answers at most. */
const BUCKET_ROWS_MAX = 1000;

/** Poll period while a session read waits for replication to catch up. */
const SESSION_POLL_MS = 5;
/** Pages one recovery call handles before answering (the control object calls again). */
const RECOVERY_STEP_PAGES_MAX = 50;
/** Settle steps one tick runs per prefix. */
const SETTLE_STEPS_PER_TICK = 10;
/** How many heartbeat periods a pull of a moving key from its old shard may take. */
const PULL_HEARTBEATS = 4;
/** A replica pulls the cluster view on the first of every this many ticks. */
const VIEW_PULL_TICKS = 5;

/** How a node is tuned (from configuration). */
export interface NodeSettings extends DrainSettings, LifecycleSettings {
  /** Collection of tombstones and of the conflict log. */
  readonly gc: GcSettings;
  readonly heartbeatIntervalMs: number;
  /** How long a session read waits for replication before fetching what it lacks. */
  readonly sessionWaitMs: number;
}

/** One region's replica, driven by its host. */
export class ReplicaNode {
  readonly machine: ReplicaMachine;
  readonly drain: Drain;
  readonly lifecycle: Lifecycle;
  private readonly ports: ReplicaPorts;
  private readonly settings: NodeSettings;
  private readonly recovering = new Map<string, Promise<Result<RecoveryProgress>>>();
  private readonly leases: PrimaryLeases;
  private readonly held = new HeldStates();
  /** Ticks run since this object started (the first pulls the view). */
  private ticks = 0;

  constructor(machine: ReplicaMachine, ports: ReplicaPorts, settings: NodeSettings) {
    this.machine = machine;
    this.ports = ports;
    this.settings = settings;
    this.drain = new Drain(machine, ports, settings);
    this.lifecycle = new Lifecycle(machine, ports, settings);
    this.leases = new PrimaryLeases(machine.region, ports);
  }

  /** Starts what a new replica must do (probe its peers, then bootstrap from them), in the background. */
  start(): void {
    if (this.machine.phase === "ready") return;
    this.ports.background(this.lifecycle.established().then(() => this.lifecycle.tick()));
  }

  /**
   * Before serving `key` while new: waits for the probe, then, while bootstrapping, catches the
   * key up from the peers.
   */
  private async ready(key: string): Promise<Result<null>> {
    if (this.machine.phase === "ready") return ok(null);
    const established = await this.lifecycle.established();
    if (!established.ok) return established;
    if (!this.machine.bootstrapping) return ok(null);
    // A strong prefix promises every acknowledged write: a replica that may lack some does not
    // serve it (its primary, if it is one, fails over once the region shows as bootstrapping).
    if (this.machine.strongOf(key) !== undefined)
      return fail(
        "primary_unavailable",
        `region ${this.region} is new and still taking in its peers' data; strong keys are not served here until it has`,
        { region: this.region, reason: "bootstrapping" },
      );
    return this.lifecycle.catchUpKey(key);
  }

  private get region(): RegionId {
    return this.machine.region;
  }

  /** Checks that this replica still leads `scope`: locally, then under its lease (`leases.ts`). */
  private async confirm(scope: StrongScope): Promise<Result<null>> {
    if (!this.machine.isPrimary(scope)) return this.machine.fenced(scope);
    switch (await this.leases.confirm(scope)) {
      case "leased":
        return ok(null);
      case "refused":
        return this.machine.fenced(scope);
      case "unreachable":
        return fail("primary_unavailable", `the primary of "${scope.prefix}" could not confirm its position; retry`, {
          prefix: scope.prefix,
        });
    }
  }

  /**
   * Commits a local write with its outbox row; then, when more than one region must apply it,
   * pushes it to the healthy peers and waits for them (bounded by `timeoutMs`). The commit is
   * never undone. Peers known to be out are not waited for: they are named in the answer.
   */
  async write(
    key: string,
    op: KeyOp,
    options: WriteOptions = { acks: 1, timeoutMs: 0 },
  ): Promise<Result<WriteOutcome>> {
    if (this.machine.takenOut()) return this.machine.unavailable();
    const placed = await this.place(key);
    if (!placed.ok) return placed;
    const present = await this.ready(key);
    if (!present.ok) return present;
    // A session's write follows what the session saw: a remove sees the add it follows, and a
    // put's stamp is above the stamps of the writes it follows, whatever this region's clock.
    // (A strong prefix's primary holds everything its epoch kept.)
    if (options.session !== undefined && options.strong === undefined) {
      const caughtUp = await this.catchUp(key, options.session);
      if (!caughtUp.ok) return caughtUp;
    }
    if (options.strong !== undefined) {
      const confirmed = await this.confirm(options.strong);
      if (!confirmed.ok) return confirmed;
    }
    const needed = requiredAcks(options.acks, this.machine.settings.regions.length, options.strong !== undefined);
    // The view may have announced a move while this write waited: placement is checked again
    // with no wait before the commit, so no write lands in a shard the key is moving away from.
    const where = placement(key, this.machine.layout, this.machine.shard);
    if (where.kind === "elsewhere")
      return fail("wrong_shard", `key "${key}" moved to shard ${where.shard} while this write waited; retry`, {
        shard: where.shard,
      });
    const committed = this.machine.write(key, op, options, options.strong, this.ports.now());
    if (!committed.ok) return committed;
    const { seq, view, entry } = committed.value;
    // Nothing was written, so there is nothing to replicate or wait for.
    if (entry === null)
      return ok({
        region: this.region,
        seq,
        view,
        acked: [this.region],
        needed,
        unavailable: [],
        complete: true,
        written: false,
      });
    this.drain.schedule();
    const healthy = this.machine.peers.filter((peer) => isHealthy(this.machine.view, peer));
    const unavailable = this.machine.peers.filter((peer) => !healthy.includes(peer));
    let result: AckResult = { acked: [], complete: true };
    if (needed > 1) {
      const message = (target: RegionId): EntriesMessage => ({
        v: WIRE_VERSION,
        kind: "entries",
        origin: this.region,
        target,
        shard: this.machine.shard,
        from: seq,
        to: seq,
        firstMs: this.machine.firstWrittenMs,
        entries: [entry],
      });
      result = await awaitAcks(
        this.ports,
        healthy,
        needed - 1,
        options.timeoutMs,
        async (target) => {
          const applied = await this.ports.peer(target).pushWrite(message(target));
          // A peer that fenced the write (it knows a newer epoch) has not applied it.
          return applied.ok && applied.value.fenced === 0;
        },
        (target, error) => {
          this.machine.storage.metrics.add("replication_push_failures_total", target, 1);
          this.ports.warn(`replica ${this.region}: synchronous push to ${target} failed`, error);
        },
      );
    }
    const acked = [this.region, ...result.acked];
    // A majority now holds this state: a strong read of it needs no peer (`leases.ts`).
    if (options.strong !== undefined && acked.length >= needed)
      this.held.record(key, options.strong.epoch, view.version);
    return ok({
      region: this.region,
      seq,
      view,
      acked,
      needed,
      unavailable,
      complete: acked.length >= needed,
      written: true,
    });
  }

  /** The key as this replica holds it, served under the requested consistency. */
  async read(key: string, options: ReadOptions = {}): Promise<Result<ReadOutcome>> {
    if (this.machine.takenOut()) return this.machine.unavailable();
    const placed = await this.place(key, options.movedSession);
    if (!placed.ok) return placed;
    const present = await this.ready(key);
    if (!present.ok) return present;
    if (options.strong !== undefined) {
      const confirmed = await this.confirm(options.strong);
      if (!confirmed.ok) return confirmed;
    }
    const now = this.ports.now();
    const staleness = this.machine.staleness(now);
    const lag = staleness.ms === null ? { lagMs: null, lagUnknown: staleness.unknown } : { lagMs: staleness.ms };
    if (options.maxStalenessMs !== undefined) {
      const fresh = this.machine.checkStaleness(options.maxStalenessMs, now);
      if (!fresh.ok) return fresh;
    }
    if (options.session !== undefined) {
      const caughtUp = await this.catchUp(key, options.session);
      if (!caughtUp.ok) return caughtUp;
    }
    if (options.strong !== undefined) {
      // Answer exactly the state a majority was seen to hold: writes committed meanwhile are
      // not yet safe to show.
      const durable = await this.quorumHolds(key, options.strong);
      if (!durable.ok) return durable;
      const view = durable.value.state === null ? ok(null) : keyView(decodeKeyState(durable.value.state), now);
      return view.ok ? ok({ region: this.region, view: view.value, ...lag, seqs: durable.value.seqs }) : view;
    }
    const local = this.machine.readLocal(key, now);
    return local.ok ? ok({ region: this.region, view: local.value.view, ...lag, seqs: local.value.seqs }) : local;
  }

  /**
   * Before a strong read answers: makes sure a majority holds the key as this primary does,
   * and gives that state (the one to answer),
   * asking each healthy peer whether it already does and pushing the state to those that do
   * not. The primary holds writes a quorum has not acknowledged yet (an answer that timed
   * out); answering one of those, and then losing it in a failover, would let a later strong
   * read go back in time. With a majority holding it, every later epoch's recovery finds it.
   */
  private async quorumHolds(key: string, scope: StrongScope): Promise<Result<KeySnapshot>> {
    const { machine } = this;
    const local = machine.snapshot(key);
    if (local.state === null) return ok(local);
    const version = keyVersion(decodeKeyState(local.state));
    if (this.held.holds(key, local.epoch, version)) return ok(local);
    const needed = majority(machine.settings.regions.length) - 1;
    const entry: ReplicationEntry = {
      seq: Math.max(1, vvGet(local.seqs, this.region)),
      key,
      stamp: formatHlc(machine.clock),
      writtenMs: this.ports.now(),
      state: local.state,
      epoch: scope.epoch,
    };
    const peers = machine.peers.filter((peer) => isHealthy(machine.view, peer));
    const result = await awaitAcks(
      this.ports,
      peers,
      needed,
      this.settings.heartbeatIntervalMs,
      async (target) => {
        const held = await this.ports.peer(target).covers(key, version, local.epoch);
        if (held.ok && held.value) return true;
        const message: EntriesMessage = {
          v: WIRE_VERSION,
          kind: "entries",
          origin: this.region,
          target,
          shard: machine.shard,
          from: entry.seq,
          to: entry.seq,
          firstMs: machine.firstWrittenMs,
          entries: [entry],
        };
        const applied = await this.ports.peer(target).pushWrite(message);
        return applied.ok && applied.value.fenced === 0;
      },
      (target, error) => this.ports.warn(`replica ${this.region}: ${target} could not confirm "${key}"`, error),
    );
    if (result.complete) {
      this.held.record(key, local.epoch, version);
      return ok(local);
    }
    return fail("primary_unavailable", `the latest state of "${key}" is not yet held by a majority of regions; retry`, {
      prefix: scope.prefix,
    });
  }

  /** Whether this replica holds `key` at least at `version` (a vector text) and `epoch`; refused while taken out. */
  covers(key: string, version: string, epoch: number): Result<boolean> {
    if (this.machine.takenOut()) return this.machine.unavailable();
    const wanted = parseVv(version);
    if (wanted === undefined) return fail("invalid_body", `"${version}" is not a version`);
    const row = this.machine.snapshot(key);
    if (row.state === null) return ok(false);
    return ok(row.epoch >= epoch && vvDescends(keyVv(decodeKeyState(row.state)), wanted));
  }

  /**
   * Makes sure this replica holds everything `seen` covers for `key`: waits up to the session
   * wait for replication, then fetches the key from each region it still lags (that region's
   * current state includes all its own writes to the key).
   */
  private async catchUp(key: string, seen: VersionVector): Promise<Result<null>> {
    const deadline = this.ports.now() + this.settings.sessionWaitMs;
    let lagging = this.machine.lagging(key, seen);
    while (lagging.length > 0 && this.ports.now() < deadline) {
      await sleep(this.ports, SESSION_POLL_MS);
      lagging = this.machine.lagging(key, seen);
    }
    // A key of a strong prefix this region has not settled yet: its older writes may be kept
    // aside, so the current primary (which holds everything the epoch kept) is asked instead.
    const strong = this.machine.strongOf(key);
    if (lagging.length > 0 && strong?.known !== undefined && strong.known.settledEpoch < strong.known.epoch) {
      const primary = this.machine.view.primaries[strong.prefix];
      if (primary === undefined || !primary.ready || primary.epoch !== strong.known.epoch)
        return fail("primary_unavailable", `"${strong.prefix}" is failing over; retry shortly`, {
          prefix: strong.prefix,
        });
      lagging = primary.region === this.region ? [] : [primary.region];
    }
    for (const origin of lagging) {
      if (origin === this.region || !this.machine.settings.regions.includes(origin)) continue;
      const snapshot = await bounded(
        this.ports,
        () => this.ports.peer(origin).snapshot(key),
        this.settings.heartbeatIntervalMs,
        (error) => this.ports.warn(`session read in ${this.region}: ${origin} unreachable`, error),
      );
      if (snapshot === null || !snapshot.ok)
        return fail(
          "region_unavailable",
          `region ${this.region} lags ${origin}, which did not answer; retry or read elsewhere`,
          {
            region: origin,
          },
        );
      mergeSnapshot(this.machine, key, snapshot.value, origin, this.ports.now());
    }
    return ok(null);
  }

  /**
   * The key's stored state; refused while taken out, as if down. With `routed` (a router's
   * quorum read), the key must live here, and is pulled from its old shard first while it moves
   * in (`layout.ts`); peers of this shard ask without it.
   */
  async snapshot(key: string, routed = false): Promise<Result<KeySnapshot>> {
    if (this.machine.takenOut()) return this.machine.unavailable();
    if (routed) {
      const placed = await this.place(key);
      if (!placed.ok) return placed;
    }
    return ok(this.machine.snapshot(key));
  }

  /** Read repair: merges a state the router assembled from a quorum (not for a key that lives in another shard). */
  repair(key: string, snapshot: KeySnapshot): boolean {
    if (this.machine.takenOut()) return false;
    if (placement(key, this.machine.layout, this.machine.shard).kind === "elsewhere") return false;
    return mergeSnapshot(this.machine, key, snapshot, "repair", this.ports.now());
  }

  /** Refuses a key of another shard; pulls one moving in from its old shard first (`moves.ts`). */
  private place(key: string, movedSession?: VersionVector): Promise<Result<null>> {
    // The old shard may first fetch the key from each region the session saw ahead of it, each
    // bounded by a heartbeat period: the pull may take a few of them.
    return placeKey(this.machine, this.ports, key, movedSession, this.settings.heartbeatIntervalMs * PULL_HEARTBEATS);
  }

  /**
   * Whether this replica is a shard past the count of a finished move with nothing left to
   * drop: it holds no key and takes part in nothing (a later move that needs it wakes it).
   */
  get retired(): boolean {
    const { layout } = this.machine;
    return layout.from === null && this.machine.shard >= layout.shards && !this.machine.cleaning;
  }

  /**
   * For the key's new shard while keys move (`layout.ts`): its state here, after catching up
   * with what the session saw in this shard.
   */
  async pullMoved(key: string, session?: VersionVector): Promise<Result<KeySnapshot>> {
    if (this.machine.takenOut()) return this.machine.unavailable();
    if (session !== undefined) {
      const caughtUp = await this.catchUp(key, session);
      if (!caughtUp.ok) return caughtUp;
    }
    return ok(this.machine.snapshot(key));
  }

  /** Merges keys an old shard of this region hands over; how many changed a key. */
  takeMoved(rows: readonly KeyRow[]): Result<number> {
    if (this.machine.takenOut()) return this.machine.unavailable();
    return ok(takeMoved(this.machine, rows, this.ports.now()));
  }

  /** One bounded step of handing this old shard's moving keys over (`moves.ts`). */
  handOver(id: string): Promise<Result<{ done: boolean; moved: number }>> {
    return handOverStep(this.machine, this.ports, id, this.settings.heartbeatIntervalMs * 5);
  }

  /** Keys with their states (tombstones too) of a range, for recovery; refused while taken out. */
  prefixStates(low: string, high: string | null, after: string | null, limit: number): Result<KeyRow[]> {
    if (this.machine.takenOut()) return this.machine.unavailable();
    return ok(this.machine.storage.kv.rows(low, high, after, limit));
  }

  /** Live keys in `[low, high)` after `after`; refused while taken out or bootstrapping (a partial list would mislead). */
  list(
    low: string,
    high: string | null,
    after: string | null,
    limit: number,
  ): Result<{ keys: KeyListing[]; more: boolean; staleness: Staleness }> {
    if (this.machine.takenOut()) return this.machine.unavailable();
    if (this.machine.bootstrapping)
      return fail(
        "region_unavailable",
        `region ${this.region} is new and still taking in its peers' data; list elsewhere`,
        {
          region: this.region,
          reason: "bootstrapping",
        },
      );
    const now = this.ports.now();
    const rows = this.machine.storage.kv.list(low, high, after, limit + 1, now);
    return ok({ keys: rows.slice(0, limit), more: rows.length > limit, staleness: this.machine.staleness(now) });
  }

  /** The conflict log after `afterId`, oldest first, and how stale this replica may be (conflicts yet to arrive). */
  conflicts(afterId: number, limit: number): { rows: ConflictRow[]; staleness: Staleness } {
    return {
      rows: this.machine.storage.conflicts.page(afterId, limit),
      staleness: this.machine.staleness(this.ports.now()),
    };
  }

  /** The start of an anti-entropy round a peer initiates. */
  aeBegin(from: RegionId): Result<AeBegin> {
    return this.machine.takenOut() ? this.machine.unavailable() : ok(aeBegin(this.machine, from, this.ports.now()));
  }

  /** Merkle children of several nodes of one level, for a peer's round. */
  merkleChildren(level: number, indices: readonly number[]): Result<Uint8Array[][]> {
    return this.machine.takenOut() ? this.machine.unavailable() : ok(localChildren(this.machine, level, indices));
  }

  /** The entries of several buckets, for a peer's round. */
  bucketEntries(buckets: readonly number[]): Result<MerkleEntry[][]> {
    if (this.machine.takenOut()) return this.machine.unavailable();
    return ok(buckets.map((bucket) => this.machine.storage.kv.bucket(bucket)));
  }

  /** The stored rows of `keys`, for a peer's round. */
  keyStates(keys: readonly string[]): Result<KeyRow[]> {
    return this.machine.takenOut() ? this.machine.unavailable() : ok(localRows(this.machine, keys));
  }

  /** Whole buckets' rows, for a peer's round that found it lacks them. */
  bucketRows(
    from: number,
    to: number,
    after: { readonly bucket: number; readonly key: string } | null,
    limit: number,
  ): Result<KeyRow[]> {
    if (this.machine.takenOut()) return this.machine.unavailable();
    return ok(this.machine.storage.kv.bucketRows(from, to, after, Math.min(limit, BUCKET_ROWS_MAX)));
  }

  /** Merges rows a peer's round found this replica lacking. */
  repairStates(from: RegionId, rows: readonly KeyRow[]): Result<number> {
    if (this.machine.takenOut()) return this.machine.unavailable();
    const merged = mergeRows(this.machine, from, rows, this.ports.now());
    if (merged.changed > 0) this.machine.storage.metrics.add("anti_entropy_keys_repaired_total", from, merged.changed);
    return ok(merged.changed);
  }

  /** Runs one anti-entropy round with each of `peers` (default: every healthy peer) now. */
  antiEntropyNow(peers?: readonly RegionId[]): Promise<AeReport[]> {
    return this.lifecycle.antiEntropy(peers);
  }

  /** Key counts and the Merkle root. */
  digest(): ReplicaDigest {
    const { storage } = this.machine;
    const counts = storage.kv.counts();
    return {
      region: this.region,
      keys: counts.live,
      tombstones: counts.tombstones,
      root: bytesToHex(storage.merkle.root()),
      bootstrapping: this.machine.bootstrapping,
    };
  }

  /**
   * Merges replication messages addressed to this region, each all or nothing; the answer per
   * message tells the consumer to ack or retry it. A pull that fails refuses only its message.
   */
  async applyReplication(bodies: readonly unknown[]): Promise<Array<Result<Applied>>> {
    const results: Array<Result<Applied>> = [];
    for (const body of bodies) {
      const result = await this.applyOne(body, true);
      if (!result.ok && result.error.code !== "region_unavailable") {
        const origin = typeof body === "object" && body !== null && "origin" in body ? String(body.origin) : "unknown";
        this.machine.storage.metrics.add("replication_errors_total", origin, 1);
      }
      results.push(result);
    }
    return results;
  }

  /** Merges one write pushed for a synchronous ack (outside the ordered stream). */
  async pushWrite(body: unknown): Promise<Result<Applied>> {
    return this.applyOne(body, false);
  }

  private async applyOne(body: unknown, stream: boolean): Promise<Result<Applied>> {
    if (this.machine.takenOut()) return this.machine.unavailable();
    const parsed = parseMessage(this.machine, body);
    if (!parsed.ok) return parsed;
    const message = parsed.value;
    if (message.kind === "heartbeat")
      return stream
        ? applyHeartbeat(this.machine, message, this.ports.now())
        : fail("invalid_body", "a heartbeat is not a write");
    if (!stream && message.from !== message.to) return fail("invalid_body", "a pushed write is one entry");
    // A replica restored empty first learns its peers' collection horizon (it must not take a
    // late copy of a collected key for new).
    const established = await this.lifecycle.established();
    if (!established.ok) return established;
    const pulled = new Map<number, Pulled>();
    for (const entry of message.entries) {
      if (entry.state !== null) continue;
      // Too large to inline: the origin's current state of the key includes this write.
      const snapshot = await bounded(
        this.ports,
        () => this.ports.peer(message.origin).snapshot(entry.key),
        this.settings.heartbeatIntervalMs * 5,
        (error) => this.ports.warn(`replica ${this.region}: pull of ${entry.key} from ${message.origin} failed`, error),
      );
      if (snapshot === null || !snapshot.ok)
        return fail("region_unavailable", `origin ${message.origin} did not hand over ${entry.key}; retry`);
      const { state, epoch, seqs } = snapshot.value;
      pulled.set(entry.seq, state === null ? null : { state, epoch, seqs });
    }
    const states = entryStates(this.machine, message, pulled);
    if (!states.ok) return states;
    return applyEntries(this.machine, message, states.value, this.ports.now(), stream);
  }

  /**
   * Takes the control object's view; held writes go out as soon as it says a peer is back, and
   * so does what the peer has not confirmed (messages in flight when it went out wait in the
   * queue's park, or its retries, for up to half a minute; a duplicate costs nothing).
   */
  applyView(view: ClusterView): boolean {
    const wasOut = this.machine.peers.filter((peer) => isTakenOut(this.machine.view, peer));
    const recorded = this.machine.applyView(view);
    for (const peer of wasOut) if (!isTakenOut(this.machine.view, peer)) this.drain.resendTo(peer);
    this.ports.background(this.drain.flush());
    return recorded;
  }

  /**
   * The periodic work (the alarm): refresh the view, heartbeat every peer not taken out,
   * re-drain the outbox, and settle prefixes that failed over.
   */
  async tick(): Promise<void> {
    const { machine, ports } = this;
    machine.storage.metrics.flush();
    // The control object pushes every change (and pushes again until every replica recorded
    // it); this pull only heals a push missed for good, so it runs every few ticks: with many
    // shards, one per tick would make the control object answer regions x shards calls a beat.
    this.ticks += 1;
    if (this.ticks % VIEW_PULL_TICKS === 1) {
      const view = await bounded(
        ports,
        () => ports.control.getView(),
        this.settings.heartbeatIntervalMs,
        (error) => ports.warn(`replica ${this.region}: could not refresh the cluster view`, error),
      );
      if (view !== null) machine.applyView(view);
    }
    if (machine.takenOut()) return;
    cleanUpStep(machine);
    // A shard past the count of a finished move holds nothing any more: it falls quiet.
    const layout = machine.layout;
    if (layout.from === null && machine.shard >= layout.shards) return;
    const now = ports.now();
    const report = ownReport(machine);
    // Heartbeats go straight to the peers over RPC, not through the queue: a replication
    // backlog must show up as lag (writes known but not applied), never as a dead region.
    const heartbeats = machine.peers
      .filter((target) => !isTakenOut(machine.view, target))
      .map(async (target) => {
        const body: HeartbeatMessage = {
          v: WIRE_VERSION,
          kind: "heartbeat",
          origin: this.region,
          target,
          shard: machine.shard,
          seq: machine.seq,
          atMs: now,
          firstMs: machine.firstWrittenMs,
          baseSeq: machine.baseSeq,
          priorSeq: machine.priorSeq,
          applied: report.applied,
          horizon: machine.gcHorizon,
        };
        const sent = await bounded(
          ports,
          () => ports.peer(target).applyReplication([body]),
          this.settings.heartbeatIntervalMs,
        );
        if (sent === null) machine.storage.metrics.add("replication_heartbeat_failures_total", target, 1);
      });
    this.drain.resendUnconfirmed();
    await Promise.all([...heartbeats, this.drain.flush()]);
    this.settle();
    // Probing, bootstrapping and anti-entropy rounds can take many heartbeats: they run beside
    // the tick, so that heartbeats never wait for them (each runs one at a time).
    ports.background(this.lifecycle.tick());
    if (machine.phase === "ready") gcStep(machine, this.settings.gc, ports.now());
  }

  /** Settles every prefix whose new primary's re-log this replica has fully applied. */
  settle(): void {
    const { machine } = this;
    // Writes kept aside that one settle (or recovery) step left unjudged: a page per tick.
    for (const [prefix, known] of machine.storage.primaries.all())
      if (known.settledEpoch === known.epoch && machine.storage.deferred.page(prefix, 1).length > 0)
        machine.storage.transaction(() => judgeDeferred(machine, prefix, this.ports.now()));
    for (const [prefix, p] of Object.entries(machine.view.primaries)) {
      if (!p.ready) continue;
      const known = machine.storage.primaries.all().get(prefix);
      if (known === undefined || known.epoch !== p.epoch || known.settledEpoch >= p.epoch) continue;
      if (p.region === this.region) {
        // A primary settles its epoch by recovering it. One that is ready and yet unsettled was
        // restored empty since: bootstrapped, it holds the epoch's state again from the peers
        // that took it in, and has nothing older to settle (what it pulled of one waits aside).
        if (!machine.bootstrapping)
          machine.storage.transaction(() => machine.storage.primaries.put(prefix, { ...known, settledEpoch: p.epoch }));
        continue;
      }
      if (machine.storage.peerRecv.get(p.region).appliedSeq < recoveredSeqOf(p, machine.shard)) continue;
      for (let step = 0; step < SETTLE_STEPS_PER_TICK; step += 1)
        if (settleStep(machine, prefix, p.epoch, this.ports.now())) break;
    }
  }

  /**
   * One bounded step of recovering `prefix` as its new primary under `epoch` (see
   * `recovery.ts`). One run at a time per prefix: a call while one runs waits for it.
   */
  recoverPrefix(
    prefix: string,
    epoch: number,
    donors: readonly RegionId[],
    floorEpoch: number,
  ): Promise<Result<RecoveryProgress>> {
    // Joined only by a call for the same epoch: one for a newer epoch starts its own run (the
    // stale one stops at its next page, which finds the epoch moved on).
    const id = `${prefix}@${epoch}`;
    const running = this.recovering.get(id);
    if (running !== undefined) return running;
    const run = this.recoverSteps(prefix, epoch, donors, floorEpoch)
      .catch((error: unknown) => {
        if (error instanceof Refusal) return { ok: false as const, error: error.error };
        throw error;
      })
      .finally(() => this.recovering.delete(id));
    this.recovering.set(id, run);
    return run;
  }

  private async recoverSteps(
    prefix: string,
    epoch: number,
    donors: readonly RegionId[],
    floorEpoch: number,
  ): Promise<Result<RecoveryProgress>> {
    const { machine } = this;
    const known = machine.storage.primaries.all().get(prefix);
    if (known === undefined || known.epoch !== epoch || known.region !== this.region)
      return fail(
        "fenced",
        `region ${this.region} does not know itself as the primary of "${prefix}" at epoch ${epoch}`,
        { prefix },
      );
    let state = recoveryOf(machine, prefix, epoch, donors, floorEpoch);
    const high = prefixEnd(prefix);
    for (let page = 0; page < RECOVERY_STEP_PAGES_MAX && state.recoveredSeq === null; page += 1) {
      const donor = state.donors[state.donor];
      if (donor === undefined) {
        state = relogPage(machine, prefix, state, this.ports.now());
        continue;
      }
      const rows = await bounded(
        this.ports,
        () => this.ports.peer(donor).prefixStates(prefix, high, state.after, RECOVERY_PAGE_KEYS),
        this.settings.heartbeatIntervalMs * 5,
      );
      if (rows === null || !rows.ok)
        return fail("region_unavailable", `donor ${donor} did not answer while recovering "${prefix}"`, {
          region: donor,
        });
      state = mergeDonorPage(machine, prefix, state, rows.value, this.ports.now());
    }
    if (state.recoveredSeq !== null) this.ports.background(this.drain.flush());
    return ok({ done: state.recoveredSeq !== null, merged: state.merged, recoveredSeq: state.recoveredSeq ?? 0 });
  }
}
