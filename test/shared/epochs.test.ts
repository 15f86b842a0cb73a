// Fencing for strong prefixes: tagged states merge by epoch first (a higher epoch replaces a lower
// one) and as CRDTs within one epoch, and content of an older epoch is merged, skipped, held back
// or refused by one verdict.
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteWriter } from "../../shared/bytes.ts";
import { type Result } from "../../shared/errors.ts";
import { type HlcStamp, hlcNow, hlcReceive, hlcZero } from "../../shared/hlc.ts";
import { type RegionId } from "../../shared/regions.ts";
import { type TaggedState, includes, judgeEpoch, mergeTagged } from "../../shared/store/epochs.ts";
import {
  type KeyOp,
  type KeyState,
  type KeyType,
  applyKeyOp,
  encodeKeyState,
  keyVv,
  mergeKeyState,
} from "../../shared/store/key-state.ts";
import { type PrimaryRecord } from "../../shared/store/storage.ts";
import { vvDescends } from "../../shared/version-vector.ts";
import {
  type Lattice,
  type ReplicatedHistory,
  add,
  change,
  checkConvergence,
  checkMergeLaws,
  historyArb,
  put,
} from "./support.ts";

const HISTORIES = historyArb(true);

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0xe_90c5;

/**
 * Tagged states as the laws see them: `undefined` is a replica with no row for the key (the
 * identity), and the encoding compared is the epoch followed by the key state's canonical form.
 */
const TAGGED: Lattice<TaggedState | undefined> = {
  merge: (a, b) => (b === undefined ? a : mergeTagged(a, b).merged),
  empty: () => undefined,
  encode: (tagged) => {
    if (tagged === undefined) return new Uint8Array(0);
    const epoch = new ByteWriter().varint(tagged.epoch).finish();
    return Uint8Array.from([...epoch, ...encodeKeyState(tagged.state)]);
  },
};

function applied(result: Result<KeyState>): KeyState {
  if (!result.ok) throw new Error(`apply failed: ${result.error.code}: ${result.error.message}`);
  return result.value;
}

function stamp(wallMs: number, region: RegionId): HlcStamp {
  return { wallMs, counter: 0, region };
}

/** `op` by `region` at wall time `wallMs` on top of `state`. */
function write(state: KeyState | undefined, op: KeyOp, region: RegionId, wallMs: number): KeyState {
  return applied(applyKeyOp(state, op, region, stamp(wallMs, region)));
}

/** One region's replica of a strong key: its clock and its tagged state. */
interface Replica {
  readonly region: RegionId;
  clock: HlcStamp;
  physicalMs: number;
  tagged: TaggedState | undefined;
}

/**
 * Replays a history: writes are stamped by the writer's clock and tagged with the epoch the
 * writer holds (1 before any promotion); syncs merge tagged states; a promotion moves the
 * replica to one epoch above every epoch issued so far and re-tags what it holds (as a
 * recovery re-logs the prefix). Returns every tagged state that existed
 * and each replica's final one.
 */
function replay(history: ReplicatedHistory): { snapshots: TaggedState[]; finals: Array<TaggedState | undefined> } {
  const replicas: Replica[] = history.regions.map((region) => ({
    region,
    clock: hlcZero(region),
    physicalMs: 1_000,
    tagged: undefined,
  }));
  let epochMax = 1;
  const snapshots: TaggedState[] = [];
  const pick = (index: number): Replica => replicas[index % replicas.length] as Replica;
  for (const step of history.steps) {
    if (step.kind === "promote") {
      const at = pick(step.at);
      if (at.tagged === undefined) continue;
      epochMax += 1;
      at.tagged = { state: at.tagged.state, epoch: epochMax };
      snapshots.push(at.tagged);
    } else if (step.kind === "sync") {
      const from = pick(step.from);
      const to = pick(step.to);
      to.physicalMs += step.dtMs;
      if (from.tagged === undefined) continue;
      if (from.tagged.state.type === "register") {
        const received = hlcReceive(to.clock, from.tagged.state.register.stamp, to.physicalMs);
        if (!received.ok) throw new Error(`clocks within a few ms refused: ${received.error.message}`);
        to.clock = received.stamp;
      }
      to.tagged = mergeTagged(to.tagged, from.tagged).merged;
      snapshots.push(to.tagged);
    } else {
      const at = pick(step.at);
      at.physicalMs += step.dtMs;
      at.clock = hlcNow(at.clock, at.physicalMs);
      const result = applyKeyOp(at.tagged?.state, step.op, at.region, at.clock);
      if (!result.ok) continue;
      at.tagged = { state: result.value, epoch: at.tagged?.epoch ?? 1 };
      snapshots.push(at.tagged);
    }
  }
  return { snapshots, finals: replicas.map((replica) => replica.tagged) };
}

