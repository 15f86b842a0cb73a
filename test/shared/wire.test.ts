// Wire schemas: replication messages arrive untyped from the queue (maybe from an older or newer
// build), so every shape and bound is checked once at the edge; dead letters keep messages as
// JSON text that must replay byte for byte.
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { utf8 } from "../../shared/bytes.ts";
import { SHARDS_MAX } from "../../shared/shards.ts";
import { KEY_BYTES_MAX, checkKey } from "../../shared/store/keys.ts";
import {
  SET_ELEMENT_BYTES_MAX,
  SET_OP_ELEMENTS_MAX,
  WIRE_VERSION,
  counterBodySchema,
  entriesMessageSchema,
  fromJsonText,
  heartbeatMessageSchema,
  replicationMessageSchema,
  setBodySchema,
  toJsonText,
} from "../../shared/store/wire.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0x3_1e;

/** An entry for sequence number `seq`, with a small inline state. */
function entry(seq: number, overrides: Record<string, unknown> = {}) {
  return {
    seq,
    key: `k${seq}`,
    stamp: "000000000001000.wnam",
    writtenMs: 1_000 + seq,
    state: Uint8Array.of(1, seq & 0xff),
    ...overrides,
  };
}

/** A well-formed entries message numbering `from..to`, with the given entry seqs unless overridden. */
function entries(from: number, to: number, seqs?: readonly number[], overrides: Record<string, unknown> = {}) {
  const numbers = seqs ?? Array.from({ length: to - from + 1 }, (_, i) => from + i);
  return {
    v: WIRE_VERSION,
    kind: "entries",
    origin: "wnam",
    target: "weur",
    shard: 0,
    from,
    to,
    firstMs: 900,
    entries: numbers.map((seq) => entry(seq)),
    ...overrides,
  };
}

function heartbeat(overrides: Record<string, unknown> = {}) {
  return {
    v: WIRE_VERSION,
    kind: "heartbeat",
    origin: "apac",
    target: "oc",
    shard: 0,
    seq: 12,
    atMs: 5_000,
    firstMs: 40,
    ...overrides,
  };
}

/** `message` without `field`. */
function without(message: Record<string, unknown>, field: string): Record<string, unknown> {
  const { [field]: _dropped, ...rest } = message;
  return rest;
}

/** An entries message for sequence number 1 whose one entry has key `key`. */
function withKey(key: string) {
  return { ...entries(1, 1), entries: [entry(1, { key })] };
}

/** `n` distinct set elements tagged `tag`. */
function names(n: number, tag: string): string[] {
  return Array.from({ length: n }, (_, i) => `${tag}${i}`);
}

/** The names of the cases `schema` accepts, so a failure says which bad input got through. */
function accepted(
  schema: { safeParse(input: unknown): { success: boolean } },
  cases: Array<[string, unknown]>,
): string[] {
  return cases.filter(([, input]) => schema.safeParse(input).success).map(([name]) => name);
}

describe("entriesMessageSchema", () => {
  it("accepts a message whose entries number from..to, one each, in order", () => {
    for (const [from, to] of [
      [1, 1],
      [7, 9],
      [1, 40],
    ] as const) {
      const message = entries(from, to);
      expect(entriesMessageSchema.parse(message)).toEqual(message);
      expect(replicationMessageSchema.parse(message)).toEqual(message);
    }
  });

  it("refuses a gap, a wrong count, a duplicate and an out-of-order entry", () => {
    const bad: Array<[string, unknown]> = [
      ["gap with the right count", entries(1, 3, [1, 2, 4])],
      ["gap with one entry short", entries(1, 3, [1, 3])],
      ["too few", entries(1, 3, [1, 2])],
      ["too many", entries(1, 3, [1, 2, 3, 4])],
      ["duplicate", entries(1, 3, [1, 1, 2])],
      ["out of order", entries(1, 3, [2, 1, 3])],
      ["shifted", entries(1, 3, [2, 3, 4])],
      ["to before from", entries(3, 2, [3])],
      ["no entries", entries(1, 1, [])],
    ];
    expect(accepted(entriesMessageSchema, bad)).toEqual([]);
    expect(accepted(replicationMessageSchema, bad)).toEqual([]);
  });

  it("requires firstMs, a non-negative integer", () => {
    expect(entriesMessageSchema.safeParse(without(entries(1, 1), "firstMs")).success).toBe(false);
    expect(entriesMessageSchema.safeParse(entries(1, 1, undefined, { firstMs: -1 })).success).toBe(false);
    expect(entriesMessageSchema.safeParse(entries(1, 1, undefined, { firstMs: 1.5 })).success).toBe(false);
    expect(entriesMessageSchema.safeParse(entries(1, 1, undefined, { firstMs: 0 })).success).toBe(true);
  });

  it("refuses sequence number 0 and an entry's epoch below 1, and takes a null state (pull it)", () => {
    expect(entriesMessageSchema.safeParse(entries(0, 0)).success).toBe(false);
    const withEpoch = (epoch: number) => ({ ...entries(1, 1), entries: [entry(1, { epoch })] });
    expect(entriesMessageSchema.safeParse(withEpoch(1)).success).toBe(true);
    expect(entriesMessageSchema.safeParse(withEpoch(0)).success).toBe(false);
    const pulled = { ...entries(1, 1), entries: [entry(1, { state: null })] };
    expect(entriesMessageSchema.safeParse(pulled).success).toBe(true);
    const notBytes = { ...entries(1, 1), entries: [entry(1, { state: [1, 2] })] };
    expect(entriesMessageSchema.safeParse(notBytes).success).toBe(false);
    const noState = { ...entries(1, 1), entries: [without(entry(1), "state")] };
    expect(entriesMessageSchema.safeParse(noState).success).toBe(false);
  });

  it("bounds an entry's key: 1 to KEY_BYTES_MAX characters", () => {
    expect(entriesMessageSchema.safeParse(withKey("")).success).toBe(false);
    expect(entriesMessageSchema.safeParse(withKey("k".repeat(KEY_BYTES_MAX))).success).toBe(true);
    expect(entriesMessageSchema.safeParse(withKey("k".repeat(KEY_BYTES_MAX + 1))).success).toBe(false);
  });

  it("refuses a key with a lone surrogate, which would share its UTF-8 (and Merkle entry) with U+FFFD", () => {
    expect(utf8("\uD800")).toEqual(utf8("\uFFFD"));
    for (const key of ["\uD800", "a\uDFFFb", "\uDC00\uD800"]) {
      expect(entriesMessageSchema.safeParse(withKey(key)).success).toBe(false);
      expect(checkKey(key).ok).toBe(false);
    }
    for (const key of ["\uFFFD", "😀", "\uD83D\uDE00x"]) {
      expect(entriesMessageSchema.safeParse(withKey(key)).success).toBe(true);
      expect(checkKey(key).ok).toBe(true);
    }
  });
});

