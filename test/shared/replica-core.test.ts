// The replica's pure pieces: what a reader sees of a state, how a local write is planned (stamp,
// sequence number, inline or pulled), compare-and-set conditions, and stored conflict records.
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { utf8 } from "../../shared/bytes.ts";
import { lwwEmpty, lwwMerge, lwwMergeReport } from "../../shared/crdt/lww-register.ts";
import { type Result } from "../../shared/errors.ts";
import { type HlcStamp, HLC_COUNTER_MAX, compareHlc, formatHlc } from "../../shared/hlc.ts";
import { LOCATION_HINTS, type RegionId } from "../../shared/regions.ts";
import { mergeTagged } from "../../shared/store/epochs.ts";
import {
  type KeyOp,
  type KeyState,
  applyKeyOp,
  decodeKeyState,
  encodeKeyState,
  keyVersion,
  keyVv,
  mergeKeyState,
} from "../../shared/store/key-state.ts";
import {
  INLINE_STATE_BYTES_MAX,
  type PlannedWrite,
  checkConditions,
  conflictRecord,
  fencedRecord,
  keyView,
  planWrite,
} from "../../shared/store/replica-core.ts";
import { EMPTY_VV, formatVv } from "../../shared/version-vector.ts";
import { add, change, del, put } from "./support.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0xc0_4e;

const MAX = Number.MAX_SAFE_INTEGER;

function stamp(wallMs: number, region: RegionId, counter = 0): HlcStamp {
  return { wallMs, counter, region };
}

function value<T>(result: Result<T>): T {
  if (!result.ok) throw new Error(`unexpected failure: ${result.error.code}: ${result.error.message}`);
  return result.value;
}

/** `op` applied by `region` at `at` on top of `state`. */
function written(state: KeyState | undefined, op: KeyOp, region: RegionId, at: HlcStamp): KeyState {
  return value(applyKeyOp(state, op, region, at));
}

function registerOf(state: KeyState) {
  if (state.type !== "register") throw new Error(`expected a register, got a ${state.type}`);
  return state.register;
}

/** The reader's clock in these tests: long after every stamp they write. */
const NOW_MS = 1_800_000_000_000;

