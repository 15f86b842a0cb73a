// The replica's storage in memory, for the simulator: the same contract as the SQLite adapter
// (test/shared/storage-contract.ts runs against both), with transactions that roll back by
// undoing their writes. A crash keeps this object (storage survives); a storage loss replaces it.
import { MERKLE_DIGEST_BYTES, type MerkleEntry, MerkleLevels, isZero, xorInto } from "../../shared/merkle.ts";
import { type KeyState, keyIsLive, keyVersion } from "../../shared/store/key-state.ts";
import { ChangeJournal, type ChangeRecord } from "../../shared/store/changes.ts";
import { MetricBuffer } from "../../shared/store/metric-buffer.ts";
import { EMPTY_PROGRESS, type PeerProgress } from "../../shared/store/progress.ts";
import {
  type ConflictInput,
  type ConflictRow,
  type DeadLetterInput,
  type DeadLetterRow,
  type DeferredInput,
  type DeferredRow,
  type KeyListing,
  type KeyRow,
  type LogRow,
  type MetricRow,
  type PeerReport,
  type PrimaryRecord,
  type ReplicaStorage,
  type StoredKey,
} from "../../shared/store/storage.ts";
import { merkleChildren } from "../../shared/store/tree.ts";
import { type VersionVector } from "../../shared/version-vector.ts";

