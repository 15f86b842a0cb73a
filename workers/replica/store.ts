/**
 * Every SQL statement of the replica, one group per table, beside the row shapes they read.
 * Handlers call these; no SQL appears anywhere else. Multi-row writes are wrapped in
 * `transactionSync` by the caller.
 */
import { type KeyState, keyIsLive, keyVersion } from "../../shared/store/key-state.ts";
import { EMPTY_VV, type VersionVector, formatVv, parseVv } from "../../shared/version-vector.ts";
import { EMPTY_PROGRESS, type PeerProgress, type PendingRange } from "../../shared/store/progress.ts";

/** A stored key: its encoded state and, per origin region, the highest write sequence merged into it. */
export interface StoredKey {
  readonly encoded: Uint8Array;
  readonly seqs: VersionVector;
}

/** A stored key's listing entry. */
export interface KeyListing {
  readonly name: string;
  readonly version: string;
}

/** A row of the outbox. */
export interface LogRow {
  readonly seq: number;
  readonly key: string;
  readonly stamp: string;
  readonly writtenMs: number;
  readonly state: Uint8Array | null;
  /** The fencing epoch of a strong write; null outside strong prefixes. */
  readonly epoch: number | null;
}

/** A stored conflict. */
export interface ConflictRow {
  readonly id: number;
  readonly key: string;
  readonly kind: string;
  readonly rule: string;
  readonly detectedMs: number;
  readonly winner: Uint8Array;
  readonly loser: Uint8Array;
}

/** A stored dead letter. */
export interface DeadLetterRow {
  readonly id: number;
  readonly origin: string;
  readonly receivedMs: number;
  readonly attempts: number;
  readonly reason: string;
  readonly body: Uint8Array;
}

function bytes(value: ArrayBuffer | null): Uint8Array | null {
  return value === null ? null : new Uint8Array(value);
}

/**
 * The replica's statements over its SQLite database. Small, hot tables (peer progress, send
 * watermarks, fencing epochs) are also kept in memory, written through on every change, so the
 * read path does not query them on every request; `transaction` drops those copies if a
 * transaction rolls back. Metric increments are buffered and written at most one heartbeat later.
 */
