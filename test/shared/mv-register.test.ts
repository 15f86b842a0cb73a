import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteWriter, DecodeError, utf8 } from "../../shared/bytes.ts";
import {
  type MvOp,
  type MvRegister,
  decodeMv,
  encodeMv,
  mvApply,
  mvEmpty,
  mvMerge,
  mvValues,
} from "../../shared/crdt/mv-register.ts";
import { type RegionId } from "../../shared/regions.ts";
import {
  type Dot,
  type VersionVector,
  compareDots,
  vvFrom,
  vvGet,
  vvHasDot,
  writeDot,
  writeVv,
} from "../../shared/version-vector.ts";
import { type Lattice, checkConvergence, checkMergeLaws } from "./support.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0x6d76;
const REGIONS: readonly RegionId[] = ["wnam", "enam", "weur", "apac"];

const put = (text: string): MvOp => ({ kind: "put", value: utf8(text), contentType: "text/plain" });
const text = (state: MvRegister): string[] =>
  mvValues(state).map((sibling) => new TextDecoder().decode(sibling.value as Uint8Array));

/** One step of a replayed history; indices are taken modulo the number of regions. */
type Step =
  | { kind: "write"; at: number; value: number; deleted: boolean; readFrom: number; readAge: number }
  | { kind: "merge"; at: number; from: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant("write" as const),
    at: fc.nat(3),
    value: fc.nat(255),
    deleted: fc.boolean(),
    readFrom: fc.nat(3),
    readAge: fc.nat(4),
  }),
  fc.record({ kind: fc.constant("merge" as const), at: fc.nat(3), from: fc.nat(3) }),
);
const historyArb = fc.record({ regions: fc.integer({ min: 2, max: 4 }), steps: fc.array(stepArb, { maxLength: 40 }) });

interface Write {
  readonly dot: Dot;
  readonly context: VersionVector;
  readonly value: Uint8Array | null;
}

/**
 * Replays a history: each region applies writes to its own state, with the context a client
 * read some steps earlier from some region, and now and then merges another region's state.
 * Returns every state that ever existed, the final states and each write with its context.
 */
function replay(history: { regions: number; steps: readonly Step[] }) {
  const n = history.regions;
  const timelines: MvRegister[][] = Array.from({ length: n }, () => [mvEmpty()]);
  const current = (i: number) => timelines[i]?.at(-1) as MvRegister;
  const writes: Write[] = [];
  for (const step of history.steps) {
    const at = step.at % n;
    if (step.kind === "merge") {
      timelines[at]?.push(mvMerge(current(at), current(step.from % n)));
      continue;
    }
    const read = timelines[step.readFrom % n] as MvRegister[];
    const context = (read[Math.max(0, read.length - 1 - step.readAge)] as MvRegister).vv;
    const op: MvOp = step.deleted
      ? { kind: "delete" }
      : { kind: "put", value: Uint8Array.of(step.value), contentType: step.value % 2 === 0 ? "a/b" : "" };
    const next = mvApply(current(at), op, REGIONS[at] as RegionId, context);
    const dot = next.siblings.find((s) => !current(at).siblings.some((o) => compareDots(o.dot, s.dot) === 0))?.dot;
    expect(dot).toBeDefined();
    writes.push({ dot: dot as Dot, context, value: op.kind === "put" ? op.value : null });
    timelines[at]?.push(next);
  }
  return { all: timelines.flat(), finals: timelines.map((t) => t.at(-1) as MvRegister), writes };
}

const MV: Lattice<MvRegister> = { merge: mvMerge, empty: mvEmpty, encode: encodeMv };
const fold = (states: readonly MvRegister[]) => states.reduce(mvMerge, mvEmpty());
const pick = (all: readonly MvRegister[], i: number) => all[i % all.length] as MvRegister;

