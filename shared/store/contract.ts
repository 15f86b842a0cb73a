/**
 * The replica's contract with its callers (the router, the control object, other replicas, the
 * queue consumers, and the simulator): the shapes that cross an RPC boundary. Every value here
 * is structured-clone safe, and operating errors travel as `Result`s, never as throws.
 */
import { type Result } from "../errors.ts";
import { type ClusterView } from "./cluster.ts";
import { type RegionId } from "../regions.ts";
import { type VersionVector } from "../version-vector.ts";
import { type KeyOp } from "./key-state.ts";
import { type DelaySummary } from "./delays.ts";
import { type Lag } from "./progress.ts";
import { type KeyView, type WriteConditions } from "./replica-core.ts";
import { type MerkleEntry } from "../merkle.ts";
import { type ConflictRow, type DeadLetterRow, type KeyListing, type KeyRow } from "./storage.ts";
import { type ReplicationMessage } from "./wire.ts";

/** What applying one replication message did: how many of its entries were fenced (refused, logged). */
export interface Applied {
  readonly fenced: number;
}

/** A strong (single-leader) operation: the prefix and the epoch the router resolved. */
export interface StrongScope {
  readonly prefix: string;
  readonly epoch: number;
}

/** How a write is acknowledged and guarded. */
export interface WriteOptions extends WriteConditions {
  /** Regions that must have applied the write before it is acknowledged, this one included. */
  readonly acks: number;
  readonly timeoutMs: number;
  readonly strong?: StrongScope;
  /**
   * What the writer's session has seen in this shard: the key is first caught up with it (as a
   * session read is), so a session's write follows what it read and wrote before, in any region.
   */
  readonly session?: VersionVector;
}

/** A write's answer. */
export interface WriteOutcome {
  readonly region: RegionId;
  readonly seq: number;
  /** The key after the write; a register's value is left out (the writer has it). */
  readonly view: KeyView;
  /** Regions that durably applied the write when this answered, this one first. */
  readonly acked: RegionId[];
  /** How many regions had to apply it (the requested acks, raised to a majority on strong prefixes). */
  readonly needed: number;
  /** Regions known to be out of service, so not asked: with them the count could not be reached. */
  readonly unavailable: RegionId[];
  /** Whether `acked` reached `needed`. */
  readonly complete: boolean;
  /**
   * False when there was nothing to write: a delete of a key this region holds no state of
   * (then `view` is the key as never written, and nothing replicates).
   */
  readonly written: boolean;
}

/** How a read is served. */
export interface ReadOptions {
  /** The session's seen vector: never answer a state older than it. */
  readonly session?: VersionVector;
  /** Refuse (`staleness_exceeded`) when this replica may be staler than this. */
  readonly maxStalenessMs?: number;
  readonly strong?: StrongScope;
  /**
   * While the key moves into this shard (`layout.ts`): what the session saw in its old shard,
   * which the pull from there catches up with.
   */
  readonly movedSession?: VersionVector;
}

/** A read's answer: the key's view (null when never written here), lag, and the key's origin sequence numbers. */
export interface ReadOutcome {
  readonly region: RegionId;
  readonly view: KeyView | null;
  /** The serving replica's staleness in ms, or null when unknown (see `lagUnknown`). */
  readonly lagMs: number | null;
  readonly lagUnknown?: string;
  /** Per origin region, the highest of its writes the answered state includes (for session tokens). */
  readonly seqs: VersionVector;
}

/** A key's raw state as one replica holds it, for quorum reads, session fetches and recovery. */
export interface KeySnapshot {
  readonly state: Uint8Array | null;
  readonly seqs: VersionVector;
  /** The state's fencing epoch (0 outside strong prefixes). */
  readonly epoch: number;
}

/** Lag behind one peer, as status reports it. */
export type PeerLag = Lag & PeerHeard;

/** When a replica last heard a peer, and how far it has applied its stream. */
export interface PeerHeard {
  /** This replica's clock when it last heard the peer (0: never). */
  readonly heardMs: number;
  /**
   * How long ago, by this replica's own clock, it last heard the peer (null: never). A
   * duration, so that whoever reads it needs no agreement between clocks.
   */
  readonly silentMs: number | null;
  readonly appliedSeq: number;
}

/**
 * What the control object asks of every replica every round (`control-node.ts`): only what its
 * decisions read, all of it from memory, so that a round costs no replica a storage scan
 * (its cost grows with regions x shards, every heartbeat).
 */
