// Garbage collection of tombstones and of the conflict log (`shared/store/gc.ts`): the
// stability frontier and its two-step confirmation, the grace period, strong prefixes, the
// horizon that drops late copies of collected keys, conflict-log trimming, and a property over
// three replicas that collect while messages arrive late, twice and in any order: they converge,
// no collected key comes back, and no write is lost.
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { equalBytes } from "../../shared/bytes.ts";
import { formatHlc } from "../../shared/hlc.ts";
import { type RegionId } from "../../shared/regions.ts";
import { EMPTY_VV, type VersionVector, vvDescends, vvFrom, vvMerge } from "../../shared/version-vector.ts";
import { antiEntropyRound, localRows, mergeRows } from "../../shared/store/anti-entropy.ts";
import { applyEntries, entryStates } from "../../shared/store/apply.ts";
import { type PeerApi } from "../../shared/store/contract.ts";
import { type GcSettings, advance, frontier, gated, gcStep, ownReport, raiseHorizon } from "../../shared/store/gc.ts";
import {
  type KeyOp,
  type KeyState,
  decodeKeyState,
  keyIsLive,
  keyVv,
  mergeKeyState,
} from "../../shared/store/key-state.ts";
import { messagesFor } from "../../shared/store/outbox.ts";
import { type ReplicaPorts, type Timer } from "../../shared/store/ports.ts";
import { EMPTY_PROGRESS } from "../../shared/store/progress.ts";
import { ReplicaMachine } from "../../shared/store/replica-machine.ts";
import { ReplicaNode } from "../../shared/store/replica-node.ts";
import { type ConflictInput, type StoredKey } from "../../shared/store/storage.ts";
import {
  type EntriesMessage,
  type HeartbeatMessage,
  type ReplicationMessage,
  WIRE_VERSION,
} from "../../shared/store/wire.ts";
import { MemoryStorage } from "../sim/memory-storage.ts";
import { deferred } from "./fake-clock.ts";
import { del, peerOver, put } from "./support.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0x6c_0001;

const REGIONS: RegionId[] = ["wnam", "enam", "weur"];
const NOW = 1_800_000_000_000;
const STRONG = { prefix: "strong/", region: "wnam" as RegionId, failover: true };
/** Short enough that a run spans many grace periods. */
const GRACE_MS = 1000;
const GC: GcSettings = { tombstoneGraceMs: GRACE_MS, conflictRetentionMs: 60_000, conflictRowsMax: 1000 };

/** Timers that never fire: every flow here is driven by the test, not by time. */
const still: Timer = { done: new Promise(() => undefined), cancel: () => undefined };

function ok<T>(result: { ok: true; value: T } | { ok: false; error: { code: string; message: string } }): T {
  if (!result.ok) throw new Error(`${result.error.code}: ${result.error.message}`);
  return result.value;
}

function machineOf(region: RegionId, storage = new MemoryStorage()): ReplicaMachine {
  const machine = new ReplicaMachine(
    storage,
    { region, regions: REGIONS, primaryPrefixes: [STRONG], silenceMsMax: 3000 },
    NOW,
  );
  // A store created with these regions: nothing to probe or bootstrap.
  if (machine.phase === "probing") machine.identify(0, false);
  return machine;
}

/** A peer's report of itself, as its heartbeat would carry it. */
function report(machine: ReplicaMachine, region: RegionId, seq: number, applied: Record<string, number>): void {
  machine.storage.transaction(() =>
    machine.storage.peerReports.put(region, { seq, applied, heardMs: NOW, baseSeq: 0, priorSeq: 0 }),
  );
}

/** This replica's own applied watermark for `peer`. */
function appliedHere(machine: ReplicaMachine, peer: RegionId, seq: number): void {
  machine.storage.transaction(() => machine.storage.peerRecv.put(peer, { ...EMPTY_PROGRESS, appliedSeq: seq }));
}

/** wnam with a tombstone "k" (its writes 1 and 2) deleted at `atMs`. */
function withTombstone(key = "k", atMs = NOW, region: RegionId = "wnam"): ReplicaMachine {
  const machine = machineOf(region);
  ok(machine.write(key, put("v"), {}, undefined, atMs - 1));
  ok(machine.write(key, del, {}, undefined, atMs));
  return machine;
}

/** Reports from both peers that they applied everything wnam wrote, and wrote nothing. */
function everyoneApplied(machine: ReplicaMachine): void {
  report(machine, "enam", 0, { wnam: machine.seq, weur: 0 });
  report(machine, "weur", 0, { wnam: machine.seq, enam: 0 });
}

