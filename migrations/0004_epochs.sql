-- Replica schema, version 4: fencing epochs on stored states, settling after failover, and
-- dead letters recorded away from their target.

-- The epoch of the primary that wrote or recovered a key under a strong prefix (0 elsewhere).
-- A state of a newer epoch replaces one of an older epoch; see shared/store/epochs.ts.
ALTER TABLE kv ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;

-- The epoch whose recovered state this replica has fully taken in. Configured prefixes start
-- settled at their first epoch.
ALTER TABLE primaries ADD COLUMN settled_epoch INTEGER NOT NULL DEFAULT 0;
UPDATE primaries SET settled_epoch = epoch WHERE epoch = 1;

-- The region a dead letter was for (the recording region may differ when that one was down).
ALTER TABLE dead_letters ADD COLUMN target TEXT NOT NULL DEFAULT '';

-- Writes of an older epoch of a strong prefix that arrived before this replica had taken in the
-- new primary's recovered state: kept aside (the stream moves on), and judged once it has.
CREATE TABLE deferred (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  prefix TEXT NOT NULL,
  key TEXT NOT NULL,
  origin TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  state BLOB NOT NULL
);
CREATE INDEX deferred_by_prefix ON deferred (prefix, id);
