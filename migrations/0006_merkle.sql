-- Replica schema, version 6: the Merkle tree for anti-entropy.

-- Each key's entry in the tree: the digest of its state and epoch, and the bucket it falls in
-- (see shared/merkle.ts). Keys stored before this version are entered at the replica's start.
ALTER TABLE kv ADD COLUMN digest BLOB;
ALTER TABLE kv ADD COLUMN bucket INTEGER;
CREATE INDEX kv_by_bucket ON kv (bucket, key);

-- The digest of every non-empty bucket: the XOR of its entries' hashes. The levels above are
-- summed in memory from these.
CREATE TABLE merkle (
  bucket INTEGER PRIMARY KEY,
  digest BLOB NOT NULL
);
