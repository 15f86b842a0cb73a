-- Replica schema, version 8: Workers KV's metadata and expiration on register values.

-- Copies of what the key's state holds (shared/crdt/lww-register.ts), so that a listing can
-- leave out expired keys and show both without decoding every state. NULL for keys without
-- them, counters and sets, and every key stored before this version (none had them).
ALTER TABLE kv ADD COLUMN expiration INTEGER;
ALTER TABLE kv ADD COLUMN metadata TEXT;
