// The simulator's in-memory storage against the storage contract that the SQLite adapter also
// runs (test/workers/storage.test.ts), so the simulator's verdicts hold for the Durable Object.
import { MemoryStorage } from "../sim/memory-storage.ts";
import { storageContract } from "./storage-contract.ts";

// Reopening returns the same object: the simulator keeps it across a crash, and it has no cache
// that could differ from its durable state.
storageContract("MemoryStorage", async (body) => {
  const storage = new MemoryStorage();
  body(storage, () => storage);
});
