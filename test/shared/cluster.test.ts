// Region health: operator overrides, heartbeat silence, and busy-but-alive replicas.
import { describe, expect, it } from "vitest";
import { type HealthEvidence, majority, regionHealth } from "../../shared/store/cluster.ts";

const base: HealthEvidence = {
  override: undefined,
  answered: true,
  heardMs: 10_000,
  graceUntilMs: 0,
  nowMs: 11_000,
  silenceMs: 3_000,
  hasPeers: true,
};

describe("region health", () => {
  it("is healthy when heard from recently", () => {
    expect(regionHealth(base)).toEqual({ healthy: true, reason: null });
  });

  it("is taken out by an operator whatever the evidence", () => {
    expect(regionHealth({ ...base, override: false })).toEqual({ healthy: false, reason: "admin" });
    expect(regionHealth({ ...base, override: true })).toEqual({ healthy: true, reason: null });
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

  it("gives heartbeats time to start after a start or a return to service", () => {
    expect(regionHealth({ ...base, heardMs: 0, graceUntilMs: 12_000 })).toEqual({ healthy: true, reason: null });
    expect(regionHealth({ ...base, heardMs: 0, graceUntilMs: 10_000 })).toEqual({ healthy: false, reason: "silent" });
  });

  it("judges a lone region by whether it answers", () => {
    expect(regionHealth({ ...base, hasPeers: false, heardMs: 0 })).toEqual({ healthy: true, reason: null });
    expect(regionHealth({ ...base, hasPeers: false, answered: false })).toEqual({
      healthy: false,
      reason: "unreachable",
    });
  });

  it("counts majorities", () => {
    expect([1, 2, 3, 4, 5, 9].map(majority)).toEqual([1, 2, 2, 3, 3, 5]);
  });
});