describe("the stability frontier", () => {
  it("is null until every peer has reported, then takes the lowest watermark per origin", () => {
    const machine = machineOf("wnam");
    for (let i = 0; i < 5; i += 1) ok(machine.write(`k${i}`, put("v"), {}, undefined, NOW));
    appliedHere(machine, "enam", 7);
    appliedHere(machine, "weur", 3);
    expect(frontier(machine)).toBeNull();
    report(machine, "enam", 7, { wnam: 4, weur: 2 });
    expect(frontier(machine)).toBeNull();
    report(machine, "weur", 3, { wnam: 5, enam: 6 });
    const f = frontier(machine);
    expect(f).not.toBeNull();
    // wnam: its own 5, applied 4 by enam and 5 by weur; enam: reported 7, applied 7 here, 6 at
    // weur; weur: reported 3, applied 3 here, 2 at enam.
    expect(f?.stable).toEqual(
      vvFrom([
        ["wnam", 4],
        ["enam", 6],
        ["weur", 2],
      ]),
    );
    expect(f?.writes).toEqual(
      vvFrom([
        ["wnam", 5],
        ["enam", 7],
        ["weur", 3],
      ]),
    );
  });

  it("counts its own report from its current sequence number and watermarks", () => {
    const machine = machineOf("enam");
    ok(machine.write("a", put("v"), {}, undefined, NOW));
    appliedHere(machine, "wnam", 2);
    expect(ownReport(machine)).toEqual({ seq: 1, applied: { wnam: 2, weur: 0 } });
  });
});

describe("advancing the collectable frontier", () => {
  it("confirms a candidate only once every region has applied its writes", () => {
    const machine = machineOf("wnam");
    for (let i = 0; i < 3; i += 1) ok(machine.write(`k${i}`, put("v"), {}, undefined, NOW));
    appliedHere(machine, "enam", 2);
    appliedHere(machine, "weur", 1);
    report(machine, "enam", 2, { wnam: 3, weur: 1 });
    report(machine, "weur", 1, { wnam: 3, enam: 2 });
    // The first snapshot becomes the candidate; nothing is collectable yet.
    expect(machine.storage.transaction(() => advance(machine))).toEqual(EMPTY_VV);
    expect(machine.gcHorizon).toEqual(EMPTY_VV);
    // New writes everywhere, and weur has not yet applied enam's second write.
    ok(machine.write("k9", put("v"), {}, undefined, NOW));
    report(machine, "enam", 5, { wnam: 4, weur: 1 });
    report(machine, "weur", 1, { wnam: 4, enam: 1 });
    expect(machine.storage.transaction(() => advance(machine))).toEqual(EMPTY_VV);
    expect(machine.gcStable).toEqual(EMPTY_VV);
    // Now it has: the candidate's stable part becomes collectable, its writes the horizon.
    report(machine, "weur", 1, { wnam: 4, enam: 2 });
    const stable = machine.storage.transaction(() => advance(machine));
    expect(stable).toEqual(
      vvFrom([
        ["wnam", 3],
        ["enam", 2],
        ["weur", 1],
      ]),
    );
    expect(machine.gcStable).toEqual(stable);
    expect(machine.gcHorizon).toEqual(
      vvFrom([
        ["wnam", 3],
        ["enam", 2],
        ["weur", 1],
      ]),
    );
  });

  it("confirms nothing while a peer has never reported", () => {
    const machine = withTombstone();
    report(machine, "enam", 0, { wnam: 2 });
    for (let i = 0; i < 3; i += 1) gcStep(machine, GC, NOW + 10 * GRACE_MS);
    expect(machine.gcStable).toEqual(EMPTY_VV);
    expect(machine.storage.kv.get("k")).not.toBeNull();
  });
});

describe("collecting expired values", () => {
  it("collects a stable value once its expiration is older than the grace period, like a tombstone", () => {
    const machine = machineOf("wnam");
    const expirationSeconds = Math.floor(NOW / 1000) + 60;
    const expiring: KeyOp = {
      type: "register",
      op: { kind: "put", value: new Uint8Array([1]), contentType: "text/plain", expirationSeconds },
    };
    ok(machine.write("e", expiring, {}, undefined, NOW));
    ok(machine.write("k", put("v"), {}, undefined, NOW));
    everyoneApplied(machine);
    const expiredMs = expirationSeconds * 1000;
    gcStep(machine, GC, NOW + 1);
    // Stable and expired, but not yet by the grace period: every region's clock may not be past it.
    expect(gcStep(machine, GC, expiredMs + GRACE_MS - 1)).toMatchObject({
      expiredCollected: 0,
      tombstonesCollected: 0,
    });
    expect(machine.storage.kv.get("e")).not.toBeNull();
    expect(gcStep(machine, GC, expiredMs + GRACE_MS)).toMatchObject({ expiredCollected: 1, tombstonesCollected: 0 });
    expect(machine.storage.kv.get("e")).toBeNull();
    // A value without an expiration stays.
    expect(machine.storage.kv.get("k")).not.toBeNull();
  });

  it("keeps an expired value no region has confirmed yet", () => {
    const machine = machineOf("wnam");
    const expirationSeconds = Math.floor(NOW / 1000) + 1;
    ok(
      machine.write(
        "e",
        { type: "register", op: { kind: "put", value: new Uint8Array([1]), contentType: "x", expirationSeconds } },
        {},
        undefined,
        NOW,
      ),
    );
    report(machine, "enam", 0, { wnam: 0, weur: 0 });
    report(machine, "weur", 0, { wnam: 0, enam: 0 });
    for (let i = 0; i < 3; i += 1) gcStep(machine, GC, NOW + 10 * GRACE_MS);
    expect(machine.storage.kv.get("e")).not.toBeNull();
  });
});

