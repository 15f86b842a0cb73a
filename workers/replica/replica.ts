/**
 * The regional replica: a Durable Object with SQLite storage, one per region and shard (named
 * `<region>:<shard>`, shard 0 as `<region>`: `shared/shards.ts`), replicating with the same shard of every other
 * region. It is an adapter:
 * the decisions are the pure core's (`shared/store/replica-machine.ts` and the flows of
 * `shared/store/replica-node.ts`, which the simulator runs too); this class supplies storage
 * (`store.ts`), ports (`ports.ts`), the alarm, and the RPC surface other objects call.
 */
import { DurableObject } from "cloudflare:workers";
import { assert } from "../../shared/assert.ts";
import { type Result, fail } from "../../shared/errors.ts";
import { type MerkleEntry } from "../../shared/merkle.ts";
import { type RegionId, parseRegionId } from "../../shared/regions.ts";
import { parseReplicaName } from "../../shared/shards.ts";
import { type VersionVector } from "../../shared/version-vector.ts";
import { type ClusterView } from "../../shared/store/cluster.ts";
import {
  type AeBegin,
  type AeReport,
  type Applied,
  type DeadLetterItem,
  type KeySnapshot,
  type PeerApi,
  type ReadOptions,
  type ReadOutcome,
  type RecoveryProgress,
  type ReplicaAdminApi,
  type ReplicaDigest,
  type ReplicaPulse,
  type ReplicaStatus,
  type SiblingApi,
  type WriteOptions,
  type WriteOutcome,
} from "../../shared/store/contract.ts";
import { deadLetterPage, recordDeadLetters, replayDeadLetters } from "../../shared/store/dead-letters.ts";
import { type KeyOp } from "../../shared/store/key-state.ts";
import { bounded } from "../../shared/store/ports.ts";
import { ReplicaMachine, type Staleness } from "../../shared/store/replica-machine.ts";
import { ReplicaNode } from "../../shared/store/replica-node.ts";
import { type ConflictRow, type DeadLetterRow, type KeyListing, type KeyRow } from "../../shared/store/storage.ts";
import { type Config, loadConfig } from "../config.ts";
import { REPLICA_MIGRATIONS, migrate } from "../migrations.ts";
import { replicaPorts } from "./ports.ts";
import { type ReplicaPorts } from "../../shared/store/ports.ts";
import { replicaStore } from "./store.ts";
import { watchersOf } from "../stubs.ts";
import {
  WATCHERS_MAX,
  WATCH_QUEUE_MAX,
  WATCH_REPLAY_PAGE,
  WatchHub,
  type WatchLine,
  type WatchSink,
  changeLine,
} from "../../shared/store/watch.ts";

/** A peer silent for this many heartbeat periods no longer counts as current for lag. */
const SILENT_HEARTBEATS_MAX = 3;

const encoder = new TextEncoder();
/** Each change's line, encoded once for every watcher it goes to. */
const encodedChanges = new WeakMap<object, Uint8Array>();

/** A feed line as NDJSON bytes (a change's from the cache). */
function lineBytes(line: WatchLine): Uint8Array {
  if (!("change" in line)) return encoder.encode(`${JSON.stringify(line)}\n`);
  let bytes = encodedChanges.get(line.change);
  if (bytes === undefined) {
    bytes = encoder.encode(`${changeLine(line.change)}\n`);
    encodedChanges.set(line.change, bytes);
  }
  return bytes;
}

