// The repair path under the faults only it can heal (issue: anti-entropy, lifecycle and
// collection): 30% of replication messages lost outright (never retried or dead-lettered),
// regions restored empty, a region added mid-run, and all three at once. Every seed must
// converge with no acknowledged write lost (`ack=local` promises nothing past its region's
// disk, see `Forgotten.lost`) and no collected key resurrected.
import { describe, expect, it } from "vitest";
import { campaign } from "./campaign.ts";

describe("simulation with the faults only repair heals", () => {
  it("converges with 30% of replication messages lost and no retries", async () => {
    const failures = await campaign(1, 60, { faults: { loss: 0.3 } });
    expect(failures.map((f) => f.report).join("\n\n")).toBe("");
  }, 120_000);

  it("converges when regions lose their storage", async () => {
    const failures = await campaign(101, 160, { faults: { storageLoss: true } });
    expect(failures.map((f) => f.report).join("\n\n")).toBe("");
  }, 120_000);

  it("converges when a region is added mid-run", async () => {
    const failures = await campaign(201, 260, { faults: { addRegion: true } });
    expect(failures.map((f) => f.report).join("\n\n")).toBe("");
  }, 120_000);

  it("converges with all three at once", async () => {
    const failures = await campaign(301, 400, { faults: { loss: 0.3, storageLoss: true, addRegion: true } });
    expect(failures.map((f) => f.report).join("\n\n")).toBe("");
  }, 120_000);
});

describe("simulation with the repair path off", () => {
  it("reports the divergence that lost messages and restored regions leave behind", async () => {
    const failures = await campaign(1, 20, { repair: false, faults: { loss: 0.3, storageLoss: true } });
    expect(failures.length).toBeGreaterThanOrEqual(10);
    expect(failures.map((f) => f.report).join("\n")).toMatch(/convergence|no quiescence|write_lost/);
  }, 120_000);
});