describe("collecting tombstones", () => {
  it("collects a stable tombstone once it is older than the grace period, not before", () => {
    const machine = withTombstone("k", NOW);
    everyoneApplied(machine);
    expect(gcStep(machine, GC, NOW + 1).tombstonesCollected).toBe(0);
    // Confirmed, but the delete is younger than the grace period.
    expect(gcStep(machine, GC, NOW + GRACE_MS - 1).tombstonesCollected).toBe(0);
    expect(machine.gcStable).toEqual(vvFrom([["wnam", 2]]));
    expect(machine.storage.kv.get("k")).not.toBeNull();
    expect(gcStep(machine, GC, NOW + GRACE_MS).tombstonesCollected).toBe(1);
    expect(machine.storage.kv.get("k")).toBeNull();
    expect(machine.storage.kv.counts()).toEqual({ live: 0, tombstones: 0 });
    // The Merkle tree forgets it too: an empty replica's root is all zeros.
    expect(machine.storage.merkle.root().every((b) => b === 0)).toBe(true);
  });

  it("moves the clock past what it collects: a later write orders after the delete, even if the wall clock steps back", () => {
    // enam deleted k; wnam took the tombstone in by a repair, which does not move its clock.
    const enam = withTombstone("k", NOW, "enam");
    const machine = machineOf("wnam");
    mergeRows(machine, "enam", localRows(enam, ["k"]), NOW);
    appliedHere(machine, "enam", enam.seq);
    report(machine, "enam", enam.seq, { wnam: 0, weur: 0 });
    report(machine, "weur", 0, { wnam: 0, enam: enam.seq });
    gcStep(machine, GC, NOW + GRACE_MS);
    expect(gcStep(machine, GC, NOW + GRACE_MS).tombstonesCollected).toBe(1);
    // wnam's wall clock steps back before the delete's time; the key is written again there.
    ok(machine.write("k", put("again"), {}, undefined, NOW - 5 * GRACE_MS));
    const again = decodeKeyState(machine.storage.kv.get("k")!.encoded);
    const deleted = decodeKeyState(enam.storage.kv.get("k")!.encoded);
    // It wins over the delete wherever the tombstone is still held.
    expect(keyIsLive(mergeKeyState(deleted, again).state)).toBe(true);
    expect(keyIsLive(mergeKeyState(again, deleted).state)).toBe(true);
  });

  it("keeps a tombstone whose writes some region has not applied", () => {
    const machine = withTombstone("k", NOW);
    report(machine, "enam", 0, { wnam: 2 });
    report(machine, "weur", 0, { wnam: 1 });
    for (let i = 0; i < 3; i += 1) gcStep(machine, GC, NOW + 10 * GRACE_MS);
    expect(machine.storage.kv.get("k")).not.toBeNull();
  });

  it("keeps live keys, however stable", () => {
    const machine = machineOf("wnam");
    ok(machine.write("k", put("v"), {}, undefined, NOW));
    everyoneApplied(machine);
    for (let i = 0; i < 3; i += 1) gcStep(machine, GC, NOW + 10 * GRACE_MS);
    expect(machine.gcStable).toEqual(vvFrom([["wnam", 1]]));
    expect(machine.storage.kv.get("k")).not.toBeNull();
  });

  it("keeps tombstones under a strong prefix", () => {
    const machine = machineOf("wnam");
    const scope = { prefix: "strong/", epoch: 1 };
    ok(machine.write("strong/k", put("v"), {}, scope, NOW - 1));
    ok(machine.write("strong/k", del, {}, scope, NOW));
    ok(machine.write("plain", put("v"), {}, undefined, NOW - 1));
    ok(machine.write("plain", del, {}, undefined, NOW));
    everyoneApplied(machine);
    let collected = 0;
    for (let i = 0; i < 3; i += 1) collected += gcStep(machine, GC, NOW + 10 * GRACE_MS).tombstonesCollected;
    expect(collected).toBe(1);
    expect(machine.storage.kv.get("plain")).toBeNull();
    expect(machine.storage.kv.get("strong/k")).not.toBeNull();
  });
});

/** A one-entry stream message from enam to wnam carrying `state` as enam's write `seq`. */
function streamCopy(seq: number, key: string, state: Uint8Array): EntriesMessage {
  return {
    v: WIRE_VERSION,
    kind: "entries",
    shard: 0,
    origin: "enam",
    target: "wnam",
    from: seq,
    to: seq,
    firstMs: NOW,
    entries: [{ seq, key, stamp: formatHlc({ wallMs: NOW, counter: 0, region: "enam" }), writtenMs: NOW, state }],
  };
}

