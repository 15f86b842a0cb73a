// A key's state: one of three CRDTs chosen by its first write, kept by its tombstone, and settled
// by a fixed type rank when two regions create the key as different types at once.
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DecodeError, utf8 } from "../../shared/bytes.ts";
import { encodeLww, type LwwRegister } from "../../shared/crdt/lww-register.ts";
import { type OrSet, encodeOrset, orsetMembers } from "../../shared/crdt/or-set.ts";
import { type PnCounter, encodePn, pnValue } from "../../shared/crdt/pn-counter.ts";
import { type Result } from "../../shared/errors.ts";
import { type HlcStamp, hlcNow, hlcReceive, hlcZero } from "../../shared/hlc.ts";
import { type RegionId } from "../../shared/regions.ts";
import {
  type KeyOp,
  type KeyState,
  type KeyType,
  applyKeyOp,
  decodeKeyState,
  encodeKeyState,
  keyIsLive,
  keyVersion,
  keyVv,
  mergeKeyState,
} from "../../shared/store/key-state.ts";
import { formatVv, vvCompare } from "../../shared/version-vector.ts";
import {
  type Lattice,
  type ReplicatedHistory,
  add,
  change,
  checkConvergence,
  checkMergeLaws,
  del,
  historyArb,
  put,
} from "./support.ts";

const HISTORIES = historyArb(false);

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0x4e_75a7;

const MAX = Number.MAX_SAFE_INTEGER;

/**
 * Key states as the laws see them: `undefined` is the key never written (merge's identity, as a
 * replica that has no row for the key), and the encoding compared is `encodeKeyState`'s.
 */
const KEY: Lattice<KeyState | undefined> = {
  merge: (a, b) => (b === undefined ? a : mergeKeyState(a, b).state),
  empty: () => undefined,
  encode: (state) => (state === undefined ? new Uint8Array(0) : encodeKeyState(state)),
};

function stamp(wallMs: number, region: RegionId, counter = 0): HlcStamp {
  return { wallMs, counter, region };
}

function applied(result: Result<KeyState>): KeyState {
  if (!result.ok) throw new Error(`apply failed: ${result.error.code}: ${result.error.message}`);
  return result.value;
}

function hex(state: KeyState): string {
  return Buffer.from(encodeKeyState(state)).toString("hex");
}

/** One op of each type, for loops over type pairs. */
const OP_OF: Readonly<Record<KeyType, KeyOp>> = { register: put("v"), counter: add(1), set: change(["a"]) };
const TYPES: readonly KeyType[] = ["register", "counter", "set"];

/** A key created as `type` by `region` at wall time `wallMs`, from nothing. */
function created(type: KeyType, region: RegionId, wallMs = 10): KeyState {
  return applied(applyKeyOp(undefined, OP_OF[type], region, stamp(wallMs, region)));
}

function asRegister(state: KeyState): LwwRegister {
  if (state.type !== "register") throw new Error(`expected a register, got a ${state.type}`);
  return state.register;
}

function asCounter(state: KeyState): PnCounter {
  if (state.type !== "counter") throw new Error(`expected a counter, got a ${state.type}`);
  return state.counter;
}

function asSet(state: KeyState): OrSet {
  if (state.type !== "set") throw new Error(`expected a set, got a ${state.type}`);
  return state.set;
}

