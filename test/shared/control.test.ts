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
import { PRIMARY_LEASE_MS } from "../../shared/store/primaries.ts";
import { type Timer } from "../../shared/store/ports.ts";
import { MemoryControlStorage } from "../sim/memory-control.ts";
import { Scheduler } from "../sim/scheduler.ts";

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

/** One round's statuses, one shard per region. */
function all(make: (region: RegionId) => ReplicaStatus | null): Statuses {
  return new Map(REGIONS.map((r) => [r, [make(r)]]));
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

describe("primary leases", () => {
  it("grants a lease only to the ready, healthy primary of the epoch asked about", () => {
    const m = control();
    expect(m.confirmPrimary("strong/", "enam", 1, START + 1000)).toBe(PRIMARY_LEASE_MS);
    expect(m.confirmPrimary("strong/", "weur", 1, START + 1000)).toBe(0);
    expect(m.confirmPrimary("strong/", "enam", 2, START + 1000)).toBe(0);
    m.setOverride("enam", false, START + 1500);
    m.compose(START + 1500, undefined);
    expect(m.confirmPrimary("strong/", "enam", 1, START + 1500)).toBe(0);
  });

  it("fails a prefix over only once the last lease it granted has run out", () => {
    const m = control();
    const granted = START + 10_000;
    expect(m.confirmPrimary("strong/", "enam", 1, granted)).toBeGreaterThan(0);
    m.setOverride("enam", false, granted + 1);
    m.compose(granted + 1, undefined);
    // The old primary may serve on its lease until then: no successor may start.
    expect(m.needsFailover(granted + PRIMARY_LEASE_MS - 1)).toEqual([]);
    m.beginFailover("strong/", "weur", granted + PRIMARY_LEASE_MS - 1);
    expect(m.view.primaries["strong/"]).toMatchObject({ region: "enam", epoch: 1 });
    expect(m.needsFailover(granted + PRIMARY_LEASE_MS)).toEqual(["strong/"]);
    m.beginFailover("strong/", "weur", granted + PRIMARY_LEASE_MS);
    expect(m.view.primaries["strong/"]).toMatchObject({ region: "weur", epoch: 2, ready: false });
    // The deposed primary is refused a new lease.
    expect(m.confirmPrimary("strong/", "enam", 1, granted + PRIMARY_LEASE_MS)).toBe(0);
  });

  it("after a start, waits a whole lease: one granted before it may still run", () => {
    const m = control();
    m.setOverride("enam", false, START);
    m.compose(START, undefined);
    expect(m.needsFailover(START + PRIMARY_LEASE_MS - 1)).toEqual([]);
    expect(m.needsFailover(START + PRIMARY_LEASE_MS)).toEqual(["strong/"]);
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
    m.recovered("strong/", 2, [40], START + 11_000);
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
    expect(m.view.primaries["strong/"]).toMatchObject({ region: "weur", epoch: 2, ready: true, recoveredSeqs: [40] });
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
        pulse: async () => status(region, {}),
        applyView: async (view) => {
          calls.push(`view ${region}`);
          if (!record(region, view)) throw new Error(`${region} unreachable`);
          return true;
        },
        recoverPrefix: async (...args) => {
          calls.push(`recover ${region} ${args[2].join(",")}`);
          return recover();
        },
        handOver: async () => ok({ done: true, moved: 0 }),
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

/**
 * A control node on the simulator's virtual clock, with replicas that answer (or, for regions
 * `silent` names, do not), and that record every view and recover at once.
 */
function movingNode(silent: (region: RegionId) => boolean = () => false) {
  const scheduler = new Scheduler(START);
  const n = new ControlNode(control(), {
    now: () => scheduler.now,
    timer: (ms) => scheduler.timer(ms),
    replica: (region) => ({
      pulse: async () => {
        if (silent(region)) throw new Error(`${region} does not answer`);
        return status(region, {});
      },
      applyView: async () => true,
      recoverPrefix: async () => ok({ done: true, merged: 0, recoveredSeq: 0 }),
      handOver: async () => ok({ done: true, moved: 0 }),
    }),
    warn: () => undefined,
  });
  const advance = (ms: number) => scheduler.run(scheduler.now + ms);
  /** Runs `call` to its end on virtual time. */
  async function settle<T>(call: Promise<T>): Promise<T> {
    let out: { value: T } | undefined;
    void call.then((value) => (out = { value }));
    await scheduler.run(scheduler.now + 120_000, () => out !== undefined);
    if (out === undefined) throw new Error("the call did not end within two minutes of virtual time");
    return out.value;
  }
  return { n, advance, settle, now: () => scheduler.now };
}

describe("moving a primary (failback)", () => {
  it("refuses an unknown prefix or region, an unhealthy target, and a prefix still recovering", () => {
    const m = control();
    expect(m.requestHandover("nope/", "weur")).toMatchObject({ ok: false, error: { code: "not_found" } });
    expect(m.requestHandover("strong/", "sam")).toMatchObject({ ok: false, error: { code: "unknown_region" } });
    m.setOverride("weur", false, START);
    m.compose(START, undefined);
    expect(m.requestHandover("strong/", "weur")).toMatchObject({ ok: false, error: { code: "region_unavailable" } });
    m.setOverride("enam", false, START + PRIMARY_LEASE_MS);
    m.compose(START + PRIMARY_LEASE_MS, undefined);
    m.beginFailover("strong/", "apac", START + PRIMARY_LEASE_MS);
    expect(m.requestHandover("strong/", "wnam")).toMatchObject({ ok: false, error: { code: "primary_unavailable" } });
    // Nothing was set in motion by a refusal.
    expect(m.handoversUnderWay()).toEqual([]);
  });

  it("stops renewing the old primary's lease, and promotes the target only once the lease ran out", async () => {
    const { n, advance, now } = movingNode();
    await advance(10_000);
    const m = n.machine;
    expect(m.confirmPrimary("strong/", "enam", 1, now())).toBe(PRIMARY_LEASE_MS);
    const granted = now();
    expect(m.requestHandover("strong/", "weur")).toMatchObject({ ok: true, value: { region: "enam", epoch: 1 } });
    // The old primary's lease is not renewed; the one it holds still runs.
    expect(m.confirmPrimary("strong/", "enam", 1, now())).toBe(0);
    await advance(PRIMARY_LEASE_MS - 1);
    await n.tick();
    expect(m.view.primaries["strong/"]).toMatchObject({ region: "enam", epoch: 1 });
    await advance(granted + PRIMARY_LEASE_MS - now());
    await n.tick();
    expect(m.view.primaries["strong/"]).toMatchObject({ region: "weur", epoch: 2 });
    // Recovered and applied by a majority: the new primary serves, and the old one is fenced.
    await n.tick();
    expect(m.view.primaries["strong/"]).toMatchObject({ region: "weur", epoch: 2, ready: true });
    expect(m.confirmPrimary("strong/", "weur", 2, now())).toBe(PRIMARY_LEASE_MS);
    expect(m.confirmPrimary("strong/", "enam", 1, now())).toBe(0);
    expect(m.handoversUnderWay()).toEqual([]);
  });

  it("answers once the new primary serves; moving to the primary itself changes nothing", async () => {
    const { n, advance, settle } = movingNode();
    await advance(10_000);
    n.machine.confirmPrimary("strong/", "enam", 1, START + 10_000);
    const moved = await settle(n.movePrimary("strong/", "apac", 10_000));
    expect(moved).toMatchObject({
      ok: true,
      value: { from: "enam", primary: { region: "apac", epoch: 2, ready: true } },
    });
    // The same recovery as a failover: a failback is just another move.
    const back = await settle(n.movePrimary("strong/", "enam", 10_000));
    expect(back).toMatchObject({
      ok: true,
      value: { from: "apac", primary: { region: "enam", epoch: 3, ready: true } },
    });
    expect(await settle(n.movePrimary("strong/", "enam", 10_000))).toMatchObject({
      ok: true,
      value: { from: "enam", primary: { region: "enam", epoch: 3 } },
    });
  });

  it("calls the move off when the target does not answer in time: the old primary serves on", async () => {
    const { n, advance, settle, now } = movingNode((region) => region === "weur");
    await advance(10_000);
    const moved = await settle(n.movePrimary("strong/", "weur", 5000));
    expect(moved).toMatchObject({ ok: false, error: { code: "region_unavailable" } });
    expect(n.machine.view.primaries["strong/"]).toMatchObject({ region: "enam", epoch: 1 });
    expect(n.machine.confirmPrimary("strong/", "enam", 1, now())).toBe(PRIMARY_LEASE_MS);
  });
});

/** A control machine over two shards per region. */
function sharded(): ControlMachine {
  return new ControlMachine(
    new MemoryControlStorage(),
    {
      regions: REGIONS,
      primaryPrefixes: [{ prefix: "strong/", region: "enam", failover: true }],
      silenceMs: SILENCE,
      shards: 2,
    },
    START,
  );
}

/** One round's statuses with two shards per region. */
function shards(make: (region: RegionId, shard: number) => ReplicaStatus | null): Statuses {
  return new Map(REGIONS.map((r) => [r, [make(r, 0), make(r, 1)]]));
}

describe("with shards", () => {
  it("marks a region silent when its peers have not heard one of its shards", () => {
    const m = sharded();
    // Shard 0 of every peer hears apac; shard 1 of every peer has not for 10 s.
    const view = m.compose(
      START + 60_000,
      shards((r, shard) => status(r, { apac: shard === 1 ? 10_000 : 100 })),
    );
    expect(view.health.apac).toEqual({ healthy: false, reason: "silent" });
    expect(view.health.wnam).toEqual({ healthy: true, reason: null });
  });

  it("counts a region as answering only when every shard did, and bootstrapping when any shard is", () => {
    const m = sharded();
    const view = m.compose(
      START + 60_000,
      shards((r, shard) =>
        r === "weur" && shard === 1
          ? null
          : { ...status(r, { weur: 10_000 }), bootstrapping: r === "wnam" && shard === 1 },
      ),
    );
    expect(view.health.weur).toEqual({ healthy: false, reason: "unreachable" });
    expect(view.health.wnam).toEqual({ healthy: false, reason: "bootstrapping" });
  });

  it("chooses the successor by its applied writes summed over shards, among regions whose every shard answered", () => {
    const m = sharded();
    m.setOverride("enam", false, START + 10_000);
    m.compose(START + 10_000, undefined);
    const applied = { wnam: [10, 10], weur: [15, 0], apac: [0, 18] } as const;
    const round = shards((r, shard) =>
      r === "enam" ? null : status(r, {}, { enam: applied[r as "wnam" | "weur" | "apac"][shard] }),
    );
    expect(m.successor("enam", round)).toBe("wnam");
    // wnam's shard 1 did not answer: its sum is unknown, so it is not chosen.
    const partial = new Map(round);
    partial.set("wnam", [round.get("wnam")?.[0] ?? null, null]);
    expect(m.successor("enam", partial)).toBe("apac");
  });

  it("serves a new primary only once a majority has applied its re-log in every shard", () => {
    const m = sharded();
    m.setOverride("enam", false, START + 10_000);
    m.compose(START + 10_000, undefined);
    m.beginFailover("strong/", "weur", START + 10_000);
    m.recovered("strong/", 2, [40, 7], START + 11_000);
    // Every region has shard 0's re-log; only apac has shard 1's: not a majority.
    const first = shards((r, shard) => status(r, {}, { weur: shard === 0 ? 40 : r === "apac" ? 7 : 6 }));
    expect(m.readyIfReplicated("strong/", first, START + 12_000)).toBe(false);
    const second = shards((r, shard) => status(r, {}, { weur: shard === 0 ? 40 : r === "wnam" ? 6 : 7 }));
    expect(m.readyIfReplicated("strong/", second, START + 13_000)).toBe(true);
    expect(m.view.primaries["strong/"]).toMatchObject({ region: "weur", ready: true, recoveredSeqs: [40, 7] });
  });

  it("recovers every shard of the new primary, and records each shard's re-log once all are done", async () => {
    const never: Timer = { done: new Promise(() => undefined), cancel: () => undefined };
    const calls: string[] = [];
    let shard1Done = false;
    let now = START;
    const n = new ControlNode(sharded(), {
      now: () => now,
      timer: () => never,
      replica: (region, shard) => ({
        pulse: async () => status(region, {}),
        applyView: async () => true,
        recoverPrefix: async () => {
          calls.push(`recover ${region}:${shard}`);
          return ok({ done: shard === 0 || shard1Done, merged: 0, recoveredSeq: shard === 0 ? 11 : 22 });
        },
        handOver: async () => ok({ done: true, moved: 0 }),
      }),
      warn: () => undefined,
    });
    now += 10_000;
    await n.setHealth("enam", false);
    const successor = n.machine.view.primaries["strong/"]?.region;
    expect(calls.sort()).toEqual([`recover ${successor}:0`, `recover ${successor}:1`]);
    expect(n.machine.view.primaries["strong/"]).toMatchObject({ ready: false, recoveredSeqs: [] });
    shard1Done = true;
    await n.tick();
    n.machine.compose(now, undefined);
    // Recorded per shard; ready only once a majority applied both (no status here applied any).
    expect(n.machine.view.primaries["strong/"]).toMatchObject({ ready: false, recoveredSeqs: [11, 22] });
  });
});

/** A control machine whose storage says 2 shards, configured with 4. */
function growing(): ControlMachine {
  const storage = new MemoryControlStorage();
  storage.layout.put({ shards: 2, from: null, routed: true });
  return new ControlMachine(storage, { regions: REGIONS, primaryPrefixes: [], silenceMs: SILENCE, shards: 4 }, START);
}

/** A control node over {@link growing}, with hand-driven replicas. */
function mover(fenceSeq: (region: RegionId, shard: number) => number, appliedSeq: () => number) {
  const machine = growing();
  const never: Timer = { done: new Promise(() => undefined), cancel: () => undefined };
  const calls: string[] = [];
  let unrecorded = new Set<string>();
  let handedOver = false;
  const node = new ControlNode(machine, {
    now: () => START + 1000,
    timer: () => never,
    replica: (region, shard) => ({
      pulse: async () => {
        const s = status(region, {});
        const lag = Object.fromEntries(
          Object.entries(s.lag).map(([peer, l]) => [peer, { ...l, appliedSeq: appliedSeq() }]),
        );
        const id = machine.layout.from === null ? null : `${machine.layout.from}>${machine.layout.shards}`;
        return {
          ...s,
          lag,
          move: id === null ? null : { id, fenceSeq: fenceSeq(region, shard), handedOver, after: null },
        };
      },
      applyView: async (view) => {
        if (unrecorded.has(`${region}:${shard}`)) throw new Error("unreachable");
        calls.push(`view ${region}:${shard} ${JSON.stringify(view.layout)}`);
        return true;
      },
      recoverPrefix: async () => ok({ done: true, merged: 0, recoveredSeq: 0 }),
      handOver: async (id) => {
        calls.push(`hand over ${region}:${shard} ${id}`);
        return ok({ done: handedOver, moved: 0 });
      },
    }),
    warn: () => undefined,
  });
  return {
    node,
    calls,
    unreachable: (names: string[]) => (unrecorded = new Set(names)),
    finishHandOver: () => (handedOver = true),
  };
}

describe("moving keys between shards", () => {
  it("announces a move only once every replica answered, none still cleaning up, every primary ready", () => {
    const machine = growing();
    // weur's shard 1 did not answer: it may hold copies of an earlier move not yet dropped.
    expect(
      machine.beginMove(
        START,
        shards((r, s) => (r === "weur" && s === 1 ? null : status(r, {}))),
      ),
    ).toBe(false);
    expect(
      machine.beginMove(
        START,
        shards((r, s) => ({ ...status(r, {}), cleaning: r === "apac" && s === 0 })),
      ),
    ).toBe(false);
    expect(machine.layout).toEqual({ shards: 2, from: null, routed: true });
    expect(
      machine.beginMove(
        START,
        shards((r) => status(r, {})),
      ),
    ).toBe(true);
    expect(machine.layout).toEqual({ shards: 4, from: 2, routed: false });
  });

  it("routes by the new count only once every replica of every shard recorded the announcement", async () => {
    const m = mover(
      () => 0,
      () => 0,
    );
    m.unreachable(["apac:3"]);
    await m.node.tick();
    expect(m.node.machine.view.layout).toEqual({ shards: 4, from: 2, routed: false });
    // The new shards were told too (and so created): every shard of the move, in every region.
    expect(m.calls.filter((c) => c.startsWith("view wnam:3"))).not.toEqual([]);
    m.unreachable([]);
    await m.node.tick();
    expect(m.node.machine.view.layout).toEqual({ shards: 4, from: 2, routed: true });
  });

  it("hands over only once every old shard's writes before the move reached every region, then settles at the new count", async () => {
    let applied = 9;
    const m = mover(
      () => 10,
      () => applied,
    );
    await m.node.tick();
    await m.node.tick();
    expect(m.node.machine.view.layout?.routed).toBe(true);
    // Peers applied 9 of the old shards' streams, fenced at 10: not yet.
    expect(m.calls.filter((c) => c.startsWith("hand over"))).toEqual([]);
    applied = 10;
    await m.node.tick();
    // Every region's old shards (0 and 1), none of the new ones.
    expect(m.calls.filter((c) => c.startsWith("hand over")).sort()).toEqual(
      REGIONS.flatMap((r) => [`hand over ${r}:0 2>4`, `hand over ${r}:1 2>4`]).sort(),
    );
    expect(m.node.machine.view.layout?.from).toBe(2);
    m.finishHandOver();
    await m.node.tick();
    expect(m.node.machine.view.layout).toEqual({ shards: 4, from: null, routed: true });
    // A later change of nothing moves nothing.
    expect(m.node.machine.beginMove(START + 5000, new Map())).toBe(false);
  });
});