/** A live register as enam wrote it (its write `seq`). */
function enamState(seq: number, key: string): Uint8Array {
  const enam = machineOf("enam");
  for (let i = 1; i < seq; i += 1) ok(enam.write(`other${i}`, put("x"), {}, undefined, NOW));
  ok(enam.write(key, put("late"), {}, undefined, NOW));
  return enam.storage.kv.get(key)!.encoded;
}

describe("the horizon", () => {
  it("is a pointwise bound: nothing outside it, and no empty vector, is gated", () => {
    const machine = machineOf("wnam");
    machine.storage.transaction(() =>
      raiseHorizon(
        machine,
        vvFrom([
          ["enam", 5],
          ["weur", 2],
        ]),
      ),
    );
    expect(gated(machine, vvFrom([["enam", 5]]))).toBe(true);
    expect(
      gated(
        machine,
        vvFrom([
          ["enam", 3],
          ["weur", 2],
        ]),
      ),
    ).toBe(true);
    expect(gated(machine, vvFrom([["enam", 6]]))).toBe(false);
    expect(
      gated(
        machine,
        vvFrom([
          ["enam", 1],
          ["wnam", 1],
        ]),
      ),
    ).toBe(false);
    expect(gated(machine, EMPTY_VV)).toBe(false);
    // A horizon only grows.
    machine.storage.transaction(() =>
      raiseHorizon(
        machine,
        vvFrom([
          ["enam", 2],
          ["wnam", 4],
        ]),
      ),
    );
    expect(machine.gcHorizon).toEqual(
      vvFrom([
        ["wnam", 4],
        ["enam", 5],
        ["weur", 2],
      ]),
    );
  });

  it("drops a stream copy within the horizon for a key not held, and counts it", () => {
    const machine = machineOf("wnam");
    machine.storage.transaction(() => raiseHorizon(machine, vvFrom([["enam", 3]])));
    const message = streamCopy(3, "gone", enamState(3, "gone"));
    ok(applyEntries(machine, message, ok(entryStates(machine, message, new Map())), NOW, true));
    expect(machine.storage.kv.get("gone")).toBeNull();
    expect(machine.storage.metrics.all()).toContainEqual({
      name: "gc_late_copies_dropped_total",
      peer: "enam",
      value: 1,
    });
    // The stream still moves on past it: it was a duplicate, not a gap.
    expect(machine.storage.peerRecv.get("enam").knownSeq).toBe(3);
  });

  it("takes a stream copy beyond the horizon", () => {
    const machine = machineOf("wnam");
    machine.storage.transaction(() => raiseHorizon(machine, vvFrom([["enam", 3]])));
    const message = streamCopy(4, "new", enamState(4, "new"));
    ok(applyEntries(machine, message, ok(entryStates(machine, message, new Map())), NOW, true));
    expect(machine.storage.kv.get("new")).not.toBeNull();
  });

  it("never touches a key the replica holds", () => {
    const machine = machineOf("wnam");
    ok(machine.write("held", put("mine"), {}, undefined, NOW - 5));
    machine.storage.transaction(() => raiseHorizon(machine, vvFrom([["enam", 3]])));
    const before = machine.storage.kv.get("held")!;
    const message = streamCopy(3, "held", enamState(3, "held"));
    ok(applyEntries(machine, message, ok(entryStates(machine, message, new Map())), NOW, true));
    const after = machine.storage.kv.get("held")!;
    // Merged as any copy is: enam's later write wins, and the key now carries enam's number.
    expect(equalBytes(after.encoded, before.encoded)).toBe(false);
    expect(after.seqs).toEqual(
      vvFrom([
        ["wnam", 1],
        ["enam", 3],
      ]),
    );
    expect(machine.storage.metrics.all().some((m) => m.name === "gc_late_copies_dropped_total")).toBe(false);
  });
});

/** A register conflict to record, at `detectedMs`. */
function conflict(i: number, detectedMs: number): ConflictInput {
  return {
    key: `c${i}`,
    kind: "register",
    rule: "hlc",
    detectedMs,
    winnerStamp: `w${i}`,
    loserStamp: `l${i}`,
    winner: new Uint8Array([1]),
    loser: new Uint8Array([2]),
  };
}

