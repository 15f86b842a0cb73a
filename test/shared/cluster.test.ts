// Region health: operator overrides, heartbeat silence, busy-but-alive replicas, and no change
// without evidence.
import { describe, expect, it } from "vitest";
import { type HealthEvidence, majority, regionHealth } from "../../shared/store/cluster.ts";

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
