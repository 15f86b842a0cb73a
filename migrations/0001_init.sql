-- Replica schema, version 1. Applied once, in order, by the replica's migration runner, which
-- records each file in the _migrations table (PRAGMA user_version is refused in Durable Objects).

-- Every key this region holds, live or tombstoned, with its canonical CRDT state.
CREATE TABLE kv (
  key TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  live INTEGER NOT NULL,
  version TEXT NOT NULL,
  state BLOB NOT NULL
);

-- The transactional outbox: writes originated here, committed with the write itself and kept
-- until the replication queue has accepted them for every peer.
CREATE TABLE log (
  seq INTEGER PRIMARY KEY,
  key TEXT NOT NULL,
  stamp TEXT NOT NULL,
  written_ms INTEGER NOT NULL,
  -- NULL when the state is too large for a queue message; peers then pull it from here.
  state BLOB
);

-- How far the outbox has been handed to the queue, per target region.
CREATE TABLE peer_send (
  target TEXT PRIMARY KEY,
  sent_seq INTEGER NOT NULL
);

-- Progress on each peer's stream of writes (see shared/store/progress.ts).
CREATE TABLE peer_recv (
  origin TEXT PRIMARY KEY,
  applied_seq INTEGER NOT NULL,
  known_seq INTEGER NOT NULL,
  fresh_ms INTEGER NOT NULL,
  heard_ms INTEGER NOT NULL,
  pending TEXT NOT NULL
);

-- Every conflict this region resolved while merging. Never pruned automatically.
CREATE TABLE conflicts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL,
  kind TEXT NOT NULL,
  rule TEXT NOT NULL,
  detected_ms INTEGER NOT NULL,
  winner_stamp TEXT NOT NULL,
  loser_stamp TEXT NOT NULL,
  winner BLOB NOT NULL,
  loser BLOB NOT NULL,
  UNIQUE (key, winner_stamp, loser_stamp)
);

-- Replication messages for this region that exhausted their retries, kept for replay.
CREATE TABLE dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  origin TEXT NOT NULL,
  received_ms INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  reason TEXT NOT NULL,
  body BLOB NOT NULL
);

-- Small named values: this replica's clock and sequence number.
CREATE TABLE meta (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

-- Monotonic counters for /metrics, by name and peer region.
CREATE TABLE metrics (
  name TEXT NOT NULL,
  peer TEXT NOT NULL,
  value INTEGER NOT NULL,
  PRIMARY KEY (name, peer)
);