describe("applyKeyOp", () => {
  it("creates each type from an unwritten key, consuming one dot of the writing region", () => {
    const reg = applied(applyKeyOp(undefined, put("hello"), "weur", stamp(10, "weur")));
    expect(reg).toEqual({
      type: "register",
      register: {
        stamp: stamp(10, "weur"),
        value: utf8("hello"),
        contentType: "text/plain",
        metadata: null,
        expirationSeconds: null,
        vv: { weur: 1 },
      },
    });
    const counter = applied(applyKeyOp(undefined, add(5), "weur", stamp(10, "weur")));
    expect(counter).toEqual({ type: "counter", counter: { p: { weur: 5 }, n: {}, vv: { weur: 1 } } });
    const set = applied(applyKeyOp(undefined, change(["b", "a"]), "weur", stamp(10, "weur")));
    expect(set.type).toBe("set");
    expect(orsetMembers(asSet(set))).toEqual(["a", "b"]);
    expect(keyVv(set)).toEqual({ weur: 1 });
  });

  it("updates a key of its own type", () => {
    const reg = applied(applyKeyOp(created("register", "weur"), del, "apac", stamp(20, "apac")));
    expect(asRegister(reg)).toEqual({
      stamp: stamp(20, "apac"),
      value: null,
      contentType: "",
      metadata: null,
      expirationSeconds: null,
      vv: { weur: 1, apac: 1 },
    });

    const counter = applied(applyKeyOp(created("counter", "weur"), add(-3), "weur", stamp(20, "weur")));
    expect(pnValue(asCounter(counter))).toEqual({ ok: true, value: -2 });
    expect(keyVv(counter)).toEqual({ weur: 2 });

    const set = applied(applyKeyOp(created("set", "weur"), change(["c"], ["a"]), "enam", stamp(20, "enam")));
    expect(orsetMembers(asSet(set))).toEqual(["c"]);
    expect(keyVv(set)).toEqual({ enam: 1, weur: 1 });
  });

  it("refuses an op of another type with type_mismatch naming the key's type, for every pair", () => {
    for (const existing of TYPES) {
      for (const wanted of TYPES.filter((type) => type !== existing)) {
        const state = created(existing, "weur");
        expect(applyKeyOp(state, OP_OF[wanted], "apac", stamp(20, "apac"))).toEqual({
          ok: false,
          error: {
            code: "type_mismatch",
            message: `this key holds a ${existing}; it cannot be used as a ${wanted}`,
            details: { type: existing },
          },
        });
      }
    }
  });

  it("keeps a deleted register's type: only a register op may write it again", () => {
    const deleted = applied(applyKeyOp(created("register", "weur"), del, "weur", stamp(20, "weur")));
    expect(asRegister(deleted).value).toBeNull();
    for (const op of [add(1), change(["a"])]) {
      const result = applyKeyOp(deleted, op, "weur", stamp(30, "weur"));
      expect(result.ok ? "ok" : result.error).toEqual(
        expect.objectContaining({ code: "type_mismatch", details: { type: "register" } }),
      );
    }
    const revived = applied(applyKeyOp(deleted, put("again"), "weur", stamp(30, "weur")));
    expect(asRegister(revived).value).toEqual(utf8("again"));
    expect(keyVv(revived)).toEqual({ weur: 3 });
  });

  it("fails with counter_overflow and leaves the state as it was, consuming no dot", () => {
    const full = applied(applyKeyOp(undefined, add(MAX), "weur", stamp(10, "weur")));
    const before = hex(full);
    const result = applyKeyOp(full, add(1), "apac", stamp(20, "apac"));
    expect(result).toEqual({
      ok: false,
      error: expect.objectContaining({ code: "counter_overflow", details: { limit: MAX } }),
    });
    expect(hex(full)).toBe(before);
    // The refused increment took no dot: the next write of apac is apac's first.
    const next = applied(applyKeyOp(full, add(-1), "apac", stamp(30, "apac")));
    expect(keyVv(next)).toEqual({ weur: 1, apac: 1 });
    expect(pnValue(asCounter(next))).toEqual({ ok: true, value: MAX - 1 });
  });

  it("leaves its input state untouched", () => {
    for (const type of TYPES) {
      const state = created(type, "weur");
      const copy = hex(state);
      applied(applyKeyOp(state, OP_OF[type], "weur", stamp(20, "weur")));
      expect(hex(state)).toBe(copy);
    }
  });
});

