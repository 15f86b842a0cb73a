import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteWriter, DecodeError } from "../../shared/bytes.ts";
import {
  type PnCounter,
  decodePn,
  encodePn,
  pnApply,
  pnEmpty,
  pnMerge,
  pnValue,
  pnValueExact,
} from "../../shared/crdt/pn-counter.ts";
import { type Result } from "../../shared/errors.ts";
import { LOCATION_HINTS, type RegionId } from "../../shared/regions.ts";
import { vvCompare, vvGet, vvSum, writeVv } from "../../shared/version-vector.ts";
import { type Lattice, checkConvergence, checkMergeLaws } from "./support.ts";

const PN: Lattice<PnCounter> = { merge: pnMerge, empty: pnEmpty, encode: encodePn };

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0x9c_0047;

const MAX = Number.MAX_SAFE_INTEGER;

/**
 * A replica's counter together with the ground truth: every operation it includes, keyed by the
 * operation's dot, with its delta. Merging unions the operations, so the expected value of any
 * state is the sum of the deltas it includes.
 */
interface Tracked {
  readonly state: PnCounter;
  readonly ops: ReadonlyMap<string, bigint>;
}

type Step =
  | { readonly kind: "apply"; readonly at: number; readonly delta: number }
  | { readonly kind: "sync"; readonly from: number; readonly to: number }
  // The replica loses its state and its region starts a new life (a region restored empty).
  | { readonly kind: "restart"; readonly at: number };

interface History {
  readonly regions: RegionId[];
  readonly steps: Step[];
}

// Mostly small deltas (with zero), some huge ones so sums cross 2^53 between regions.
const deltaArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: -1_000, max: 1_000 }) },
  { weight: 1, arbitrary: fc.constantFrom(0, MAX, -MAX, 2 ** 52, -(2 ** 52)) },
);
const indexArb = fc.nat({ max: 3 });
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("apply" as const), at: indexArb, delta: deltaArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("sync" as const), from: indexArb, to: indexArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("restart" as const), at: indexArb }) },
);

/** The life a region's n-th restart starts (what a restored replica's `baseSeq` is: above the old numbers). */
const lifeAfter = (restarts: number): number => restarts * 2 ** 20;
const historyArb: fc.Arbitrary<History> = fc.record({
  regions: fc.shuffledSubarray([...LOCATION_HINTS], { minLength: 2, maxLength: 4 }),
  steps: fc.array(stepArb, { minLength: 1, maxLength: 30 }),
});

function trackedMerge(a: Tracked, b: Tracked): Tracked {
  return { state: pnMerge(a.state, b.state), ops: new Map([...a.ops, ...b.ops]) };
}

function expectedValue(tracked: Tracked): bigint {
  let sum = 0n;
  for (const delta of tracked.ops.values()) sum += delta;
  return sum;
}

/**
 * Replays a history. An apply that fails must fail for the reason the model predicts, and leave
 * the replica as it was. Returns every state that existed, and each replica's final state.
 */