/** Orders keys as SQLite orders TEXT: by UTF-8 bytes, which is code point order. */
export function compareKeys(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) {
    const d = (x[i] as string).codePointAt(0)! - (y[i] as string).codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

interface KvEntry extends StoredKey {
  readonly live: boolean;
  readonly version: string;
  readonly bucket: number | null;
  readonly expiration: number | null;
  readonly metadata: string | null;
}

/** A replica's storage held in maps. */
export class MemoryStorage implements ReplicaStorage {
  private readonly kvRows = new Map<string, KvEntry>();
  private readonly logRows = new Map<number, LogRow>();
  private readonly sent = new Map<string, number>();
  private readonly progress = new Map<string, PeerProgress>();
  private readonly reports = new Map<string, PeerReport>();
  private readonly primaryRows = new Map<string, PrimaryRecord>();
  private readonly conflictRows = new Map<number, ConflictRow & { readonly identity: string }>();
  private readonly conflictKeys = new Map<string, number>();
  private readonly letters = new Map<number, DeadLetterRow>();
  private readonly metaRows = new Map<string, string>();
  private readonly deferredRows = new Map<number, DeferredRow>();
  private readonly bucketDigests = new Map<number, Uint8Array>();
  /** The keys of each bucket (an index, as SQLite's kv_by_bucket). */
  private readonly bucketKeys = new Map<number, Set<string>>();
  /** The levels above the buckets, summed when first needed; dropped by a rollback. */
  private levels: MerkleLevels | undefined;
  private nextDeferredId = 1;
  private readonly metricRows = new Map<string, MetricRow>();
  private readonly buffer = new MetricBuffer((name, peer, delta) => {
    const key = `${name}\u0000${peer}`;
    const row = this.metricRows.get(key);
    this.metricRows.set(key, { name, peer, value: (row?.value ?? 0) + delta });
  });
  private nextConflictId = 1;
  private nextLetterId = 1;
  /** The change journal's rows, by position. */
  private readonly changeRows = new Map<number, ChangeRecord>();
  private readonly journal = new ChangeJournal({
    insert: (record) => {
      this.touch(this.changeRows, record.pos);
      this.changeRows.set(record.pos, record);
    },
    trimThrough: (pos) => {
      for (const at of [...this.changeRows.keys()].filter((p) => p <= pos)) {
        this.touch(this.changeRows, at);
        this.changeRows.delete(at);
      }
    },
    head: () => Math.max(0, ...this.changeRows.keys()),
  });
  /** Told of every key the replica forgets (collection, or a strong prefix's settling), for the simulator's checks. */
  onDrop: ((key: string, row: StoredKey & { readonly live: boolean }) => void) | undefined;
  /** Undo actions of the open transaction, newest last; undefined outside one. */
  private undo: Array<() => void> | undefined;

  /** Moves `key` between bucket sets (null: none), undone with the transaction. */
  private index(key: string, from: number | null, to: number | null): void {
    if (from === to) return;
    const move = (a: number | null, b: number | null): void => {
      if (a !== null) this.bucketKeys.get(a)?.delete(key);
      if (b !== null) {
        const set = this.bucketKeys.get(b) ?? new Set<string>();
        set.add(key);
        this.bucketKeys.set(b, set);
      }
    };
    move(from, to);
    this.undo?.push(() => move(to, from));
  }

  /** Records how to undo a change to `map[key]` when inside a transaction. */
  private touch<K, V>(map: Map<K, V>, key: K): void {
    if (this.undo === undefined) return;
    const had = map.has(key);
    const old = map.get(key);
    this.undo.push(() => (had ? map.set(key, old as V) : map.delete(key)));
  }

  transaction<T>(fn: () => T): T {
    if (this.undo !== undefined) return fn();
    this.undo = [];
    this.buffer.begin();
    this.journal.begin();
    try {
      const result = fn();
      this.buffer.commit();
      this.undo = undefined;
      this.journal.commit();
      return result;
    } catch (error) {
      for (const action of (this.undo ?? []).reverse()) action();
      this.buffer.rollback();
      this.journal.rollback();
      this.levels = undefined;
      throw error;
    } finally {
      this.undo = undefined;
    }
  }

  private sortedKeys(low: string, high: string | null, after: string | null): string[] {
    return [...this.kvRows.keys()]
      .filter(
        (k) =>
          compareKeys(k, low) >= 0 &&
          (after === null || compareKeys(k, after) > 0) &&
          (high === null || compareKeys(k, high) < 0),
      )
      .sort(compareKeys);
  }

  readonly kv = {
    get: (key: string): StoredKey | null => {
      const row = this.kvRows.get(key);
      return row === undefined ? null : { encoded: row.encoded, seqs: row.seqs, epoch: row.epoch, digest: row.digest };
    },
    getMany: (keys: readonly string[]): Map<string, StoredKey> => {
      const found = new Map<string, StoredKey>();
      for (const key of keys) {
        const row = this.kv.get(key);
        if (row !== null) found.set(key, row);
      }
      return found;
    },
    put: (
      key: string,
      state: KeyState,
      encoded: Uint8Array,
      seqs: VersionVector,
      epoch: number,
      digest: Uint8Array,
      bucket: number,
    ): void => {
      this.index(key, this.kvRows.get(key)?.bucket ?? null, bucket);
      this.touch(this.kvRows, key);
      this.kvRows.set(key, {
        encoded,
        seqs,
        epoch,
        digest,
        bucket,
        live: keyIsLive(state),
        version: keyVersion(state),
        expiration: state.type === "register" ? state.register.expirationSeconds : null,
        metadata: state.type === "register" ? state.register.metadata : null,
      });
    },
    bucket: (bucket: number): MerkleEntry[] =>
      [...(this.bucketKeys.get(bucket) ?? [])]
        .filter((key) => this.kvRows.get(key)?.digest !== null)
        .sort(compareKeys)
        .map((key) => ({ key, digest: (this.kvRows.get(key) as KvEntry).digest as Uint8Array })),
    bucketRows: (
      from: number,
      to: number,
      after: { readonly bucket: number; readonly key: string } | null,
      limit: number,
    ): KeyRow[] => {
      const out: KeyRow[] = [];
      for (let bucket = Math.max(from, after?.bucket ?? from); bucket < to && out.length < limit; bucket += 1) {
        const keys = [...(this.bucketKeys.get(bucket) ?? [])].sort(compareKeys);
        for (const key of keys) {
          if (out.length >= limit) break;
          if (after !== null && bucket === after.bucket && compareKeys(key, after.key) <= 0) continue;
          if (this.kvRows.get(key)?.digest === null) continue;
          out.push(this.keyRow(key));
        }
      }
      return out;
    },
    counts: (): { live: number; tombstones: number } => {
      let live = 0;
      for (const row of this.kvRows.values()) if (row.live) live += 1;
      return { live, tombstones: this.kvRows.size - live };
    },
    tombstones: (after: string | null, limit: number, expiredBeforeMs: number): KeyRow[] =>
      this.sortedKeys("", null, after)
        .filter((k) => {
          const row = this.kvRows.get(k);
          return row?.live === false || (row?.expiration != null && row.expiration * 1000 <= expiredBeforeMs);
        })
        .slice(0, limit)
        .map((key) => this.keyRow(key)),
    undigested: (limit: number): KeyRow[] =>
      [...this.kvRows]
        .filter(([, row]) => row.digest === null)
        .slice(0, limit)
        .map(([key]) => this.keyRow(key)),
    delete: (key: string): void => {
      const row = this.kvRows.get(key);
      if (row !== undefined) this.onDrop?.(key, row);
      this.index(key, row?.bucket ?? null, null);
      this.touch(this.kvRows, key);
      this.kvRows.delete(key);
    },
    list: (low: string, high: string | null, after: string | null, limit: number, nowMs: number): KeyListing[] =>
      this.sortedKeys(low, high, after)
        .filter((k) => {
          const row = this.kvRows.get(k);
          return row?.live === true && (row.expiration === null || row.expiration * 1000 > nowMs);
        })
        .slice(0, limit)
        .map((name) => {
          const row = this.kvRows.get(name) as KvEntry;
          return {
            name,
            version: row.version,
            ...(row.expiration === null ? {} : { expiration: row.expiration }),
            ...(row.metadata === null ? {} : { metadata: row.metadata }),
          };
        }),
    rows: (low: string, high: string | null, after: string | null, limit: number): KeyRow[] =>
      this.sortedKeys(low, high, after)
        .slice(0, limit)
        .map((key) => this.keyRow(key)),
  };

  private keyRow(key: string): KeyRow {
    const row = this.kvRows.get(key) as KvEntry;
    return { key, encoded: row.encoded, seqs: row.seqs, epoch: row.epoch, digest: row.digest };
  }

  private loadLevels(): MerkleLevels {
    this.levels ??= MerkleLevels.fromBuckets(this.bucketDigests);
    return this.levels;
  }

  readonly merkle = {
    add: (bucket: number, delta: Uint8Array): void => {
      const digest = this.bucketDigests.get(bucket)?.slice() ?? new Uint8Array(MERKLE_DIGEST_BYTES);
      xorInto(digest, delta);
      this.touch(this.bucketDigests, bucket);
      if (isZero(digest)) this.bucketDigests.delete(bucket);
      else this.bucketDigests.set(bucket, digest);
      this.levels?.add(bucket, delta);
    },
    children: (level: number, index: number): Uint8Array[] =>
      merkleChildren(
        level,
        index,
        () => this.loadLevels(),
        (from, to) => [...this.bucketDigests].filter(([bucket]) => bucket >= from && bucket < to),
      ),
    root: (): Uint8Array => this.loadLevels().root(),
  };

  readonly log = {
    append: (row: LogRow): void => {
      if (this.logRows.has(row.seq)) throw new Error(`UNIQUE constraint failed: log.seq ${row.seq}`);
      this.touch(this.logRows, row.seq);
      this.logRows.set(row.seq, row);
    },
    after: (afterSeq: number, limit: number, bytesMax: number): LogRow[] => {
      const out: LogRow[] = [];
      let bytes = 0;
      for (const seq of [...this.logRows.keys()].filter((s) => s > afterSeq).sort((a, b) => a - b)) {
        if (out.length >= limit || (out.length > 0 && bytes >= bytesMax)) break;
        const row = this.logRows.get(seq) as LogRow;
        out.push(row);
        bytes += row.state?.length ?? 0;
      }
      return out;
    },
    prune: (uptoSeq: number): void => {
      for (const seq of this.logRows.keys()) {
        if (seq > uptoSeq) continue;
        this.touch(this.logRows, seq);
        this.logRows.delete(seq);
      }
    },
    count: (): number => this.logRows.size,
  };

  readonly peerSend = {
    all: (): ReadonlyMap<string, number> => new Map(this.sent),
    set: (target: string, sentSeq: number): void => {
      this.touch(this.sent, target);
      this.sent.set(target, Math.max(this.sent.get(target) ?? 0, sentSeq));
    },
    rewind: (target: string, sentSeq: number): void => {
      const sent = this.sent.get(target);
      if (sent === undefined) return;
      this.touch(this.sent, target);
      this.sent.set(target, Math.min(sent, sentSeq));
    },
  };

  readonly peerRecv = {
    get: (origin: string): PeerProgress => this.progress.get(origin) ?? EMPTY_PROGRESS,
    put: (origin: string, p: PeerProgress): void => {
      this.touch(this.progress, origin);
      this.progress.set(origin, p);
    },
  };

  readonly peerReports = {
    all: (): ReadonlyMap<string, PeerReport> => new Map(this.reports),
    put: (region: string, report: PeerReport): void => {
      this.touch(this.reports, region);
      this.reports.set(region, report);
    },
  };

  readonly primaries = {
    all: (): ReadonlyMap<string, PrimaryRecord> => new Map(this.primaryRows),
    put: (prefix: string, record: PrimaryRecord): void => {
      this.touch(this.primaryRows, prefix);
      this.primaryRows.set(prefix, record);
    },
  };

  readonly conflicts = {
    insert: (row: ConflictInput): boolean => {
      const identity = `${row.key}\u0000${row.winnerStamp}\u0000${row.loserStamp}`;
      if (this.conflictKeys.has(identity)) return false;
      const id = this.nextConflictId++;
      this.touch(this.conflictKeys, identity);
      this.conflictKeys.set(identity, id);
      this.touch(this.conflictRows, id);
      this.conflictRows.set(id, {
        id,
        key: row.key,
        kind: row.kind,
        rule: row.rule,
        detectedMs: row.detectedMs,
        winner: row.winner,
        loser: row.loser,
        identity,
      });
      return true;
    },
    page: (afterId: number, limit: number): ConflictRow[] =>
      [...this.conflictRows.values()]
        .filter((r) => r.id > afterId)
        .sort((a, b) => a.id - b.id)
        .slice(0, limit)
        .map((r) => ({
          id: r.id,
          key: r.key,
          kind: r.kind,
          rule: r.rule,
          detectedMs: r.detectedMs,
          winner: r.winner,
          loser: r.loser,
        })),
    delete: (ids: readonly number[]): void => {
      for (const id of ids) {
        const row = this.conflictRows.get(id);
        if (row === undefined) continue;
        this.touch(this.conflictRows, id);
        this.touch(this.conflictKeys, row.identity);
        this.conflictRows.delete(id);
        this.conflictKeys.delete(row.identity);
      }
    },
    count: (): number => this.conflictRows.size,
  };

  readonly changes = {
    append: (change: Omit<ChangeRecord, "pos">): void => this.journal.append(change),
    after: (pos: number, limit: number): ChangeRecord[] =>
      [...this.changeRows.values()]
        .filter((r) => r.pos > pos)
        .sort((a, b) => a.pos - b.pos)
        .slice(0, limit),
    bounds: (): { oldest: number; head: number } => {
      const head = this.journal.head();
      return { oldest: this.changeRows.size === 0 ? head + 1 : Math.min(...this.changeRows.keys()), head };
    },
    listen: (listener: (records: readonly ChangeRecord[]) => void): (() => void) => this.journal.listen(listener),
  };

  readonly deadLetters = {
    insert: (row: DeadLetterInput): void => {
      const id = this.nextLetterId++;
      this.touch(this.letters, id);
      this.letters.set(id, { ...row, id });
    },
    page: (afterId: number, limit: number): DeadLetterRow[] =>
      [...this.letters.values()]
        .filter((r) => r.id > afterId)
        .sort((a, b) => a.id - b.id)
        .slice(0, limit),
    delete: (ids: readonly number[]): void => {
      for (const id of ids) {
        this.touch(this.letters, id);
        this.letters.delete(id);
      }
    },
    count: (): number => this.letters.size,
  };

  readonly deferred = {
    add: (row: DeferredInput): void => {
      const id = this.nextDeferredId++;
      this.touch(this.deferredRows, id);
      this.deferredRows.set(id, { ...row, id });
    },
    page: (prefix: string, limit: number): DeferredRow[] =>
      [...this.deferredRows.values()]
        .filter((r) => r.prefix === prefix)
        .sort((a, b) => a.id - b.id)
        .slice(0, limit),
    delete: (ids: readonly number[]): void => {
      for (const id of ids) {
        this.touch(this.deferredRows, id);
        this.deferredRows.delete(id);
      }
    },
    count: (): number => this.deferredRows.size,
  };

  readonly meta = {
    get: (name: string): string | undefined => this.metaRows.get(name),
    set: (name: string, value: string): void => {
      this.touch(this.metaRows, name);
      this.metaRows.set(name, value);
    },
  };

  readonly metrics = {
    add: (name: string, peer: string, delta: number): void => this.buffer.add(name, peer, delta),
    flush: (): void => this.buffer.flush(),
    all: (): MetricRow[] => {
      this.buffer.flush();
      return [...this.metricRows.values()];
    },
  };

  /** Every stored key with its row, for the checks (not part of the storage contract). */
  dump(): Map<string, StoredKey> {
    return new Map(
      [...this.kvRows].map(([k, r]) => [k, { encoded: r.encoded, seqs: r.seqs, epoch: r.epoch, digest: r.digest }]),
    );
  }
}