export class Replica extends DurableObject<Env> implements PeerApi, ReplicaAdminApi, SiblingApi {
  private readonly machine: ReplicaMachine;
  private readonly node: ReplicaNode;
  private readonly ports: ReplicaPorts;
  /** Watchers of this replica's changes (`GET /v1/watch`). */
  private readonly hub: WatchHub;
  /** Until when the region's watch hub wants this replica's changes pushed (`workers/watch/watchers.ts`). */
  private watchersUntil = 0;
  /** Change lines not yet pushed to the hub, and whether a push is in flight (pushes go one at a time). */
  private readonly unpushed: string[] = [];
  private pushing = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    migrate(ctx.storage, REPLICA_MIGRATIONS, Date.now());
    const name = parseReplicaName(ctx.id.name ?? "");
    assert(name !== undefined, "a replica is addressed as <region> or <region>:<shard>");
    const { region, shard } = name;
    const config = this.config;
    this.machine = new ReplicaMachine(
      replicaStore(ctx.storage),
      {
        region,
        shard,
        shards: config.shards,
        regions: config.regions,
        primaryPrefixes: config.primaryPrefixes,
        silenceMsMax: SILENT_HEARTBEATS_MAX * config.heartbeatIntervalMs,
      },
      Date.now(),
    );
    const ports = replicaPorts(ctx, () => this.env, region, shard);
    this.ports = ports;
    this.node = new ReplicaNode(this.machine, ports, {
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      sessionWaitMs: config.sessionWaitMs,
      batchMs: config.replicationBatchMs,
      delaySeconds: config.replicationDelaySeconds,
      directPush: config.directPush,
      antiEntropyIntervalMs: config.antiEntropyIntervalMs,
      gc: config.gc,
    });
    void ctx.blockConcurrencyWhile(async () => {
      // The stored view says at once whether this replica is taken out; the control object's
      // current one, when it answers in time, replaces it.
      const view = await bounded(ports, () => ports.control.getView(), config.heartbeatIntervalMs);
      if (view !== null) this.machine.applyView(view);
      if ((await ctx.storage.getAlarm()) === null) await ctx.storage.setAlarm(Date.now() + config.heartbeatIntervalMs);
    });
    this.hub = new WatchHub(this.machine.storage.changes);
    this.machine.storage.changes.listen((records) => {
      this.hub.committed(records);
      if (Date.now() < this.watchersUntil) {
        for (const record of records) this.unpushed.push(changeLine(record));
        this.pushToWatchers();
      }
    });
    // New storage: ask the peers what they hold before the first write (in the background).
    this.node.start();
  }

  private get config(): Config {
    return loadConfig(this.env);
  }

  async write(key: string, op: KeyOp, options?: WriteOptions): Promise<Result<WriteOutcome>> {
    return this.node.write(key, op, options);
  }

  async read(key: string, options?: ReadOptions): Promise<Result<ReadOutcome>> {
    return this.node.read(key, options);
  }

  async snapshot(key: string, routed?: boolean): Promise<Result<KeySnapshot>> {
    return this.node.snapshot(key, routed);
  }

  async pullMoved(key: string, session?: VersionVector): Promise<Result<KeySnapshot>> {
    return this.node.pullMoved(key, session);
  }

  async takeMoved(rows: readonly KeyRow[]): Promise<Result<number>> {
    return this.node.takeMoved(rows);
  }

  async handOver(moveId: string): Promise<Result<{ done: boolean; moved: number }>> {
    return this.node.handOver(moveId);
  }

  async covers(key: string, version: string, epoch: number): Promise<Result<boolean>> {
    return this.node.covers(key, version, epoch);
  }

  async repair(key: string, snapshot: KeySnapshot): Promise<boolean> {
    return this.node.repair(key, snapshot);
  }

  async prefixStates(low: string, high: string | null, after: string | null, limit: number): Promise<Result<KeyRow[]>> {
    return this.node.prefixStates(low, high, after, limit);
  }

  /** Live keys in `[low, high)` after `after`; `more` tells whether another page exists. */
  async list(
    low: string,
    high: string | null,
    after: string | null,
    limit: number,
  ): Promise<Result<{ keys: KeyListing[]; more: boolean; staleness: Staleness }>> {
    return this.node.list(low, high, after, limit);
  }

  async aeBegin(from: RegionId): Promise<Result<AeBegin>> {
    return this.node.aeBegin(from);
  }

  async merkleChildren(level: number, indices: readonly number[]): Promise<Result<Uint8Array[][]>> {
    return this.node.merkleChildren(level, indices);
  }

  async bucketEntries(buckets: readonly number[]): Promise<Result<MerkleEntry[][]>> {
    return this.node.bucketEntries(buckets);
  }

  async keyStates(keys: readonly string[]): Promise<Result<KeyRow[]>> {
    return this.node.keyStates(keys);
  }

  async bucketRows(
    from: number,
    to: number,
    after: { readonly bucket: number; readonly key: string } | null,
    limit: number,
  ): Promise<Result<KeyRow[]>> {
    return this.node.bucketRows(from, to, after, limit);
  }

  async repairStates(from: RegionId, rows: readonly KeyRow[]): Promise<Result<number>> {
    return this.node.repairStates(from, rows);
  }

  /** Runs one anti-entropy round with each of `peers` (default: every healthy peer) now. */
  async antiEntropy(peers?: readonly string[]): Promise<AeReport[]> {
    const regions = peers?.map((p) => parseRegionId(p));
    assert(regions?.every((r) => r !== undefined) ?? true, "anti-entropy peers are regions");
    return this.node.antiEntropyNow(regions?.filter((r) => r !== undefined));
  }

  /** What the operator's digest endpoint shows: key counts and the Merkle root. */
  /**
   * A feed of this replica's changes to keys under `prefix` after journal position `after`
   * (null: from now), as NDJSON lines (`shared/store/watch.ts`); `overloaded` when it serves
   * as many watchers as it may.
   */
  watch(prefix: string, after: number | null): Result<ReadableStream<Uint8Array>> {
    if (this.machine.takenOut()) return this.machine.unavailable();
    if (this.hub.size >= WATCHERS_MAX)
      return fail("overloaded", `region ${this.machine.region} serves ${WATCHERS_MAX} watchers already; retry later`);
    let handle: { pull(): void; cancel(): void } | null = null;
    const stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          const sink: WatchSink = {
            get desiredSize() {
              return controller.desiredSize;
            },
            push: (line) => controller.enqueue(lineBytes(line)),
            close: () => controller.close(),
          };
          handle = this.hub.open(prefix, after, sink);
        },
        pull: () => handle?.pull(),
        cancel: () => handle?.cancel(),
      },
      new CountQueuingStrategy({ highWaterMark: WATCH_QUEUE_MAX }),
    );
    return { ok: true, value: stream };
  }

  /** The region's watch hub wants this replica's committed changes for `ms` more. */
  subscribeWatchers(ms: number): void {
    this.watchersUntil = Date.now() + Math.min(ms, 60_000);
  }

  /** Pushes the changes not yet pushed, one call at a time (what commits meanwhile goes next, together). */
  private pushToWatchers(): void {
    if (this.pushing || this.unpushed.length === 0) return;
    this.pushing = true;
    const lines = this.unpushed.splice(0);
    const hub = watchersOf(this.env, this.machine.region);
    void hub
      .changes(this.machine.shard, lines)
      .catch((error: unknown) => this.ports.warn("pushing changes to the watch hub failed", error))
      .finally(() => {
        this.pushing = false;
        this.pushToWatchers();
      });
  }

  /** Journal records after position `after` as feed lines (at most `limit`), with the journal's bounds. */
  changesAfter(after: number, limit: number): Result<{ records: string[]; oldest: number; head: number }> {
    if (this.machine.takenOut()) return this.machine.unavailable();
    const changes = this.machine.storage.changes;
    const records = changes.after(after, Math.min(limit, WATCH_REPLAY_PAGE)).map((r) => changeLine(r));
    return { ok: true, value: { records, ...changes.bounds() } };
  }

  async digest(): Promise<ReplicaDigest> {
    return this.node.digest();
  }

  /** The conflict log, oldest first, after `afterId`, and this replica's staleness. */
  async conflicts(afterId: number, limit: number): Promise<{ rows: ConflictRow[]; staleness: Staleness }> {
    return this.node.conflicts(afterId, limit);
  }

  async pulse(): Promise<ReplicaPulse> {
    return this.machine.pulse(this.ports.now());
  }

  async status(): Promise<ReplicaStatus> {
    // The replica's own clock (an injected skew shows here, so the control object can see it).
    return this.machine.status(this.ports.now());
  }

  async applyView(view: ClusterView): Promise<boolean> {
    const recorded = this.node.applyView(view);
    // A retired shard that a new move needs again starts heartbeating again.
    if (!this.node.retired && (await this.ctx.storage.getAlarm()) === null)
      await this.ctx.storage.setAlarm(Date.now() + this.config.heartbeatIntervalMs);
    return recorded;
  }

  async recoverPrefix(
    prefix: string,
    epoch: number,
    donors: readonly string[],
    floorEpoch: number,
  ): Promise<Result<RecoveryProgress>> {
    const regions = donors.map((d) => parseRegionId(d));
    assert(
      regions.every((r) => r !== undefined),
      "donors are regions",
    );
    return this.node.recoverPrefix(
      prefix,
      epoch,
      regions.filter((r) => r !== undefined),
      floorEpoch,
    );
  }

  async applyReplication(bodies: readonly unknown[]): Promise<Array<Result<Applied>>> {
    return this.node.applyReplication(bodies);
  }

  async pushWrite(body: unknown): Promise<Result<Applied>> {
    return this.node.pushWrite(body);
  }

  /** Heartbeats, re-drains, refreshes the view and settles failed-over prefixes; then schedules itself again. */
  override async alarm(): Promise<void> {
    // A retired shard stops its heartbeat; any call (a later move's first view) sets it again.
    if (!this.node.retired) await this.ctx.storage.setAlarm(Date.now() + this.config.heartbeatIntervalMs);
    await this.node.tick();
  }

  /** Records messages that exhausted their retries (for this region, or for one that could not take them). */
  async recordDeadLetters(items: readonly DeadLetterItem[]): Promise<void> {
    recordDeadLetters(this.machine, items, Date.now());
  }

  async deadLetters(afterId: number, limit: number): Promise<DeadLetterRow[]> {
    return deadLetterPage(this.machine, afterId, limit);
  }

  /** Sends a batch of dead letters back to the replication queue, then forgets them. */
  async replayDeadLetters(): Promise<{ replayed: number; remaining: number }> {
    return replayDeadLetters(this.machine, this.ports.queue);
  }
}
