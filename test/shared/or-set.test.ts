import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteWriter, DecodeError } from "../../shared/bytes.ts";
import {
  type OrSet,
  type OrSetOp,
  decodeOrset,
  encodeOrset,
  orsetApply,
  orsetEmpty,
  orsetHas,
  orsetMembers,
  orsetMerge,
} from "../../shared/crdt/or-set.ts";
import { type RegionId } from "../../shared/regions.ts";
import {
  type Dot,
  type VersionVector,
  compareDots,
  vvFrom,
  vvGet,
  vvHasDot,
  vvIncrement,
  writeDot,
  writeVv,
} from "../../shared/version-vector.ts";
import { type Lattice, checkConvergence, checkMergeLaws } from "./support.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0x0523;
const REGIONS: readonly RegionId[] = ["wnam", "enam", "weur", "apac"];
// A small universe, so adds and removes of the same element collide often.
const ELEMENTS = ["a", "b", "c", "d"];

const add = (...elements: string[]): OrSetOp => ({ add: elements, remove: [] });
const remove = (...elements: string[]): OrSetOp => ({ add: [], remove: elements });

/** One step of a replayed history; indices are taken modulo the number of regions. */
type Step = { kind: "op"; at: number; add: string[]; remove: string[] } | { kind: "merge"; at: number; from: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant("op" as const),
    at: fc.nat(3),
    add: fc.subarray(ELEMENTS),
    remove: fc.subarray(ELEMENTS),
  }),
  fc.record({ kind: fc.constant("merge" as const), at: fc.nat(3), from: fc.nat(3) }),
);
const historyArb = fc.record({ regions: fc.integer({ min: 2, max: 4 }), steps: fc.array(stepArb, { maxLength: 40 }) });

interface AppliedOp {
  readonly observed: VersionVector;
  readonly dot: Dot;
  readonly op: OrSetOp;
}

/**
 * Replays a history: each region applies operations to its own state and now and then merges
 * another region's state. Returns every state that ever existed, the final states and each
 * operation with the vector it observed.
 */
function replay(history: { regions: number; steps: readonly Step[] }) {
  const n = history.regions;
  const timelines: OrSet[][] = Array.from({ length: n }, () => [orsetEmpty()]);
  const current = (i: number) => timelines[i]?.at(-1) as OrSet;
  const ops: AppliedOp[] = [];
  for (const step of history.steps) {
    const at = step.at % n;
    const state = current(at);
    if (step.kind === "merge") timelines[at]?.push(orsetMerge(state, current(step.from % n)));
    else {
      const region = REGIONS[at] as RegionId;
      ops.push({ observed: state.vv, dot: vvIncrement(state.vv, region).dot, op: step });
      timelines[at]?.push(orsetApply(state, step, region));
    }
  }
  return { all: timelines.flat(), finals: timelines.map((t) => t.at(-1) as OrSet), ops };
}

/** The paper's add-wins semantics: an add's dot survives iff no operation on the element saw it. */
function expectedEntries(ops: readonly AppliedOp[]) {
  return ELEMENTS.map((element) => ({
    element,
    dots: ops
      .filter((a) => a.op.add.includes(element))
      .filter(
        (a) =>
          !ops.some(
            (o) =>
              o !== a && (o.op.add.includes(element) || o.op.remove.includes(element)) && vvHasDot(o.observed, a.dot),
          ),
      )
      .map((a) => a.dot)
      .sort(compareDots),
  })).filter((entry) => entry.dots.length > 0);
}

const OR: Lattice<OrSet> = { merge: orsetMerge, empty: orsetEmpty, encode: encodeOrset };
const fold = (states: readonly OrSet[]) => states.reduce(orsetMerge, orsetEmpty());
const pick = (all: readonly OrSet[], i: number) => all[i % all.length] as OrSet;