describe("keyView", () => {
  it("shows a live register with its version, stamp text, content type and value", () => {
    const state = written(undefined, put("hello"), "weur", stamp(1_000, "weur", 2));
    expect(value(keyView(state, NOW_MS))).toEqual({
      type: "register",
      version: keyVersion(state),
      live: true,
      stamp: formatHlc(stamp(1_000, "weur", 2)),
      contentType: "text/plain",
      value: utf8("hello"),
      metadata: null,
      expirationSeconds: null,
    });
  });

  it("shows a deleted register as not live, with no value and no content type", () => {
    const state = written(written(undefined, put("x"), "weur", stamp(1, "weur")), del, "apac", stamp(2, "apac"));
    expect(value(keyView(state, NOW_MS))).toEqual({
      type: "register",
      version: keyVersion(state),
      live: false,
      stamp: formatHlc(stamp(2, "apac")),
      contentType: "",
      value: null,
      metadata: null,
      expirationSeconds: null,
    });
  });

  it("shows metadata and expiration, and an expired value as absent from its expiration on", () => {
    const expiring = written(
      undefined,
      {
        type: "register",
        op: { kind: "put", value: utf8("v"), contentType: "text/plain", metadata: '{"a":1}', expirationSeconds: 2_000 },
      },
      "weur",
      stamp(1_000, "weur"),
    );
    expect(value(keyView(expiring, 1_999_999))).toMatchObject({
      live: true,
      value: utf8("v"),
      metadata: '{"a":1}',
      expirationSeconds: 2_000,
    });
    expect(value(keyView(expiring, 2_000_000))).toMatchObject({
      live: false,
      value: null,
      metadata: null,
      expirationSeconds: null,
      version: keyVersion(expiring),
    });
    // Compare-and-set sees what a read sees: an expired key is absent.
    expect(checkConditions(expiring, { ifNoneMatch: true }, 2_000_000)).toEqual({ ok: true, value: null });
    expect(checkConditions(expiring, { ifNoneMatch: true }, 1_999_999).ok).toBe(false);
    expect(checkConditions(expiring, { ifMatch: [keyVersion(expiring)] }, 2_000_000).ok).toBe(false);
  });

  it("shows a counter's value and a set's members", () => {
    const counter = written(written(undefined, add(5), "weur", stamp(1, "weur")), add(-7), "apac", stamp(2, "apac"));
    expect(value(keyView(counter, NOW_MS))).toEqual({ type: "counter", version: keyVersion(counter), value: -2 });
    const created = written(undefined, change(["b", "a", "c"]), "weur", stamp(1, "weur"));
    const set = written(created, change([], ["c"]), "apac", stamp(2, "apac"));
    expect(value(keyView(set, NOW_MS))).toEqual({ type: "set", version: keyVersion(set), members: ["a", "b"] });
  });

  it("fails with counter_overflow for a merged counter beyond the safe range, instead of rounding", () => {
    const a = written(undefined, add(MAX), "weur", stamp(1, "weur"));
    const b = written(undefined, add(MAX), "apac", stamp(1, "apac"));
    const merged = mergeKeyState(a, b).state;
    const view = keyView(merged, NOW_MS);
    expect(view.ok ? view.value : view.error.code).toBe("counter_overflow");
    // Bringing it back in range makes it readable again.
    const back = written(merged, add(-MAX), "enam", stamp(2, "enam"));
    expect(value(keyView(back, NOW_MS))).toEqual({ type: "counter", version: keyVersion(back), value: MAX });
  });
});

/** A first write of a register holding `size` zero bytes. */
function planBytes(size: number): PlannedWrite {
  const op: KeyOp = {
    type: "register",
    op: { kind: "put", value: new Uint8Array(size), contentType: "application/octet-stream" },
  };
  return value(planWrite(undefined, op, "weur", stamp(1, "weur"), 0, 2));
}

