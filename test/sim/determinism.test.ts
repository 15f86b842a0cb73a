// A seed is a whole run: the same seed replays the same run exactly (the replay command a
// failing seed prints depends on it), and different seeds give different runs.
import { describe, expect, it } from "vitest";
import { runSeed } from "./run.ts";

describe("simulation determinism", () => {
  it("replays a seed exactly, and another seed differently", async () => {
    const first = await runSeed(7);
    const again = await runSeed(7);
    expect(again.stats).toEqual(first.stats);
    expect(again.trace).toBe(first.trace);
    const other = await runSeed(8);
    expect(other.trace).not.toBe(first.trace);
  });
});