describe("or-set merge laws", () => {
  it("is commutative, associative and idempotent on replayed histories", () => {
    fc.assert(
      fc.property(historyArb, fc.nat(), fc.nat(), fc.nat(), (history, i, j, k) => {
        const { all } = replay(history);
        expect(() => checkMergeLaws(OR, pick(all, i), pick(all, j), pick(all, k))).not.toThrow();
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("converges in every delivery order, with duplicates, to the add-wins outcome", () => {
    fc.assert(
      fc.property(historyArb, fc.nat(), (history, extra) => {
        const { all, finals, ops } = replay(history);
        const states = [...finals, pick(all, extra)];
        expect(() => checkConvergence(OR, states)).not.toThrow();
        expect(fold(states).entries).toEqual(expectedEntries(ops));
      }),
      { seed: SEED, numRuns: 100 },
    );
  });

  it("round-trips every replayed state through the canonical encoding", () => {
    fc.assert(
      fc.property(historyArb, (history) => {
        for (const state of replay(history).all) {
          const bytes = encodeOrset(state);
          expect(decodeOrset(bytes)).toEqual(state);
          expect(encodeOrset(decodeOrset(bytes))).toEqual(bytes);
        }
      }),
      { seed: SEED, numRuns: 100 },
    );
  });
});

describe("or-set semantics", () => {
  it("lets an add win over a concurrent remove", () => {
    const base = orsetApply(orsetEmpty(), add("x"), "wnam");
    const removed = orsetApply(base, remove("x"), "enam");
    const readded = orsetApply(base, add("x"), "wnam");
    expect(orsetHas(removed, "x")).toBe(false);
    expect(orsetMembers(orsetMerge(removed, readded))).toEqual(["x"]);
    expect(orsetMembers(orsetMerge(readded, removed))).toEqual(["x"]);
  });

  it("lets a remove win over the adds it observed", () => {
    const west = orsetApply(orsetEmpty(), add("x"), "wnam");
    const east = orsetApply(orsetEmpty(), add("x"), "enam");
    const both = orsetMerge(west, east);
    expect(both.entries[0]?.dots).toHaveLength(2);
    const removed = orsetApply(both, remove("x"), "weur");
    expect(orsetMembers(orsetMerge(orsetMerge(removed, west), east))).toEqual([]);
  });

  it("treats removing an absent element as a no-op that still consumes a dot", () => {
    const base = orsetApply(orsetEmpty(), add("x"), "wnam");
    const after = orsetApply(base, remove("y"), "wnam");
    expect(after.entries).toEqual(base.entries);
    expect(vvGet(after.vv, "wnam")).toBe(2);
    expect(encodeOrset(after)).not.toEqual(encodeOrset(base));
  });

  it("re-adds after a remove with a fresh dot that an old replica cannot cancel", () => {
    const first = orsetApply(orsetEmpty(), add("x"), "wnam");
    const removed = orsetApply(first, remove("x"), "wnam");
    const readded = orsetApply(removed, add("x"), "wnam");
    expect(readded.entries).toEqual([{ element: "x", dots: [{ region: "wnam", counter: 3 }] }]);
    expect(orsetMerge(readded, first)).toEqual(readded);
    expect(orsetMembers(orsetMerge(removed, first))).toEqual([]);
  });

  it("keeps an element both removed and added by one operation, with only the new dot", () => {
    const west = orsetApply(orsetEmpty(), add("x"), "wnam");
    const both = orsetMerge(west, orsetApply(orsetEmpty(), add("x"), "enam"));
    const next = orsetApply(both, { add: ["x"], remove: ["x"] }, "wnam");
    expect(next.entries).toEqual([{ element: "x", dots: [{ region: "wnam", counter: 2 }] }]);
  });

  it("lists members in JavaScript string order and answers membership", () => {
    const state = orsetApply(orsetEmpty(), add("b", "a", "é", "B", "", "aa"), "wnam");
    expect(orsetMembers(state)).toEqual(["", "B", "a", "aa", "b", "é"]);
    for (const element of ["", "B", "a", "aa", "b", "é"]) expect(orsetHas(state, element)).toBe(true);
    for (const element of ["A", "c", "ab", " "]) expect(orsetHas(state, element)).toBe(false);
  });
});

/** Builds an encoding by hand: a vector, then (element, dots) entries. */
function encodeRaw(vv: VersionVector, entries: readonly [string, readonly Dot[]][]): Uint8Array {
  const writer = new ByteWriter();
  writeVv(writer, vv);
  writer.varint(entries.length);
  for (const [element, dots] of entries) {
    writer.string(element).varint(dots.length);
    for (const dot of dots) writeDot(writer, dot);
  }
  return writer.finish();
}

describe("or-set encoding", () => {
  const sample = orsetMerge(
    orsetApply(orsetEmpty(), add("x", "y"), "enam"),
    orsetApply(orsetEmpty(), add("x"), "wnam"),
  );

  it("round-trips a set with shared and multi-region dots", () => {
    expect(sample.entries.map((e) => e.dots.length)).toEqual([2, 1]);
    expect(decodeOrset(encodeOrset(sample))).toEqual(sample);
    expect(decodeOrset(encodeOrset(orsetEmpty()))).toEqual(orsetEmpty());
  });

  const vv = vvFrom([
    ["wnam", 2],
    ["enam", 1],
  ]);
  const w1: Dot = { region: "wnam", counter: 1 };
  const w2: Dot = { region: "wnam", counter: 2 };
  const e1: Dot = { region: "enam", counter: 1 };

  it("accepts the hand-built canonical form", () => {
    const bytes = encodeRaw(vv, [
      ["a", [w2, e1]],
      ["b", [w1]],
    ]);
    expect(orsetMembers(decodeOrset(bytes))).toEqual(["a", "b"]);
  });

  it.each([
    ["empty input", new Uint8Array(0)],
    ["garbage", Uint8Array.of(0xff, 0xff, 0xff)],
    ["trailing bytes", Uint8Array.of(...encodeOrset(sample), 0)],
    [
      "elements out of order",
      encodeRaw(vv, [
        ["b", [w1]],
        ["a", [w2]],
      ]),
    ],
    [
      "a repeated element",
      encodeRaw(vv, [
        ["a", [w1]],
        ["a", [w2]],
      ]),
    ],
    ["an element with no dots", encodeRaw(vv, [["a", []]])],
    ["dots out of order", encodeRaw(vv, [["a", [e1, w2]]])],
    ["two dots of one region", encodeRaw(vv, [["a", [w1, w2]]])],
    ["a dot outside the vector", encodeRaw(vv, [["a", [{ region: "enam", counter: 2 }]]])],
  ])("rejects %s", (_name, bytes) => {
    expect(() => decodeOrset(bytes)).toThrow(DecodeError);
  });
});
