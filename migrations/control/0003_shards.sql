-- Control object schema, version 3: shards (shared/shards.ts).

-- While a new primary is not ready: NULL until every shard's recovery is done, then a JSON
-- array of each shard's sequence number at the end of its re-log (index = shard). It replaces
-- recovered_seq, which held the one shard's number before shards; a row that has one becomes
-- the array of that number.
ALTER TABLE primaries ADD COLUMN recovered_seqs TEXT;
UPDATE primaries SET recovered_seqs = json_array(recovered_seq) WHERE recovered_seq IS NOT NULL;
