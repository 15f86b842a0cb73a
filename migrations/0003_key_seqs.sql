-- Replica schema, version 3: per-key origin sequence numbers.

-- For each origin region, the highest of its write sequence numbers merged into this key's
-- state (a version vector in its compact text form, '' when empty). Session tokens carry these,
-- so a read never goes back in time even when the state arrived outside the ordered stream
-- (a session fetch, a read repair, a synchronous ack push).
ALTER TABLE kv ADD COLUMN seqs TEXT NOT NULL DEFAULT '';
