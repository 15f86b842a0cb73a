// The replica state machine over in-memory storage: positions that survive rolled-back
// transactions, fencing on every path (local writes, stream entries, synchronous pushes, whole
// states, counters and sets), synchronous pushes kept out of the stream's gap tracker, and a
// cluster view that survives a restart.
import { describe, expect, it } from "vitest";
import { type Result } from "../../shared/errors.ts";
import { formatHlc, hlcNow, hlcZero } from "../../shared/hlc.ts";
import { type RegionId } from "../../shared/regions.ts";
import { applyEntries, entryStates, mergeSnapshot } from "../../shared/store/apply.ts";
import { type ClusterView, EMPTY_VIEW } from "../../shared/store/cluster.ts";
import { type Layout } from "../../shared/store/layout.ts";
import { type KeyOp, type KeyState, applyKeyOp, decodeKeyState, encodeKeyState } from "../../shared/store/key-state.ts";
import { PENDING_RANGES_MAX } from "../../shared/store/progress.ts";
import { pnValueExact } from "../../shared/crdt/pn-counter.ts";
import { SETTLE_PAGE_KEYS, mergeDonorPage, recoveryOf, relogPage, settleStep } from "../../shared/store/recovery.ts";
import { ReplicaMachine } from "../../shared/store/replica-machine.ts";
import { type ReplicaStorage } from "../../shared/store/storage.ts";
import { putKey } from "../../shared/store/tree.ts";
import { type EntriesMessage, WIRE_VERSION } from "../../shared/store/wire.ts";
import { MemoryStorage } from "../sim/memory-storage.ts";

const REGIONS: RegionId[] = ["wnam", "enam", "weur"];
const NOW = 1_800_000_000_000;
const STRONG = { prefix: "strong/", region: "enam" as RegionId, failover: true };

function machine(
  region: RegionId,
  storage: ReplicaStorage = new MemoryStorage(),
  primaryPrefixes = [STRONG],
): ReplicaMachine {
  return new ReplicaMachine(storage, { region, regions: REGIONS, primaryPrefixes, silenceMsMax: 3000 }, NOW);
}

/** Applies an entries message whose states are all inline. */
function apply(m: ReplicaMachine, msg: EntriesMessage, nowMs: number, stream: boolean): Result<{ fenced: number }> {
  return applyEntries(m, msg, ok(entryStates(m, msg, new Map())), nowMs, stream);
}

/** Stores `state` for `key` at `epoch` as a test's starting point, the Merkle tree in step. */
function store(storage: ReplicaStorage, key: string, state: KeyState, epoch: number): void {
  storage.transaction(() => putKey(storage, key, storage.kv.get(key), state, encodeKeyState(state), {}, epoch));
}

function ok<T>(result: Result<T>): T {
  if (!result.ok) throw new Error(`${result.error.code}: ${result.error.message}`);
  return result.value;
}

const put = (value: string): KeyOp => ({
  type: "register",
  op: { kind: "put", value: new TextEncoder().encode(value), contentType: "text/plain" },
});

/** A one-entry message from `origin` carrying `state` as its write `seq`, tagged `epoch`. */
function message(
  origin: RegionId,
  target: RegionId,
  seq: number,
  key: string,
  state: KeyState,
  epoch?: number,
): EntriesMessage {
  return {
    v: WIRE_VERSION,
    kind: "entries",
    shard: 0,
    origin,
    target,
    from: seq,
    to: seq,
    firstMs: NOW - 60_000,
    entries: [
      {
        seq,
        key,
        stamp: formatHlc(hlcNow(hlcZero(origin), NOW)),
        writtenMs: NOW,
        state: encodeKeyState(state),
        ...(epoch === undefined ? {} : { epoch }),
      },
    ],
  };
}

/** A view in which `region` leads strong/ at `epoch`, ready. */
function view(region: RegionId, epoch: number, recoveredSeq: number, atMs: number): ClusterView {
  return {
    atMs,
    health: {},
    primaries: { "strong/": { region, epoch, ready: true, failover: true, recoveredSeqs: [recoveredSeq] } },
  };
}

