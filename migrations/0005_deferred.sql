-- Replica schema, version 5: writes kept aside while a region takes in a new primary's state.
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
