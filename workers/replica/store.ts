/**
 * The replica's storage (`shared/store/storage.ts`) over Durable Object SQLite: every SQL
 * statement of the replica, one group per table, beside the row shapes they read. No SQL
 * appears anywhere else. Small, hot tables (peer progress, send watermarks, fencing epochs) are
 * also kept in memory, written through on every change, so the hot paths do not query them on
 * every request; a rolled-back transaction drops those copies. Metric increments are buffered
 * and written at most one heartbeat later, and only those of committed transactions.
 */
import { type RegionId } from "../../shared/regions.ts";
import { type KeyState, keyIsLive, keyVersion } from "../../shared/store/key-state.ts";
import { EMPTY_PROGRESS, type PeerProgress, type PendingRange } from "../../shared/store/progress.ts";
import {
  type ConflictRow,
  type DeadLetterRow,
  type DeferredRow,
  type KeyListing,
  type KeyRow,
  type LogRow,
  type PeerReport,
  type PrimaryRecord,
  type ReplicaStorage,
  type StoredKey,
} from "../../shared/store/storage.ts";
import { EMPTY_VV, type VersionVector, formatVv, parseVv } from "../../shared/version-vector.ts";
import {
  MERKLE_BUCKETS,
  MERKLE_DIGEST_BYTES,
  type MerkleEntry,
  MerkleLevels,
  isZero,
  xorInto,
} from "../../shared/merkle.ts";
import { ChangeJournal, type ChangeRecord } from "../../shared/store/changes.ts";
import { MetricBuffer } from "../../shared/store/metric-buffer.ts";
import { merkleChildren } from "../../shared/store/tree.ts";

function bytes(value: ArrayBuffer | null): Uint8Array | null {
  return value === null ? null : new Uint8Array(value);
}

type KvRow = { key: string; state: ArrayBuffer; seqs: string; epoch: number; digest: ArrayBuffer | null };

const KV_COLUMNS = "key, state, seqs, epoch, digest";

function keyRow(r: KvRow): KeyRow {
  return {
    key: r.key,
    encoded: new Uint8Array(r.state),
    seqs: parseVv(r.seqs) ?? EMPTY_VV,
    epoch: r.epoch,
    digest: bytes(r.digest),
  };
}

/** The replica's storage over `storage`'s SQLite database (migrated by the caller). */
/** Keys read per statement by `kv.getMany`: under the bound on a statement's parameters. */
const GET_MANY_KEYS = 100;

