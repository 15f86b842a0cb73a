-- Replica schema, version 7: confirmations and garbage collection.

-- What each peer last reported of itself in a heartbeat: its own sequence number and how far it
-- had applied every region's stream (JSON object region -> seq). The outbox keeps a row until
-- its target confirms it here; tombstones are collected once every region has (shared/store/gc.ts).
CREATE TABLE peer_report (
  region TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  applied TEXT NOT NULL,
  heard_ms INTEGER NOT NULL
);

-- Tombstones in key order, for collection to page through without scanning live keys.
CREATE INDEX kv_tombstones ON kv (key) WHERE live = 0;
