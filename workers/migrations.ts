/**
 * Applies numbered SQL migrations in order, each once, recording it in `_migrations`. Runs
 * inside `blockConcurrencyWhile` when a Durable Object starts, so no request sees a
 * half-migrated schema; each file runs in its own `transactionSync` (SQL `BEGIN` and
 * `PRAGMA user_version` are refused in Durable Objects).
 */
import control0001 from "../migrations/control/0001_init.sql";
import control0002 from "../migrations/control/0002_recovery.sql";
import control0003 from "../migrations/control/0003_shards.sql";
import control0004 from "../migrations/control/0004_layout.sql";
import replica0001 from "../migrations/0001_init.sql";
import replica0002 from "../migrations/0002_primaries.sql";
import replica0003 from "../migrations/0003_key_seqs.sql";
import replica0004 from "../migrations/0004_epochs.sql";
import replica0005 from "../migrations/0005_deferred.sql";
import replica0006 from "../migrations/0006_merkle.sql";
import replica0007 from "../migrations/0007_lifecycle.sql";
import replica0008 from "../migrations/0008_extras.sql";
import replica0009 from "../migrations/0009_changes.sql";

/** One migration file. */
export interface Migration {
  readonly id: number;
  readonly name: string;
  readonly sql: string;
}

/** The replica's migrations, in order. Append only: never edit or reorder a released file. */
export const REPLICA_MIGRATIONS: readonly Migration[] = [
  { id: 1, name: "0001_init", sql: replica0001 },
  { id: 2, name: "0002_primaries", sql: replica0002 },
  { id: 3, name: "0003_key_seqs", sql: replica0003 },
  { id: 4, name: "0004_epochs", sql: replica0004 },
  { id: 5, name: "0005_deferred", sql: replica0005 },
  { id: 6, name: "0006_merkle", sql: replica0006 },
  { id: 7, name: "0007_lifecycle", sql: replica0007 },
  { id: 8, name: "0008_extras", sql: replica0008 },
  { id: 9, name: "0009_changes", sql: replica0009 },
];

/** The control object's migrations, in order. Append only. */
export const CONTROL_MIGRATIONS: readonly Migration[] = [
  { id: 1, name: "control/0001_init", sql: control0001 },
  { id: 2, name: "control/0002_recovery", sql: control0002 },
  { id: 3, name: "control/0003_shards", sql: control0003 },
  { id: 4, name: "control/0004_layout", sql: control0004 },
];

/** Applies the migrations not yet recorded; returns the names it applied. */
export function migrate(storage: DurableObjectStorage, migrations: readonly Migration[], nowMs: number): string[] {
  const sql = storage.sql;
  sql.exec(
    "CREATE TABLE IF NOT EXISTS _migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)",
  );
  const done = new Set(
    sql
      .exec<{ id: number }>("SELECT id FROM _migrations")
      .toArray()
      .map((row) => row.id),
  );
  const applied: string[] = [];
  for (const migration of migrations) {
    if (done.has(migration.id)) continue;
    storage.transactionSync(() => {
      sql.exec(migration.sql);
      sql.exec("INSERT INTO _migrations (id, name, applied_ms) VALUES (?, ?, ?)", migration.id, migration.name, nowMs);
    });
    applied.push(migration.name);
  }
  return applied;
}
