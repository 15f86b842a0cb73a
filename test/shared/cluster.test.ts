// Region health: operator overrides, heartbeat silence, busy-but-alive replicas, and no change
// without evidence.
import { describe, expect, it } from "vitest";
import {
  type HealthEvidence,
  clockOffsets,
  majority,
  regionHealth,
  skewedRegions,
} from "../../shared/store/cluster.ts";

const base: HealthEvidence = {
  override: undefined,
  answered: true,
  bootstrapping: false,
  heardMs: 10_000,
  fresh: true,
  graceUntilMs: 0,
  nowMs: 11_000,
  silenceMs: 3_000,
  previous: undefined,
  skewed: false,
};

describe("region health", () => {
  it("is healthy when heard from recently", () => {
    expect(regionHealth(base)).toEqual({ healthy: true, reason: null });
  });

  it("is unhealthy while it says it is bootstrapping (it lacks data), however recently heard", () => {
    expect(regionHealth({ ...base, bootstrapping: true })).toEqual({ healthy: false, reason: "bootstrapping" });
    expect(regionHealth({ ...base, bootstrapping: true, override: false })).toEqual({
      healthy: false,
      reason: "admin",
    });
    expect(regionHealth({ ...base, bootstrapping: true, fresh: false })).toEqual({
      healthy: false,
      reason: "bootstrapping",
    });
  });

  it("is taken out by an operator whatever the evidence, and put back to the evidence", () => {
    expect(regionHealth({ ...base, override: false })).toEqual({ healthy: false, reason: "admin" });
    expect(regionHealth({ ...base, override: true })).toEqual({ healthy: true, reason: null });
    // Put back while no peer reports: the operator's verdict is lifted, not kept.
    expect(regionHealth({ ...base, fresh: false, previous: { healthy: false, reason: "admin" } })).toEqual({
      healthy: true,
      reason: null,
    });
  });

  it("is unhealthy with clock_skew while its clock strays beyond the bound, below an operator's and a bootstrap's verdict", () => {
    expect(regionHealth({ ...base, skewed: true })).toEqual({ healthy: false, reason: "clock_skew" });
    expect(regionHealth({ ...base, skewed: true, override: false })).toEqual({ healthy: false, reason: "admin" });
    expect(regionHealth({ ...base, skewed: true, bootstrapping: true })).toEqual({
      healthy: false,
      reason: "bootstrapping",
    });
    // Back in line: healthy again on the next round's evidence.
    expect(regionHealth({ ...base, previous: { healthy: false, reason: "clock_skew" } })).toEqual({
      healthy: true,
      reason: null,
    });
  });

  it("stays healthy when too busy to answer the control object but still heartbeating", () => {
    expect(regionHealth({ ...base, answered: false })).toEqual({ healthy: true, reason: null });
  });

  it("is silent when no peer heard it within the bound, and unreachable if it also does not answer", () => {
    const quiet = { ...base, heardMs: 7_000 };
    expect(regionHealth({ ...quiet, heardMs: 8_000 })).toEqual({ healthy: true, reason: null });
    expect(regionHealth(quiet)).toEqual({ healthy: false, reason: "silent" });
    expect(regionHealth({ ...quiet, answered: false })).toEqual({ healthy: false, reason: "unreachable" });
  });

  it("changes nothing when no peer reported this round: the control object may be the one cut off", () => {
    const cutOff = { ...base, heardMs: 0, answered: false, fresh: false };
    expect(regionHealth(cutOff)).toEqual({ healthy: true, reason: null });
    expect(regionHealth({ ...cutOff, previous: { healthy: false, reason: "silent" } })).toEqual({
      healthy: false,
      reason: "silent",
    });
  });

  it("gives heartbeats time to start after a start or a return to service", () => {
    expect(regionHealth({ ...base, heardMs: 0, graceUntilMs: 12_000 })).toEqual({ healthy: true, reason: null });
    expect(regionHealth({ ...base, heardMs: 0, graceUntilMs: 10_000 })).toEqual({ healthy: false, reason: "silent" });
  });

  it("counts majorities", () => {
    expect([1, 2, 3, 4, 5, 9].map(majority)).toEqual([1, 2, 2, 3, 3, 5]);
  });
});

describe("clock offsets", () => {
  const T = 1_800_000_000_000;

  it("measure each region from the median of every reading, the caller's included", () => {
    const readings = new Map([
      ["wnam", T + 10],
      ["enam", T],
      ["weur", T - 20],
      ["apac", T + 90_000],
    ] as const);
    expect(Object.fromEntries(clockOffsets(readings, T + 5))).toEqual({
      wnam: 5,
      enam: -5,
      weur: -25,
      apac: 89_995,
    });
    expect([...skewedRegions(readings, T + 5, 60_000)]).toEqual(["apac"]);
    // A clock behind strays as much as one ahead.
    expect([...skewedRegions(new Map([...readings, ["apac", T - 61_000]]), T, 60_000)]).toEqual(["apac"]);
  });

  it("let a third clock judge two that disagree, and find none when all agree", () => {
    expect([
      ...skewedRegions(
        new Map([
          ["wnam", T + 120_000],
          ["enam", T],
        ]),
        T,
        60_000,
      ),
    ]).toEqual(["wnam"]);
    expect(
      skewedRegions(
        new Map([
          ["wnam", T + 59_000],
          ["enam", T],
        ]),
        T,
        60_000,
      ).size,
    ).toBe(0);
    expect(skewedRegions(new Map(), T, 60_000).size).toBe(0);
  });
});