describe("trimming the conflict log", () => {
  it("keeps at most conflictRowsMax rows, dropping the oldest first", () => {
    const machine = machineOf("wnam");
    machine.storage.transaction(() => {
      for (let i = 0; i < 30; i += 1) machine.storage.conflicts.insert(conflict(i, NOW + i));
    });
    const settings = { ...GC, conflictRowsMax: 12 };
    expect(gcStep(machine, settings, NOW + 30).conflictsDropped).toBe(18);
    const kept = machine.storage.conflicts.page(0, 100);
    expect(kept.map((r) => r.key)).toEqual(Array.from({ length: 12 }, (_, i) => `c${18 + i}`));
    expect(gcStep(machine, settings, NOW + 30).conflictsDropped).toBe(0);
  });

  it("drops conflicts older than the retention, oldest first, and keeps the rest", () => {
    const machine = machineOf("wnam");
    machine.storage.transaction(() => {
      for (let i = 0; i < 10; i += 1) machine.storage.conflicts.insert(conflict(i, NOW + i * 1000));
    });
    // Retention 60 s at NOW + 64.5 s: the five detected before NOW + 4.5 s are too old.
    expect(gcStep(machine, GC, NOW + 64_500).conflictsDropped).toBe(5);
    expect(machine.storage.conflicts.page(0, 100).map((r) => r.key)).toEqual(["c5", "c6", "c7", "c8", "c9"]);
    expect(machine.storage.metrics.all()).toContainEqual({ name: "conflicts_dropped_total", peer: "wnam", value: 5 });
  });

  it("applies both bounds together", () => {
    const machine = machineOf("wnam");
    machine.storage.transaction(() => {
      for (let i = 0; i < 20; i += 1) machine.storage.conflicts.insert(conflict(i, NOW + i * 1000));
    });
    // Eight past retention; of the twelve left, the bound of ten drops two more.
    gcStep(machine, { ...GC, conflictRowsMax: 10 }, NOW + 67_500);
    const kept = machine.storage.conflicts.page(0, 100).map((r) => r.key);
    expect(kept).toEqual(Array.from({ length: 10 }, (_, i) => `c${10 + i}`));
  });
});

// ---------------------------------------------------------------------------------------------
// The property: three replicas, a random program of writes, deliveries, heartbeats, collection
// steps and anti-entropy rounds. Every local write becomes one stream message per peer, kept in
// a bag: the program delivers any of them at any time, late, out of order and more than once.
// Heartbeats go straight to their target, as `ReplicaNode.tick` sends them over RPC. Clocks
// are skewed by less than half the grace period. An anti-entropy round runs to its end within
// one step; a round that other events interleave is the test after the property.
//
// Checked at the end (after every message arrived, some twice more after collection, and
// anti-entropy ran until the roots agreed) against the join of every state any write produced:
// one root and one state per key everywhere, no deleted key live again, no live key lost or
// different. Checked at each collection: every replica has merged the tombstone and every write
// to the key that does not descend from it (the stability `gc.ts` claims), which catches a
// collection that a later repair would hide.

/** The keys the program writes: few, so writes, deletes and collection hit the same keys. */
const KEYS = ["a", "b", "c"] as const;

type Step =
  | { readonly kind: "write"; readonly at: number; readonly key: number; readonly live: boolean }
  | { readonly kind: "deliver"; readonly pick: number; readonly fresh: boolean }
  | { readonly kind: "heartbeat"; readonly from: number; readonly offset: number }
  | { readonly kind: "gc"; readonly at: number }
  | { readonly kind: "ae"; readonly at: number; readonly offset: number }
  | { readonly kind: "wait"; readonly ms: number };

const replicaArb = fc.nat({ max: REGIONS.length - 1 });
const offsetArb = fc.integer({ min: 1, max: REGIONS.length - 1 });

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("write" as const),
      at: replicaArb,
      key: fc.nat({ max: KEYS.length - 1 }),
      live: fc.boolean(),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({ kind: fc.constant("deliver" as const), pick: fc.nat(), fresh: fc.boolean() }),
  },
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant("heartbeat" as const), from: replicaArb, offset: offsetArb }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("gc" as const), at: replicaArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("ae" as const), at: replicaArb, offset: offsetArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("wait" as const), ms: fc.integer({ min: 0, max: 1500 }) }) },
);

/** A captured replication message and whether it was delivered at least once. */
interface Letter {
  readonly message: EntriesMessage;
  delivered: boolean;
}

/** Three replicas wired to each other in memory; nothing moves unless the program says so. */
class Trio {
  nowMs = NOW;
  readonly nodes: ReplicaNode[];
  readonly storages: MemoryStorage[];
  /** Every entries message the replicas produced, in the order they produced them. */
  readonly bag: Letter[] = [];
  /** Every state a local write produced, per key: the ground truth is their join. */
  readonly produced = new Map<string, KeyState[]>();
  /** Per replica and key, the join of every state the replica ever held for the key. */
  readonly merged: Array<Map<string, VersionVector>>;
  /** Stability violations seen at collection time. */
  readonly violations: string[] = [];
  collected = 0;

  private readonly skewsMs: readonly number[];