describe("mv register merge laws", () => {
  it("is commutative, associative and idempotent on replayed histories", () => {
    fc.assert(
      fc.property(historyArb, fc.nat(), fc.nat(), fc.nat(), (history, i, j, k) => {
        const { all } = replay(history);
        expect(() => checkMergeLaws(MV, pick(all, i), pick(all, j), pick(all, k))).not.toThrow();
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("converges in every delivery order, with duplicates, to the writes no context covered", () => {
    fc.assert(
      fc.property(historyArb, fc.nat(), (history, extra) => {
        const { all, finals, writes } = replay(history);
        const states = [...finals, pick(all, extra)];
        expect(() => checkConvergence(MV, states)).not.toThrow();
        // The oracle from the paper's semantics: a write survives iff no write's context saw it.
        const survivors = writes
          .filter((w) => !writes.some((other) => vvHasDot(other.context, w.dot)))
          .map((w) => ({ dot: w.dot, value: w.value }))
          .sort((x, y) => compareDots(x.dot, y.dot));
        expect(fold(states).siblings.map((s) => ({ dot: s.dot, value: s.value }))).toEqual(survivors);
      }),
      { seed: SEED, numRuns: 100 },
    );
  });

  it("round-trips every replayed state through the canonical encoding", () => {
    fc.assert(
      fc.property(historyArb, (history) => {
        for (const state of replay(history).all) {
          const bytes = encodeMv(state);
          expect(decodeMv(bytes)).toEqual(state);
          expect(encodeMv(decodeMv(bytes))).toEqual(bytes);
        }
      }),
      { seed: SEED, numRuns: 100 },
    );
  });
});

describe("mv register semantics", () => {
  it("keeps two concurrent writes as siblings until a write with the merged context", () => {
    const west = mvApply(mvEmpty(), put("west"), "wnam");
    const east = mvApply(mvEmpty(), put("east"), "enam");
    const merged = mvMerge(west, east);
    expect(text(merged)).toEqual(["west", "east"]);
    const resolved = mvApply(merged, put("both"), "weur", merged.vv);
    expect(resolved.siblings).toHaveLength(1);
    expect(text(mvMerge(mvMerge(resolved, west), east))).toEqual(["both"]);
  });

  it("keeps both writes of two clients that wrote through one region with the same stale context", () => {
    const base = mvApply(mvEmpty(), put("base"), "wnam");
    const first = mvApply(base, put("one"), "wnam", base.vv);
    const second = mvApply(first, put("two"), "wnam", base.vv);
    expect(text(second)).toEqual(["one", "two"]);
    expect(text(mvApply(second, put("three"), "wnam", second.vv))).toEqual(["three"]);
  });

  it("joins the client's context, so a write overwrites a sibling the region has not received yet", () => {
    const west = mvApply(mvEmpty(), put("west"), "wnam");
    // The client read `west` from wnam, then wrote through enam, which has never heard of it.
    const east = mvApply(mvEmpty(), put("east"), "enam", west.vv);
    expect(text(mvMerge(east, west))).toEqual(["east"]);
    expect(text(mvMerge(west, east))).toEqual(["east"]);
  });

  it("reads as deleted after a delete and as the new value after a rewrite", () => {
    const written = mvApply(mvEmpty(), put("v1"), "wnam");
    const deleted = mvApply(written, { kind: "delete" }, "wnam");
    expect(deleted.siblings).toEqual([{ dot: { region: "wnam", counter: 2 }, value: null, contentType: "" }]);
    expect(mvValues(deleted)).toEqual([]);
    const rewritten = mvApply(deleted, put("v2"), "wnam");
    expect(text(rewritten)).toEqual(["v2"]);
    expect(rewritten.siblings).toHaveLength(1);
    expect(text(mvMerge(written, rewritten))).toEqual(["v2"]);
  });

  it("keeps a write concurrent with a delete", () => {
    const written = mvApply(mvEmpty(), put("v1"), "wnam");
    const deleted = mvApply(written, { kind: "delete" }, "wnam");
    const concurrent = mvApply(written, put("v2"), "enam");
    const merged = mvMerge(deleted, concurrent);
    expect(merged.siblings).toHaveLength(2);
    expect(text(merged)).toEqual(["v2"]);
  });

  it("stays commutative for inputs that reuse a dot with different values", () => {
    const left = mvApply(mvEmpty(), put("left"), "wnam");
    const right = mvApply(mvEmpty(), put("right"), "wnam");
    expect(encodeMv(mvMerge(left, right))).toEqual(encodeMv(mvMerge(right, left)));
    expect(text(mvMerge(right, left))).toEqual(["left"]);
  });

  it("never grows siblings when one client rewrites with its context, among merges from others", () => {
    let west = mvEmpty();
    let east = mvEmpty();
    const history: MvRegister[] = [];
    for (let k = 0; k < 100; k += 1) {
      west = mvMerge(west, east);
      const context = west.vv;
      // A stale copy of an earlier west state arrives between the client's read and its write.
      west = mvMerge(west, history[Math.max(0, k - 10)] ?? mvEmpty());
      west = mvApply(west, put(`w${k}`), "wnam", context);
      expect(west.siblings).toHaveLength(1);
      expect(text(west)).toEqual([`w${k}`]);
      history.push(west);
      east = mvMerge(east, west);
      if (k % 7 === 0) east = mvApply(east, put(`e${k}`), "enam", east.vv);
      expect(east.siblings).toHaveLength(1);
    }
    expect(vvGet(west.vv, "wnam")).toBe(100);
    expect(vvGet(east.vv, "enam")).toBe(15);
  });
});

/** Builds an encoding by hand: a vector, then (dot, live?) siblings with a fixed value. */
function encodeRaw(vv: VersionVector, siblings: readonly [Dot, number][]): Uint8Array {
  const writer = new ByteWriter();
  writeVv(writer, vv);
  writer.varint(siblings.length);
  for (const [dot, flag] of siblings) {
    writeDot(writer, dot);
    writer.byte(flag);
    if (flag === 1) writer.string("t").bytes(Uint8Array.of(1));
  }
  return writer.finish();
}

describe("mv register encoding", () => {
  const sample = mvMerge(mvApply(mvEmpty(), put("x"), "enam"), mvApply(mvEmpty(), { kind: "delete" }, "wnam"));

  it("round-trips values, content types and delete siblings", () => {
    expect(sample.siblings.map((s) => s.dot.region)).toEqual(["wnam", "enam"]);
    expect(decodeMv(encodeMv(sample))).toEqual(sample);
    expect(decodeMv(encodeMv(mvEmpty()))).toEqual(mvEmpty());
  });

  const vv = vvFrom([
    ["wnam", 2],
    ["enam", 1],
  ]);
  const w1: Dot = { region: "wnam", counter: 1 };
  const w2: Dot = { region: "wnam", counter: 2 };
  const e1: Dot = { region: "enam", counter: 1 };

  it("accepts the hand-built canonical form", () => {
    expect(
      decodeMv(
        encodeRaw(vv, [
          [w2, 1],
          [e1, 0],
        ]),
      ).siblings,
    ).toHaveLength(2);
  });

  it.each([
    ["empty input", new Uint8Array(0)],
    ["garbage", Uint8Array.of(0xff, 0xff, 0xff)],
    ["trailing bytes", Uint8Array.of(...encodeMv(sample), 0)],
    [
      "siblings out of order",
      encodeRaw(vv, [
        [e1, 1],
        [w2, 1],
      ]),
    ],
    [
      "duplicate dots",
      encodeRaw(vv, [
        [w2, 1],
        [w2, 0],
      ]),
    ],
    ["a dot outside the vector", encodeRaw(vv, [[{ region: "wnam", counter: 3 }, 1]])],
    [
      "more siblings than events",
      encodeRaw(vv, [
        [w1, 1],
        [w2, 1],
        [e1, 1],
        [e1, 1],
      ]),
    ],
    ["a bad flag", encodeRaw(vv, [[w1, 2]])],
  ])("rejects %s", (_name, bytes) => {
    expect(() => decodeMv(bytes)).toThrow(DecodeError);
  });
});