describe("positions and rolled-back transactions", () => {
  it("does not skip a sequence number when a re-log page fails midway", () => {
    const storage = new MemoryStorage();
    // The third outbox row of the page cannot be written once armed (a full disk, say).
    let armed = false;
    let appends = 0;
    const failing: ReplicaStorage = {
      ...storage,
      transaction: (fn) => storage.transaction(fn),
      log: {
        ...storage.log,
        append: (row) => {
          if (armed && ++appends === 3) throw new Error("disk full");
          storage.log.append(row);
        },
      },
    };
    const m = machine("wnam", failing);
    // wnam becomes the primary of strong/ at epoch 2 and holds three keys to re-log.
    m.applyView(view("wnam", 2, 0, NOW));
    for (const key of ["strong/a", "strong/b", "strong/c"]) {
      const state = ok(applyKeyOp(undefined, put(key), "enam", hlcNow(hlcZero("enam"), NOW)));
      store(storage, key, state, 1);
    }
    const before = m.seq;
    armed = true;
    expect(() => relogPage(m, "strong/", recoveryOf(m, "strong/", 2, [], 0), NOW)).toThrow("disk full");
    expect(m.seq).toBe(before);
    expect(storage.log.count()).toBe(0);
    // The next write takes the very next number: peers waiting for it never stall on a gap.
    expect(ok(m.write("plain", put("x"), {}, undefined, NOW)).seq).toBe(before + 1);
  });
});

describe("fencing", () => {
  it("re-checks the epoch inside the write: a primary deposed meanwhile commits nothing", () => {
    const m = machine("enam");
    expect(ok(m.write("strong/k", put("1"), {}, { prefix: "strong/", epoch: 1 }, NOW)).seq).toBe(1);
    // The new epoch arrives between the control object's confirmation and the commit.
    m.applyView(view("weur", 2, 0, NOW + 1));
    const late = m.write("strong/k", put("2"), {}, { prefix: "strong/", epoch: 1 }, NOW + 2);
    expect(late.ok ? "ok" : late.error.code).toBe("fenced");
    expect(m.seq).toBe(1);
    expect(m.storage.log.count()).toBe(1);
  });

  it("refuses a strong key written without its primary's scope", () => {
    const result = machine("enam").write("strong/k", put("1"), {}, undefined, NOW);
    expect(result.ok ? "ok" : result.error.code).toBe("fenced");
  });

  it("keeps old-epoch content aside until settled, then refuses and logs it, on every path, counters included", () => {
    const storage = new MemoryStorage();
    const m = machine("weur", storage);
    // enam led epoch 1 and incremented a counter; weur got that write.
    const one = ok(applyKeyOp(undefined, { type: "counter", delta: 1 }, "enam", hlcNow(hlcZero("enam"), NOW)));
    expect(ok(apply(m, message("enam", "weur", 1, "strong/n", one, 1), NOW, true)).fenced).toBe(0);
    // wnam now leads epoch 2 and re-logged the prefix (its write 1); enam, deposed, increments again.
    const two = ok(applyKeyOp(one, { type: "counter", delta: 100 }, "enam", hlcNow(hlcZero("enam"), NOW + 5)));
    m.applyView(view("wnam", 2, 1, NOW + 10));
    // Before weur has the recovered prefix it cannot tell whether wnam kept the write: the
    // stream keeps it aside and moves on (the re-log may come later in that very stream) ...
    expect(ok(apply(m, message("enam", "weur", 2, "strong/n", two, 1), NOW + 11, true)).fenced).toBe(0);
    expect(storage.deferred.count()).toBe(1);
    expect(storage.peerRecv.get("enam").appliedSeq).toBe(2);
    // ... a synchronous push of it is not applied, so it is no ack ...
    const pushed = apply(m, message("enam", "weur", 2, "strong/n", two, 1), NOW + 11, false);
    expect(pushed.ok ? "ok" : pushed.error.code).toBe("primary_unavailable");
    // ... and a whole state carrying it (a session fetch, a read repair) is not merged either.
    expect(
      mergeSnapshot(m, "strong/n", { state: encodeKeyState(two), seqs: { enam: 2 }, epoch: 1 }, "enam", NOW + 12),
    ).toBe(false);
    // The re-log arrives (epoch 2, what wnam kept: the first increment only), then weur settles
    // and judges what it kept aside: refused and logged.
    expect(ok(apply(m, message("wnam", "weur", 1, "strong/n", one, 2), NOW + 13, true)).fenced).toBe(0);
    expect(settleStep(m, "strong/", 2, NOW + 14)).toBe(true);
    expect(storage.deferred.count()).toBe(0);
    // Arriving again later, it is refused at once.
    expect(ok(apply(m, message("enam", "weur", 2, "strong/n", two, 1), NOW + 15, true)).fenced).toBe(1);
    expect(
      mergeSnapshot(m, "strong/n", { state: encodeKeyState(two), seqs: { enam: 2 }, epoch: 1 }, "enam", NOW + 16),
    ).toBe(false);
    const kept = decodeKeyState(storage.kv.get("strong/n")!.encoded);
    expect(kept.type === "counter" ? kept.counter.p : {}).toEqual({ enam: 1 });
    expect(storage.conflicts.page(0, 10).map((c) => [c.key, c.kind, c.rule])).toEqual([
      ["strong/n", "fenced", "stale_epoch"],
    ]);
  });

  it("drops quietly, when it settles, an older write kept aside that the new primary kept", () => {
    const storage = new MemoryStorage();
    const m = machine("weur", storage);
    const one = ok(applyKeyOp(undefined, { type: "counter", delta: 1 }, "enam", hlcNow(hlcZero("enam"), NOW)));
    m.applyView(view("wnam", 2, 1, NOW + 10));
    expect(ok(apply(m, message("enam", "weur", 1, "strong/n", one, 1), NOW + 11, true)).fenced).toBe(0);
    expect(ok(apply(m, message("wnam", "weur", 1, "strong/n", one, 2), NOW + 12, true)).fenced).toBe(0);
    expect(settleStep(m, "strong/", 2, NOW + 13)).toBe(true);
    expect(storage.deferred.count()).toBe(0);
    expect(storage.conflicts.page(0, 10)).toEqual([]);
  });

  it("drops, when it settles, keys only a deposed primary wrote, and logs them", () => {
    const storage = new MemoryStorage();
    const m = machine("weur", storage);
    const orphan = ok(
      applyKeyOp(undefined, { type: "set", add: ["x"], remove: [] }, "enam", hlcNow(hlcZero("enam"), NOW)),
    );
    expect(ok(apply(m, message("enam", "weur", 1, "strong/orphan", orphan, 1), NOW, true)).fenced).toBe(0);
    m.applyView(view("wnam", 2, 0, NOW + 10));
    expect(settleStep(m, "strong/", 2, NOW + 11)).toBe(true);
    expect(storage.kv.get("strong/orphan")).toBeNull();
    expect(storage.conflicts.page(0, 10).map((c) => c.kind)).toEqual(["fenced"]);
  });
});