  constructor(skewsMs: readonly number[]) {
    this.skewsMs = skewsMs;
    this.storages = REGIONS.map(() => new MemoryStorage());
    this.merged = REGIONS.map(() => new Map());
    this.nodes = REGIONS.map((region, i) => {
      const storage = this.storages[i] as MemoryStorage;
      storage.onDrop = (key, row) => this.onCollect(i, key, row);
      const ports: ReplicaPorts = {
        now: () => this.now(i),
        timer: () => still,
        peer: (r) => this.api(REGIONS.indexOf(r)),
        control: { getView: () => Promise.reject(new Error("no control")), confirmPrimary: async () => 2000 },
        queue: { sendBatch: () => Promise.reject(new Error("the program delivers")) },
        background: (work) => void work.catch(() => undefined),
        warn: () => undefined,
      };
      return new ReplicaNode(machineOf(region, storage), ports, {
        heartbeatIntervalMs: 1000,
        sessionWaitMs: 0,
        batchMs: 0,
        delaySeconds: 0,
        directPush: false,
        antiEntropyIntervalMs: 30_000,
        gc: GC,
      });
    });
  }

  machine(i: number): ReplicaMachine {
    return (this.nodes[i] as ReplicaNode).machine;
  }

  /** Replica `i`'s clock: the program's time plus its skew. */
  now(i: number): number {
    return this.nowMs + (this.skewsMs[i] ?? 0);
  }

  /** Replica `i` as a peer sees it over RPC: answers are cloned, as structured clone does. */
  api(i: number): PeerApi {
    return peerOver(() => this.nodes[i] as ReplicaNode);
  }

  /** A local write at replica `i`; its outbox row becomes one message per peer, into the bag. */
  write(i: number, key: string, op: KeyOp): void {
    const machine = this.machine(i);
    const committed = ok(machine.write(key, op, {}, undefined, this.now(i)));
    // A delete of a key this replica does not hold writes nothing.
    if (committed.entry === null) return;
    this.produced.set(key, [...(this.produced.get(key) ?? []), decodeKeyState(committed.entry.state!)]);
    const rows = machine.storage.log.after(committed.seq - 1, 1, Number.MAX_SAFE_INTEGER);
    for (const peer of machine.peers)
      for (const { message } of messagesFor(
        machine.region,
        peer,
        machine.shard,
        rows,
        committed.seq - 1,
        machine.firstWrittenMs,
      ))
        this.bag.push({ message, delivered: false });
  }

  async deliver(letter: Letter): Promise<void> {
    const target = REGIONS.indexOf(letter.message.target);
    const [result] = await (this.nodes[target] as ReplicaNode).applyReplication([letter.message]);
    ok(result!);
    letter.delivered = true;
  }

  /** Replica `from`'s heartbeat to replica `to`, built as `ReplicaNode.tick` builds it. */
  async heartbeat(from: number, to: number): Promise<void> {
    const machine = this.machine(from);
    const body: HeartbeatMessage = {
      v: WIRE_VERSION,
      kind: "heartbeat",
      shard: 0,
      origin: machine.region,
      target: REGIONS[to] as RegionId,
      seq: machine.seq,
      atMs: this.now(from),
      firstMs: machine.firstWrittenMs,
      baseSeq: machine.baseSeq,
      priorSeq: machine.priorSeq,
      applied: ownReport(machine).applied,
      horizon: machine.gcHorizon,
    };
    const [result] = await (this.nodes[to] as ReplicaNode).applyReplication([body as ReplicationMessage]);
    ok(result!);
  }

  async heartbeatsAll(): Promise<void> {
    for (let from = 0; from < REGIONS.length; from += 1)
      for (let to = 0; to < REGIONS.length; to += 1) if (from !== to) await this.heartbeat(from, to);
  }

  gc(i: number): void {
    gcStep(this.machine(i), GC, this.now(i));
  }

  async antiEntropy(i: number, peer: number): Promise<boolean> {
    const round = ok(
      await antiEntropyRound(this.machine(i), REGIONS[peer] as RegionId, this.api(peer), () => this.now(i)),
    );
    return round.complete;
  }

  /** Folds what every replica holds now into what it ever held. */
  observe(): void {
    this.storages.forEach((storage, i) => {
      for (const [key, row] of storage.dump()) {
        const seen = this.merged[i] as Map<string, VersionVector>;
        seen.set(key, vvMerge(seen.get(key) ?? EMPTY_VV, keyVv(decodeKeyState(row.encoded))));
      }
    });
  }

  /**
   * At the moment replica `i` forgets a tombstone: every replica has merged it, and every write
   * to the key that does not descend from it (so could otherwise still arrive and undo it).
   */
  private onCollect(i: number, key: string, row: StoredKey & { readonly live: boolean }): void {
    if (row.live) return;
    this.collected += 1;
    const tombstone = keyVv(decodeKeyState(row.encoded));
    const writes = (this.produced.get(key) ?? []).filter((s) => !vvDescends(keyVv(s), tombstone));
    this.merged.forEach((seen, r) => {
      const held = seen.get(key) ?? EMPTY_VV;
      if (!vvDescends(held, tombstone))
        this.violations.push(`${REGIONS[i]} collected ${key} before ${REGIONS[r]} merged its tombstone`);
      for (const w of writes)
        if (!vvDescends(held, keyVv(w)))
          this.violations.push(`${REGIONS[i]} collected ${key} before ${REGIONS[r]} merged a write concurrent with it`);
    });
  }

