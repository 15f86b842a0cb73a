// The replica state machine over in-memory storage: positions that survive rolled-back
// transactions, fencing on every path (local writes, stream entries, synchronous pushes, whole
// states, counters and sets), synchronous pushes kept out of the stream's gap tracker, and a
// cluster view that survives a restart.
import { describe, expect, it } from "vitest";
import { type Result } from "../../shared/errors.ts";
import { formatHlc, hlcNow, hlcZero } from "../../shared/hlc.ts";
import { type RegionId } from "../../shared/regions.ts";
import { applyEntries, mergeSnapshot } from "../../shared/store/apply.ts";
import { type ClusterView } from "../../shared/store/cluster.ts";
import { type KeyOp, type KeyState, applyKeyOp, decodeKeyState, encodeKeyState } from "../../shared/store/key-state.ts";
import { PENDING_RANGES_MAX } from "../../shared/store/progress.ts";
import { recoveryOf, relogPage, settleStep } from "../../shared/store/recovery.ts";
import { ReplicaMachine } from "../../shared/store/replica-machine.ts";
import { type ReplicaStorage } from "../../shared/store/storage.ts";
import { type EntriesMessage, WIRE_VERSION } from "../../shared/store/wire.ts";
import { MemoryStorage } from "../sim/memory-storage.ts";

const REGIONS: RegionId[] = ["wnam", "enam", "weur"];
const NOW = 1_800_000_000_000;
const STRONG = { prefix: "strong/", region: "enam" as RegionId, failover: true };

function machine(region: RegionId, storage: ReplicaStorage = new MemoryStorage()): ReplicaMachine {
  return new ReplicaMachine(storage, { region, regions: REGIONS, primaryPrefixes: [STRONG], silenceMsMax: 3000 });
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
  return { atMs, health: {}, primaries: { "strong/": { region, epoch, ready: true, failover: true, recoveredSeq } } };
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
      storage.kv.put(key, state, encodeKeyState(state), {}, 1);
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

  it("holds old-epoch content until settled, then refuses and logs it, on the stream and in whole states, counters included", () => {
    const storage = new MemoryStorage();
    const m = machine("weur", storage);
    // enam led epoch 1 and incremented a counter; weur got that write.
    const one = ok(applyKeyOp(undefined, { type: "counter", delta: 1 }, "enam", hlcNow(hlcZero("enam"), NOW)));
    expect(ok(applyEntries(m, message("enam", "weur", 1, "strong/n", one, 1), [one], NOW, true)).fenced).toBe(0);
    // wnam now leads epoch 2 and re-logged the prefix (its write 1); enam, deposed, increments again.
    const two = ok(applyKeyOp(one, { type: "counter", delta: 100 }, "enam", hlcNow(hlcZero("enam"), NOW + 5)));
    m.applyView(view("wnam", 2, 1, NOW + 10));
    const waiting = applyEntries(m, message("enam", "weur", 2, "strong/n", two, 1), [two], NOW + 11, true);
    expect(waiting.ok ? "ok" : waiting.error.code).toBe("primary_unavailable");
    // A whole state carrying the deposed increment (a session fetch, a read repair) is not merged either.
    expect(
      mergeSnapshot(m, "strong/n", { state: encodeKeyState(two), seqs: { enam: 2 }, epoch: 1 }, "enam", NOW + 12),
    ).toBe(false);
    // The re-log arrives (epoch 2, what wnam kept: the first increment only), then weur settles.
    expect(ok(applyEntries(m, message("wnam", "weur", 1, "strong/n", one, 2), [one], NOW + 13, true)).fenced).toBe(0);
    expect(settleStep(m, "strong/", 2, NOW + 14)).toBe(true);
    const fenced = applyEntries(m, message("enam", "weur", 2, "strong/n", two, 1), [two], NOW + 15, true);
    expect(ok(fenced).fenced).toBe(1);
    expect(
      mergeSnapshot(m, "strong/n", { state: encodeKeyState(two), seqs: { enam: 2 }, epoch: 1 }, "enam", NOW + 16),
    ).toBe(false);
    const kept = decodeKeyState(storage.kv.get("strong/n")!.encoded);
    expect(kept.type === "counter" ? kept.counter.p : {}).toEqual({ enam: 1 });
    expect(storage.conflicts.page(0, 10).map((c) => [c.key, c.kind, c.rule])).toEqual([
      ["strong/n", "fenced", "stale_epoch"],
    ]);
  });

  it("drops, when it settles, keys only a deposed primary wrote, and logs them", () => {
    const storage = new MemoryStorage();
    const m = machine("weur", storage);
    const orphan = ok(
      applyKeyOp(undefined, { type: "set", add: ["x"], remove: [] }, "enam", hlcNow(hlcZero("enam"), NOW)),
    );
    expect(
      ok(applyEntries(m, message("enam", "weur", 1, "strong/orphan", orphan, 1), [orphan], NOW, true)).fenced,
    ).toBe(0);
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
      const pushed = applyEntries(m, message("enam", "weur", seq, `k${i}`, state), [state], NOW + i, false);
      expect(pushed.ok ? "ok" : pushed.error.code).toBe("ok");
    }
    expect(m.storage.peerRecv.get("enam").pending).toEqual([]);
    // The stream itself is unaffected and still takes a message that opens a gap.
    const gap = applyEntries(m, message("enam", "weur", 5, "k-stream", state!), [state!], NOW, true);
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
