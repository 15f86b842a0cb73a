import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteReader, ByteWriter, DecodeError } from "../../shared/bytes.ts";
import {
  HLC_COUNTER_MAX,
  HLC_SKEW_MS_MAX_DEFAULT,
  HLC_WALL_MS_MAX,
  type HlcStamp,
  compareHlc,
  formatHlc,
  hlcNow,
  hlcReceive,
  hlcZero,
  parseHlc,
  readHlc,
  writeHlc,
} from "../../shared/hlc.ts";
import { LOCATION_HINTS } from "../../shared/regions.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0x41c_2014;

const regionArb = fc.constantFrom(...LOCATION_HINTS);

/** Any valid stamp, with extra weight on the counter's edges so roll-over is exercised. */
const stampArb: fc.Arbitrary<HlcStamp> = fc.record({
  wallMs: fc.oneof(fc.integer({ min: 0, max: HLC_WALL_MS_MAX }), fc.integer({ min: 0, max: 20 })),
  counter: fc.oneof(fc.integer({ min: 0, max: HLC_COUNTER_MAX }), fc.constantFrom(0, 1, 0xfffe, 0xffff)),
  region: regionArb,
});

function encode(stamp: HlcStamp): Uint8Array {
  const writer = new ByteWriter();
  writeHlc(writer, stamp);
  return writer.finish();
}

function decode(bytes: Uint8Array): HlcStamp {
  const reader = new ByteReader(bytes);
  const stamp = readHlc(reader);
  reader.end();
  return stamp;
}

/** One clock event: a local write at a physical time, or receipt of a remote stamp. */
type ClockEvent =
  | { readonly kind: "now"; readonly physicalMs: number }
  | { readonly kind: "receive"; readonly physicalMs: number; readonly remote: HlcStamp };

// Physical times in a narrow window, so they repeat, go backwards and collide with remote walls.
const physicalArb = fc.integer({ min: 1_000, max: 1_040 });
const eventArb: fc.Arbitrary<ClockEvent> = fc.oneof(
  fc.record({ kind: fc.constant("now" as const), physicalMs: physicalArb }),
  fc.record({
    kind: fc.constant("receive" as const),
    physicalMs: physicalArb,
    remote: fc.record({
      // Up to twice the skew bound ahead, so some remote stamps are refused.
      wallMs: fc.oneof(fc.integer({ min: 900, max: 1_060 }), fc.integer({ min: 0, max: 2_100 })),
      counter: fc.oneof(fc.integer({ min: 0, max: HLC_COUNTER_MAX }), fc.constantFrom(0xfffe, 0xffff)),
      region: regionArb,
    }),
  }),
);

