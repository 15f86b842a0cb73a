/**
 * Applies `migrations/NNNN_*.sql` in order, each once, recording it in `_migrations`. Runs
 * inside `blockConcurrencyWhile` at replica start, so no request sees a half-migrated schema;
 * each file runs in its own `transactionSync` (SQL `BEGIN` is refused in Durable Objects).
 */
import init from "../../migrations/0001_init.sql";

/** Every migration, in order. Append only: never edit or reorder a released file. */
export const MIGRATIONS: ReadonlyArray<{ readonly id: number; readonly name: string; readonly sql: string }> = [
  { id: 1, name: "0001_init", sql: init },
];

/** Applies the migrations not yet recorded; returns the names it applied. */
export function migrate(storage: DurableObjectStorage, nowMs: number): string[] {
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
  for (const migration of MIGRATIONS) {
    if (done.has(migration.id)) continue;
    storage.transactionSync(() => {
      sql.exec(migration.sql);
      sql.exec("INSERT INTO _migrations (id, name, applied_ms) VALUES (?, ?, ?)", migration.id, migration.name, nowMs);
    });
    applied.push(migration.name);
  }
  return applied;
}