function replay(history: History): { snapshots: Tracked[]; finals: Tracked[]; refused: number } {
  const replicas: Tracked[] = history.regions.map(() => ({ state: pnEmpty(), ops: new Map() }));
  const restarts = history.regions.map(() => 0);
  const snapshots: Tracked[] = [];
  let refused = 0;
  const index = (i: number): number => i % replicas.length;
  for (const step of history.steps) {
    if (step.kind === "sync") {
      const to = index(step.to);
      replicas[to] = trackedMerge(replicas[to] as Tracked, replicas[index(step.from)] as Tracked);
      snapshots.push(replicas[to] as Tracked);
      continue;
    }
    const at = index(step.at);
    if (step.kind === "restart") {
      // What it never synced is gone; what it did lives on in the others.
      replicas[at] = { state: pnEmpty(), ops: new Map() };
      restarts[at] = (restarts[at] as number) + 1;
      continue;
    }
    const region = history.regions[at] as RegionId;
    const life = lifeAfter(restarts[at] as number);
    const before = replicas[at] as Tracked;
    const result = pnApply(before.state, step.delta, region, life);
    const wouldBe = expectedValue(before) + BigInt(step.delta);
    const ownTotal = [...before.ops]
      .filter(([dot, delta]) => dot.startsWith(`${region}:${life}:`) && (step.delta < 0 ? delta < 0 : delta > 0))
      .reduce((sum, [, delta]) => sum + (delta < 0 ? -delta : delta), 0n);
    const totalOverflows = ownTotal + BigInt(Math.abs(step.delta)) > BigInt(MAX);
    const valueOverflows = wouldBe > BigInt(MAX) || wouldBe < -BigInt(MAX);
    expect(result.ok ? "ok" : result.error.code).toBe(totalOverflows || valueOverflows ? "counter_overflow" : "ok");
    if (!result.ok) {
      refused += 1;
      continue;
    }
    // The operation's identity: region, life, and its number in that life's state.
    const dot = `${region}:${life}:${vvGet(result.value.vv, region)}`;
    replicas[at] = { state: result.value, ops: new Map([...before.ops, [dot, BigInt(step.delta)]]) };
    snapshots.push(replicas[at] as Tracked);
  }
  return { snapshots, finals: replicas, refused };
}

const statesArb = fc.tuple(historyArb, fc.array(fc.nat(), { minLength: 3, maxLength: 3 })).map(([history, picks]) => {
  const { snapshots } = replay(history);
  const all: PnCounter[] = [pnEmpty(), ...snapshots.map((tracked) => tracked.state)];
  return picks.map((i) => all[i % all.length] as PnCounter);
});

function hex(state: PnCounter): string {
  return Buffer.from(encodePn(state)).toString("hex");
}

function applied(result: Result<PnCounter>): PnCounter {
  if (!result.ok) throw new Error(`apply failed: ${result.error.message}`);
  return result.value;
}

function applyAll(state: PnCounter, ops: ReadonlyArray<readonly [RegionId, number]>): PnCounter {
  return ops.reduce((s, [region, delta]) => applied(pnApply(s, delta, region)), state);
}

function expectOverflow(result: Result<unknown>): void {
  expect(result).toEqual({
    ok: false,
    error: { code: "counter_overflow", message: expect.stringContaining(String(MAX)), details: { limit: MAX } },
  });
}

/** Writes raw vectors back to back, to build encodings pnApply would never produce. */
function encodeParts(...parts: Array<Record<string, number>>): Uint8Array {
  const writer = new ByteWriter();
  for (const part of parts) writeVv(writer, part);
  return writer.finish();
}

describe("pnApply", () => {
  it("adds increments to p and decrements to n of the writing region", () => {
    const state = applyAll(pnEmpty(), [
      ["weur", 5],
      ["weur", -2],
      ["apac", 3],
      ["weur", 4],
      ["wnam", -7],
    ]);
    expect(state.p).toEqual({ weur: 9, apac: 3 });
    expect(state.n).toEqual({ wnam: 7, weur: 2 });
    expect(Object.keys(state.n)).toEqual(["wnam", "weur"]);
    expect(state.vv).toEqual({ wnam: 1, weur: 3, apac: 1 });
    expect(pnValue(state)).toEqual({ ok: true, value: 3 });
    expect(pnValueExact(state)).toBe(3n);
  });

  it("counts an increment by zero as an operation that changes the version but not the value", () => {
    const before = applyAll(pnEmpty(), [["enam", 4]]);
    const after = applied(pnApply(before, 0, "enam"));
    expect(after.p).toEqual(before.p);
    expect(after.n).toEqual({});
    expect(vvCompare(before.vv, after.vv)).toBe("before");
    expect(pnValue(after)).toEqual({ ok: true, value: 4 });
    expect(applied(pnApply(pnEmpty(), 0, "sam"))).toEqual({ p: {}, n: {}, vv: { sam: 1 } });
  });

  it("leaves the input state untouched", () => {
    const state = applyAll(pnEmpty(), [["oc", 1]]);
    const copy = hex(state);
    applied(pnApply(state, 10, "oc"));
    applied(pnApply(state, -10, "afr"));
    expect(hex(state)).toBe(copy);
  });

  it("refuses a delta that is not a safe integer (a programmer error: the adapter validates)", () => {
    expect(() => pnApply(pnEmpty(), 1.5, "me")).toThrow("safe integer");
    expect(() => pnApply(pnEmpty(), MAX + 1, "me")).toThrow("safe integer");
    expect(() => pnApply(pnEmpty(), Number.NaN, "me")).toThrow("safe integer");
  });
});

