// The seeded simulation, second half of the campaign (see seeds-a.test.ts).
import { describe, expect, it } from "vitest";
import { campaign } from "./campaign.ts";

describe("simulation, seeds 521-1040", () => {
  it("keeps every promise", async () => {
    const failures = await campaign(521, 1040);
    expect(failures.map((f) => f.report).join("\n\n")).toBe("");
  }, 120_000);
});
