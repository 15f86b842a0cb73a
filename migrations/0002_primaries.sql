-- Replica schema, version 2: strong (single-leader) prefixes.

-- The fencing epoch of each strong prefix as this replica last learned it from the control
-- object; replicated writes under an older epoch are refused, never merged.
CREATE TABLE primaries (
  prefix TEXT PRIMARY KEY,
  region TEXT NOT NULL,
  epoch INTEGER NOT NULL
);

-- The epoch a strong write was accepted under (NULL for writes outside strong prefixes).
ALTER TABLE log ADD COLUMN epoch INTEGER;
