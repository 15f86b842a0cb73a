-- Control object schema, version 2: recovery progress, the epoch that served, health evidence.

-- While a new primary is not ready: NULL until its recovery is done, then its sequence number
-- at the end of its re-log (it becomes ready once a majority of replicas has applied that far,
-- and replicas that have drop what a deposed primary left behind).
ALTER TABLE primaries ADD COLUMN recovered_seq INTEGER DEFAULT 0;
UPDATE primaries SET recovered_seq = NULL WHERE ready = 0;

-- The latest epoch of the prefix that became ready and served: a later recovery keeps nothing
-- older, because that epoch re-tagged everything it kept.
ALTER TABLE primaries ADD COLUMN served_epoch INTEGER NOT NULL DEFAULT 1;
UPDATE primaries SET served_epoch = epoch WHERE ready = 1;

-- The latest time any peer reported hearing each region: health changes only on evidence, and
-- the evidence survives a restart of the control object.
CREATE TABLE evidence (
  region TEXT PRIMARY KEY,
  heard_ms INTEGER NOT NULL
);