export interface ReplicaPulse {
  readonly region: RegionId;
  /** Its physical clock when it answered: compared across regions to find a skewed one. */
  readonly nowMs: number;
  /** Whether it is new and still pulling what its peers hold (it then counts as unhealthy). */
  readonly bootstrapping: boolean;
  readonly lag: Partial<Record<RegionId, PeerLag>>;
  /** The shard move this replica recorded (`layout.ts`), if one is under way or it is an old shard of the last one. */
  readonly move?: MoveState | null;
  /** Whether it still holds copies of keys it handed over in a finished move (the next move waits for them to go). */
  readonly cleaning?: boolean;
}

/** A replica's health and progress, for /v1/regions and /metrics. */
export interface ReplicaStatus extends ReplicaPulse {
  readonly seq: number;
  readonly clock: string;
  readonly takenOut: boolean;
  /** This life of the replica (the time its storage was created). */
  readonly incarnation: string;
  /** Rows in the outbox: writes not yet confirmed by every peer. */
  readonly outboxPending: number;
  readonly deadLetters: number;
  /** Keys it stores: live ones, and tombstones (deleted registers not yet collected). */
  readonly keys: { readonly live: number; readonly tombstones: number };
  /** Per peer, how long its recent writes took to become visible here (peers it has had none from are absent). */
  readonly delays: Partial<Record<RegionId, DelaySummary>>;
  readonly metrics: Array<{ name: string; peer: string; value: number }>;
}

/** What a replica knows of a move of keys between shards (`layout.ts`). */
export interface MoveState {
  /** The move, as `"<from>><shards>"`. */
  readonly id: string;
  /** Its sequence number when it recorded the move: every write of a moving key is at or below it. */
  readonly fenceSeq: number;
  /** Whether it has handed every key moving away from it to the key's new shard. */
  readonly handedOver: boolean;
  /** Where the hand-over resumes (null: from the start). */
  readonly after: { readonly bucket: number; readonly key: string } | null;
}

/** What replicas of one region call on each other across shards while keys move (`layout.ts`). */
export interface SiblingApi {
  /**
   * The key's state for its new shard: after catching up with `session` (what a client saw in
   * this shard), as a session read would.
   */
  pullMoved(key: string, session?: VersionVector): Promise<Result<KeySnapshot>>;
  /** Merges rows an old shard hands over; their stream positions are the old shard's, so they are not kept. */
  takeMoved(rows: readonly KeyRow[]): Promise<Result<number>>;
}

/** Progress of a new primary's recovery of a prefix (see `recovery.ts`). */
export interface RecoveryProgress {
  readonly done: boolean;
  /** Keys that changed by merging the donors' states so far. */
  readonly merged: number;
  /** Once done: this replica's sequence number after it re-logged the prefix under the new epoch. */
  readonly recoveredSeq: number;
}

/** A dead letter as the dead-letter consumer hands it over. */
export interface DeadLetterItem {
  readonly body: unknown;
  readonly attempts: number;
  readonly reason: string;
}

/**
 * What one replica offers another (and the simulator's network): replication, synchronous
 * pushes, state for session catch-up and recovery. A replica taken out of service answers
 * `region_unavailable`, as if it were down.
 */
export interface PeerApi {
  applyReplication(bodies: readonly unknown[]): Promise<Array<Result<Applied>>>;
  /** Merges one write pushed for a synchronous ack, outside the ordered stream. */
  pushWrite(body: unknown): Promise<Result<Applied>>;
  /** The key's state; with `routed` (a router's quorum read) only where the key lives (`layout.ts`). */
  snapshot(key: string, routed?: boolean): Promise<Result<KeySnapshot>>;
  /** Whether the peer holds `key` at least at `version` (vector text) and `epoch`. */
  covers(key: string, version: string, epoch: number): Promise<Result<boolean>>;
  prefixStates(low: string, high: string | null, after: string | null, limit: number): Promise<Result<KeyRow[]>>;
  /** Starts an anti-entropy round initiated by `from` (see `anti-entropy.ts`). */
  aeBegin(from: RegionId): Promise<Result<AeBegin>>;
  /** For each of `indices` at `level`, the digests of its 16 children. */
  merkleChildren(level: number, indices: readonly number[]): Promise<Result<Uint8Array[][]>>;
  /** For each of `buckets`, its keys with their state digests. */
  bucketEntries(buckets: readonly number[]): Promise<Result<MerkleEntry[][]>>;
  /** The stored rows of `keys` (those it holds). */
  keyStates(keys: readonly string[]): Promise<Result<KeyRow[]>>;
  /**
   * Stored rows of buckets `from` (inclusive) to `to` (exclusive), in (bucket, key) order after
   * `after`, at most `limit`: a whole subtree the caller lacks.
   */
  bucketRows(
    from: number,
    to: number,
    after: { readonly bucket: number; readonly key: string } | null,
    limit: number,
  ): Promise<Result<KeyRow[]>>;
  /** Merges rows an anti-entropy round found this replica lacking; the number that changed it. */
  repairStates(from: RegionId, rows: readonly KeyRow[]): Promise<Result<number>>;
}