  roots(): string[] {
    return this.storages.map((s) => Buffer.from(s.merkle.root()).toString("hex"));
  }

  converged(): boolean {
    return new Set(this.roots()).size === 1;
  }
}

/** The join of every state ever produced for `key`: what every replica must end up showing. */
function truth(states: readonly KeyState[]): KeyState {
  let joined: KeyState | undefined;
  for (const s of states) joined = mergeKeyState(joined, s).state;
  return joined as KeyState;
}

/** A register's visible outcome: its winning stamp and value (null for a delete). */
function outcome(state: KeyState): string {
  if (state.type !== "register") throw new Error("only registers are written");
  const value = state.register.value === null ? "(deleted)" : new TextDecoder().decode(state.register.value);
  return `${formatHlc(state.register.stamp)} ${value}`;
}

/** A register's stamp as text, whose order is the stamps' order. */
function stampOf(state: KeyState): string {
  if (state.type !== "register") throw new Error("only registers are written");
  return formatHlc(state.register.stamp);
}

/**
 * What is wrong with the replicas at the end of a run: a stability violation seen when a
 * tombstone was collected, replicas that did not converge, a deleted key live again, a live one
 * lost or different, or a later write ordered before one it had seen.
 */
function problems(trio: Trio): string[] {
  const out = [...trio.violations];
  const roots = trio.roots();
  if (new Set(roots).size !== 1) out.push(`roots differ: ${roots.join(" ")}`);
  const dumps = trio.storages.map((s) => s.dump());
  const first = dumps[0] as Map<string, StoredKey>;
  dumps.forEach((dump, i) => {
    const keys = [...dump.keys()].sort().join(",");
    if (keys !== [...first.keys()].sort().join(",")) out.push(`${REGIONS[i]} holds keys ${keys}`);
    for (const [key, row] of dump) {
      const theirs = first.get(key);
      if (theirs !== undefined && !equalBytes(row.encoded, theirs.encoded))
        out.push(`${REGIONS[i]} holds another state of ${key} than ${REGIONS[0]}`);
    }
  });
  for (const [key, states] of trio.produced) {
    const expected = truth(states);
    dumps.forEach((dump, i) => {
      const row = dump.get(key);
      const held = row === undefined ? undefined : decodeKeyState(row.encoded);
      if (keyIsLive(expected) && held === undefined) out.push(`${REGIONS[i]} lost ${key}`);
      else if (keyIsLive(expected) && outcome(held as KeyState) !== outcome(expected))
        out.push(`${REGIONS[i]} shows ${key} as ${outcome(held as KeyState)}, not ${outcome(expected)}`);
      else if (!keyIsLive(expected) && held !== undefined && keyIsLive(held))
        out.push(`${REGIONS[i]} resurrected ${key} as ${outcome(held)}`);
    });
    // A write made after the writer had seen another (its context descends that one's) wins
    // over it, also when it was made after the key was collected.
    for (const later of states)
      for (const earlier of states)
        if (later !== earlier && vvDescends(keyVv(later), keyVv(earlier)) && stampOf(later) <= stampOf(earlier))
          out.push(`${key}: ${outcome(later)} orders before ${outcome(earlier)}, which it had seen`);
  }
  return out;
}

/** Final rounds at most: each can collect, repair and confirm a little more. */
const SETTLE_ROUNDS_MAX = 12;

async function run(steps: readonly Step[], duplicates: readonly number[], skewsMs: readonly number[]): Promise<Trio> {
  const trio = new Trio(skewsMs);
  let writes = 0;
  for (const step of steps) {
    trio.nowMs += 10;
    switch (step.kind) {
      case "write": {
        writes += 1;
        const op = step.live ? put(`v${writes}`) : del;
        trio.write(step.at, KEYS[step.key] as string, op);
        break;
      }
      case "deliver": {
        const pool = step.fresh ? trio.bag.filter((l) => !l.delivered) : trio.bag;
        const letter = pool[step.pick % Math.max(1, pool.length)];
        if (letter !== undefined) await trio.deliver(letter);
        break;
      }
      case "heartbeat":
        await trio.heartbeat(step.from, (step.from + step.offset) % REGIONS.length);
        break;
      case "gc":
        trio.gc(step.at);
        break;
      case "ae":
        await trio.antiEntropy(step.at, (step.at + step.offset) % REGIONS.length);
        break;
      case "wait":
        trio.nowMs += step.ms;
        break;
    }
    trio.observe();
  }
  // Everything still in flight arrives.
  for (const letter of trio.bag.filter((l) => !l.delivered)) {
    await trio.deliver(letter);
    trio.observe();
  }
  // Reports travel and collection runs to the end, then some messages arrive once more (late
  // duplicates of writes that may now be collected), and anti-entropy runs until roots agree.
  for (let round = 0; round < 4; round += 1) {
    trio.nowMs += 2 * GRACE_MS;
    await trio.heartbeatsAll();
    for (let i = 0; i < REGIONS.length; i += 1) trio.gc(i);
  }
  for (const pick of duplicates) {
    const letter = trio.bag[pick % Math.max(1, trio.bag.length)];
    if (letter === undefined) break;
    await trio.deliver(letter);
    trio.observe();
  }
  for (let round = 0; round < SETTLE_ROUNDS_MAX && !trio.converged(); round += 1) {
    for (let i = 0; i < REGIONS.length; i += 1)
      for (let j = 0; j < REGIONS.length; j += 1) if (i !== j) await trio.antiEntropy(i, j);
    trio.observe();
    trio.nowMs += 2 * GRACE_MS;
    await trio.heartbeatsAll();
    for (let i = 0; i < REGIONS.length; i += 1) trio.gc(i);
  }
  return trio;
}

