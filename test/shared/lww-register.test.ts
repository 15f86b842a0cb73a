import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteWriter, DecodeError, utf8 } from "../../shared/bytes.ts";
import {
  type LwwOp,
  type LwwRegister,
  decodeLww,
  encodeLww,
  lwwApply,
  lwwEmpty,
  lwwExpired,
  lwwIsLive,
  lwwMerge,
  lwwMergeReport,
} from "../../shared/crdt/lww-register.ts";
import { type HlcStamp, compareHlc, hlcNow, hlcReceive, hlcZero, writeHlc } from "../../shared/hlc.ts";
import { LOCATION_HINTS, type RegionId } from "../../shared/regions.ts";
import { vvCompare, vvDescends, vvMerge, writeVv } from "../../shared/version-vector.ts";
import { type Lattice, checkConvergence, checkMergeLaws } from "./support.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0x1_0005;

/** One region's replica of the key: its own clock, its own physical time, its own state. */
interface Replica {
  readonly region: RegionId;
  clock: HlcStamp;
  physicalMs: number;
  state: LwwRegister;
}

/** One step of a history: a local write or delete, or one replica shipping its state to another. */
type Step =
  | {
      readonly kind: "put";
      readonly at: number;
      readonly dtMs: number;
      readonly value: number;
      readonly json: boolean;
      /** Bit 0: with metadata; bit 1: with an expiration. */
      readonly extras: number;
    }
  | { readonly kind: "delete"; readonly at: number; readonly dtMs: number }
  | { readonly kind: "sync"; readonly from: number; readonly to: number; readonly dtMs: number };

interface History {
  readonly regions: RegionId[];
  /** Per-replica offset of the physical clock, so clocks disagree a little. */
  readonly offsetsMs: number[];
  readonly steps: Step[];
}

// Physical time moves by -1..2 ms per step: it may stand still or go backwards, and because
// clocks start within 3 ms of each other, equal (wall, counter) pairs across regions are common.
const dtArb = fc.integer({ min: -1, max: 2 });
const indexArb = fc.nat({ max: 3 });
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("put" as const),
      at: indexArb,
      dtMs: dtArb,
      value: fc.nat({ max: 5 }),
      json: fc.boolean(),
      extras: fc.nat({ max: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("delete" as const), at: indexArb, dtMs: dtArb }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant("sync" as const), from: indexArb, to: indexArb, dtMs: dtArb }),
  },
);

const historyArb: fc.Arbitrary<History> = fc.record({
  regions: fc.shuffledSubarray([...LOCATION_HINTS], { minLength: 2, maxLength: 4 }),
  offsetsMs: fc.array(fc.nat({ max: 3 }), { minLength: 4, maxLength: 4 }),
  steps: fc.array(stepArb, { minLength: 1, maxLength: 30 }),
});

function op(step: Step): LwwOp {
  if (step.kind === "put") {
    return {
      kind: "put",
      value: utf8(`v${step.value}`),
      contentType: step.json ? "application/json" : "text/plain",
      // Few distinct extras, so equal values with different extras meet.
      metadata: (step.extras & 1) === 0 ? null : `{"v":${step.value % 2}}`,
      expirationSeconds: (step.extras & 2) === 0 ? null : 1_800_000_000 + (step.value % 2),
    };
  }
  return { kind: "delete" };
}

/**
 * Replays a history the way replicas run it: every write is stamped by the writer's clock, and
 * every received state is folded into the receiver's clock, so a region's next write always wins
 * over what it has seen. Returns every state that existed, last the final state of each replica.
 */
function replay(history: History): { snapshots: LwwRegister[]; finals: LwwRegister[] } {
  const replicas: Replica[] = history.regions.map((region, i) => ({
    region,
    clock: hlcZero(region),
    physicalMs: 1_000 + (history.offsetsMs[i] ?? 0),
    state: lwwEmpty(),
  }));
  const snapshots: LwwRegister[] = [];
  const pick = (index: number): Replica => replicas[index % replicas.length] as Replica;
  for (const step of history.steps) {
    if (step.kind === "sync") {
      const from = pick(step.from);
      const to = pick(step.to);
      to.physicalMs += step.dtMs;
      const received = hlcReceive(to.clock, from.state.stamp, to.physicalMs);
      if (!received.ok) throw new Error(`clocks within 4 ms refused: ${received.error.message}`);
      to.clock = received.stamp;
      to.state = lwwMerge(to.state, from.state);
      snapshots.push(to.state);
    } else {
      const at = pick(step.at);
      at.physicalMs += step.dtMs;
      at.clock = hlcNow(at.clock, at.physicalMs);
      at.state = lwwApply(at.state, op(step), at.region, at.clock);
      snapshots.push(at.state);
    }
  }
  return { snapshots, finals: replicas.map((replica) => replica.state) };
}