export function replicaStore(storage: DurableObjectStorage) {
  const sql = storage.sql;
  const progress = new Map<string, PeerProgress>();
  let sentCache: Map<string, number> | undefined;
  let primariesCache: Map<string, { region: string; epoch: number }> | undefined;
  const pendingMetrics = new Map<string, { name: string; peer: string; delta: number }>();
  const flushMetrics = (): void => {
    for (const m of pendingMetrics.values()) {
      sql.exec(
        "INSERT INTO metrics (name, peer, value) VALUES (?1, ?2, ?3) ON CONFLICT (name, peer) DO UPDATE SET value = value + ?3",
        m.name,
        m.peer,
        m.delta,
      );
    }
    pendingMetrics.clear();
  };
  return {
    /** Runs `fn` in one SQLite transaction; on a throw it rolls back and forgets the in-memory copies. */
    transaction<T>(fn: () => T): T {
      try {
        return storage.transactionSync(fn);
      } catch (error) {
        progress.clear();
        sentCache = undefined;
        primariesCache = undefined;
        throw error;
      }
    },
    kv: {
      /** The key's canonical encoded state, or null. */
      getEncoded(key: string): Uint8Array | null {
        const row = sql.exec<{ state: ArrayBuffer }>("SELECT state FROM kv WHERE key = ?", key).toArray()[0];
        return row === undefined ? null : new Uint8Array(row.state);
      },
      /** The key's encoded state with its origin sequence numbers, or null. */
      getRow(key: string): StoredKey | null {
        const row = sql
          .exec<{ state: ArrayBuffer; seqs: string }>("SELECT state, seqs FROM kv WHERE key = ?", key)
          .toArray()[0];
        return row === undefined ? null : { encoded: new Uint8Array(row.state), seqs: parseVv(row.seqs) ?? EMPTY_VV };
      },
      /** Stores the key's state (already encoded as `encoded`) and its origin sequence numbers. */
      put(key: string, state: KeyState, encoded: Uint8Array, seqs: VersionVector): void {
        sql.exec(
          "INSERT INTO kv (key, type, live, version, state, seqs) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key) DO UPDATE SET type = ?2, live = ?3, version = ?4, state = ?5, seqs = ?6",
          key,
          state.type,
          keyIsLive(state) ? 1 : 0,
          keyVersion(state),
          encoded,
          formatVv(seqs),
        );
      },
      /** Live keys in `[low, high)` after `after`, in key order, at most `limit`. */
      list(low: string, high: string | null, after: string | null, limit: number): KeyListing[] {
        // Compare in SQLite, whose text order (UTF-8 bytes) is the listing order; JavaScript
        // compares UTF-16 code units, which disagrees for characters beyond U+FFFF.
        const fromCursor =
          after !== null && sql.exec<{ ge: number }>("SELECT ?1 >= ?2 AS ge", after, low).one().ge === 1;
        const rows = sql
          .exec<{ key: string; version: string }>(
            `SELECT key, version FROM kv WHERE live = 1 AND key ${fromCursor ? ">" : ">="} ?1 AND (?2 IS NULL OR key < ?2) ORDER BY key LIMIT ?3`,
            fromCursor ? after : low,
            high,
            limit,
          )
          .toArray();
        return rows.map((row) => ({ name: row.key, version: row.version }));
      },
    },
    primaries: {
      /** The fencing epoch this replica knows for each strong prefix. */
      all(): Map<string, { region: string; epoch: number }> {
        primariesCache ??= new Map(
          sql
            .exec<{ prefix: string; region: string; epoch: number }>("SELECT prefix, region, epoch FROM primaries")
            .toArray()
            .map((r) => [r.prefix, { region: r.region, epoch: r.epoch }]),
        );
        return primariesCache;
      },
      /** Records a primary; epochs only move forward. */
      advance(prefix: string, region: string, epoch: number): void {
        sql.exec(
          "INSERT INTO primaries (prefix, region, epoch) VALUES (?1, ?2, ?3) ON CONFLICT (prefix) DO UPDATE SET region = ?2, epoch = ?3 WHERE epoch < ?3",
          prefix,
          region,
          epoch,
        );
        primariesCache = undefined;
      },
    },
    prefixStates: {
      /** Keys with their encoded states (tombstones too) in `[low, high)` after `after`, in key order. */
      page(
        low: string,
        high: string | null,
        after: string | null,
        limit: number,
      ): Array<{ key: string; state: Uint8Array; seqs: string }> {
        return sql
          .exec<{ key: string; state: ArrayBuffer; seqs: string }>(
            "SELECT key, state, seqs FROM kv WHERE key >= ?1 AND (?2 IS NULL OR key > ?2) AND (?3 IS NULL OR key < ?3) ORDER BY key LIMIT ?4",
            low,
            after,
            high,
            limit,
          )
          .toArray()
          .map((r) => ({ key: r.key, state: new Uint8Array(r.state), seqs: r.seqs }));
      },
    },
    log: {
      append(row: LogRow): void {
        sql.exec(
          "INSERT INTO log (seq, key, stamp, written_ms, state, epoch) VALUES (?, ?, ?, ?, ?, ?)",
          row.seq,
          row.key,
          row.stamp,
          row.writtenMs,
          row.state,
          row.epoch,
        );
      },
      /** Outbox rows after `afterSeq`, in order, at most `limit`. */
      after(afterSeq: number, limit: number): LogRow[] {
        return sql
          .exec<{
            seq: number;
            key: string;
            stamp: string;
            written_ms: number;
            state: ArrayBuffer | null;
            epoch: number | null;
          }>(
            "SELECT seq, key, stamp, written_ms, state, epoch FROM log WHERE seq > ? ORDER BY seq LIMIT ?",
            afterSeq,
            limit,
          )
          .toArray()
          .map((r) => ({
            seq: r.seq,
            key: r.key,
            stamp: r.stamp,
            writtenMs: r.written_ms,
            state: bytes(r.state),
            epoch: r.epoch,
          }));
      },
      /** Drops rows every peer's queue has accepted. */
      prune(uptoSeq: number): void {
        sql.exec("DELETE FROM log WHERE seq <= ?", uptoSeq);
      },
      /** Rows still waiting. */
      count(): number {
        return sql.exec<{ n: number }>("SELECT count(*) AS n FROM log").one().n;
      },
    },
    peerSend: {
      /** Sent watermark per target; targets never sent to are absent. */
      all(): ReadonlyMap<string, number> {
        sentCache ??= new Map(
          sql
            .exec<{ target: string; sent_seq: number }>("SELECT target, sent_seq FROM peer_send")
            .toArray()
            .map((r) => [r.target, r.sent_seq]),
        );
        return sentCache;
      },
      set(target: string, sentSeq: number): void {
        sql.exec(
          "INSERT INTO peer_send (target, sent_seq) VALUES (?1, ?2) ON CONFLICT (target) DO UPDATE SET sent_seq = max(sent_seq, ?2)",
          target,
          sentSeq,
        );
        const cache = sentCache;
        if (cache !== undefined) cache.set(target, Math.max(cache.get(target) ?? 0, sentSeq));
      },
    },
    peerRecv: {
      get(origin: string): PeerProgress {
        const cached = progress.get(origin);
        if (cached !== undefined) return cached;
        const row = sql
          .exec<{ applied_seq: number; known_seq: number; fresh_ms: number; heard_ms: number; pending: string }>(
            "SELECT applied_seq, known_seq, fresh_ms, heard_ms, pending FROM peer_recv WHERE origin = ?",
            origin,
          )
          .toArray()[0];
        const loaded: PeerProgress =
          row === undefined
            ? EMPTY_PROGRESS
            : {
                appliedSeq: row.applied_seq,
                knownSeq: row.known_seq,
                freshMs: row.fresh_ms,
                heardMs: row.heard_ms,
                pending: JSON.parse(row.pending) as PendingRange[],
              };
        progress.set(origin, loaded);
        return loaded;
      },
      put(origin: string, p: PeerProgress): void {
        sql.exec(
          "INSERT INTO peer_recv (origin, applied_seq, known_seq, fresh_ms, heard_ms, pending) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (origin) DO UPDATE SET applied_seq = ?2, known_seq = ?3, fresh_ms = ?4, heard_ms = ?5, pending = ?6",
          origin,
          p.appliedSeq,
          p.knownSeq,
          p.freshMs,
          p.heardMs,
          JSON.stringify(p.pending),
        );
        progress.set(origin, p);
      },
    },
    conflicts: {
      /** Records a conflict once; false when this exact conflict was already recorded. */
      insert(row: Omit<ConflictRow, "id"> & { winnerStamp: string; loserStamp: string }): boolean {
        const cursor = sql.exec(
          "INSERT INTO conflicts (key, kind, rule, detected_ms, winner_stamp, loser_stamp, winner, loser) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
          row.key,
          row.kind,
          row.rule,
          row.detectedMs,
          row.winnerStamp,
          row.loserStamp,
          row.winner,
          row.loser,
        );
        return cursor.rowsWritten > 0;
      },
      /** Conflicts with id above `afterId`, oldest first. */
      page(afterId: number, limit: number): ConflictRow[] {
        return sql
          .exec<{
            id: number;
            key: string;
            kind: string;
            rule: string;
            detected_ms: number;
            winner: ArrayBuffer;
            loser: ArrayBuffer;
          }>(
            "SELECT id, key, kind, rule, detected_ms, winner, loser FROM conflicts WHERE id > ? ORDER BY id LIMIT ?",
            afterId,
            limit,
          )
          .toArray()
          .map((r) => ({
            id: r.id,
            key: r.key,
            kind: r.kind,
            rule: r.rule,
            detectedMs: r.detected_ms,
            winner: new Uint8Array(r.winner),
            loser: new Uint8Array(r.loser),
          }));
      },
    },
    deadLetters: {
      insert(row: Omit<DeadLetterRow, "id">): void {
        sql.exec(
          "INSERT INTO dead_letters (origin, received_ms, attempts, reason, body) VALUES (?, ?, ?, ?, ?)",
          row.origin,
          row.receivedMs,
          row.attempts,
          row.reason,
          row.body,
        );
      },
      page(afterId: number, limit: number): DeadLetterRow[] {
        return sql
          .exec<{
            id: number;
            origin: string;
            received_ms: number;
            attempts: number;
            reason: string;
            body: ArrayBuffer;
          }>(
            "SELECT id, origin, received_ms, attempts, reason, body FROM dead_letters WHERE id > ? ORDER BY id LIMIT ?",
            afterId,
            limit,
          )
          .toArray()
          .map((r) => ({
            id: r.id,
            origin: r.origin,
            receivedMs: r.received_ms,
            attempts: r.attempts,
            reason: r.reason,
            body: new Uint8Array(r.body),
          }));
      },
      delete(ids: readonly number[]): void {
        for (const id of ids) sql.exec("DELETE FROM dead_letters WHERE id = ?", id);
      },
      count(): number {
        return sql.exec<{ n: number }>("SELECT count(*) AS n FROM dead_letters").one().n;
      },
    },
    meta: {
      /** Saves the clock and the sequence number together, in one statement (on every write). */
      setPosition(clock: string, seq: number): void {
        sql.exec(
          "INSERT INTO meta (name, value) VALUES ('clock', ?1), ('seq', ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
          clock,
          String(seq),
        );
      },
      get(name: string): string | undefined {
        return sql.exec<{ value: string }>("SELECT value FROM meta WHERE name = ?", name).toArray()[0]?.value;
      },
      set(name: string, value: string): void {
        sql.exec(
          "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = ?2",
          name,
          value,
        );
      },
    },
    metrics: {
      /** Buffers an increment; it reaches SQLite at the next `flush` (every heartbeat) or `all`. */
      add(name: string, peer: string, delta: number): void {
        const key = `${name}\u0000${peer}`;
        const m = pendingMetrics.get(key);
        if (m === undefined) pendingMetrics.set(key, { name, peer, delta });
        else m.delta += delta;
      },
      /** Writes buffered increments. */
      flush(): void {
        flushMetrics();
      },
      all(): Array<{ name: string; peer: string; value: number }> {
        flushMetrics();
        return sql
          .exec<{ name: string; peer: string; value: number }>("SELECT name, peer, value FROM metrics")
          .toArray();
      },
    },
  };
}

/** The statements object's type. */
export type ReplicaStore = ReturnType<typeof replicaStore>;
