// The simulator must catch a broken protocol: a replica that drops its outbox (commits a write
// but never queues it) loses writes for every region that missed the synchronous push, unless
// anti-entropy repairs them, so this runs with the repair path off.
import { describe, expect, it } from "vitest";
import { type ReplicaStorage } from "../../shared/store/storage.ts";
import { campaign } from "./campaign.ts";

/** Storage whose outbox forgets every row. */
function dropOutbox(storage: ReplicaStorage): ReplicaStorage {
  return { ...storage, transaction: (fn) => storage.transaction(fn), log: { ...storage.log, append: () => undefined } };
}

describe("simulation with the outbox dropped", () => {
  it("finds lost writes and divergence", async () => {
    const failures = await campaign(1, 20, { wrapStorage: dropOutbox, repair: false });
    expect(failures.length).toBeGreaterThanOrEqual(15);
    expect(failures.map((f) => f.report).join("\n")).toMatch(/convergence|write_lost|no quiescence/);
  }, 60_000);
});
