/**
 * What a replica keeps durably, as one synchronous interface per table. The replica state
 * machine (`replica-machine.ts`) reads and writes only through it, so the same decisions run
 * over SQLite inside the Durable Object (`workers/replica/store.ts`) and over in-memory maps in
 * the simulator (`test/sim/memory-storage.ts`). Both adapters pass one contract suite
 * (`test/shared/storage-contract.ts`), in the manner of automerge-repo's storage adapters.
 *
 * Synchronous on purpose: Durable Object SQLite is synchronous, and a decision that awaited
 * between a read and a write would let other requests interleave (see PLATFORM.md).
 */
import { type ChangeInput, type ChangeListener, type ChangeRecord } from "./changes.ts";
import { type MerkleEntry } from "../merkle.ts";
import { type RegionId } from "../regions.ts";
import { type VersionVector } from "../version-vector.ts";
import { type KeyState } from "./key-state.ts";
import { type PeerProgress } from "./progress.ts";

/** A stored key: its canonical state, its origin sequence numbers, and its fencing epoch. */
export interface StoredKey {
  readonly encoded: Uint8Array;
  /** Per origin region, the highest of its write sequence numbers merged into this state. */
  readonly seqs: VersionVector;
  /**
   * For keys under a strong prefix, the epoch of the primary that wrote or last recovered this
   * state (see `epochs.ts`); 0 for every other key.
   */
  readonly epoch: number;
  /**
   * The digest of the state and epoch (`merkle.ts` `stateDigest`): the key's entry in the
   * Merkle tree. Null only for a key stored before the tree existed and not yet entered.
   */
  readonly digest: Uint8Array | null;
}

/** A stored key with its name, as paging through a key range returns it. */
export interface KeyRow extends StoredKey {
  readonly key: string;
}

/** A live key's listing entry. */
export interface KeyListing {
  readonly name: string;
  readonly version: string;
  /** When the value expires (unix seconds), for a register value that has an expiration. */
  readonly expiration?: number;
  /** The writer's metadata (JSON text), for a register value that has it. */
  readonly metadata?: string;
}

/** A row of the outbox: one write this region originated, waiting to reach every peer. */
export interface LogRow {
  readonly seq: number;
  readonly key: string;
  readonly stamp: string;
  readonly writtenMs: number;
  /** The key's state right after the write, or null when it is too large to inline (peers pull it). */
  readonly state: Uint8Array | null;
  /** The fencing epoch of a strong write; null outside strong prefixes. */
  readonly epoch: number | null;
}

/** A conflict to record. */
export interface ConflictInput {
  readonly key: string;
  readonly kind: "register" | "type" | "fenced";
  readonly rule: string;
  readonly detectedMs: number;
  readonly winnerStamp: string;
  readonly loserStamp: string;
  readonly winner: Uint8Array;
  readonly loser: Uint8Array;
}

/** A recorded conflict. */
export interface ConflictRow {
  readonly id: number;
  readonly key: string;
  readonly kind: string;
  readonly rule: string;
  readonly detectedMs: number;
  readonly winner: Uint8Array;
  readonly loser: Uint8Array;
}

/** A dead letter to record. */
export interface DeadLetterInput {
  readonly origin: string;
  /** The region the message was for (it may be recorded elsewhere when that region is down). */
  readonly target: string;
  readonly receivedMs: number;
  readonly attempts: number;
  readonly reason: string;
  /** The message as JSON text with byte arrays in base64url (`wire.ts` `toJsonText`), UTF-8. */
  readonly body: Uint8Array;
}

/** A recorded dead letter. */
export interface DeadLetterRow extends DeadLetterInput {
  readonly id: number;
}

/** What a replica knows of one strong prefix: its primary, the epoch, and how far it has caught up with it. */
export interface PrimaryRecord {
  readonly region: RegionId;
  readonly epoch: number;
  /**
   * The epoch whose recovered state this replica has fully taken in: every key of the prefix
   * from an older epoch that the new primary did not keep has been dropped here.
   */
  readonly settledEpoch: number;
}

/**
 * A replicated write of an older epoch of a strong prefix that arrived while this replica had
 * not yet taken in the new primary's recovered state: kept aside, and judged when it has.
 */
export interface DeferredInput {
  readonly prefix: string;
  readonly key: string;
  readonly origin: string;
  readonly epoch: number;
  readonly state: Uint8Array;
}

/** A deferred write as stored. */
export interface DeferredRow extends DeferredInput {
  readonly id: number;
}

/**
 * What a peer reported of itself in its last heartbeat: its own sequence number, and how far it
 * had applied every region's stream at that moment (one atomic snapshot).
 */
export interface PeerReport {
  readonly seq: number;
  readonly applied: Readonly<Record<string, number>>;
  /** This replica's clock when the report arrived. */
  readonly heardMs: number;
  /**
   * Where the peer's current life numbers its writes from, and the highest number of its earlier
   * life any region knew when it began (both 0 for a first life): numbers between are writes of
   * a lost life that no region held (`apply.ts` drops them).
   */
  readonly baseSeq: number;
  readonly priorSeq: number;
}

/** A monotonic counter for `/metrics`, by name and peer. */
export interface MetricRow {
  readonly name: string;
  readonly peer: string;
  readonly value: number;
}