describe("collection over three replicas (property)", () => {
  it("converges, never resurrects a collected key, and never loses a write", async () => {
    const totals = { runs: 0, collected: 0, dropped: 0, resurrectable: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.array(stepArb, { minLength: 10, maxLength: 80, size: "max" }),
        fc.array(fc.nat(), { maxLength: 8 }),
        fc.array(fc.integer({ min: -450, max: 450 }), { minLength: 3, maxLength: 3 }),
        async (steps, duplicates, skewsMs) => {
          const trio = await run(steps, duplicates, skewsMs);
          totals.runs += 1;
          totals.collected += trio.collected;
          totals.dropped += trio.storages
            .flatMap((s) => s.metrics.all())
            .filter((m) => m.name === "gc_late_copies_dropped_total")
            .reduce((sum, m) => sum + m.value, 0);
          for (const states of trio.produced.values())
            if (!keyIsLive(truth(states)) && states.some(keyIsLive)) totals.resurrectable += 1;
          expect(problems(trio)).toEqual([]);
        },
      ),
      { seed: SEED, numRuns: 200 },
    );
    // The property could fail: keys were collected, late copies were dropped by the gate, and
    // many keys ended deleted after a live value that a late copy could have brought back.
    expect(totals.runs).toBe(200);
    expect(totals.collected).toBeGreaterThan(100);
    expect(totals.dropped).toBeGreaterThan(100);
    expect(totals.resurrectable).toBeGreaterThan(50);
    // A passing run takes seconds; the bound leaves a failing one time to shrink its counterexample.
  }, 120_000);
});

describe("collection while an anti-entropy answer is in flight", () => {
  // An await on another object lets other events in (PLATFORM.md): heartbeats and the alarm's
  // collection step run while a round waits for its peer's answer. The peer read that answer
  // before it applied the delete; by the time it arrives, every region has applied the delete
  // and collected the key, so the answer is a late copy of a collected key. Anti-entropy merges
  // it under the `repair` rule, which never drops a live state, so the key comes back live and
  // the next rounds spread it to every region.
  it("does not let a peer's answer read before the delete bring a collected key back", async () => {
    const trio = new Trio([0, 0, 0]);
    trio.write(0, "k", put("v1"));
    for (const letter of trio.bag) await trio.deliver(letter);
    trio.write(0, "k", del);
    const [toEnam, toWeur] = trio.bag.slice(-2) as [Letter, Letter];
    expect([toEnam.message.target, toWeur.message.target]).toEqual(["enam", "weur"]);
    await trio.deliver(toEnam);
    // enam starts a round with weur, which still holds the live value; weur's answer is held.
    const reached = deferred<void>();
    const release = deferred<void>();
    const weur: PeerApi = {
      ...trio.api(2),
      keyStates: async (keys) => {
        const rows = structuredClone((trio.nodes[2] as ReplicaNode).keyStates(keys));
        reached.resolve();
        await release.promise;
        return rows;
      },
    };
    const round = antiEntropyRound(trio.machine(1), "weur", weur, () => trio.now(1));
    await reached.promise;
    // Meanwhile weur applies the delete, reports travel, and every replica collects the key.
    await trio.deliver(toWeur);
    for (let step = 0; step < 2; step += 1) {
      trio.nowMs += 2 * GRACE_MS;
      await trio.heartbeatsAll();
      for (let i = 0; i < REGIONS.length; i += 1) trio.gc(i);
    }
    expect(trio.storages.map((s) => s.kv.get("k"))).toEqual([null, null, null]);
    release.resolve();
    ok(await round);
    // The answer weur read before it applied the delete is a late copy like any other: the
    // deleted key must stay deleted everywhere, also after the replicas compare trees again.
    for (let i = 0; i < REGIONS.length; i += 1)
      for (let j = 0; j < REGIONS.length; j += 1) if (i !== j) await trio.antiEntropy(i, j);
    const live = REGIONS.filter((_, i) => {
      const row = (trio.storages[i] as MemoryStorage).kv.get("k");
      return row !== null && keyIsLive(decodeKeyState(row.encoded));
    });
    expect({ liveAgainIn: live }).toEqual({ liveAgainIn: [] });
  });
});