describe("synchronous pushes", () => {
  it("merge outside the stream's gap tracker: thousands of scattered pushes are all accepted", () => {
    const m = machine("weur");
    let state: KeyState | undefined;
    for (let i = 1; i <= PENDING_RANGES_MAX + 100; i += 1) {
      state = ok(applyKeyOp(state, put(`v${i}`), "enam", hlcNow(hlcZero("enam"), NOW + i)));
      // Every other sequence number, so that as stream entries they would each open a gap.
      const seq = 2 * i;
      const pushed = apply(m, message("enam", "weur", seq, `k${i}`, state), NOW + i, false);
      expect(pushed.ok ? "ok" : pushed.error.code).toBe("ok");
    }
    expect(m.storage.peerRecv.get("enam").pending).toEqual([]);
    // The stream itself is unaffected and still takes a message that opens a gap.
    const gap = apply(m, message("enam", "weur", 5, "k-stream", state!), NOW, true);
    expect(gap.ok ? "ok" : gap.error.code).toBe("ok");
  });
});

describe("restart", () => {
  it("knows at once, from storage, that it was taken out", () => {
    const storage = new MemoryStorage();
    const m = machine("weur", storage);
    m.applyView({ atMs: NOW, health: { weur: { healthy: false, reason: "admin" } }, primaries: {} });
    expect(m.takenOut()).toBe(true);
    const restarted = machine("weur", storage);
    expect(restarted.takenOut()).toBe(true);
    const refused = restarted.write("k", put("x"), {}, undefined, NOW);
    expect(refused.ok ? "ok" : refused.error.code).toBe("region_unavailable");
  });
});