/** The replica's durable state, one group per table. */
export interface ReplicaStorage {
  /**
   * Runs `fn` atomically: every write inside it commits together, or, when `fn` throws, none
   * does (metric increments included) and the error propagates.
   */
  transaction<T>(fn: () => T): T;
  readonly kv: {
    get(key: string): StoredKey | null;
    /** What `get` answers for each of `keys`, in one read where the storage allows; absent keys are left out. */
    getMany(keys: readonly string[]): Map<string, StoredKey>;
    /**
     * Stores the key's state (already encoded as `encoded`) with its digest, in Merkle bucket
     * `bucket`. Callers go through `tree.ts` `putKey`, which keeps the tree in step.
     */
    put(
      key: string,
      state: KeyState,
      encoded: Uint8Array,
      seqs: VersionVector,
      epoch: number,
      digest: Uint8Array,
      bucket: number,
    ): void;
    /** Forgets the key entirely (through `tree.ts` `dropKey`). */
    delete(key: string): void;
    /** The keys of Merkle bucket `bucket` with their digests, in key order. */
    bucket(bucket: number): MerkleEntry[];
    /**
     * Rows (digested ones) of buckets `from` to `to` (exclusive), in (bucket, key) order, after
     * `after`, at most `limit`.
     */
    bucketRows(
      from: number,
      to: number,
      after: { readonly bucket: number; readonly key: string } | null,
      limit: number,
    ): KeyRow[];
    /** How many keys are stored: live ones, and tombstones (deleted registers). */
    counts(): { live: number; tombstones: number };
    /**
     * Tombstones (deleted registers), and values whose expiration was before `expiredBeforeMs`,
     * after `after` in key order, at most `limit`, for collection.
     */
    tombstones(after: string | null, limit: number, expiredBeforeMs: number): KeyRow[];
    /** Keys stored before the Merkle tree existed (no digest yet), at most `limit`. */
    undigested(limit: number): KeyRow[];
    /**
     * Live keys in `[low, high)` after `after` (exclusive), in key order, at most `limit`, less
     * those expired at `nowMs`.
     */
    list(low: string, high: string | null, after: string | null, limit: number, nowMs: number): KeyListing[];
    /** Every stored key (tombstones too) in `[low, high)` after `after`, in key order, at most `limit`. */
    rows(low: string, high: string | null, after: string | null, limit: number): KeyRow[];
  };
  readonly log: {
    append(row: LogRow): void;
    /** Rows after `afterSeq` in order: at most `limit`, and no more than `bytesMax` of states past the first row. */
    after(afterSeq: number, limit: number, bytesMax: number): LogRow[];
    /** Drops every row up to `uptoSeq`. */
    prune(uptoSeq: number): void;
    count(): number;
  };
  readonly peerSend: {
    /** How far the outbox has been handed to the queue, per target; targets never sent to are absent. */
    all(): ReadonlyMap<string, number>;
    /** Raises a target's watermark (never lowers it). */
    set(target: string, sentSeq: number): void;
    /** Lowers a target's watermark to `sentSeq` (never raises it): what follows is sent again. */
    rewind(target: string, sentSeq: number): void;
  };
  readonly peerRecv: {
    get(origin: string): PeerProgress;
    put(origin: string, progress: PeerProgress): void;
  };
  /** What each peer last reported of itself (`gc.ts`): confirmations for the outbox, stability for collection. */
  readonly peerReports: {
    all(): ReadonlyMap<string, PeerReport>;
    put(region: string, report: PeerReport): void;
  };
  readonly primaries: {
    all(): ReadonlyMap<string, PrimaryRecord>;
    put(prefix: string, record: PrimaryRecord): void;
  };
  readonly conflicts: {
    /** Records a conflict once; false when this exact one (key, both stamps) is already recorded. */
    insert(row: ConflictInput): boolean;
    /** Conflicts with id above `afterId`, oldest first. */
    page(afterId: number, limit: number): ConflictRow[];
    delete(ids: readonly number[]): void;
    count(): number;
  };
  /** The change journal (`changes.ts`): appended by `tree.ts` `putKey`, read by watchers. */
  readonly changes: {
    append(change: ChangeInput): void;
    /** Records after position `pos`, oldest first, at most `limit`. */
    after(pos: number, limit: number): ChangeRecord[];
    /** The oldest retained position (head + 1 when none is) and the newest (0 when none was recorded). */
    bounds(): { readonly oldest: number; readonly head: number };
    /** Hears every committed change, after its outermost transaction; answers how to stop. */
    listen(listener: ChangeListener): () => void;
  };
  readonly deadLetters: {
    insert(row: DeadLetterInput): void;
    page(afterId: number, limit: number): DeadLetterRow[];
    delete(ids: readonly number[]): void;
    count(): number;
  };
  readonly merkle: {
    /** XORs `delta` into bucket `bucket`'s digest and into every node above it. */
    add(bucket: number, delta: Uint8Array): void;
    /**
     * The digests of the 16 children of node `index` at `level` (0 <= level < depth; the
     * children of level depth - 1 are buckets), zeros for empty ones.
     */
    children(level: number, index: number): Uint8Array[];
    /** The root digest: equal roots mean identical replicas. */
    root(): Uint8Array;
  };
  readonly deferred: {
    add(row: DeferredInput): void;
    /** The oldest deferred writes of `prefix`, at most `limit`. */
    page(prefix: string, limit: number): DeferredRow[];
    delete(ids: readonly number[]): void;
    count(): number;
  };
  readonly meta: {
    get(name: string): string | undefined;
    set(name: string, value: string): void;
  };
  readonly metrics: {
    /** Adds to a counter; inside a transaction, only if it commits. */
    add(name: string, peer: string, delta: number): void;
    /** Makes buffered increments durable (adapters may buffer between heartbeats). */
    flush(): void;
    all(): MetricRow[];
  };
}