describe("mergeKeyState", () => {
  it("takes the remote state when the key has none locally", () => {
    for (const type of TYPES) {
      const remote = created(type, "apac");
      expect(mergeKeyState(undefined, remote)).toEqual({ state: remote });
    }
  });

  it("reports concurrent register writes, keeping the later stamp whichever side is local", () => {
    const early = created("register", "weur", 10);
    const late = applied(applyKeyOp(undefined, put("late"), "apac", stamp(20, "apac")));
    const expected = {
      state: { type: "register", register: { ...asRegister(late), vv: { weur: 1, apac: 1 } } },
      conflict: { kind: "register", conflict: { winner: asRegister(late), loser: asRegister(early), rule: "hlc" } },
    };
    expect(mergeKeyState(early, late)).toEqual(expected);
    expect(mergeKeyState(late, early)).toEqual(expected);
  });

  it("reports no conflict for an overwrite that saw the earlier write, or for equal vectors", () => {
    const first = created("register", "weur", 10);
    const overwrite = applied(applyKeyOp(first, put("newer"), "apac", stamp(20, "apac")));
    expect(vvCompare(keyVv(first), keyVv(overwrite))).toBe("before");
    expect(mergeKeyState(first, overwrite)).toEqual({ state: overwrite });
    expect(mergeKeyState(overwrite, first)).toEqual({ state: overwrite });
    expect(mergeKeyState(overwrite, overwrite)).toEqual({ state: overwrite });
  });

  it("merges concurrent counters and sets without a conflict", () => {
    const counter = mergeKeyState(
      created("counter", "weur"),
      applied(applyKeyOp(undefined, add(4), "apac", stamp(10, "apac"))),
    );
    expect(counter).toEqual({
      state: { type: "counter", counter: { p: { weur: 1, apac: 4 }, n: {}, vv: { weur: 1, apac: 1 } } },
    });
    const set = mergeKeyState(
      created("set", "weur"),
      applied(applyKeyOp(undefined, change(["b"]), "apac", stamp(10, "apac"))),
    );
    expect(Object.keys(set)).toEqual(["state"]);
    expect(orsetMembers(asSet(set.state))).toEqual(["a", "b"]);
  });

  it("settles concurrent creation as two types by the rank register > set > counter, reporting the loser", () => {
    const cases: ReadonlyArray<readonly [KeyType, KeyType]> = [
      ["register", "set"],
      ["register", "counter"],
      ["set", "counter"],
    ];
    for (const [higher, lower] of cases) {
      const winner = created(higher, "weur");
      const loser = created(lower, "apac");
      const expected = { state: winner, conflict: { kind: "type", winner, loser } };
      // The winner is kept whole, whichever side it arrives on.
      expect(mergeKeyState(winner, loser)).toEqual(expected);
      expect(mergeKeyState(loser, winner)).toEqual(expected);
    }
  });

  it("reports no type conflict when the two types carry equal vectors", () => {
    const reg = created("register", "weur");
    const counter = created("counter", "weur");
    expect(keyVersion(reg)).toBe(keyVersion(counter));
    expect(mergeKeyState(reg, counter)).toEqual({ state: reg });
    expect(mergeKeyState(counter, reg)).toEqual({ state: reg });
  });

  it("reports the type loser even when its vector is behind the winner's", () => {
    // weur creates a counter while apac creates a register; weur loses its counter to the register,
    // whose vector does not carry weur's dot, so weur's next write reuses that dot. A replica
    // still holding the counter then sees it strictly behind the register: still a lost write.
    const counter = created("counter", "weur");
    const atWeur = mergeKeyState(counter, created("register", "apac")).state;
    const rewritten = applied(applyKeyOp(atWeur, put("w"), "weur", stamp(30, "weur")));
    expect(vvCompare(keyVv(counter), keyVv(rewritten))).toBe("before");
    expect(mergeKeyState(counter, rewritten)).toEqual({
      state: rewritten,
      conflict: { kind: "type", winner: rewritten, loser: counter },
    });
  });
});