describe("review findings", () => {
  it("does not count a push as applied when a newer epoch's state here drops it", () => {
    const storage = new MemoryStorage();
    const m = machine("weur", storage);
    // A read repair stored the key at epoch 2 before weur heard of epoch 2 (it knows 1).
    const kept = ok(applyKeyOp(undefined, put("v1"), "enam", hlcNow(hlcZero("enam"), NOW)));
    expect(mergeSnapshot(m, "strong/k", { state: encodeKeyState(kept), seqs: {}, epoch: 2 }, "repair", NOW)).toBe(true);
    // The deposed enam pushes a write of epoch 1 built on it: it loses to the epoch-2 state.
    const late = ok(applyKeyOp(kept, put("late"), "enam", hlcNow(hlcZero("enam"), NOW + 1)));
    expect(ok(apply(m, message("enam", "weur", 7, "strong/k", late, 1), NOW + 2, false)).fenced).toBe(1);
  });

  it("merges a key whose prefix is no longer strong as a plain CRDT, whatever its stored epoch", () => {
    const storage = new MemoryStorage();
    const old = ok(applyKeyOp(undefined, put("old"), "enam", hlcNow(hlcZero("enam"), NOW)));
    store(storage, "strong/k", old, 1);
    const m = machine("weur", storage, []);
    const newer = ok(applyKeyOp(old, put("new"), "wnam", hlcNow(hlcZero("wnam"), NOW + 1)));
    expect(ok(apply(m, message("wnam", "weur", 1, "strong/k", newer), NOW + 2, true)).fenced).toBe(0);
    expect(decodeKeyState(storage.kv.get("strong/k")!.encoded)).toEqual(newer);
    expect(m.snapshot("strong/k").epoch).toBe(0);
  });

  it("takes content from before a prefix became strong as its first epoch", () => {
    const m = machine("weur");
    const early = ok(applyKeyOp(undefined, put("early"), "wnam", hlcNow(hlcZero("wnam"), NOW)));
    // No epoch: written by a region whose configuration did not list the prefix yet.
    expect(ok(apply(m, message("wnam", "weur", 1, "strong/k", early), NOW + 1, true)).fenced).toBe(0);
    expect(m.snapshot("strong/k")).toMatchObject({ epoch: 1 });
    expect(m.storage.deferred.count()).toBe(0);
  });

  it("keeps a finished recovery finished when the donors change", () => {
    const m = machine("wnam");
    m.applyView(view("wnam", 2, 0, NOW));
    const done = relogPage(m, "strong/", recoveryOf(m, "strong/", 2, [], 0), NOW);
    expect(done.recoveredSeq).not.toBeNull();
    expect(recoveryOf(m, "strong/", 2, ["weur"], 0)).toEqual(done);
  });

  it("stops a recovery whose epoch moved on while it awaited its donors", () => {
    const m = machine("wnam");
    m.applyView(view("wnam", 2, 0, NOW));
    const state = recoveryOf(m, "strong/", 2, ["weur"], 0);
    m.applyView(view("weur", 3, 0, NOW + 1));
    expect(() => mergeDonorPage(m, "strong/", state, [], NOW + 2)).toThrow(/no longer the primary/);
  });

  it("takes the epochs of a view older than the one it holds", () => {
    const m = machine("weur");
    m.applyView({ atMs: NOW + 1000, health: {}, primaries: {} });
    // A control object whose clock went back publishes epoch 2 with an older stamp.
    expect(m.applyView(view("wnam", 2, 0, NOW))).toBe(true);
    expect(m.storage.primaries.all().get("strong/")?.epoch).toBe(2);
  });

  it("settles a newer epoch from the start even when an older epoch's settle stopped midway", () => {
    const storage = new MemoryStorage();
    const m = machine("weur", storage);
    const state = ok(applyKeyOp(undefined, put("x"), "enam", hlcNow(hlcZero("enam"), NOW)));
    const keys = Array.from({ length: SETTLE_PAGE_KEYS + 10 }, (_, i) => `strong/${String(i).padStart(5, "0")}`);
    for (const key of keys) store(storage, key, state, 2);
    m.applyView(view("wnam", 2, 0, NOW));
    // Epoch 2's settle drops nothing (every key is of epoch 2) and stops after one page...
    expect(settleStep(m, "strong/", 2, NOW)).toBe(false);
    // ... when epoch 3 arrives: every key is now older, and all of them must go.
    m.applyView(view("weur", 3, 0, NOW + 1));
    while (!settleStep(m, "strong/", 3, NOW + 2));
    expect(storage.kv.rows("strong/", null, null, 10)).toEqual([]);
  });

  it("judges the writes a new primary kept aside while it recovered, when it finishes", () => {
    const storage = new MemoryStorage();
    const m = machine("wnam", storage);
    m.applyView(view("wnam", 2, 0, NOW));
    // The deposed enam's write of epoch 1 reaches wnam while it recovers: kept aside.
    const late = ok(applyKeyOp(undefined, put("late"), "enam", hlcNow(hlcZero("enam"), NOW)));
    expect(ok(apply(m, message("enam", "wnam", 1, "strong/late", late, 1), NOW + 1, true)).fenced).toBe(0);
    expect(storage.deferred.count()).toBe(1);
    relogPage(m, "strong/", recoveryOf(m, "strong/", 2, [], 0), NOW + 2);
    expect(storage.deferred.count()).toBe(0);
    expect(storage.conflicts.page(0, 10).map((c) => [c.key, c.kind])).toEqual([["strong/late", "fenced"]]);
  });

  it("recovers a key written before its prefix became strong as part of the first epoch", () => {
    const storage = new MemoryStorage();
    const m = machine("wnam", storage);
    // wnam added 5 while the prefix was not strong (stored at epoch 0) ...
    const five = ok(applyKeyOp(undefined, { type: "counter", delta: 5 }, "wnam", hlcNow(hlcZero("wnam"), NOW)));
    store(storage, "strong/c", five, 0);
    // ... and a donor holds enam's later +1 of epoch 1, made without having seen it.
    const one = ok(applyKeyOp(undefined, { type: "counter", delta: 1 }, "enam", hlcNow(hlcZero("enam"), NOW)));
    m.applyView(view("wnam", 2, 0, NOW + 1));
    const state = recoveryOf(m, "strong/", 2, ["weur"], 0);
    mergeDonorPage(
      m,
      "strong/",
      state,
      [{ key: "strong/c", encoded: encodeKeyState(one), seqs: { enam: 1 }, epoch: 1, digest: null }],
      NOW + 2,
    );
    const merged = decodeKeyState(storage.kv.get("strong/c")!.encoded);
    expect(merged.type === "counter" ? pnValueExact(merged.counter) : 0n).toBe(6n);
  });
});

