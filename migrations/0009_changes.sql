-- Replica schema, version 9: the change journal behind the change feed (GET /v1/watch).

-- One row per write the replica applied (shared/store/changes.ts), at a position that only
-- grows; the newest 10,000 are kept. No values: a watcher reads the key if it wants one.
CREATE TABLE changes (
  pos INTEGER PRIMARY KEY,
  key TEXT NOT NULL,
  type TEXT NOT NULL,
  version TEXT NOT NULL,
  origin TEXT NOT NULL,
  deleted INTEGER NOT NULL
);