describe("overflow", () => {
  it("fails when the value would leave the safe range, at the exact boundary", () => {
    const top = applied(pnApply(pnEmpty(), MAX, "weur"));
    expect(pnValue(top)).toEqual({ ok: true, value: MAX });
    expectOverflow(pnApply(top, 1, "apac"));
    expect(pnValue(applied(pnApply(top, -1, "apac")))).toEqual({ ok: true, value: MAX - 1 });

    const bottom = applied(pnApply(pnEmpty(), -MAX, "weur"));
    expect(pnValue(bottom)).toEqual({ ok: true, value: -MAX });
    expectOverflow(pnApply(bottom, -1, "apac"));
    expect(pnValue(applied(pnApply(bottom, 1, "apac")))).toEqual({ ok: true, value: -MAX + 1 });
  });

  it("fails when one region's running total would pass 2^53 - 1, even if the value would not", () => {
    // weur has incremented by MAX and decremented by MAX: value 0, but no room left in either total.
    const full = applyAll(pnEmpty(), [
      ["weur", MAX],
      ["weur", -MAX],
    ]);
    expect(pnValue(full)).toEqual({ ok: true, value: 0 });
    expectOverflow(pnApply(full, 1, "weur"));
    expectOverflow(pnApply(full, -1, "weur"));
    // Another region still has room, and a zero delta adds nothing to any total.
    expect(pnValue(applied(pnApply(full, 1, "enam")))).toEqual({ ok: true, value: 1 });
    expect(applied(pnApply(full, 0, "weur")).vv).toEqual({ weur: 3 });
  });

  it("reports a merged value past the safe range as a typed failure, with the exact value kept", () => {
    const a = applied(pnApply(pnEmpty(), MAX, "weur"));
    const b = applied(pnApply(pnEmpty(), 2, "apac"));
    const merged = pnMerge(a, b);
    expect(pnValueExact(merged)).toBe(BigInt(MAX) + 2n);
    expectOverflow(pnValue(merged));
    // The merged state still replicates, and an opposite delta brings the value back.
    expect(hex(decodePn(encodePn(merged)))).toBe(hex(merged));
    expectOverflow(pnApply(merged, 1, "enam"));
    expect(pnValue(applied(pnApply(merged, -3, "enam")))).toEqual({ ok: true, value: MAX - 1 });

    const low = pnMerge(applied(pnApply(pnEmpty(), -MAX, "weur")), applied(pnApply(pnEmpty(), -MAX, "apac")));
    expect(pnValueExact(low)).toBe(-2n * BigInt(MAX));
    expectOverflow(pnValue(low));
  });

  it("computes the value exactly even when the totals' sum is past 2^53", () => {
    const state = pnMerge(
      applyAll(pnEmpty(), [
        ["weur", MAX],
        ["weur", -MAX],
      ]),
      applyAll(pnEmpty(), [
        ["apac", MAX],
        ["apac", -(MAX - 1)],
      ]),
    );
    // In floating point, (2 MAX) - (2 MAX - 1) rounds to 0 or 2; exactly it is 1.
    expect(pnValue(state)).toEqual({ ok: true, value: 1 });
  });

  it("fails on apply exactly when the model says the total or value overflows, across random histories", () => {
    let refused = 0;
    fc.assert(
      fc.property(historyArb, (history) => {
        refused += replay(history).refused;
      }),
      { seed: SEED, numRuns: 300 },
    );
    // The generator must reach the overflow branch, or the check inside replay proves little.
    expect(refused).toBeGreaterThan(0);
  });
});