const triplesArb = fc.tuple(HISTORIES, fc.array(fc.nat(), { minLength: 3, maxLength: 3 })).map(([history, picks]) => {
  const all: Array<TaggedState | undefined> = [undefined, ...replay(history).snapshots];
  return picks.map((i) => all[i % all.length]) as [
    TaggedState | undefined,
    TaggedState | undefined,
    TaggedState | undefined,
  ];
});

const pairsArb = triplesArb
  .map(([a, b]) => [a, b] as const)
  .filter((pair): pair is readonly [TaggedState, TaggedState] => pair[0] !== undefined && pair[1] !== undefined);

describe("mergeTagged laws", () => {
  it("is commutative, associative and idempotent over mixed epochs and types", () => {
    let mixedEpochs = 0;
    const types = new Set<KeyType>();
    fc.assert(
      fc.property(triplesArb, ([a, b, c]) => {
        const present = [a, b, c].filter((t) => t !== undefined);
        if (new Set(present.map((t) => t.epoch)).size > 1) mixedEpochs += 1;
        for (const t of present) types.add(t.state.type);
        expect(() => checkMergeLaws(TAGGED, a, b, c)).not.toThrow();
      }),
      { seed: SEED, numRuns: 500 },
    );
    // The generator must mix epochs often and reach every type, or the laws are checked on too little.
    expect(mixedEpochs).toBeGreaterThan(50);
    expect([...types].sort()).toEqual(["counter", "register", "set"]);
  });

  it("converges to one tagged state of the highest epoch present, in every delivery order", () => {
    fc.assert(
      fc.property(HISTORIES, (history) => {
        const { finals } = replay(history);
        const merged = checkConvergence(TAGGED, finals);
        const epochs = finals.filter((t) => t !== undefined).map((t) => t.epoch);
        expect(merged?.epoch).toBe(epochs.length === 0 ? undefined : Math.max(...epochs));
      }),
      { seed: SEED, numRuns: 150 },
    );
  });
});