/** A history's states, plus indices that pick some of them. */
const statesArb = fc.tuple(historyArb, fc.array(fc.nat(), { minLength: 3, maxLength: 3 })).map(([history, picks]) => {
  const { snapshots, finals } = replay(history);
  const all = [lwwEmpty(), ...snapshots];
  return { finals, picked: picks.map((i) => all[i % all.length] as LwwRegister) };
});

function hex(state: LwwRegister): string {
  return Buffer.from(encodeLww(state)).toString("hex");
}

const LWW: Lattice<LwwRegister> = { merge: lwwMerge, empty: lwwEmpty, encode: encodeLww };

function fold(states: readonly LwwRegister[]): LwwRegister {
  return states.reduce(lwwMerge, lwwEmpty());
}

/** Writes `op` at `region` at physical time `physicalMs` on top of `state`, as a replica would. */
function write(state: LwwRegister, lwwOp: LwwOp, region: RegionId, physicalMs: number): LwwRegister {
  const received = hlcReceive(hlcZero(region), state.stamp, physicalMs);
  if (!received.ok) throw new Error(received.error.message);
  return lwwApply(state, lwwOp, region, hlcNow(received.stamp, physicalMs));
}

const put = (text: string): LwwOp => ({ kind: "put", value: utf8(text), contentType: "text/plain" });
const del: LwwOp = { kind: "delete" };