describe("hlcNow and hlcReceive", () => {
  it("never move backwards, whatever the physical clock or remote stamps do", () => {
    fc.assert(
      fc.property(regionArb, fc.array(eventArb, { maxLength: 60 }), (region, events) => {
        const skewMsMax = 500;
        let clock = hlcZero(region);
        for (const event of events) {
          const before = clock;
          const result =
            event.kind === "now"
              ? { ok: true as const, stamp: hlcNow(clock, event.physicalMs) }
              : hlcReceive(clock, event.remote, event.physicalMs, skewMsMax);
          const tooFarAhead = event.kind === "receive" && event.remote.wallMs > event.physicalMs + skewMsMax;
          expect(result.ok).toBe(!tooFarAhead);
          // A refused stamp leaves the caller's clock as it was; the next event uses it.
          if (!result.ok) continue;
          clock = result.stamp;
          // Later than the event it follows: the previous local stamp, or the received one.
          const cause = event.kind === "receive" ? event.remote : before;
          expect(compareHlc({ ...clock, region: cause.region }, cause)).toBe(1);
          expect(clock.wallMs).toBeGreaterThanOrEqual(event.physicalMs);
          expect(compareHlc(clock, before)).toBe(1);
          expect(clock.region).toBe(region);
          expect(clock.counter).toBeLessThanOrEqual(HLC_COUNTER_MAX);
        }
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("follows physical time when it moves forward", () => {
    const first = hlcNow(hlcZero("weur"), 5_000);
    expect(first).toEqual({ wallMs: 5_000, counter: 0, region: "weur" });
    expect(hlcNow(first, 5_000)).toEqual({ wallMs: 5_000, counter: 1, region: "weur" });
    expect(hlcNow(first, 4_000)).toEqual({ wallMs: 5_000, counter: 1, region: "weur" });
    expect(hlcNow(first, 6_000)).toEqual({ wallMs: 6_000, counter: 0, region: "weur" });
  });

  it("rolls the wall forward on counter overflow within one millisecond instead of wrapping", () => {
    const full: HlcStamp = { wallMs: 7_000, counter: HLC_COUNTER_MAX, region: "apac" };
    const next = hlcNow(full, 7_000);
    expect(next).toEqual({ wallMs: 7_001, counter: 0, region: "apac" });
    expect(compareHlc(next, full)).toBeGreaterThan(0);
    expect(hlcNow(next, 7_000)).toEqual({ wallMs: 7_001, counter: 1, region: "apac" });

    const received = hlcReceive(hlcZero("apac"), { wallMs: 7_000, counter: HLC_COUNTER_MAX, region: "oc" }, 6_990);
    expect(received).toEqual({ ok: true, stamp: { wallMs: 7_001, counter: 0, region: "apac" } });

    // 2^16 + 1 events in the same physical millisecond stay strictly increasing.
    let clock = hlcNow(hlcZero("me"), 9_000);
    let backwards = 0;
    for (let i = 0; i <= HLC_COUNTER_MAX; i += 1) {
      const tick = hlcNow(clock, 9_000);
      if (compareHlc(tick, clock) <= 0) backwards += 1;
      clock = tick;
    }
    expect(backwards).toBe(0);
    expect(clock).toEqual({ wallMs: 9_001, counter: 0, region: "me" });
  });

  it("refuses a remote stamp beyond the skew bound with clock_skew and leaves the clock usable", () => {
    const clock = hlcNow(hlcZero("enam"), 100_000);
    const remote: HlcStamp = { wallMs: 100_000 + HLC_SKEW_MS_MAX_DEFAULT + 1, counter: 0, region: "wnam" };
    expect(hlcReceive(clock, remote, 100_000)).toEqual({
      ok: false,
      error: {
        code: "clock_skew",
        message: expect.stringContaining("wnam"),
        details: { aheadMs: HLC_SKEW_MS_MAX_DEFAULT + 1, skewMsMax: HLC_SKEW_MS_MAX_DEFAULT },
      },
    });

    // Exactly at the bound is accepted, and the clock the caller kept still works.
    const atBound = hlcReceive(clock, { ...remote, wallMs: 100_000 + HLC_SKEW_MS_MAX_DEFAULT }, 100_000);
    expect(atBound).toEqual({
      ok: true,
      stamp: { wallMs: 100_000 + HLC_SKEW_MS_MAX_DEFAULT, counter: 1, region: "enam" },
    });
    expect(hlcNow(clock, 100_001)).toEqual({ wallMs: 100_001, counter: 0, region: "enam" });
    // Once physical time catches up, the same stamp is accepted.
    expect(hlcReceive(clock, remote, 100_001).ok).toBe(true);
  });

  it("rejects a physical time that is negative, fractional or beyond 48 bits (a programmer error)", () => {
    expect(() => hlcNow(hlcZero("wnam"), -1)).toThrow("physical time");
    expect(() => hlcNow(hlcZero("wnam"), 1.5)).toThrow("physical time");
    expect(() => hlcNow(hlcZero("wnam"), HLC_WALL_MS_MAX + 1)).toThrow("48-bit");
  });
});

describe("stamp order", () => {
  it("orders equal (wall, counter) stamps from two regions by region id", () => {
    fc.assert(
      fc.property(stampArb, regionArb, regionArb, (stamp, r1, r2) => {
        const a = { ...stamp, region: r1 };
        const b = { ...stamp, region: r2 };
        const expected = r1 === r2 ? 0 : r1 < r2 ? -1 : 1;
        expect(compareHlc(a, b)).toBe(expected);
      }),
      { seed: SEED },
    );
    const enam: HlcStamp = { wallMs: 10, counter: 3, region: "enam" };
    const wnam: HlcStamp = { wallMs: 10, counter: 3, region: "wnam" };
    expect(compareHlc(enam, wnam)).toBe(-1);
    expect(compareHlc(wnam, enam)).toBe(1);
  });

  it("is a total order: antisymmetric, and zero only for identical stamps", () => {
    fc.assert(
      fc.property(stampArb, stampArb, (a, b) => {
        expect(compareHlc(a, b)).toBe(0 - compareHlc(b, a));
        expect(compareHlc(a, b) === 0).toBe(a.wallMs === b.wallMs && a.counter === b.counter && a.region === b.region);
      }),
      { seed: SEED },
    );
  });

  it("string order of formatHlc equals compareHlc order", () => {
    fc.assert(
      fc.property(stampArb, stampArb, (a, b) => {
        const x = formatHlc(a);
        const y = formatHlc(b);
        const textOrder = x < y ? -1 : x > y ? 1 : 0;
        expect(textOrder).toBe(compareHlc(a, b));
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("sorting the text forms sorts the stamps", () => {
    fc.assert(
      fc.property(fc.array(stampArb, { maxLength: 20 }), (stamps) => {
        const byText = stamps.map(formatHlc).sort();
        const byStamp = [...stamps].sort(compareHlc).map(formatHlc);
        expect(byText).toEqual(byStamp);
      }),
      { seed: SEED },
    );
  });
});

describe("encodings", () => {
  it("text form round-trips and has a fixed-width prefix", () => {
    fc.assert(
      fc.property(stampArb, (stamp) => {
        const text = formatHlc(stamp);
        expect(text).toMatch(/^[0-9a-f]{16}\.[a-z]+$/);
        expect(parseHlc(text)).toEqual(stamp);
      }),
      { seed: SEED },
    );
    expect(formatHlc({ wallMs: 0x1_0203, counter: 0xab, region: "eeur" })).toBe("00000001020300ab.eeur");
  });

  it("parseHlc rejects malformed text", () => {
    const good = formatHlc({ wallMs: 1, counter: 2, region: "sam" });
    expect(parseHlc(good)).toBeDefined();
    const malformed = [
      "",
      good.toUpperCase(),
      `${good}x`,
      `0${good}`,
      good.slice(1),
      "00000000000100020sam",
      "0000000000010002.mars",
      "0000000000010002.",
      "000000000001000g.sam",
    ];
    expect(malformed.filter((text) => parseHlc(text) !== undefined)).toEqual([]);
  });

  it("binary form round-trips", () => {
    fc.assert(
      fc.property(stampArb, (stamp) => {
        expect(decode(encode(stamp))).toEqual(stamp);
      }),
      { seed: SEED },
    );
  });

  it("binary reader rejects out-of-range fields, unknown regions and truncation", () => {
    const outOfRangeWall = new ByteWriter()
      .varint(HLC_WALL_MS_MAX + 1)
      .varint(0)
      .byte(0)
      .finish();
    expect(() => decode(outOfRangeWall)).toThrow("out of range");
    const outOfRangeCounter = new ByteWriter()
      .varint(0)
      .varint(HLC_COUNTER_MAX + 1)
      .byte(0)
      .finish();
    expect(() => decode(outOfRangeCounter)).toThrow("out of range");
    const unknownRegion = new ByteWriter().varint(1).varint(0).byte(LOCATION_HINTS.length).finish();
    expect(() => decode(unknownRegion)).toThrow("unknown region");
    const full = encode({ wallMs: 1_700_000_000_000, counter: 5, region: "afr" });
    expect(() => decode(full.subarray(0, full.length - 1))).toThrow(DecodeError);
  });
});

describe("hlcZero", () => {
  it("is earlier than every stamp a clock issues", () => {
    fc.assert(
      fc.property(regionArb, fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 5 }), (r, times) => {
        const stamps: HlcStamp[] = [];
        let clock = hlcZero(r);
        for (const t of times) {
          clock = hlcNow(clock, t);
          stamps.push(clock);
        }
        for (const region of LOCATION_HINTS) {
          for (const stamp of stamps) expect(compareHlc(hlcZero(region), stamp)).toBe(-1);
        }
        for (const stamp of stamps) expect(stamp.region).toBe(r);
      }),
      { seed: SEED },
    );
  });
});