describe("heartbeatMessageSchema", () => {
  it("accepts a heartbeat, including one from a region that has written nothing", () => {
    const defaults = { baseSeq: 0, priorSeq: 0, horizon: {} };
    expect(heartbeatMessageSchema.parse(heartbeat())).toEqual({ ...heartbeat(), ...defaults });
    expect(replicationMessageSchema.parse(heartbeat({ seq: 0, firstMs: 0 }))).toEqual({
      ...heartbeat({ seq: 0, firstMs: 0 }),
      ...defaults,
    });
  });

  it("carries the origin's new numbering, its applied watermarks and its collection horizon", () => {
    const full = heartbeat({ baseSeq: 1_048_576, priorSeq: 9, applied: { oc: 7, weur: 0 }, horizon: { oc: 3 } });
    expect(heartbeatMessageSchema.parse(full)).toEqual(full);
    const bad: Array<[string, unknown]> = [
      ["negative baseSeq", heartbeat({ baseSeq: -1 })],
      ["applied of an unknown region", heartbeat({ applied: { mars: 1 } })],
      ["fractional applied", heartbeat({ applied: { oc: 1.5 } })],
      ["horizon entry 0", heartbeat({ horizon: { oc: 0 } })],
    ];
    expect(accepted(heartbeatMessageSchema, bad)).toEqual([]);
  });

  it("requires seq, atMs and firstMs as non-negative integers", () => {
    const bad = ["seq", "atMs", "firstMs"].flatMap((field): Array<[string, unknown]> => [
      [`${field} missing`, without(heartbeat(), field)],
      [`${field} negative`, heartbeat({ [field]: -1 })],
      [`${field} fractional`, heartbeat({ [field]: 0.5 })],
    ]);
    expect(accepted(heartbeatMessageSchema, bad)).toEqual([]);
  });
});

describe("replicationMessageSchema", () => {
  it("refuses an unknown kind, an unknown version and an unknown region", () => {
    const bad: Array<[string, unknown]> = [
      ["kind", { ...heartbeat(), kind: "snapshot" }],
      ["kind of the other shape", { ...entries(1, 1), kind: "heartbeat" }],
      ["version of a heartbeat", heartbeat({ v: WIRE_VERSION + 1 })],
      ["version of entries", entries(1, 1, undefined, { v: WIRE_VERSION + 1 })],
      ["missing version", without(heartbeat(), "v")],
      ["origin", heartbeat({ origin: "mars" })],
      ["target", entries(1, 1, undefined, { target: "WNAM" })],
      ["shard past SHARDS_MAX", heartbeat({ shard: SHARDS_MAX })],
      ["negative shard", entries(1, 1, undefined, { shard: -1 })],
      ["fractional shard", heartbeat({ shard: 0.5 })],
    ];
    expect(accepted(replicationMessageSchema, bad)).toEqual([]);
  });

  it("reads a message without a shard, from a build before shards, as shard 0's", () => {
    for (const message of [without(heartbeat(), "shard"), without(entries(1, 2), "shard")]) {
      const parsed = replicationMessageSchema.safeParse(message);
      expect(parsed.success && parsed.data.shard).toBe(0);
    }
    const parsed = replicationMessageSchema.safeParse(heartbeat({ shard: SHARDS_MAX - 1 }));
    expect(parsed.success && parsed.data.shard).toBe(SHARDS_MAX - 1);
  });
});

