// Longer runs (a minute of virtual load, 3 or 5 regions), where faults pile up and failovers
// follow one another; and the seeds that once found bugs, kept as regressions with what they
// found.
import { describe, expect, it } from "vitest";
import { campaign } from "./campaign.ts";

/** Seeds that failed once, with the options they failed under. */
const REGRESSIONS: ReadonlyArray<{ seed: number; regionCount: number; found: string }> = [
  { seed: 960, regionCount: 3, found: "a strong read answered a write committed while it checked the quorum" },
  { seed: 2240, regionCount: 3, found: "the same, on another key" },
  { seed: 1060, regionCount: 5, found: "the same, with five regions" },
  { seed: 1246, regionCount: 5, found: "the same, with five regions" },
];

describe("simulation, long runs", () => {
  it("keeps every promise over a minute of load, with 3 and with 5 regions", async () => {
    const failures = [
      ...(await campaign(1, 30, { regionCount: 3, durationMs: 60_000 })),
      ...(await campaign(31, 60, { regionCount: 5, durationMs: 60_000 })),
    ];
    expect(failures.map((f) => f.report).join("\n\n")).toBe("");
  }, 120_000);

  it("keeps every promise on the seeds that once found bugs", async () => {
    const failures = [];
    for (const { seed, regionCount } of REGRESSIONS)
      failures.push(...(await campaign(seed, seed, { regionCount, durationMs: 60_000 })));
    expect(failures.map((f) => f.report).join("\n\n")).toBe("");
  }, 60_000);
});