/** What a replica answers at the start of an anti-entropy round. */
export interface AeBegin {
  readonly root: Uint8Array;
  /** Its own sequence number now: its state includes every one of its writes up to it. */
  readonly seq: number;
  /** Its clock now, and the time of its first write: for the caller's lag figures. */
  readonly atMs: number;
  readonly firstMs: number;
  /** The highest of the caller's sequence numbers it knows of (for a restored caller's new numbering). */
  readonly knownOfYou: number;
  /** Whether it ever heard from the caller (a heartbeat or a write): the caller had an earlier life. */
  readonly heardOfYou: boolean;
  /** Whether it is itself still bootstrapping (its state is then no reference). */
  readonly bootstrapping: boolean;
  /** Its collection horizon (`gc.ts`), which a replica restored empty adopts. */
  readonly horizon: VersionVector;
}

/** A replica's digest, for operators: equal roots mean identical replicas. */
export interface ReplicaDigest {
  readonly region: RegionId;
  readonly keys: number;
  readonly tombstones: number;
  /** The Merkle root over every key's state, in hex. */
  readonly root: string;
  readonly bootstrapping: boolean;
}

/** One anti-entropy round between two replicas, as reported. */
export interface AeReport {
  readonly peer: RegionId;
  /** Keys merged on either side. */
  readonly keysRepaired: number;
  /** Bytes of digests, entries and states exchanged (estimated from their encodings). */
  readonly bytes: number;
  /** Whether every difference was found and repaired (a bounded round may stop short). */
  readonly complete: boolean;
}

/** What the control object asks of a replica. */
export interface ReplicaAdminApi {
  /** The light status the control object's rounds read. */
  pulse(): Promise<ReplicaPulse>;
  /** Takes a cluster view; true once it is durably recorded here. */
  applyView(view: ClusterView): Promise<boolean>;
  /**
   * Runs (or continues) a bounded step of recovering `prefix` as its new primary under
   * `epoch`, from `donors`, keeping only states of epoch `floorEpoch` or newer.
   */
  recoverPrefix(
    prefix: string,
    epoch: number,
    donors: readonly RegionId[],
    floorEpoch: number,
  ): Promise<Result<RecoveryProgress>>;
  /**
   * One bounded step of handing the keys moving away from this old shard to their new shards
   * (`layout.ts`), for the move `moveId`; `done` once all are.
   */
  handOver(moveId: string): Promise<Result<{ readonly done: boolean; readonly moved: number }>>;
}

/** What the router asks of a replica. */
export interface ReplicaClientApi {
  write(key: string, op: KeyOp, options?: WriteOptions): Promise<Result<WriteOutcome>>;
  read(key: string, options?: ReadOptions): Promise<Result<ReadOutcome>>;
  /** The key's state; with `routed` (a router's quorum read) only where the key lives (`layout.ts`). */
  snapshot(key: string, routed?: boolean): Promise<Result<KeySnapshot>>;
  repair(key: string, snapshot: KeySnapshot): Promise<boolean>;
  list(
    low: string,
    high: string | null,
    after: string | null,
    limit: number,
  ): Promise<{ keys: KeyListing[]; more: boolean }>;
  conflicts(afterId: number, limit: number): Promise<ConflictRow[]>;
  deadLetters(afterId: number, limit: number): Promise<DeadLetterRow[]>;
}

/** A queue a replica sends replication messages to. */
export interface ReplicationQueue {
  sendBatch(messages: readonly ReplicationMessage[], delaySeconds: number): Promise<void>;
  /**
   * How long a write is in flight to `target` before a message carrying it may reach the
   * queue: the emulated one-way latency (plus injected delay) under local WAN emulation; absent
   * or 0 when deployed, where the network supplies its own. The outbox holds the write that
   * long, so the queue's consumer never waits for a crossing while other messages queue
   * behind it.
   */
  crossingMs?(target: RegionId): number;
}
