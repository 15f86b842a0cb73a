-- Control object schema, version 4: the shard layout (shared/store/layout.ts).

-- One row: the shard count keys belong to, and while keys move between shards the count they
-- were placed by before (NULL when stable) and whether routers route by the new count yet. An
-- object without a row starts at the configured SHARDS. A control object that already ran (it
-- holds evidence of heartbeats) ran a store of one replica object per region, from before
-- shards: it starts at 1, and moves to the configured count like any change of SHARDS.
CREATE TABLE layout (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  shards INTEGER NOT NULL,
  from_shards INTEGER,
  routed INTEGER NOT NULL,
  changed_ms INTEGER NOT NULL
);
INSERT INTO layout (id, shards, from_shards, routed, changed_ms)
SELECT 1, 1, NULL, 1, 0 WHERE EXISTS (SELECT 1 FROM evidence) OR EXISTS (SELECT 1 FROM health);
