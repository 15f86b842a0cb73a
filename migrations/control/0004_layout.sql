-- Control object schema, version 4: the shard layout (shared/store/layout.ts).

-- One row: the shard count keys belong to, and while keys move between shards the count they
-- were placed by before (NULL when stable) and whether routers route by the new count yet. An
-- object without a row starts at the configured SHARDS.
CREATE TABLE layout (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  shards INTEGER NOT NULL,
  from_shards INTEGER,
  routed INTEGER NOT NULL,
  changed_ms INTEGER NOT NULL
);