describe("toJsonText and fromJsonText", () => {
  it("round-trips a replication message byte for byte, including a pulled (null) state", () => {
    const message = { ...entries(1, 3), entries: [entry(1), entry(2, { state: null }), entry(3, { epoch: 4 })] };
    const back = fromJsonText(toJsonText(message));
    expect(back).toEqual(message);
    expect(entriesMessageSchema.parse(back)).toEqual(message);
  });

  it("round-trips byte arrays at the top, nested in objects and arrays, and empty ones", () => {
    const value = {
      top: utf8("hello"),
      nested: { deeper: [Uint8Array.of(0, 255), { again: new Uint8Array(0) }] },
    };
    const back = fromJsonText(toJsonText(value));
    expect(back).toEqual(value);
    expect((back as typeof value).top).toBeInstanceOf(Uint8Array);
    expect(fromJsonText(toJsonText(Uint8Array.of(9, 8, 7)))).toEqual(Uint8Array.of(9, 8, 7));
  });

  it("leaves an object alone that merely has a $bytes field among others, or a $bytes that is not text", () => {
    const value = { a: { $bytes: "AQI", note: "not bytes" }, b: { $bytes: 5 }, c: [{ $bytes: "AQI", n: 1 }] };
    const back = fromJsonText(toJsonText(value));
    expect(back).toEqual(value);
    expect((back as typeof value).a).not.toBeInstanceOf(Uint8Array);
    expect((back as typeof value).c[0]).not.toBeInstanceOf(Uint8Array);
  });

  it("round-trips any JSON value with byte arrays anywhere in it", () => {
    const keyArb = fc.string({ maxLength: 4 }).filter((k) => k !== "$bytes" && k !== "__proto__");
    const { tree } = fc.letrec((tie) => ({
      tree: fc.oneof(
        { depthSize: "small", withCrossShrink: true },
        fc.uint8Array({ maxLength: 8 }),
        fc.string({ maxLength: 6 }),
        fc.integer(),
        fc.boolean(),
        fc.constant(null),
        fc.array(tie("tree"), { maxLength: 4 }),
        fc.dictionary(keyArb, tie("tree"), { maxKeys: 4 }),
      ),
    }));
    fc.assert(
      fc.property(tree, (value) => {
        expect(fromJsonText(toJsonText(value))).toEqual(value);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });
});

describe("counterBodySchema", () => {
  it("takes an integer delta within the safe range", () => {
    for (const delta of [0, 1, -1, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER])
      expect(counterBodySchema.parse({ delta })).toEqual({ delta });
  });

  it("refuses a fractional, unsafe, missing or non-numeric delta, and unknown fields", () => {
    const bad = [
      { delta: 1.5 },
      { delta: Number.MAX_SAFE_INTEGER + 1 },
      { delta: -Number.MAX_SAFE_INTEGER - 1 },
      {},
      { delta: "1" },
      { delta: 1, extra: true },
      null,
    ].map((body): [string, unknown] => [JSON.stringify(body), body]);
    expect(accepted(counterBodySchema, bad)).toEqual([]);
  });
});

describe("setBodySchema", () => {
  it("defaults both lists to empty", () => {
    expect(setBodySchema.parse({})).toEqual({ add: [], remove: [] });
    expect(setBodySchema.parse({ add: ["a"] })).toEqual({ add: ["a"], remove: [] });
  });

  it("bounds elements by UTF-8 bytes, not characters, and refuses an empty one", () => {
    const twoByte = "é".repeat(SET_ELEMENT_BYTES_MAX / 2);
    expect(utf8(twoByte).length).toBe(SET_ELEMENT_BYTES_MAX);
    expect(setBodySchema.safeParse({ add: [twoByte] }).success).toBe(true);
    expect(setBodySchema.safeParse({ remove: [`${twoByte}a`] }).success).toBe(false);
    // Fewer characters than the bound, more bytes.
    expect(setBodySchema.safeParse({ add: ["€".repeat(200)] }).success).toBe(false);
    expect(setBodySchema.safeParse({ add: [""] }).success).toBe(false);
  });

  it("bounds the elements of one request, adds and removes together", () => {
    const half = SET_OP_ELEMENTS_MAX / 2;
    expect(setBodySchema.safeParse({ add: names(half, "a"), remove: names(half, "r") }).success).toBe(true);
    expect(setBodySchema.safeParse({ add: names(half + 1, "a"), remove: names(half, "r") }).success).toBe(false);
    expect(setBodySchema.safeParse({ add: names(SET_OP_ELEMENTS_MAX + 1, "a") }).success).toBe(false);
  });

  it("refuses unknown fields and non-string elements", () => {
    expect(setBodySchema.safeParse({ add: ["a"], members: ["b"] }).success).toBe(false);
    expect(setBodySchema.safeParse({ add: [1] }).success).toBe(false);
    expect(setBodySchema.safeParse({ add: "a" }).success).toBe(false);
  });
});
