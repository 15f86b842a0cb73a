// The simulator must catch a broken protocol: without fencing (a replica accepts strong writes
// whatever epoch it knows, the control object confirms anyone, merges ignore epochs), a deposed
// primary's writes survive failovers and acknowledged writes are lost.
import { describe, expect, it, vi } from "vitest";
import { ControlMachine } from "../../shared/store/control-machine.ts";
import { ReplicaMachine } from "../../shared/store/replica-machine.ts";
import { PRIMARY_LEASE_MS } from "../../shared/store/primaries.ts";
import { campaign } from "./campaign.ts";

vi.mock("../../shared/store/epochs.ts", async (importOriginal) => {
  const real = await importOriginal<typeof import("../../shared/store/epochs.ts")>();
  return {
    ...real,
    judgeEpoch: () => "merge" as const,
    // Merge states as if epochs did not exist (keeping the newest tag, so replicas still agree on it).
    mergeTagged: (local: Parameters<typeof real.mergeTagged>[0], remote: Parameters<typeof real.mergeTagged>[1]) => {
      const merged = real.mergeTagged(local === undefined ? undefined : { ...local, epoch: 0 }, {
        ...remote,
        epoch: 0,
      });
      return { ...merged, merged: { ...merged.merged, epoch: Math.max(local?.epoch ?? 0, remote.epoch) } };
    },
  };
});

/** Any replica not taken out acts as the primary of any epoch it is asked to. */
function anyonePrimary(this: ReplicaMachine): boolean {
  return !this.takenOut();
}

describe("simulation without fencing", () => {
  it("finds deposed writes that survive or acknowledged writes that are lost", async () => {
    ReplicaMachine.prototype.isPrimary = anyonePrimary;
    ControlMachine.prototype.confirmPrimary = () => PRIMARY_LEASE_MS;
    const failures = await campaign(1, 150, { faults: { isolatePrimary: true } });
    expect(failures.length).toBeGreaterThan(0);
    expect(failures.map((f) => f.report).join("\n")).toMatch(
      /deposed_write_survived|write_lost|register_not_last_writer|convergence/,
    );
  }, 120_000);
});
