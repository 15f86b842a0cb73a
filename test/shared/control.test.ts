// The control object's decisions and rounds, over in-memory storage and hand-driven ports:
// health changes only on evidence (never because the control object itself is cut off), the
// successor comes from fresh statuses, a new primary recovers only from a quorum that recorded
// its epoch and serves only once a majority applied its re-log, and an operator's change that
// some region did not record is reported as such.
import { describe, expect, it } from "vitest";
import { type Result, ok } from "../../shared/errors.ts";
import { type RegionId } from "../../shared/regions.ts";
import { type ClusterView } from "../../shared/store/cluster.ts";
import { type PeerLag, type RecoveryProgress, type ReplicaStatus } from "../../shared/store/contract.ts";
import { ControlMachine, type Statuses } from "../../shared/store/control-machine.ts";
import { ControlNode } from "../../shared/store/control-node.ts";
import { type Timer } from "../../shared/store/ports.ts";
import { MemoryControlStorage } from "../sim/memory-control.ts";

const REGIONS: RegionId[] = ["wnam", "enam", "weur", "apac"];
const START = 1_800_000_000_000;
const SILENCE = 3000;

function control(storage = new MemoryControlStorage()): ControlMachine {
  return new ControlMachine(
    storage,
    { regions: REGIONS, primaryPrefixes: [{ prefix: "strong/", region: "enam", failover: true }], silenceMs: SILENCE },
    START,
  );
}

/** A status in which the reporting region heard each peer `silentMs` ago and applied `applied[peer]` of its writes. */
function status(
  region: RegionId,
  silentMs: Partial<Record<RegionId, number>>,
  applied: Partial<Record<RegionId, number>> = {},
): ReplicaStatus {
  const lag: Partial<Record<RegionId, PeerLag>> = {};
  for (const peer of REGIONS.filter((r) => r !== region))
    lag[peer] = { entries: 0, ms: 0, heardMs: 0, silentMs: silentMs[peer] ?? 100, appliedSeq: applied[peer] ?? 0 };
  return {
    region,
    seq: 0,
    clock: "",
    nowMs: 0,
    takenOut: false,
    bootstrapping: false,
    incarnation: "1",
    outboxPending: 0,
    deadLetters: 0,
    keys: { live: 0, tombstones: 0 },
    lag,
    delays: {},
    metrics: [],
  };
}

function all(make: (region: RegionId) => ReplicaStatus | null): Statuses {
  return new Map(REGIONS.map((r) => [r, make(r)]));
}

describe("health", () => {
  it("declares no region dead when the control object reaches none of them", () => {
    const m = control();
    const later = START + 60_000;
    // Every status call timed out: the control object may be the one cut off.
    const view = m.compose(
      later,
      all(() => null),
    );
    for (const region of REGIONS) expect(view.health[region]).toEqual({ healthy: true, reason: null });
  });

  it("marks a region silent on its peers' word, whatever their clocks say", () => {
    const m = control();
    const later = START + 60_000;
    // Peers report apac silent for 10 s, by their own clocks; the others heard recently.
    const view = m.compose(
      later,
      all((r) => (r === "apac" ? null : status(r, { apac: 10_000 }))),
    );
    expect(view.health.apac).toEqual({ healthy: false, reason: "unreachable" });
    expect(view.health.wnam).toEqual({ healthy: true, reason: null });
    // Then nobody answers: the verdict stands, unchanged, without fresh evidence.
    expect(
      m.compose(
        later + 1000,
        all(() => null),
      ).health.apac,
    ).toEqual({ healthy: false, reason: "unreachable" });
  });
});

describe("clock skew", () => {
  it("marks a region whose clock strays beyond the HLC bound, and clears it once the clocks agree", () => {
    const m = control();
    const later = START + 60_000;
    const at = (apacMs: number) => all((r) => ({ ...status(r, {}), nowMs: r === "apac" ? apacMs : later }));
    expect(m.compose(later, at(later + 90_000)).health.apac).toEqual({ healthy: false, reason: "clock_skew" });
    expect(m.compose(later, at(later + 90_000)).health.wnam).toEqual({ healthy: true, reason: null });
    // No round (nobody answered): the verdict stands.
    expect(
      m.compose(
        later + 1000,
        all(() => null),
      ).health.apac,
    ).toEqual({ healthy: false, reason: "clock_skew" });
    // Within the bound again.
    expect(m.compose(later, at(later + 1_000)).health.apac).toEqual({ healthy: true, reason: null });
  });
});