/** One region's replica of the key: its clock, its physical time, its state (none before a write). */
interface Replica {
  readonly region: RegionId;
  clock: HlcStamp;
  physicalMs: number;
  state: KeyState | undefined;
}

/**
 * Replays a history as replicas run it: each op is stamped by the writer's clock and refused
 * ops (another type, or overflow) change nothing; each sync folds the sender's register stamp
 * into the receiver's clock and merges. Returns every state that existed and the final ones.
 */
function replay(history: ReplicatedHistory): { snapshots: KeyState[]; finals: Array<KeyState | undefined> } {
  const replicas: Replica[] = history.regions.map((region) => ({
    region,
    clock: hlcZero(region),
    physicalMs: 1_000,
    state: undefined,
  }));
  const snapshots: KeyState[] = [];
  const pick = (index: number): Replica => replicas[index % replicas.length] as Replica;
  for (const step of history.steps) {
    if (step.kind === "sync") {
      const from = pick(step.from);
      const to = pick(step.to);
      to.physicalMs += step.dtMs;
      if (from.state === undefined) continue;
      if (from.state.type === "register") {
        const received = hlcReceive(to.clock, from.state.register.stamp, to.physicalMs);
        if (!received.ok) throw new Error(`clocks within a few ms refused: ${received.error.message}`);
        to.clock = received.stamp;
      }
      to.state = mergeKeyState(to.state, from.state).state;
      snapshots.push(to.state);
    } else if (step.kind === "op") {
      const at = pick(step.at);
      at.physicalMs += step.dtMs;
      at.clock = hlcNow(at.clock, at.physicalMs);
      const result = applyKeyOp(at.state, step.op, at.region, at.clock);
      if (!result.ok) continue;
      at.state = result.value;
      snapshots.push(at.state);
    }
  }
  return { snapshots, finals: replicas.map((replica) => replica.state) };
}

const triplesArb = fc.tuple(HISTORIES, fc.array(fc.nat(), { minLength: 3, maxLength: 3 })).map(([history, picks]) => {
  const all: Array<KeyState | undefined> = [undefined, ...replay(history).snapshots];
  return picks.map((i) => all[i % all.length]) as [KeyState | undefined, KeyState | undefined, KeyState | undefined];
});

describe("merge laws over mixed types", () => {
  it("is commutative, associative and idempotent, with the unwritten key as identity", () => {
    let mixed = 0;
    fc.assert(
      fc.property(triplesArb, ([a, b, c]) => {
        const types = new Set([a, b, c].filter((state) => state !== undefined).map((state) => state.type));
        if (types.size > 1) mixed += 1;
        expect(() => checkMergeLaws(KEY, a, b, c)).not.toThrow();
      }),
      { seed: SEED, numRuns: 500 },
    );
    // The generator must mix types often, or the cross-type branch goes untested.
    expect(mixed).toBeGreaterThan(50);
  });

  it("converges to one encoded state of the highest-ranked type present, in every delivery order", () => {
    const rank: Readonly<Record<KeyType, number>> = { counter: 0, set: 1, register: 2 };
    fc.assert(
      fc.property(HISTORIES, (history) => {
        const { finals } = replay(history);
        const merged = checkConvergence(KEY, finals);
        const present = finals.filter((state) => state !== undefined);
        const top = present.reduce<KeyState | undefined>(
          (best, state) => (best === undefined || rank[state.type] > rank[best.type] ? state : best),
          undefined,
        );
        expect(merged?.type).toBe(top?.type);
      }),
      { seed: SEED, numRuns: 150 },
    );
  });
});

