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