describe("mergeTagged", () => {
  it("takes the remote state when there is none locally", () => {
    const remote = { state: write(undefined, add(1), "weur", 10), epoch: 3 };
    expect(mergeTagged(undefined, remote)).toEqual({ merged: remote });
  });

  it("lets the higher epoch win outright, whichever side it is on", () => {
    fc.assert(
      fc.property(pairsArb, ([a, b]) => {
        fc.pre(a.epoch !== b.epoch);
        const higher = a.epoch > b.epoch ? a : b;
        expect(mergeTagged(a, b).merged).toBe(higher);
        expect(mergeTagged(b, a).merged).toBe(higher);
      }),
      { seed: SEED, numRuns: 300 },
    );
    // A concrete case: the older epoch's larger concurrent increments are not added in.
    const newer = { state: write(undefined, add(1), "weur", 10), epoch: 2 };
    const older = { state: write(undefined, add(100), "apac", 10), epoch: 1 };
    expect(mergeTagged(older, newer).merged).toBe(newer);
  });

  it("merges equal epochs as CRDTs, passing on the CRDT's conflict", () => {
    fc.assert(
      fc.property(pairsArb, ([a, b]) => {
        fc.pre(a.epoch === b.epoch);
        const expected = mergeKeyState(a.state, b.state);
        const result = mergeTagged(a, b);
        expect(result.merged).toEqual({ state: expected.state, epoch: a.epoch });
        expect(result.conflict).toEqual(expected.conflict);
      }),
      { seed: SEED, numRuns: 300 },
    );
    const counter = mergeTagged(
      { state: write(undefined, add(1), "weur", 10), epoch: 2 },
      { state: write(undefined, add(100), "apac", 10), epoch: 2 },
    );
    expect(counter.merged.epoch).toBe(2);
    expect(counter.merged.state).toEqual({
      type: "counter",
      counter: { p: { weur: 1, apac: 100 }, n: {}, vv: { weur: 1, apac: 1 } },
    });
  });

  it("reports a fenced conflict exactly when the winner does not include the older epoch's state", () => {
    const seen = { fenced: 0, included: 0 };
    fc.assert(
      fc.property(pairsArb, ([a, b]) => {
        fc.pre(a.epoch !== b.epoch);
        const [winner, loser] = a.epoch > b.epoch ? [a, b] : [b, a];
        const included = winner.state.type === loser.state.type && vvDescends(keyVv(winner.state), keyVv(loser.state));
        expect(includes(winner.state, loser.state)).toBe(included);
        for (const result of [mergeTagged(a, b), mergeTagged(b, a)])
          expect(result.conflict).toEqual(included ? undefined : { kind: "fenced", winner, loser });
        seen[included ? "included" : "fenced"] += 1;
      }),
      { seed: SEED, numRuns: 500 },
    );
    // Both branches must be reached, or the property says nothing about one of them.
    expect(seen.fenced).toBeGreaterThan(0);
    expect(seen.included).toBeGreaterThan(0);
  });

  it("does not report an older state the new epoch recovered, and reports one written after it", () => {
    const base = write(undefined, change(["a"]), "weur", 10);
    const recovered = { state: write(base, change(["b"]), "enam", 20), epoch: 2 };
    expect(mergeTagged({ state: base, epoch: 1 }, recovered)).toEqual({ merged: recovered });
    // The deposed primary wrote once more under epoch 1 after the recovery read it.
    const late = { state: write(base, change(["c"]), "weur", 30), epoch: 1 };
    expect(mergeTagged(late, recovered)).toEqual({
      merged: recovered,
      conflict: { kind: "fenced", winner: recovered, loser: late },
    });
  });

  it("reports an older state of another type as fenced even when the winner's vector covers it", () => {
    const counter = write(undefined, add(1), "weur", 10);
    const register = write(undefined, put("r"), "weur", 10);
    expect(vvDescends(keyVv(register), keyVv(counter))).toBe(true);
    const winner = { state: register, epoch: 2 };
    const loser = { state: counter, epoch: 1 };
    expect(mergeTagged(loser, winner).conflict).toEqual({ kind: "fenced", winner, loser });
  });
});

describe("judgeEpoch", () => {
  const known: PrimaryRecord = { region: "enam", epoch: 3, settledEpoch: 3 };
  const unsettled: PrimaryRecord = { ...known, settledEpoch: 2 };
  const base = write(undefined, add(1), "weur", 10);
  const later = write(base, add(1), "weur", 20);
  const local = { state: later, epoch: 3 };

  it("merges anything outside a strong prefix", () => {
    for (const epoch of [0, 1, 5]) {
      expect(judgeEpoch(undefined, epoch, local, base)).toBe("merge");
      expect(judgeEpoch(undefined, epoch, undefined, later)).toBe("merge");
    }
  });

  it("merges content of the known epoch or a newer one, settled or not", () => {
    for (const record of [known, unsettled]) {
      expect(judgeEpoch(record, 3, local, base)).toBe("merge");
      expect(judgeEpoch(record, 4, undefined, base)).toBe("merge");
    }
  });

  it("calls older content already included here a duplicate, settled or not", () => {
    for (const record of [known, unsettled]) {
      expect(judgeEpoch(record, 2, local, base)).toBe("duplicate");
      expect(judgeEpoch(record, 2, { state: later, epoch: 2 }, later)).toBe("duplicate");
    }
  });

  it("holds back older content not included here until the new primary's state is taken in", () => {
    const concurrent = write(undefined, add(5), "apac", 15);
    expect(judgeEpoch(unsettled, 2, local, concurrent)).toBe("wait");
    expect(judgeEpoch(unsettled, 2, undefined, base)).toBe("wait");
    // A local state of an even older epoch proves nothing about what epoch 2 held.
    expect(judgeEpoch(unsettled, 2, { state: later, epoch: 1 }, base)).toBe("wait");
  });

  it("fences older content not included here once the new primary's state is taken in", () => {
    const concurrent = write(undefined, add(5), "apac", 15);
    expect(judgeEpoch(known, 2, local, concurrent)).toBe("fence");
    expect(judgeEpoch(known, 2, undefined, base)).toBe("fence");
    expect(judgeEpoch(known, 2, { state: later, epoch: 1 }, base)).toBe("fence");
    // Older content that is ahead of what is held here is not included either.
    expect(judgeEpoch(known, 2, { state: base, epoch: 3 }, later)).toBe("fence");
  });
});