export function replicaStore(storage: DurableObjectStorage): ReplicaStorage {
  const sql = storage.sql;
  const progress = new Map<string, PeerProgress>();
  let sentCache: Map<string, number> | undefined;
  let primariesCache: Map<string, PrimaryRecord> | undefined;
  let reportsCache: Map<string, PeerReport> | undefined;
  const metrics = new MetricBuffer((name, peer, delta) =>
    sql.exec(
      "INSERT INTO metrics (name, peer, value) VALUES (?1, ?2, ?3) ON CONFLICT (name, peer) DO UPDATE SET value = value + ?3",
      name,
      peer,
      delta,
    ),
  );
  // The tree's levels above the buckets, summed from the stored buckets when first needed, with
  // a copy of every bucket's digest (2 MiB: 65,536 of 32 bytes), so that `merkle.add` need not
  // read its bucket back; both are kept in step by every `merkle.add`, and a rolled-back
  // transaction drops them (see `transaction`).
  let levels: { readonly tree: MerkleLevels; readonly buckets: Uint8Array } | undefined;
  const loadLevels = (): MerkleLevels => {
    if (levels === undefined) {
      const rows = sql
        .exec<{ bucket: number; digest: ArrayBuffer }>("SELECT bucket, digest FROM merkle")
        .toArray()
        .map((r) => [r.bucket, new Uint8Array(r.digest)] as const);
      const buckets = new Uint8Array(MERKLE_BUCKETS * MERKLE_DIGEST_BYTES);
      for (const [bucket, digest] of rows) buckets.set(digest, bucket * MERKLE_DIGEST_BYTES);
      levels = { tree: MerkleLevels.fromBuckets(rows), buckets };
    }
    return levels.tree;
  };
  /** Bucket `bucket`'s stored digest: from the copy when loaded, else read. */
  const bucketDigest = (bucket: number): Uint8Array => {
    if (levels !== undefined) {
      const at = bucket * MERKLE_DIGEST_BYTES;
      return levels.buckets.slice(at, at + MERKLE_DIGEST_BYTES);
    }
    const row = sql.exec<{ digest: ArrayBuffer }>("SELECT digest FROM merkle WHERE bucket = ?", bucket).toArray()[0];
    return row === undefined ? new Uint8Array(MERKLE_DIGEST_BYTES) : new Uint8Array(row.digest);
  };
  const journal = new ChangeJournal({
    insert: (r) =>
      sql.exec(
        "INSERT INTO changes (pos, key, type, version, origin, deleted) VALUES (?, ?, ?, ?, ?, ?)",
        r.pos,
        r.key,
        r.type,
        r.version,
        r.origin,
        r.deleted ? 1 : 0,
      ),
    trimThrough: (pos) => sql.exec("DELETE FROM changes WHERE pos <= ?", pos),
    head: () => sql.exec<{ head: number | null }>("SELECT max(pos) AS head FROM changes").one().head ?? 0,
  });
  let depth = 0;
  return {
    transaction<T>(fn: () => T): T {
      depth += 1;
      if (depth === 1) {
        metrics.begin();
        journal.begin();
      }
      try {
        const result = storage.transactionSync(fn);
        if (depth === 1) {
          metrics.commit();
          journal.commit();
        }
        return result;
      } catch (error) {
        progress.clear();
        sentCache = undefined;
        primariesCache = undefined;
        reportsCache = undefined;
        levels = undefined;
        if (depth === 1) {
          metrics.rollback();
          journal.rollback();
        }
        throw error;
      } finally {
        depth -= 1;
      }
    },
    kv: {
      get(key: string): StoredKey | null {
        const row = sql.exec<KvRow>(`SELECT ${KV_COLUMNS} FROM kv WHERE key = ?`, key).toArray()[0];
        return row === undefined ? null : keyRow(row);
      },
      getMany(keys: readonly string[]): Map<string, StoredKey> {
        const found = new Map<string, StoredKey>();
        for (let i = 0; i < keys.length; i += GET_MANY_KEYS) {
          const chunk = keys.slice(i, i + GET_MANY_KEYS);
          const rows = sql
            .exec<KvRow>(`SELECT ${KV_COLUMNS} FROM kv WHERE key IN (${chunk.map(() => "?").join(", ")})`, ...chunk)
            .toArray();
          for (const row of rows) found.set(row.key, keyRow(row));
        }
        return found;
      },
      put(
        key: string,
        state: KeyState,
        encoded: Uint8Array,
        seqs: VersionVector,
        epoch: number,
        digest: Uint8Array,
        bucket: number,
      ): void {
        sql.exec(
          "INSERT INTO kv (key, type, live, version, state, seqs, epoch, digest, bucket, expiration, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (key) DO UPDATE SET type = ?2, live = ?3, version = ?4, state = ?5, seqs = ?6, epoch = ?7, digest = ?8, bucket = ?9, expiration = ?10, metadata = ?11",
          key,
          state.type,
          keyIsLive(state) ? 1 : 0,
          keyVersion(state),
          encoded,
          formatVv(seqs),
          epoch,
          digest,
          bucket,
          state.type === "register" ? state.register.expirationSeconds : null,
          state.type === "register" ? state.register.metadata : null,
        );
      },
      bucket(bucket: number): MerkleEntry[] {
        return sql
          .exec<{ key: string; digest: ArrayBuffer }>(
            "SELECT key, digest FROM kv WHERE bucket = ? AND digest IS NOT NULL ORDER BY key",
            bucket,
          )
          .toArray()
          .map((r) => ({ key: r.key, digest: new Uint8Array(r.digest) }));
      },
      bucketRows(
        from: number,
        to: number,
        after: { readonly bucket: number; readonly key: string } | null,
        limit: number,
      ): KeyRow[] {
        // Two shapes, so that SQLite seeks the (bucket, key) index to the cursor: an `IS NULL OR`
        // around the row-value bound would make every page scan the range from its start.
        const rows =
          after === null
            ? sql.exec<KvRow>(
                `SELECT ${KV_COLUMNS} FROM kv WHERE bucket >= ?1 AND bucket < ?2 ORDER BY bucket, key LIMIT ?3`,
                from,
                to,
                limit,
              )
            : sql.exec<KvRow>(
                `SELECT ${KV_COLUMNS} FROM kv WHERE (bucket, key) > (?1, ?2) AND bucket < ?3 ORDER BY bucket, key LIMIT ?4`,
                after.bucket,
                after.key,
                to,
                limit,
              );
        return rows.toArray().map(keyRow);
      },
      counts(): { live: number; tombstones: number } {
        // Both counts walk an index: every key's, and the tombstones' partial one (0007).
        const total = sql.exec<{ n: number }>("SELECT count(*) AS n FROM kv").one().n;
        const tombstones = sql.exec<{ n: number }>("SELECT count(*) AS n FROM kv WHERE live = 0").one().n;
        // Counters and sets are always live; only a deleted register is a tombstone.
        return { live: total - tombstones, tombstones };
      },
      tombstones(after: string | null, limit: number, expiredBeforeMs: number): KeyRow[] {
        return sql
          .exec<KvRow>(
            `SELECT ${KV_COLUMNS} FROM kv WHERE (live = 0 OR (expiration IS NOT NULL AND expiration * 1000 <= ?3)) AND (?1 IS NULL OR key > ?1) ORDER BY key LIMIT ?2`,
            after,
            limit,
            expiredBeforeMs,
          )
          .toArray()
          .map(keyRow);
      },
      undigested(limit: number): KeyRow[] {
        return sql
          .exec<KvRow>(`SELECT ${KV_COLUMNS} FROM kv WHERE digest IS NULL LIMIT ?`, limit)
          .toArray()
          .map(keyRow);
      },
      delete(key: string): void {
        sql.exec("DELETE FROM kv WHERE key = ?", key);
      },
      list(low: string, high: string | null, after: string | null, limit: number, nowMs: number): KeyListing[] {
        // Compare in SQLite, whose text order (UTF-8 bytes) is the listing order; JavaScript
        // compares UTF-16 code units, which disagrees for characters beyond U+FFFF.
        return sql
          .exec<{ key: string; version: string; expiration: number | null; metadata: string | null }>(
            "SELECT key, version, expiration, metadata FROM kv WHERE live = 1 AND (expiration IS NULL OR expiration * 1000 > ?5) AND key >= ?1 AND (?2 IS NULL OR key > ?2) AND (?3 IS NULL OR key < ?3) ORDER BY key LIMIT ?4",
            low,
            after,
            high,
            limit,
            nowMs,
          )
          .toArray()
          .map((row) => ({
            name: row.key,
            version: row.version,
            ...(row.expiration === null ? {} : { expiration: row.expiration }),
            ...(row.metadata === null ? {} : { metadata: row.metadata }),
          }));
      },
      rows(low: string, high: string | null, after: string | null, limit: number): KeyRow[] {
        return sql
          .exec<KvRow>(
            `SELECT ${KV_COLUMNS} FROM kv WHERE key >= ?1 AND (?2 IS NULL OR key > ?2) AND (?3 IS NULL OR key < ?3) ORDER BY key LIMIT ?4`,
            low,
            after,
            high,
            limit,
          )
          .toArray()
          .map(keyRow);
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
      after(afterSeq: number, limit: number, bytesMax: number): LogRow[] {
        // A running total of state bytes stops the page at the budget without reading the
        // rows past it; the first row always comes, so one large state still drains. The first
        // row is found by its row number: a zero running total also holds for the rows after
        // leading null states, which must not pass a budget of 0.
        return sql
          .exec<{
            seq: number;
            key: string;
            stamp: string;
            written_ms: number;
            state: ArrayBuffer | null;
            epoch: number | null;
          }>(
            `SELECT seq, key, stamp, written_ms, state, epoch FROM (
               SELECT seq, key, stamp, written_ms, state, epoch,
                      row_number() OVER (ORDER BY seq) AS n,
                      sum(coalesce(length(state), 0)) OVER (ORDER BY seq) - coalesce(length(state), 0) AS before
               FROM log WHERE seq > ?1 ORDER BY seq LIMIT ?2
             ) WHERE n = 1 OR before < ?3 ORDER BY seq`,
            afterSeq,
            limit,
            bytesMax,
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
      prune(uptoSeq: number): void {
        sql.exec("DELETE FROM log WHERE seq <= ?", uptoSeq);
      },
      count(): number {
        return sql.exec<{ n: number }>("SELECT count(*) AS n FROM log").one().n;
      },
    },
    peerSend: {
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
        sentCache?.set(target, Math.max(sentCache.get(target) ?? 0, sentSeq));
      },
      rewind(target: string, sentSeq: number): void {
        sql.exec("UPDATE peer_send SET sent_seq = min(sent_seq, ?2) WHERE target = ?1", target, sentSeq);
        if (sentCache?.has(target) === true) sentCache.set(target, Math.min(sentCache.get(target) ?? 0, sentSeq));
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
    peerReports: {
      all(): ReadonlyMap<string, PeerReport> {
        reportsCache ??= new Map(
          sql
            .exec<{
              region: string;
              seq: number;
              applied: string;
              heard_ms: number;
              base_seq: number;
              prior_seq: number;
            }>("SELECT region, seq, applied, heard_ms, base_seq, prior_seq FROM peer_report")
            .toArray()
            .map((r) => [
              r.region,
              {
                seq: r.seq,
                applied: JSON.parse(r.applied) as Record<string, number>,
                heardMs: r.heard_ms,
                baseSeq: r.base_seq,
                priorSeq: r.prior_seq,
              },
            ]),
        );
        return reportsCache;
      },
      put(region: string, report: PeerReport): void {
        sql.exec(
          "INSERT INTO peer_report (region, seq, applied, heard_ms, base_seq, prior_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (region) DO UPDATE SET seq = ?2, applied = ?3, heard_ms = ?4, base_seq = ?5, prior_seq = ?6",
          region,
          report.seq,
          JSON.stringify(report.applied),
          report.heardMs,
          report.baseSeq,
          report.priorSeq,
        );
        reportsCache?.set(region, report);
      },
    },
    primaries: {
      all(): ReadonlyMap<string, PrimaryRecord> {
        primariesCache ??= new Map(
          sql
            .exec<{ prefix: string; region: RegionId; epoch: number; settled_epoch: number }>(
              "SELECT prefix, region, epoch, settled_epoch FROM primaries",
            )
            .toArray()
            .map((r) => [r.prefix, { region: r.region, epoch: r.epoch, settledEpoch: r.settled_epoch }]),
        );
        return primariesCache;
      },
      put(prefix: string, record: PrimaryRecord): void {
        sql.exec(
          "INSERT INTO primaries (prefix, region, epoch, settled_epoch) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (prefix) DO UPDATE SET region = ?2, epoch = ?3, settled_epoch = ?4",
          prefix,
          record.region,
          record.epoch,
          record.settledEpoch,
        );
        primariesCache?.set(prefix, record);
      },
    },
    conflicts: {
      insert(row): boolean {
        // RETURNING yields a row only when one was inserted. `rowsWritten` cannot tell: it also
        // counts the AUTOINCREMENT sequence update, which SQLite makes even when the conflict
        // clause skips the insert.
        const inserted = sql.exec(
          "INSERT INTO conflicts (key, kind, rule, detected_ms, winner_stamp, loser_stamp, winner, loser) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
          row.key,
          row.kind,
          row.rule,
          row.detectedMs,
          row.winnerStamp,
          row.loserStamp,
          row.winner,
          row.loser,
        );
        return inserted.toArray().length > 0;
      },
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
      delete(ids: readonly number[]): void {
        for (const id of ids) sql.exec("DELETE FROM conflicts WHERE id = ?", id);
      },
      count(): number {
        return sql.exec<{ n: number }>("SELECT count(*) AS n FROM conflicts").one().n;
      },
    },
    changes: {
      append: (change) => journal.append(change),
      after(pos: number, limit: number): ChangeRecord[] {
        return sql
          .exec<{ pos: number; key: string; type: string; version: string; origin: string; deleted: number }>(
            "SELECT pos, key, type, version, origin, deleted FROM changes WHERE pos > ? ORDER BY pos LIMIT ?",
            pos,
            limit,
          )
          .toArray()
          .map((r) => ({
            pos: r.pos,
            key: r.key,
            type: r.type as ChangeRecord["type"],
            version: r.version,
            origin: r.origin as RegionId,
            deleted: r.deleted === 1,
          }));
      },
      bounds() {
        const head = journal.head();
        const oldest = sql.exec<{ oldest: number | null }>("SELECT min(pos) AS oldest FROM changes").one().oldest;
        return { oldest: oldest ?? head + 1, head };
      },
      listen: (listener) => journal.listen(listener),
    },
    deadLetters: {
      insert(row): void {
        sql.exec(
          "INSERT INTO dead_letters (origin, target, received_ms, attempts, reason, body) VALUES (?, ?, ?, ?, ?, ?)",
          row.origin,
          row.target,
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
            target: string;
            received_ms: number;
            attempts: number;
            reason: string;
            body: ArrayBuffer;
          }>(
            "SELECT id, origin, target, received_ms, attempts, reason, body FROM dead_letters WHERE id > ? ORDER BY id LIMIT ?",
            afterId,
            limit,
          )
          .toArray()
          .map((r) => ({
            id: r.id,
            origin: r.origin,
            target: r.target,
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
    merkle: {
      add(bucket: number, delta: Uint8Array): void {
        const digest = bucketDigest(bucket);
        xorInto(digest, delta);
        if (isZero(digest)) sql.exec("DELETE FROM merkle WHERE bucket = ?", bucket);
        else
          sql.exec(
            "INSERT INTO merkle (bucket, digest) VALUES (?1, ?2) ON CONFLICT (bucket) DO UPDATE SET digest = ?2",
            bucket,
            digest,
          );
        if (levels !== undefined) {
          levels.buckets.set(digest, bucket * MERKLE_DIGEST_BYTES);
          levels.tree.add(bucket, delta);
        }
      },
      children(level: number, index: number): Uint8Array[] {
        return merkleChildren(level, index, loadLevels, (from, to) =>
          sql
            .exec<{ bucket: number; digest: ArrayBuffer }>(
              "SELECT bucket, digest FROM merkle WHERE bucket >= ? AND bucket < ?",
              from,
              to,
            )
            .toArray()
            .map((r) => [r.bucket, new Uint8Array(r.digest)] as const),
        );
      },
      root(): Uint8Array {
        return loadLevels().root();
      },
    },
    deferred: {
      add(row): void {
        sql.exec(
          "INSERT INTO deferred (prefix, key, origin, epoch, state) VALUES (?, ?, ?, ?, ?)",
          row.prefix,
          row.key,
          row.origin,
          row.epoch,
          row.state,
        );
      },
      page(prefix: string, limit: number): DeferredRow[] {
        return sql
          .exec<{ id: number; prefix: string; key: string; origin: string; epoch: number; state: ArrayBuffer }>(
            "SELECT id, prefix, key, origin, epoch, state FROM deferred WHERE prefix = ? ORDER BY id LIMIT ?",
            prefix,
            limit,
          )
          .toArray()
          .map((r) => ({ ...r, state: new Uint8Array(r.state) }));
      },
      delete(ids: readonly number[]): void {
        for (const id of ids) sql.exec("DELETE FROM deferred WHERE id = ?", id);
      },
      count(): number {
        return sql.exec<{ n: number }>("SELECT count(*) AS n FROM deferred").one().n;
      },
    },
    meta: {
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
      add(name: string, peer: string, delta: number): void {
        metrics.add(name, peer, delta);
      },
      flush(): void {
        metrics.flush();
      },
      all() {
        metrics.flush();
        return sql
          .exec<{ name: string; peer: string; value: number }>("SELECT name, peer, value FROM metrics")
          .toArray();
      },
    },
  };
}
