-- Control object schema, version 2: recovery progress and health evidence.

-- The new primary's sequence number at the end of its recovery's re-log (0 for epoch 1):
-- replicas that have applied its stream this far drop what a deposed primary left behind.
ALTER TABLE primaries ADD COLUMN recovered_seq INTEGER NOT NULL DEFAULT 0;

-- The latest time any peer reported hearing each region: health changes only on evidence, and
-- the evidence survives a restart of the control object.
CREATE TABLE evidence (
  region TEXT PRIMARY KEY,
  heard_ms INTEGER NOT NULL
);
