/**
 * The control object's storage (`shared/store/control-machine.ts`) over Durable Object SQLite:
 * every SQL statement of the control object, one group per table.
 */
import { assert } from "../../shared/assert.ts";
import { type RegionId } from "../../shared/regions.ts";
import { type ControlPrimaryRow, type ControlStorage } from "../../shared/store/control-machine.ts";

/** A stored `recovered_seqs` array; a garbled one is a broken invariant, not input. */
function parseSeqs(text: string): number[] {
  const value: unknown = JSON.parse(text);
  assert(
    Array.isArray(value) && value.every((n) => Number.isSafeInteger(n) && n >= 0),
    "recovered_seqs is an array of sequence numbers",
  );
  return value as number[];
}

/** The control object's storage over `storage`'s SQLite database (migrated by the caller). */
export function controlStore(storage: DurableObjectStorage): ControlStorage {
  const sql = storage.sql;
  return {
    transaction: <T>(fn: () => T): T => storage.transactionSync(fn),
    health: {
      all() {
        return new Map(
          sql
            .exec<{ region: RegionId; healthy: number; changed_ms: number }>(
              "SELECT region, healthy, changed_ms FROM health",
            )
            .toArray()
            .map((r) => [r.region, { healthy: r.healthy === 1, changedMs: r.changed_ms }]),
        );
      },
      set(region, healthy, changedMs) {
        sql.exec(
          "INSERT INTO health (region, healthy, changed_ms) VALUES (?1, ?2, ?3) ON CONFLICT (region) DO UPDATE SET healthy = ?2, changed_ms = ?3",
          region,
          healthy ? 1 : 0,
          changedMs,
        );
      },
    },
    primaries: {
      all(): ControlPrimaryRow[] {
        return sql
          .exec<{
            prefix: string;
            region: RegionId;
            epoch: number;
            ready: number;
            recovered_seqs: string | null;
            served_epoch: number;
            changed_ms: number;
          }>(
            "SELECT prefix, region, epoch, ready, recovered_seqs, served_epoch, changed_ms FROM primaries ORDER BY prefix",
          )
          .toArray()
          .map((r) => ({
            prefix: r.prefix,
            region: r.region,
            epoch: r.epoch,
            ready: r.ready === 1,
            recoveredSeqs: r.recovered_seqs === null ? null : parseSeqs(r.recovered_seqs),
            servedEpoch: r.served_epoch,
            changedMs: r.changed_ms,
          }));
      },
      seed(row) {
        sql.exec(
          "INSERT INTO primaries (prefix, region, epoch, ready, recovered_seqs, served_epoch, changed_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (prefix) DO NOTHING",
          row.prefix,
          row.region,
          row.epoch,
          row.ready ? 1 : 0,
          row.recoveredSeqs === null ? null : JSON.stringify(row.recoveredSeqs),
          row.servedEpoch,
          row.changedMs,
        );
      },
      put(row) {
        sql.exec(
          "INSERT INTO primaries (prefix, region, epoch, ready, recovered_seqs, served_epoch, changed_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (prefix) DO UPDATE SET region = ?2, epoch = ?3, ready = ?4, recovered_seqs = ?5, served_epoch = ?6, changed_ms = ?7",
          row.prefix,
          row.region,
          row.epoch,
          row.ready ? 1 : 0,
          row.recoveredSeqs === null ? null : JSON.stringify(row.recoveredSeqs),
          row.servedEpoch,
          row.changedMs,
        );
      },
    },
    failovers: {
      insert(row) {
        sql.exec(
          "INSERT INTO failovers (prefix, from_region, to_region, epoch, at_ms) VALUES (?, ?, ?, ?, ?)",
          row.prefix,
          row.from,
          row.to,
          row.epoch,
          row.atMs,
        );
      },
    },
    layout: {
      get() {
        const row = sql
          .exec<{ shards: number; from_shards: number | null; routed: number }>(
            "SELECT shards, from_shards, routed FROM layout WHERE id = 1",
          )
          .toArray()[0];
        return row === undefined ? null : { shards: row.shards, from: row.from_shards, routed: row.routed === 1 };
      },
      put(layout, changedMs) {
        sql.exec(
          "INSERT INTO layout (id, shards, from_shards, routed, changed_ms) VALUES (1, ?1, ?2, ?3, ?4) ON CONFLICT (id) DO UPDATE SET shards = ?1, from_shards = ?2, routed = ?3, changed_ms = ?4",
          layout.shards,
          layout.from,
          layout.routed ? 1 : 0,
          changedMs,
        );
      },
    },
    evidence: {
      all() {
        return new Map(
          sql
            .exec<{ region: RegionId; heard_ms: number }>("SELECT region, heard_ms FROM evidence")
            .toArray()
            .map((r) => [r.region, r.heard_ms]),
        );
      },
      put(region, heardMs) {
        sql.exec(
          "INSERT INTO evidence (region, heard_ms) VALUES (?1, ?2) ON CONFLICT (region) DO UPDATE SET heard_ms = max(heard_ms, ?2)",
          region,
          heardMs,
        );
      },
    },
  };
}