describe("pnMerge", () => {
  it("is commutative, associative and idempotent", () => {
    fc.assert(
      fc.property(statesArb, ([a, b, c]) => {
        if (a === undefined || b === undefined || c === undefined) throw new Error("three states expected");
        expect(() => checkMergeLaws(PN, a, b, c)).not.toThrow();
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("has a value equal to the sum of every delta it includes", () => {
    fc.assert(
      fc.property(historyArb, (history) => {
        const { snapshots, finals } = replay(history);
        for (const tracked of snapshots) {
          expect(pnValueExact(tracked.state)).toBe(expectedValue(tracked));
          expect(vvSum(tracked.state.vv)).toBe(tracked.ops.size);
        }
        const all = finals.reduce(trackedMerge);
        expect(pnValueExact(all.state)).toBe(expectedValue(all));
        const exact = expectedValue(all);
        const inRange = exact <= BigInt(MAX) && exact >= -BigInt(MAX);
        expect(pnValue(all.state)).toMatchObject(
          inRange ? { ok: true, value: Number(exact) } : { ok: false, error: { code: "counter_overflow" } },
        );
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("converges to one encoded state under every delivery order and any duplication", () => {
    fc.assert(
      fc.property(historyArb, fc.nat(), fc.array(fc.nat(), { maxLength: 8 }), (history, extra, duplicates) => {
        const { snapshots, finals } = replay(history);
        const extraState = snapshots[extra % Math.max(1, snapshots.length)] ?? { state: pnEmpty(), ops: new Map() };
        // At most five states, so every permutation (120) is checked exhaustively.
        const states = [...finals, extraState].slice(0, 5).map((tracked) => tracked.state);
        const expected = hex(checkConvergence(PN, states));
        const withDuplicates = [...states, ...duplicates.map((i) => states[i % states.length] as PnCounter)];
        expect(hex(withDuplicates.reduce(pnMerge, pnEmpty()))).toBe(expected);
        expect(hex([...withDuplicates].reverse().reduce(pnMerge, pnEmpty()))).toBe(expected);
      }),
      { seed: SEED, numRuns: 150 },
    );
  });
});

describe("encoding", () => {
  it("round-trips every reachable state", () => {
    fc.assert(
      fc.property(historyArb, (history) => {
        for (const { state } of [{ state: pnEmpty() }, ...replay(history).snapshots]) {
          const decoded = decodePn(encodePn(state));
          expect(decoded).toEqual(state);
          expect(hex(decoded)).toBe(hex(state));
        }
      }),
      { seed: SEED },
    );
  });

  it("lays out the operation vector, then increments, then decrements", () => {
    const state = applyAll(pnEmpty(), [
      ["enam", 300],
      ["enam", -1],
    ]);
    // vv {enam: 2}; p {enam: 300}; n {enam: 1}. Region index of enam is 1; 300 is 0xac 0x02.
    expect([...encodePn(state)]).toEqual([1, 1, 2, 1, 1, 0xac, 0x02, 1, 1, 1]);
    expect([...encodePn(pnEmpty())]).toEqual([0, 0, 0]);
  });

  it("rejects non-canonical input and totals from a region with no operation", () => {
    expect(decodePn(encodeParts({ enam: 1 }, { enam: 5 }, {}))).toEqual({ p: { enam: 5 }, n: {}, vv: { enam: 1 } });
    expect(() => decodePn(encodeParts({ enam: 1 }, { weur: 5 }, {}))).toThrow("no operation");
    expect(() => decodePn(encodeParts({ enam: 1 }, {}, { weur: 5 }))).toThrow("no operation");
    expect(() => decodePn(Uint8Array.from([0, 0, 0, 0]))).toThrow("empty lives section");
    expect(() => decodePn(Uint8Array.from([0, 0]))).toThrow(DecodeError);
    expect(() => decodePn(Uint8Array.from([1, 1, 1, 1, 1, 0, 0]))).toThrow("zero entry");
    expect(() => decodePn(Uint8Array.from([2, 3, 1, 1, 1, 0, 0]))).toThrow("out of order");
  });
});

/** A counter's encoding up to its lives section: operations `vv`, no first-life totals. */
function base(vv: Record<string, number>): ByteWriter {
  const writer = new ByteWriter();
  writeVv(writer, vv);
  writeVv(writer, {});
  writeVv(writer, {});
  return writer;
}

describe("lives", () => {
  const LIFE = 2 ** 20;

  it("counts a restored region's increments apart from an earlier increment it never saw", () => {
    // wnam's first life counted to 5, then +5 more that only enam holds when wnam is restored.
    const five = applyAll(pnEmpty(), [["wnam", 5]]);
    const unseen = applied(pnApply(five, 5, "wnam"));
    // Restored, wnam pulled the 5 from weur, and adds 1 in its new life.
    const restored = applied(pnApply(five, 1, "wnam", LIFE));
    expect(restored.lives).toEqual([{ region: "wnam", life: LIFE, p: 1, n: 0 }]);
    const merged = pnMerge(unseen, restored);
    expect(pnValueExact(merged)).toBe(11n);
    expect(hex(pnMerge(restored, unseen))).toBe(hex(merged));
  });

  it("keeps each life's totals apart and merges them by pointwise maximum", () => {
    const a = applyAll(pnEmpty(), [["enam", 2]]);
    const b = applied(pnApply(applied(pnApply(a, -3, "enam", LIFE)), 4, "enam", 2 * LIFE));
    const c = applied(pnApply(a, 7, "weur", LIFE));
    const merged = pnMerge(pnMerge(b, c), a);
    expect(merged.lives).toEqual([
      { region: "enam", life: LIFE, p: 0, n: 3 },
      { region: "enam", life: 2 * LIFE, p: 4, n: 0 },
      { region: "weur", life: LIFE, p: 7, n: 0 },
    ]);
    expect(pnValueExact(merged)).toBe(2n - 3n + 4n + 7n);
    expect(decodePn(encodePn(merged))).toEqual(merged);
  });

  it("leaves a first-life counter's encoding as it was, and an increment by zero adds no life", () => {
    const zero = applied(pnApply(pnEmpty(), 0, "enam", LIFE));
    expect(zero.lives).toBeUndefined();
    expect([...encodePn(zero)]).toEqual([1, 1, 1, 0, 0]);
  });

  it("rejects lives out of order, life 0, an entry without totals, and a life with no operation", () => {
    const enam = 1;
    const weur = 2;
    const twoLives = base({ enam: 1, weur: 1 }).varint(2).byte(weur).varint(LIFE).varint(1).varint(0);
    expect(() => decodePn(twoLives.byte(enam).varint(LIFE).varint(1).varint(0).finish())).toThrow("out of order");
    expect(() => decodePn(base({ enam: 1 }).varint(1).byte(enam).varint(0).varint(1).varint(0).finish())).toThrow(
      "life 0",
    );
    expect(() => decodePn(base({ enam: 1 }).varint(1).byte(enam).varint(LIFE).varint(0).varint(0).finish())).toThrow(
      "no totals",
    );
    expect(() => decodePn(base({ enam: 1 }).varint(1).byte(weur).varint(LIFE).varint(1).varint(0).finish())).toThrow(
      "no operation",
    );
  });
});