describe("lwwMerge", () => {
  it("is commutative, associative and idempotent", () => {
    fc.assert(
      fc.property(statesArb, ({ picked: [a, b, c] }) => {
        if (a === undefined || b === undefined || c === undefined) throw new Error("three states expected");
        expect(() => checkMergeLaws(LWW, a, b, c)).not.toThrow();
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("keeps the later stamp and joins the vectors", () => {
    fc.assert(
      fc.property(statesArb, ({ picked: [a, b] }) => {
        if (a === undefined || b === undefined) throw new Error("two states expected");
        const merged = lwwMerge(a, b);
        const later = compareHlc(a.stamp, b.stamp) >= 0 ? a : b;
        expect(merged.stamp).toEqual(later.stamp);
        expect(merged.value).toEqual(later.value);
        expect(merged.vv).toEqual(vvMerge(a.vv, b.vv));
      }),
      { seed: SEED },
    );
  });

  it("converges to one encoded state under every delivery order and any duplication", () => {
    fc.assert(
      fc.property(historyArb, fc.nat(), fc.array(fc.nat(), { maxLength: 8 }), (history, extra, duplicates) => {
        const { snapshots, finals } = replay(history);
        // At most five states, so every permutation (120) is checked exhaustively.
        const states = [...finals, snapshots[extra % snapshots.length] as LwwRegister].slice(0, 5);
        const expected = hex(checkConvergence(LWW, states));
        const withDuplicates = [...states, ...duplicates.map((i) => states[i % states.length] as LwwRegister)];
        expect(hex(fold(withDuplicates))).toBe(expected);
        expect(hex(fold([...withDuplicates].reverse()))).toBe(expected);
      }),
      { seed: SEED, numRuns: 150 },
    );
  });
});

describe("lwwMergeReport", () => {
  it("reports a conflict exactly for concurrent vectors with different stamps, naming the later one", () => {
    const seen = { hlc: 0, region_tiebreak: 0, none: 0 };
    fc.assert(
      fc.property(statesArb, ({ picked: [a, b] }) => {
        if (a === undefined || b === undefined) throw new Error("two states expected");
        const report = lwwMergeReport(a, b);
        expect(hex(report.state)).toBe(hex(lwwMerge(a, b)));
        const order = compareHlc(a.stamp, b.stamp);
        const causality = vvCompare(a.vv, b.vv);
        // A causal overwrite keeps the side that saw the other, which carries the later stamp;
        // only concurrent writes fall back to comparing stamps.
        const kept = causality === "after" ? a : causality === "before" ? b : order >= 0 ? a : b;
        expect(hex(report.state)).toBe(hex({ ...kept, vv: vvMerge(a.vv, b.vv) }));
        // Equal stamps are one write that reached both sides along different paths: nothing lost.
        const sameTime = a.stamp.wallMs === b.stamp.wallMs && a.stamp.counter === b.stamp.counter;
        const expected =
          causality === "concurrent" && order !== 0
            ? { winner: order > 0 ? a : b, loser: order > 0 ? b : a, rule: sameTime ? "region_tiebreak" : "hlc" }
            : undefined;
        expect(report.conflict).toEqual(expected);
        seen[report.conflict?.rule ?? "none"] += 1;
      }),
      { seed: SEED, numRuns: 1_000 },
    );
    // The generator must reach every branch, or the property above proves little.
    expect(seen.hlc).toBeGreaterThan(0);
    expect(seen.region_tiebreak).toBeGreaterThan(0);
    expect(seen.none).toBeGreaterThan(0);
  });

  it("breaks a tie of equal wall and counter from two regions by region id", () => {
    const enam = write(lwwEmpty(), put("from enam"), "enam", 1_000);
    const wnam = write(lwwEmpty(), put("from wnam"), "wnam", 1_000);
    expect([enam.stamp.wallMs, enam.stamp.counter]).toEqual([wnam.stamp.wallMs, wnam.stamp.counter]);
    for (const [local, remote] of [
      [enam, wnam],
      [wnam, enam],
    ] as const) {
      const report = lwwMergeReport(local, remote);
      expect(report.conflict?.rule).toBe("region_tiebreak");
      expect(report.conflict?.winner).toBe(wnam);
      expect(report.conflict?.loser).toBe(enam);
      expect(report.state.value).toEqual(utf8("from wnam"));
      expect(report.state.vv).toEqual({ wnam: 1, enam: 1 });
    }
  });

  it("does not report an overwrite of a write the writer had seen", () => {
    const first = write(lwwEmpty(), put("first"), "weur", 1_000);
    // apac's clock is behind, but it has seen the first write, so its write still wins.
    const second = write(first, put("second"), "apac", 900);
    expect(compareHlc(second.stamp, first.stamp)).toBe(1);
    for (const [local, remote] of [
      [first, second],
      [second, first],
    ] as const) {
      const report = lwwMergeReport(local, remote);
      expect(report.conflict).toBeUndefined();
      expect(report.state.value).toEqual(utf8("second"));
    }
  });

  it("does not report one write that reached two replicas along different paths", () => {
    const winner = write(lwwEmpty(), put("w"), "weur", 2_000);
    const viaEnam = lwwMerge(write(lwwEmpty(), put("a"), "enam", 1_000), winner);
    const viaApac = lwwMerge(write(lwwEmpty(), put("b"), "apac", 1_000), winner);
    expect(vvCompare(viaEnam.vv, viaApac.vv)).toBe("concurrent");
    const report = lwwMergeReport(viaEnam, viaApac);
    expect(report.conflict).toBeUndefined();
    expect(report.state.value).toEqual(utf8("w"));
    expect(report.state.vv).toEqual({ enam: 1, weur: 1, apac: 1 });
  });
});

describe("deletes", () => {
  it("a delete wins over an older concurrent write, and the conflict is reported", () => {
    const written = write(lwwEmpty(), put("old"), "enam", 1_000);
    const deleted = write(lwwEmpty(), del, "weur", 2_000);
    const report = lwwMergeReport(written, deleted);
    expect(lwwIsLive(report.state)).toBe(false);
    expect(report.state.contentType).toBe("");
    expect(report.conflict?.winner).toBe(deleted);
    expect(report.conflict?.rule).toBe("hlc");
    expect(hex(lwwMerge(deleted, written))).toBe(hex(report.state));
  });

  it("a delete of a seen write wins even from a region whose clock is behind", () => {
    const written = write(lwwEmpty(), put("old"), "enam", 5_000);
    const deleted = write(written, del, "weur", 1_000);
    expect(lwwIsLive(lwwMerge(written, deleted))).toBe(false);
    expect(lwwMergeReport(written, deleted).conflict).toBeUndefined();
  });

  it("a newer write wins over an older delete", () => {
    const deleted = write(lwwEmpty(), del, "weur", 1_000);
    const written = write(lwwEmpty(), put("new"), "enam", 2_000);
    expect(lwwMerge(deleted, written).value).toEqual(utf8("new"));
  });

  it("a key can be deleted and written again, and every replica ends with the new value", () => {
    const v1 = write(lwwEmpty(), put("v1"), "wnam", 1_000);
    const deleted = write(v1, del, "wnam", 1_001);
    expect(lwwIsLive(deleted)).toBe(false);
    const v2 = write(deleted, put("v2"), "wnam", 1_002);
    expect(lwwIsLive(v2)).toBe(true);
    expect(v2.value).toEqual(utf8("v2"));
    expect(v2.contentType).toBe("text/plain");
    expect(v2.vv).toEqual({ wnam: 3 });
    // Replicas that stopped at v1 or at the delete both catch up to v2.
    for (const stale of [v1, deleted]) {
      expect(hex(lwwMerge(stale, v2))).toBe(hex(v2));
      expect(hex(lwwMerge(v2, stale))).toBe(hex(v2));
    }
    // Another region re-writes after seeing the delete.
    const rewritten = write(deleted, put("v3"), "sam", 1_001);
    expect(lwwMerge(v1, rewritten).value).toEqual(utf8("v3"));
  });
});

describe("encoding", () => {
  it("round-trips every reachable state", () => {
    fc.assert(
      fc.property(historyArb, (history) => {
        for (const state of [lwwEmpty(), ...replay(history).snapshots]) {
          const decoded = decodeLww(encodeLww(state));
          expect(decoded).toEqual(state);
          expect(hex(decoded)).toBe(hex(state));
        }
      }),
      { seed: SEED },
    );
  });

  it("rejects a bad flag, trailing bytes and truncation", () => {
    const state = write(lwwEmpty(), put("x"), "oc", 1_000);
    const bytes = encodeLww(state);
    expect(() => decodeLww(Uint8Array.from([...bytes, 0]))).toThrow("trailing bytes");
    expect(() => decodeLww(bytes.subarray(0, bytes.length - 1))).toThrow(DecodeError);
    const flag = new ByteWriter();
    writeHlc(flag, state.stamp);
    writeVv(flag, state.vv);
    flag.string("").byte(3);
    expect(() => decodeLww(flag.finish())).toThrow("register flag");
  });

  it("keeps the bytes of a value without extras as they were before extras existed", () => {
    const state = write(lwwEmpty(), put("x"), "oc", 1_000);
    const before = new ByteWriter();
    writeHlc(before, state.stamp);
    writeVv(before, state.vv);
    before.string("text/plain").byte(1).bytes(utf8("x"));
    expect(hex(state)).toBe(Buffer.from(before.finish()).toString("hex"));
  });

  it("carries metadata and an expiration with the write that set them, and only with it", () => {
    const first = write(
      lwwEmpty(),
      {
        kind: "put",
        value: utf8("a"),
        contentType: "text/plain",
        metadata: '{"n":1}',
        expirationSeconds: 1_900_000_000,
      },
      "oc",
      1_000,
    );
    expect(decodeLww(encodeLww(first))).toEqual(first);
    expect(first).toMatchObject({ metadata: '{"n":1}', expirationSeconds: 1_900_000_000 });
    // A later plain write replaces both, as in Workers KV; a delete clears them.
    const second = write(first, put("b"), "wnam", 2_000);
    expect(lwwMerge(first, second)).toMatchObject({ metadata: null, expirationSeconds: null });
    expect(write(first, del, "wnam", 2_000)).toMatchObject({ metadata: null, expirationSeconds: null });
  });

  it("rejects extras that are empty or unknown: one state has one encoding", () => {
    const state = write(lwwEmpty(), put("x"), "oc", 1_000);
    for (const extras of [0, 4]) {
      const writer = new ByteWriter();
      writeHlc(writer, state.stamp);
      writeVv(writer, state.vv);
      writer.string("text/plain").byte(2).bytes(utf8("x")).byte(extras);
      expect(() => decodeLww(writer.finish())).toThrow("register extras");
    }
  });

  it("judges expiry by the reader's clock", () => {
    const state = write(
      lwwEmpty(),
      { kind: "put", value: utf8("a"), contentType: "text/plain", expirationSeconds: 2_000 },
      "oc",
      1_000,
    );
    expect(lwwExpired(state, 1_999_999)).toBe(false);
    expect(lwwExpired(state, 2_000_000)).toBe(true);
    expect(lwwExpired(write(lwwEmpty(), put("x"), "oc", 1_000), Number.MAX_SAFE_INTEGER)).toBe(false);
  });

  it("rejects a tombstone that carries a content type, which would make merge order-dependent", () => {
    const deleted = write(lwwEmpty(), del, "oc", 1_000);
    const writer = new ByteWriter();
    writeHlc(writer, deleted.stamp);
    writeVv(writer, deleted.vv);
    writer.string("text/plain").byte(0);
    expect(() => decodeLww(writer.finish())).toThrow(DecodeError);
  });

  it("merged state descends from both inputs", () => {
    fc.assert(
      fc.property(statesArb, ({ picked: [a, b] }) => {
        if (a === undefined || b === undefined) throw new Error("two states expected");
        const merged = lwwMerge(a, b);
        expect(vvDescends(merged.vv, a.vv) && vvDescends(merged.vv, b.vv)).toBe(true);
      }),
      { seed: SEED },
    );
  });
});
