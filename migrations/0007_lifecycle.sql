-- Replica schema, version 7: confirmations and garbage collection.

-- What each peer last reported of itself in a heartbeat: its own sequence number and how far it
-- had applied every region's stream (JSON object region -> seq). The outbox keeps a row until
-- its target confirms it here; tombstones are collected once every region has (shared/store/gc.ts).
-- base_seq and prior_seq: where the peer's current life numbers from, and the highest number of
-- its earlier life any region knew (writes numbered between are from a lost life).
CREATE TABLE peer_report (
  region TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  applied TEXT NOT NULL,
  heard_ms INTEGER NOT NULL,
  base_seq INTEGER NOT NULL DEFAULT 0,
  prior_seq INTEGER NOT NULL DEFAULT 0
);

-- Tombstones in key order, for collection to page through without scanning live keys.
CREATE INDEX kv_tombstones ON kv (key) WHERE live = 0;