describe("failover decisions", () => {
  it("chooses the successor from this round's statuses only", () => {
    const m = control();
    m.setOverride("enam", false, START + 10_000);
    m.compose(START + 10_000, undefined);
    // apac has applied the most of enam's stream, but did not answer this round.
    const statuses = all((r) => (r === "apac" || r === "enam" ? null : status(r, {}, { enam: r === "weur" ? 7 : 5 })));
    expect(m.successor("enam", statuses)).toBe("weur");
    expect(
      m.successor(
        "enam",
        all(() => null),
      ),
    ).toBeUndefined();
  });

  it("needs n - majority + 1 healthy regions that recorded the new epoch, the new primary among them", () => {
    const m = control();
    m.setOverride("enam", false, START + 10_000);
    m.compose(START + 10_000, undefined);
    m.beginFailover("strong/", "weur", START + 10_000);
    // n = 4, majority 3: two readable regions (the new primary and one donor) are enough.
    expect(m.donors("strong/", new Set<RegionId>(["weur", "apac"]))).toEqual(["apac"]);
    expect(m.donors("strong/", new Set<RegionId>(["weur"]))).toBeUndefined();
    // The region taken out recorded it, but cannot be read: it does not count.
    expect(m.donors("strong/", new Set<RegionId>(["weur", "enam"]))).toBeUndefined();
    expect(m.donors("strong/", new Set<RegionId>(["apac", "wnam"]))).toBeUndefined();
  });

  it("serves a new primary only once a majority has applied its re-log", () => {
    const m = control();
    m.setOverride("enam", false, START + 10_000);
    m.compose(START + 10_000, undefined);
    m.beginFailover("strong/", "weur", START + 10_000);
    m.recovered("strong/", 2, 40, START + 11_000);
    expect(
      m.readyIfReplicated(
        "strong/",
        all((r) => status(r, {}, { weur: r === "wnam" ? 40 : 39 })),
        START + 12_000,
      ),
    ).toBe(false);
    expect(m.view.primaries["strong/"]?.ready).toBe(false);
    expect(
      m.readyIfReplicated(
        "strong/",
        all((r) => status(r, {}, { weur: r === "apac" ? 39 : 40 })),
        START + 13_000,
      ),
    ).toBe(true);
    expect(m.view.primaries["strong/"]).toMatchObject({ region: "weur", epoch: 2, ready: true, recoveredSeq: 40 });
    // The next failover keeps nothing older than the epoch that served.
    expect(m.floorEpoch("strong/")).toBe(2);
  });
});

describe("rounds", () => {
  const never: Timer = { done: new Promise(() => undefined), cancel: () => undefined };

  function node(
    record: (region: RegionId, view: ClusterView) => boolean,
    recover = async (): Promise<Result<RecoveryProgress>> => ok({ done: true, merged: 0, recoveredSeq: 0 }),
  ) {
    let now = START;
    const calls: string[] = [];
    const n = new ControlNode(control(), {
      now: () => now,
      timer: () => never,
      replica: (region) => ({
        status: async () => status(region, {}),
        applyView: async (view) => {
          calls.push(`view ${region}`);
          if (!record(region, view)) throw new Error(`${region} unreachable`);
          return true;
        },
        recoverPrefix: async (...args) => {
          calls.push(`recover ${region} ${args[2].join(",")}`);
          return recover();
        },
      }),
      warn: () => undefined,
    });
    return { n, calls, advance: (ms: number) => (now += ms) };
  }

  it("reports the healthy regions that did not record an operator's change", async () => {
    const { n } = node((region) => region !== "apac");
    const change = await n.setHealth("weur", false);
    expect(change.pending).toEqual(["apac"]);
    expect(change.view.health.weur).toEqual({ healthy: false, reason: "admin" });
  });

  it("does not start recovery until enough regions recorded the new epoch", async () => {
    let reachable = false;
    const { n, calls, advance } = node(
      (region, view) => reachable || region === "weur" || (view.primaries["strong/"]?.epoch ?? 1) === 1,
    );
    advance(10_000);
    await n.setHealth("enam", false);
    expect(n.machine.view.primaries["strong/"]).toMatchObject({ epoch: 2, ready: false });
    expect(calls.filter((c) => c.startsWith("recover"))).toEqual([]);
    reachable = true;
    await n.tick();
    expect(calls.filter((c) => c.startsWith("recover")).length).toBe(1);
  });
});