describe("planWrite", () => {
  it("assigns the next sequence number and a stamp strictly after the clock's last one, by this region", () => {
    const last = stamp(5_000, "wnam", 3);
    for (const physicalMs of [4_000, 5_000, 6_000]) {
      const planned = value(planWrite(undefined, put("v"), "wnam", last, 41, physicalMs));
      expect(planned.seq).toBe(42);
      expect(compareHlc(planned.stamp, last)).toBe(1);
      expect(planned.stamp.region).toBe("wnam");
      // The stamp follows physical time when it is ahead, and ticks the counter otherwise.
      expect(planned.stamp).toEqual(physicalMs > 5_000 ? stamp(physicalMs, "wnam") : stamp(5_000, "wnam", 4));
    }
  });

  it("returns the applied state, its encoding, and the encoding inline when it is small", () => {
    const current = written(undefined, add(1), "enam", stamp(10, "enam"));
    const planned = value(planWrite(current, add(2), "wnam", stamp(20, "wnam"), 0, 30));
    expect(planned.state).toEqual(written(current, add(2), "wnam", planned.stamp));
    expect(planned.encoded).toEqual(encodeKeyState(planned.state));
    expect(planned.logState).toEqual(planned.encoded);
  });

  it("fails without a plan on a type mismatch or an overflow", () => {
    const register = written(undefined, put("x"), "enam", stamp(10, "enam"));
    const before = encodeKeyState(register);
    const mismatch = planWrite(register, add(1), "wnam", stamp(20, "wnam"), 7, 30);
    expect(mismatch.ok ? "ok" : mismatch.error.code).toBe("type_mismatch");
    expect(encodeKeyState(register)).toEqual(before);
    const full = written(undefined, add(MAX), "enam", stamp(10, "enam"));
    const overflow = planWrite(full, add(1), "wnam", stamp(20, "wnam"), 7, 30);
    expect(overflow.ok ? "ok" : overflow.error.code).toBe("counter_overflow");
  });

  it("inlines a state of exactly INLINE_STATE_BYTES_MAX bytes and leaves one byte more to be pulled", () => {
    // The framing around the value is the same for every size whose length varint has the same width.
    const overhead = planBytes(INLINE_STATE_BYTES_MAX - 100).encoded.length - (INLINE_STATE_BYTES_MAX - 100);
    const fits = planBytes(INLINE_STATE_BYTES_MAX - overhead);
    expect(fits.encoded.length).toBe(INLINE_STATE_BYTES_MAX);
    expect(fits.logState).toEqual(fits.encoded);
    const tooBig = planBytes(INLINE_STATE_BYTES_MAX - overhead + 1);
    expect(tooBig.encoded.length).toBe(INLINE_STATE_BYTES_MAX + 1);
    expect(tooBig.logState).toBeNull();
    expect(tooBig.encoded).toEqual(encodeKeyState(tooBig.state));
  });

  // Regression: a register merged in by a repair or a session fetch (which do not move this
  // replica's clock) may carry a stamp from a region whose clock runs ahead. A write planned
  // from the local clock alone was stamped before it, so the causally later write lost LWW to
  // the very value it overwrote.
  it("stamps a write after the held register's stamp even when that stamp is ahead of this clock", () => {
    const aheadStamp = stamp(50_000, "weur", 7);
    const held = written(undefined, put("old, from a fast clock"), "weur", aheadStamp);
    for (const op of [put("new"), del]) {
      const planned = value(planWrite(held, op, "wnam", stamp(1_000, "wnam"), 3, 1_200));
      expect(compareHlc(planned.stamp, aheadStamp)).toBe(1);
      expect(planned.stamp.region).toBe("wnam");
      const next = registerOf(planned.state);
      const expected = op === del ? null : utf8("new");
      // Either merge order keeps the later write, and it is an overwrite, not a conflict.
      expect(lwwMerge(registerOf(held), next).value).toEqual(expected);
      expect(lwwMerge(next, registerOf(held)).value).toEqual(expected);
      expect(lwwMergeReport(registerOf(held), next).conflict).toBeUndefined();
    }
  });

  it("orders every planned register write after both the clock and the held stamp", () => {
    const stampArb = fc.record({
      wallMs: fc.integer({ min: 0, max: 100_000 }),
      counter: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constant(HLC_COUNTER_MAX)),
      region: fc.constantFrom(...LOCATION_HINTS),
    });
    fc.assert(
      fc.property(
        stampArb,
        fc.constantFrom(...LOCATION_HINTS),
        fc.integer({ min: 0, max: 100_000 }),
        fc.integer({ min: 0, max: 100_000 }),
        fc.nat({ max: 3 }),
        (heldStamp, region, lastWallMs, physicalMs, lastCounter) => {
          const held = written(undefined, put("held"), heldStamp.region, heldStamp);
          const last = stamp(lastWallMs, region, lastCounter);
          const planned = value(planWrite(held, put("next"), region, last, 0, physicalMs));
          expect(compareHlc(planned.stamp, heldStamp)).toBe(1);
          expect(compareHlc(planned.stamp, last)).toBe(1);
          expect(lwwMerge(registerOf(held), registerOf(planned.state)).value).toEqual(utf8("next"));
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
  });
});

describe("checkConditions", () => {
  const live = written(undefined, put("v"), "weur", stamp(1, "weur"));
  const deleted = written(live, del, "weur", stamp(2, "weur"));
  const counter = written(undefined, add(0), "weur", stamp(1, "weur"));

  it("passes anything with no conditions", () => {
    for (const state of [undefined, live, deleted, counter])
      expect(checkConditions(state, {}, NOW_MS)).toEqual({ ok: true, value: null });
  });

  it("If-Match passes only for a live key at exactly that version", () => {
    expect(checkConditions(live, { ifMatch: [keyVersion(live)] }, NOW_MS)).toEqual({ ok: true, value: null });
    expect(checkConditions(counter, { ifMatch: [keyVersion(counter)] }, NOW_MS)).toEqual({ ok: true, value: null });
    expect(checkConditions(live, { ifMatch: [keyVersion(deleted)] }, NOW_MS)).toEqual({
      ok: false,
      error: {
        code: "precondition_failed",
        message: `If-Match ${keyVersion(deleted)} but the key is at version ${keyVersion(live)}`,
        details: { version: keyVersion(live) },
      },
    });
  });

  it("If-Match: * passes for any live key; a list passes on any of its versions; no strong tag never passes", () => {
    expect(checkConditions(live, { ifMatch: "*" }, NOW_MS).ok).toBe(true);
    expect(checkConditions(deleted, { ifMatch: "*" }, NOW_MS).ok).toBe(false);
    expect(checkConditions(undefined, { ifMatch: "*" }, NOW_MS).ok).toBe(false);
    expect(checkConditions(live, { ifMatch: ["nope", keyVersion(live)] }, NOW_MS).ok).toBe(true);
    expect(checkConditions(live, { ifMatch: [] }, NOW_MS).ok).toBe(false);
  });

  it("If-Match fails on an absent key and on a deleted key, even at the tombstone's own version", () => {
    for (const state of [undefined, deleted]) {
      const version = keyVersion(deleted);
      expect(checkConditions(state, { ifMatch: [version] }, NOW_MS)).toEqual({
        ok: false,
        error: {
          code: "precondition_failed",
          message: `If-Match ${version} but the key is absent`,
          details: { version: null },
        },
      });
    }
  });

  it("If-None-Match passes for an absent or deleted key and fails for a live one, naming its version", () => {
    expect(checkConditions(undefined, { ifNoneMatch: true }, NOW_MS)).toEqual({ ok: true, value: null });
    expect(checkConditions(deleted, { ifNoneMatch: true }, NOW_MS)).toEqual({ ok: true, value: null });
    for (const state of [live, counter]) {
      expect(checkConditions(state, { ifNoneMatch: true }, NOW_MS)).toEqual({
        ok: false,
        error: {
          code: "precondition_failed",
          message: "If-None-Match: * but the key exists",
          details: { version: keyVersion(state) },
        },
      });
    }
    expect(checkConditions(live, { ifNoneMatch: false }, NOW_MS)).toEqual({ ok: true, value: null });
  });
});

describe("conflictRecord", () => {
  it("records a register conflict with both stamps and both registers encoded as key states", () => {
    const early = written(undefined, put("early"), "weur", stamp(10, "weur"));
    const late = written(undefined, put("late"), "apac", stamp(20, "apac"));
    const { conflict } = mergeKeyState(early, late);
    expect(conflict?.kind).toBe("register");
    if (conflict === undefined) throw new Error("a conflict was expected");
    expect(conflictRecord(conflict)).toEqual({
      kind: "register",
      rule: "hlc",
      winnerStamp: formatHlc(stamp(20, "apac")),
      loserStamp: formatHlc(stamp(10, "weur")),
      winner: encodeKeyState(late),
      loser: encodeKeyState(early),
    });
  });

  it("carries the region tie-break rule through", () => {
    const a = written(undefined, put("a"), "weur", stamp(10, "weur"));
    const b = written(undefined, put("b"), "apac", stamp(10, "apac"));
    const { conflict } = mergeKeyState(a, b);
    if (conflict === undefined) throw new Error("a conflict was expected");
    const record = conflictRecord(conflict);
    expect(record.rule).toBe("region_tiebreak");
    // "weur" sorts after "apac", so weur's write wins the tie.
    expect(record.winnerStamp).toBe(formatHlc(stamp(10, "weur")));
    expect(decodeKeyState(record.winner)).toEqual(a);
  });

  it("records a type conflict with each side's type and version", () => {
    const register = written(undefined, put("r"), "weur", stamp(10, "weur"));
    const counter = written(undefined, add(3), "apac", stamp(10, "apac"));
    const { conflict } = mergeKeyState(counter, register);
    if (conflict === undefined) throw new Error("a conflict was expected");
    expect(conflictRecord(conflict)).toEqual({
      kind: "type",
      rule: "type_rank",
      winnerStamp: `register:${keyVersion(register)}`,
      loserStamp: `counter:${keyVersion(counter)}`,
      winner: encodeKeyState(register),
      loser: encodeKeyState(counter),
    });
  });

  it("records a fenced conflict with both epochs, as fencedRecord does", () => {
    const kept = written(undefined, add(1), "weur", stamp(10, "weur"));
    const dropped = written(undefined, add(5), "apac", stamp(10, "apac"));
    const { conflict } = mergeTagged({ state: dropped, epoch: 1 }, { state: kept, epoch: 2 });
    if (conflict === undefined) throw new Error("a conflict was expected");
    const expected = {
      kind: "fenced",
      rule: "stale_epoch",
      winnerStamp: `epoch 2:${keyVersion(kept)}`,
      loserStamp: `epoch 1:${keyVersion(dropped)}`,
      winner: encodeKeyState(kept),
      loser: encodeKeyState(dropped),
    };
    expect(conflictRecord(conflict)).toEqual(expected);
    expect(fencedRecord(kept, 2, dropped, 1)).toEqual(expected);
  });
});

describe("fencedRecord", () => {
  it("records an empty register as the winner when the replica holds nothing for the key", () => {
    const dropped = written(undefined, put("late write of a deposed primary"), "apac", stamp(10, "apac"));
    const empty: KeyState = { type: "register", register: lwwEmpty() };
    const record = fencedRecord(undefined, 3, dropped, 2);
    expect(record).toEqual({
      kind: "fenced",
      rule: "stale_epoch",
      winnerStamp: `epoch 3:${formatVv(EMPTY_VV)}`,
      loserStamp: `epoch 2:${keyVersion(dropped)}`,
      winner: encodeKeyState(empty),
      loser: encodeKeyState(dropped),
    });
    expect(decodeKeyState(record.winner)).toEqual(empty);
  });
});

/** An enam stamp at `wallMs`. */
function enamAt(wallMs: number): HlcStamp {
  return { wallMs, counter: 0, region: "enam" };
}

describe("planWrite dots", () => {
  it("never reuses a dot after a newer epoch's state replaced the region's own copy", () => {
    // enam wrote the key twice (its writes 1 and 2); a newer epoch kept only the first, so
    // enam's copy now says it has seen one of its own writes to this key.
    const first = planWrite(undefined, { type: "counter", delta: 1 }, "enam", enamAt(1), 0, 10);
    if (!first.ok) throw new Error(first.error.message);
    const second = planWrite(first.value.state, { type: "counter", delta: 1 }, "enam", enamAt(10), 1, 20);
    if (!second.ok) throw new Error(second.error.message);
    const replaced = first.value.state;
    // Its next write (its write 3) must not take the dot of the dropped write 2: the two would
    // share a version, and an ETag of one would match the other.
    const third = planWrite(replaced, { type: "counter", delta: 5 }, "enam", enamAt(20), 2, 30);
    if (!third.ok) throw new Error(third.error.message);
    expect(keyVersion(third.value.state)).not.toBe(keyVersion(second.value.state));
    expect(keyVv(third.value.state).enam).toBe(3);
    // A new key too starts past every dot the region has issued.
    const fresh = planWrite(undefined, { type: "set", add: ["x"], remove: [] }, "enam", enamAt(30), 7, 40);
    if (!fresh.ok) throw new Error(fresh.error.message);
    expect(keyVv(fresh.value.state).enam).toBe(8);
  });
});
