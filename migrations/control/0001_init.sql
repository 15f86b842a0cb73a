-- Control object schema, version 1: operator health overrides and strong-prefix primaries.

-- Regions an operator took out (healthy = 0) or put back (healthy = 1).
CREATE TABLE health (
  region TEXT PRIMARY KEY,
  healthy INTEGER NOT NULL,
  changed_ms INTEGER NOT NULL
);

-- The current primary of each strong prefix and its fencing epoch; ready = 0 while a newly
-- promoted primary is still recovering the prefix from its peers.
CREATE TABLE primaries (
  prefix TEXT PRIMARY KEY,
  region TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  ready INTEGER NOT NULL,
  changed_ms INTEGER NOT NULL
);

-- Every failover, for operators.
CREATE TABLE failovers (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  prefix TEXT NOT NULL,
  from_region TEXT NOT NULL,
  to_region TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  at_ms INTEGER NOT NULL
);