describe("encoding", () => {
  it("round-trips every reachable state", () => {
    fc.assert(
      fc.property(HISTORIES, (history) => {
        for (const state of replay(history).snapshots) {
          const decoded = decodeKeyState(encodeKeyState(state));
          expect(decoded).toEqual(state);
          expect(hex(decoded)).toBe(hex(state));
        }
      }),
      { seed: SEED },
    );
  });

  it("is a type tag byte (register 1, counter 2, set 3, counter with later lives 4) followed by the CRDT's own form", () => {
    const reg = created("register", "weur");
    const counter = created("counter", "weur");
    const set = created("set", "weur");
    expect([...encodeKeyState(reg)]).toEqual([1, ...encodeLww(asRegister(reg))]);
    expect([...encodeKeyState(counter)]).toEqual([2, ...encodePn(asCounter(counter))]);
    expect([...encodeKeyState(set)]).toEqual([3, ...encodeOrset(asSet(set))]);
    const restored = applied(applyKeyOp(counter, { type: "counter", delta: 1 }, "weur", stamp(20, "weur"), 2 ** 20));
    expect([...encodeKeyState(restored)]).toEqual([4, ...encodePn(asCounter(restored))]);
    expect(decodeKeyState(encodeKeyState(restored))).toEqual(restored);
  });

  it("rejects an unknown type tag, even when the rest is a valid state", () => {
    const body = encodeKeyState(created("counter", "weur")).slice(1);
    for (const tag of [0, 5, 255]) {
      expect(() => decodeKeyState(Uint8Array.from([tag, ...body]))).toThrow(
        new DecodeError(`unknown key type tag ${tag}`),
      );
    }
    expect(() => decodeKeyState(new Uint8Array(0))).toThrow(DecodeError);
  });

  it("rejects trailing bytes and truncated input for every type", () => {
    for (const type of TYPES) {
      const bytes = encodeKeyState(created(type, "weur"));
      expect(() => decodeKeyState(Uint8Array.from([...bytes, 0]))).toThrow(
        new DecodeError("trailing bytes after the encoded value"),
      );
      expect(() => decodeKeyState(bytes.slice(0, -1))).toThrow(DecodeError);
    }
  });
});

describe("keyIsLive and keyVersion", () => {
  it("counts a register live until deleted, and any counter or set that was written as live", () => {
    const reg = created("register", "weur");
    expect(keyIsLive(reg)).toBe(true);
    expect(keyIsLive(applied(applyKeyOp(reg, del, "weur", stamp(20, "weur"))))).toBe(false);
    // Value zero and the empty set still read as present: they cannot be deleted, only emptied.
    const zero = applied(applyKeyOp(created("counter", "weur"), add(-1), "weur", stamp(20, "weur")));
    expect(pnValue(asCounter(zero))).toEqual({ ok: true, value: 0 });
    expect(keyIsLive(zero)).toBe(true);
    const empty = applied(applyKeyOp(created("set", "weur"), change([], ["a"]), "weur", stamp(20, "weur")));
    expect(orsetMembers(asSet(empty))).toEqual([]);
    expect(keyIsLive(empty)).toBe(true);
  });

  it("is the compact text of the key's vector: equal exactly when two replicas saw the same writes", () => {
    const a = created("register", "weur", 10);
    const b = applied(applyKeyOp(undefined, put("b"), "apac", stamp(20, "apac")));
    expect(keyVersion(a)).toBe(formatVv({ weur: 1 }));
    const ab = mergeKeyState(a, b).state;
    const ba = mergeKeyState(b, a).state;
    expect(keyVersion(ab)).toBe(formatVv({ weur: 1, apac: 1 }));
    expect(keyVersion(ba)).toBe(keyVersion(ab));
    const later = applied(applyKeyOp(ab, put("c"), "weur", stamp(30, "weur")));
    expect(keyVersion(later)).toBe(formatVv({ weur: 2, apac: 1 }));
    for (const type of TYPES) expect(keyVersion(created(type, "enam"))).toBe(formatVv({ enam: 1 }));
  });
});
