// The seeded simulation, first half of the campaign: every promise holds for every seed under
// lost, duplicated and reordered messages, partitions, crashes, operators taking regions out,
// and clock skew. A failing seed prints itself, its violations and a trace.
import { describe, expect, it } from "vitest";
import { campaign } from "./campaign.ts";

describe("simulation, seeds 1-520", () => {
  it("keeps every promise", async () => {
    const failures = await campaign(1, 520);
    expect(failures.map((f) => f.report).join("\n\n")).toBe("");
  }, 120_000);
});