describe("shard moves in the view", () => {
  const stable: Layout = { shards: 2, from: null, routed: true };
  const announced: Layout = { shards: 4, from: 2, routed: false };

  it("records a move once, fenced at its sequence number when it first saw it", () => {
    const m = machine("enam");
    expect(m.applyView({ ...EMPTY_VIEW, atMs: NOW, layout: stable })).toBe(true);
    const before = m.write("k1", { type: "counter", delta: 1 }, {}, undefined, NOW + 1);
    expect(before.ok).toBe(true);
    expect(m.applyView({ ...EMPTY_VIEW, atMs: NOW + 2, layout: announced })).toBe(true);
    expect(m.move).toEqual({ id: "2>4", fenceSeq: m.seq, handedOver: false, after: null });
    m.write("k2", { type: "counter", delta: 1 }, {}, undefined, NOW + 3);
    // The same move seen again (a later view) keeps its first fence.
    m.applyView({ ...EMPTY_VIEW, atMs: NOW + 4, layout: { ...announced, routed: true } });
    expect(m.move?.fenceSeq).toBe(m.seq - 1);
  });

  it("does not count an older view whose layout it does not follow as recorded", () => {
    const m = machine("enam");
    m.applyView({ ...EMPTY_VIEW, atMs: NOW + 10, layout: stable });
    // A publish overtaken by a later one, or a control object whose clock went back.
    expect(m.applyView({ ...EMPTY_VIEW, atMs: NOW, layout: announced })).toBe(false);
    expect(m.move).toBeNull();
    expect(m.layout).toEqual(stable);
    expect(m.applyView({ ...EMPTY_VIEW, atMs: NOW, layout: stable })).toBe(true);
  });
});
