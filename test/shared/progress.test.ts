// A replica's progress on each peer's stream: a contiguous watermark plus ranges that arrived
// early, heartbeats that say how far the peer has written, and the lag figures read from both.
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../shared/assert.ts";
import {
  EMPTY_PROGRESS,
  PENDING_RANGES_MAX,
  type PeerProgress,
  type PendingRange,
  progressAccepts,
  progressApplied,
  progressCovered,
  progressHeartbeat,
  progressLag,
} from "../../shared/store/progress.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0x9_0a55;

/** A realistic peer clock reading, so "since the Unix epoch" and "since the first write" differ by decades. */
const T0 = 1_700_000_000_000;
const SILENCE_MS_MAX = 30_000;

/** The peer's wall time when it wrote sequence number `seq`, in this file's synthetic streams. */
function writtenMs(seq: number): number {
  return T0 + seq * 10;
}

/** Applies `from..to` as a replica would after checking it may, with the peer's first write at {@link T0}. */
function apply(p: PeerProgress, from: number, to: number, nowMs = T0): PeerProgress {
  expect(progressAccepts(p, from, to)).toBe(true);
  return progressApplied(p, from, to, writtenMs(to), T0, nowMs);
}

/** Throws unless the pending ranges are sorted, disjoint, not touching and all beyond the watermark. */
function checkInvariants(p: PeerProgress): void {
  let previous: PendingRange | undefined;
  for (const range of p.pending) {
    expect(range.from).toBeLessThanOrEqual(range.to);
    expect(range.from).toBeGreaterThan(p.appliedSeq + 1);
    // Neighbours would have been coalesced into one range.
    expect(range.from).toBeGreaterThan((previous?.to ?? Number.NEGATIVE_INFINITY) + 1);
    previous = range;
  }
  expect(p.knownSeq).toBeGreaterThanOrEqual(Math.max(p.appliedSeq, previous?.to ?? 0));
}

describe("progressApplied", () => {
  it("advances the watermark over a contiguous range and takes the range's last write time as freshness", () => {
    const first = progressApplied(EMPTY_PROGRESS, 1, 3, writtenMs(3), T0, 500);
    expect(first).toEqual({ appliedSeq: 3, knownSeq: 3, freshMs: writtenMs(3), heardMs: 500, pending: [] });
    const second = progressApplied(first, 4, 4, writtenMs(4), T0, 600);
    expect(second).toEqual({ appliedSeq: 4, knownSeq: 4, freshMs: writtenMs(4), heardMs: 600, pending: [] });
  });

  it("holds a range that arrives early as pending, without moving the watermark or the freshness", () => {
    const caught = apply(EMPTY_PROGRESS, 1, 2);
    const early = progressApplied(caught, 5, 7, writtenMs(7), T0, T0 + 900);
    expect(early).toEqual({
      appliedSeq: 2,
      knownSeq: 7,
      freshMs: writtenMs(2),
      heardMs: T0 + 900,
      pending: [{ from: 5, to: 7, lastWrittenMs: writtenMs(7) }],
    });
  });

  it("coalesces pending ranges that touch, overlap or repeat, keeping the last write time of the highest end", () => {
    let p = apply(EMPTY_PROGRESS, 10, 12);
    p = apply(p, 13, 14); // touches
    expect(p.pending).toEqual([{ from: 10, to: 14, lastWrittenMs: writtenMs(14) }]);
    p = apply(p, 11, 12); // inside: a duplicate delivery
    p = apply(p, 10, 14); // exactly again
    expect(p.pending).toEqual([{ from: 10, to: 14, lastWrittenMs: writtenMs(14) }]);
    p = apply(p, 8, 11); // overlaps the start
    p = apply(p, 13, 16); // overlaps the end
    expect(p.pending).toEqual([{ from: 8, to: 16, lastWrittenMs: writtenMs(16) }]);
    p = apply(p, 20, 20); // a real second gap stays separate
    expect(p.pending).toEqual([
      { from: 8, to: 16, lastWrittenMs: writtenMs(16) },
      { from: 20, to: 20, lastWrittenMs: writtenMs(20) },
    ]);
    p = apply(p, 17, 19); // fills the gap between them
    expect(p.pending).toEqual([{ from: 8, to: 20, lastWrittenMs: writtenMs(20) }]);
    expect(p.appliedSeq).toBe(0);
    expect(p.knownSeq).toBe(20);
  });

  it("collapses a duplicate of applied writes without changing the watermark or the freshness", () => {
    const p = apply(EMPTY_PROGRESS, 1, 5);
    // The duplicate carries a later write time than the range it repeats; it must not count.
    const again = progressApplied(p, 2, 4, writtenMs(99), T0, T0 + 700);
    expect(again).toEqual({ ...p, heardMs: T0 + 700 });
    // A range overlapping the watermark advances it by its new part only.
    const overlapping = progressApplied(p, 3, 8, writtenMs(8), T0, T0 + 800);
    expect(overlapping).toEqual({ appliedSeq: 8, knownSeq: 8, freshMs: writtenMs(8), heardMs: T0 + 800, pending: [] });
  });

  it("absorbs pending ranges once the gap before them fills, stopping at the next gap", () => {
    let p = apply(EMPTY_PROGRESS, 3, 4);
    p = apply(p, 6, 7);
    p = apply(p, 9, 9);
    expect(p.pending.map((r) => [r.from, r.to])).toEqual([
      [3, 4],
      [6, 7],
      [9, 9],
    ]);
    p = apply(p, 1, 2);
    expect(p.appliedSeq).toBe(4);
    expect(p.pending.map((r) => [r.from, r.to])).toEqual([
      [6, 7],
      [9, 9],
    ]);
    // The freshness is the last write time of the range that reached the watermark, not of the
    // range that filled the gap, and not of a range still beyond a gap.
    expect(p.freshMs).toBe(writtenMs(4));
    p = apply(p, 5, 5);
    expect(p.appliedSeq).toBe(7);
    expect(p.freshMs).toBe(writtenMs(7));
    p = apply(p, 8, 8);
    expect(p).toEqual({ appliedSeq: 9, knownSeq: 9, freshMs: writtenMs(9), heardMs: T0, pending: [] });
  });

  it("raises knownSeq to the highest sequence number seen, applied or pending, and never lowers it", () => {
    let p = apply(EMPTY_PROGRESS, 40, 41);
    expect(p.knownSeq).toBe(41);
    p = apply(p, 1, 1);
    expect(p.knownSeq).toBe(41);
    p = progressHeartbeat(p, 90, writtenMs(90), T0, T0);
    p = apply(p, 2, 2);
    expect(p.knownSeq).toBe(90);
  });

  it("never lowers heardMs when an older delivery is processed late", () => {
    const p = progressApplied(EMPTY_PROGRESS, 1, 1, writtenMs(1), T0, 5_000);
    expect(progressApplied(p, 2, 2, writtenMs(2), T0, 4_000).heardMs).toBe(5_000);
  });

  it("uses the peer's first write time as freshness only while nothing of its stream is applied", () => {
    // Nothing applied yet: this replica held everything the peer wrote until just before its first write.
    const early = progressApplied(EMPTY_PROGRESS, 3, 4, writtenMs(4), T0, T0);
    expect(early.freshMs).toBe(T0 - 1);
    // A peer that reports no first write leaves the freshness unknown.
    expect(progressApplied(EMPTY_PROGRESS, 3, 4, writtenMs(4), 0, T0).freshMs).toBe(0);
    // Once the watermark has moved, a first write time (even a later one) is ignored.
    const applied = apply(EMPTY_PROGRESS, 1, 1);
    const later = progressApplied(applied, 5, 5, writtenMs(5), writtenMs(50), T0);
    expect(later.freshMs).toBe(writtenMs(1));
  });

  it("refuses a malformed range as a programmer error", () => {
    expect(() => progressApplied(EMPTY_PROGRESS, 0, 1, T0, T0, T0)).toThrow(AssertionError);
    expect(() => progressApplied(EMPTY_PROGRESS, 3, 2, T0, T0, T0)).toThrow(AssertionError);
    expect(() => progressApplied(EMPTY_PROGRESS, 1.5, 2, T0, T0, T0)).toThrow(AssertionError);
  });

  it("ends at the whole stream, with nothing pending, for any delivery order with duplicates and overlaps", () => {
    const caseArb = fc
      .integer({ min: 1, max: 60 })
      .chain((n) =>
        fc.record({
          n: fc.constant(n),
          cuts: fc.uniqueArray(fc.integer({ min: 1, max: n }), { maxLength: n }),
          extras: fc.array(
            fc.tuple(fc.integer({ min: 1, max: n }), fc.integer({ min: 1, max: n })).map(([a, b]) => ({
              from: Math.min(a, b),
              to: Math.max(a, b),
            })),
            { maxLength: 10 },
          ),
          repeats: fc.array(fc.nat(), { maxLength: 10 }),
        }),
      )
      .chain(({ n, cuts, extras, repeats }) => {
        // A partition of 1..n into contiguous ranges, then overlapping ranges and repeated deliveries.
        const ends = [...new Set([...cuts, n])].sort((a, b) => a - b);
        const cover = ends.map((to, i) => ({ from: i === 0 ? 1 : (ends[i - 1] as number) + 1, to }));
        const all = [...cover, ...extras];
        const deliveries = [...all, ...repeats.map((i) => all[i % all.length] as { from: number; to: number })];
        return fc.record({
          n: fc.constant(n),
          order: fc.shuffledSubarray(deliveries, { minLength: deliveries.length, maxLength: deliveries.length }),
        });
      });
    let outOfOrder = 0;
    fc.assert(
      fc.property(caseArb, ({ n, order }) => {
        let p = EMPTY_PROGRESS;
        order.forEach(({ from, to }, step) => {
          p = apply(p, from, to, step);
          checkInvariants(p);
          if (p.pending.length > 0) outOfOrder += 1;
        });
        expect(p.appliedSeq).toBe(n);
        expect(p.knownSeq).toBe(n);
        expect(p.pending).toEqual([]);
        expect(p.freshMs).toBe(writtenMs(n));
      }),
      { seed: SEED, numRuns: 300 },
    );
    // The orders must often leave gaps, or the pending path goes untested.
    expect(outOfOrder).toBeGreaterThan(100);
  });
});

/** Progress holding exactly {@link PENDING_RANGES_MAX} single-number gaps: 3, 5, 7, ... */
function fullOfGaps(): PeerProgress {
  let p = EMPTY_PROGRESS;
  for (let k = 0; k < PENDING_RANGES_MAX; k += 1) p = apply(p, 3 + 2 * k, 3 + 2 * k);
  expect(p.pending).toHaveLength(PENDING_RANGES_MAX);
  return p;
}

describe("progressAccepts", () => {
  const lastPending = 3 + 2 * (PENDING_RANGES_MAX - 1);

  it("accepts anything while fewer than the bound of gaps are pending", () => {
    const p = apply(EMPTY_PROGRESS, 3, 3);
    expect(progressAccepts(p, 1_000_000, 1_000_001)).toBe(true);
  });

  it("at the bound, accepts a range that touches the watermark or an existing pending range", () => {
    const full = fullOfGaps();
    expect(progressAccepts(full, 1, 1)).toBe(true); // extends the watermark
    expect(progressAccepts(full, 2, 2)).toBe(true); // touches the first pending range from below
    expect(progressAccepts(full, 4, 4)).toBe(true); // fills the gap between two pending ranges
    expect(progressAccepts(full, 5, 5)).toBe(true); // a duplicate of a pending range
    expect(progressAccepts(full, lastPending + 1, lastPending + 5)).toBe(true); // extends the last one
    // Accepting it is safe: applying it leaves no more than the bound pending.
    for (const [from, to] of [
      [2, 2],
      [4, 4],
      [lastPending + 1, lastPending + 5],
    ] as const) {
      expect(progressApplied(full, from, to, T0, T0, T0).pending.length).toBeLessThanOrEqual(PENDING_RANGES_MAX);
    }
  });

  it("at the bound, refuses a range that would open one more gap", () => {
    const full = fullOfGaps();
    expect(progressAccepts(full, lastPending + 2, lastPending + 2)).toBe(false);
    expect(progressAccepts(full, lastPending + 10, lastPending + 20)).toBe(false);
    // A caller that skips the check breaks an invariant rather than silently dropping a range.
    expect(() => progressApplied(full, lastPending + 2, lastPending + 2, T0, T0, T0)).toThrow(AssertionError);
  });
});

describe("progressHeartbeat", () => {
  it("raises knownSeq and heardMs, never lowering either", () => {
    const p = progressHeartbeat(EMPTY_PROGRESS, 7, writtenMs(7), T0, 1_000);
    expect(p.knownSeq).toBe(7);
    expect(p.heardMs).toBe(1_000);
    const older = progressHeartbeat(p, 5, writtenMs(5), T0, 900);
    expect(older.knownSeq).toBe(7);
    expect(older.heardMs).toBe(1_000);
  });

  it("moves freshness to the heartbeat's time only when everything it reports is applied", () => {
    const p = apply(EMPTY_PROGRESS, 1, 4);
    expect(progressHeartbeat(p, 4, writtenMs(40), T0, T0).freshMs).toBe(writtenMs(40));
    expect(progressHeartbeat(p, 3, writtenMs(40), T0, T0).freshMs).toBe(writtenMs(40));
    // The peer has written more than is applied here: the heartbeat's time says nothing of freshness.
    expect(progressHeartbeat(p, 5, writtenMs(40), T0, T0).freshMs).toBe(writtenMs(4));
    // An old heartbeat delivered late does not move freshness back.
    expect(progressHeartbeat(p, 4, writtenMs(2), T0, T0).freshMs).toBe(writtenMs(4));
  });

  it("gives a peer with writes but nothing applied here a freshness just before its first write", () => {
    const p = progressHeartbeat(EMPTY_PROGRESS, 3, T0 + 60_000, T0, T0 + 60_000);
    expect(p.freshMs).toBe(T0 - 1);
    expect(p.appliedSeq).toBe(0);
  });

  it("counts a peer that has written nothing as fresh at its heartbeat", () => {
    const p = progressHeartbeat(EMPTY_PROGRESS, 0, T0, 0, T0);
    expect(p.freshMs).toBe(T0);
    expect(progressLag(p, T0 + SILENCE_MS_MAX, SILENCE_MS_MAX)).toEqual({ entries: 0, ms: 0 });
    expect(progressLag(p, T0 + SILENCE_MS_MAX + 5, SILENCE_MS_MAX)).toEqual({ entries: 0, ms: SILENCE_MS_MAX + 5 });
  });

  it("refuses a negative or fractional seq as a programmer error", () => {
    expect(() => progressHeartbeat(EMPTY_PROGRESS, -1, T0, T0, T0)).toThrow(AssertionError);
    expect(() => progressHeartbeat(EMPTY_PROGRESS, 0.5, T0, T0, T0)).toThrow(AssertionError);
  });
});

describe("progressLag", () => {
  /** Caught up with a peer that wrote 4 times, then heartbeated at T0 + 1_000 and was heard then. */
  const current = progressHeartbeat(apply(EMPTY_PROGRESS, 1, 4), 4, T0 + 1_000, T0, T0 + 1_000);

  it("is zero when caught up and the peer was heard within the silence bound", () => {
    expect(progressLag(current, T0 + 1_000, SILENCE_MS_MAX)).toEqual({ entries: 0, ms: 0 });
    expect(progressLag(current, T0 + 1_000 + SILENCE_MS_MAX, SILENCE_MS_MAX)).toEqual({ entries: 0, ms: 0 });
  });

  it("grows from the last known-complete time once a caught-up peer stays silent past the bound", () => {
    const silentMs = T0 + 1_000 + SILENCE_MS_MAX + 1;
    expect(progressLag(current, silentMs, SILENCE_MS_MAX)).toEqual({ entries: 0, ms: SILENCE_MS_MAX + 1 });
    expect(progressLag(current, silentMs + 7_000, SILENCE_MS_MAX)).toEqual({
      entries: 0,
      ms: SILENCE_MS_MAX + 7_001,
    });
  });

  it("counts writes known but not applied, with the time since the stream was last complete", () => {
    const behind = progressHeartbeat(current, 9, T0 + 2_000, T0, T0 + 2_000);
    expect(progressLag(behind, T0 + 3_000, SILENCE_MS_MAX)).toEqual({ entries: 5, ms: 2_000 });
  });

  it("does not count a taken-out peer's silence as lag when nothing of it is outstanding", () => {
    const longAfter = current.heardMs + 10 * SILENCE_MS_MAX;
    expect(progressLag(current, longAfter, SILENCE_MS_MAX, true)).toEqual({ entries: 0, ms: 0 });
    // The same silence of a peer in service is lag.
    expect(progressLag(current, longAfter, SILENCE_MS_MAX, false)).toEqual({
      entries: 0,
      ms: longAfter - (T0 + 1_000),
    });
  });

  it("counts a taken-out peer's writes that are still missing here", () => {
    const behind = progressHeartbeat(current, 6, T0 + 2_000, T0, T0 + 2_000);
    expect(progressLag(behind, T0 + 5_000, SILENCE_MS_MAX, true)).toEqual({ entries: 2, ms: 4_000 });
  });

  it("is unknown, with the reason, for a peer never heard from: no figure from time zero", () => {
    expect(progressLag(EMPTY_PROGRESS, T0, SILENCE_MS_MAX)).toEqual({
      entries: 0,
      ms: null,
      unknown: "never heard from the peer",
    });
    // Heard once (nothing written yet): a figure from then on.
    const heard = progressHeartbeat(EMPTY_PROGRESS, 0, T0, 0, T0);
    expect(progressLag(heard, T0 + 100, SILENCE_MS_MAX)).toEqual({ entries: 0, ms: 0 });
  });

  it("skips a restored peer's numbers no region knew, but waits for those some region may hold", () => {
    const before = progressApplied(EMPTY_PROGRESS, 1, 5, T0, T0, T0);
    // The peer lost its storage; regions knew its writes up to 9; it numbers its new life above 100.
    const restored = progressHeartbeat(before, 100, T0 + 20, T0, T0 + 20, 100, 9);
    expect(restored.appliedSeq).toBe(5);
    expect(restored.pending).toEqual([{ from: 10, to: 100, lastWrittenMs: 0 }]);
    // 6..9 may still be held by some region: they are what it lacks, not the 91 never known.
    expect(progressLag(restored, T0 + 30, SILENCE_MS_MAX).entries).toBe(4);
    // Once they arrive (or anti-entropy with the restored peer covers them), the watermark
    // jumps past the lost life's numbers.
    const filled = progressApplied(restored, 6, 9, T0 + 25, T0, T0 + 30);
    expect(filled.appliedSeq).toBe(100);
    expect(progressLag(filled, T0 + 30, SILENCE_MS_MAX)).toEqual({ entries: 0, ms: 0 });
    // A replica that had everything known jumps at once.
    const caughtUp = progressApplied(EMPTY_PROGRESS, 1, 9, T0, T0, T0);
    expect(progressHeartbeat(caughtUp, 100, T0 + 5, T0, T0 + 5, 100, 9).appliedSeq).toBe(100);
    // An early range above the new base is absorbed too.
    const ahead = progressApplied(caughtUp, 101, 103, T0, T0, T0);
    expect(progressHeartbeat(ahead, 103, T0 + 5, T0, T0 + 5, 100, 9).appliedSeq).toBe(103);
  });

  it("counts every write a complete anti-entropy round covered as applied, gaps included", () => {
    const gappy = progressApplied(progressApplied(EMPTY_PROGRESS, 1, 2, T0, T0, T0), 5, 6, T0 + 5, T0, T0 + 5);
    const known = progressHeartbeat(gappy, 9, T0 + 9, T0, T0 + 9);
    // 3, 4 and 7..9 are missing: 5 writes (5..6 arrived early).
    expect(progressLag(known, T0 + 10, SILENCE_MS_MAX).entries).toBe(5);
    const covered = progressCovered(known, 7, T0 + 8, T0 + 10);
    expect(covered).toMatchObject({ appliedSeq: 7, knownSeq: 9, pending: [], freshMs: T0 + 8 });
    expect(progressLag(covered, T0 + 10, SILENCE_MS_MAX)).toEqual({ entries: 2, ms: 2 });
    // A round that began before what is already applied changes nothing but when it was heard.
    expect(progressCovered(covered, 3, T0 + 1, T0 + 11)).toMatchObject({ appliedSeq: 7, freshMs: T0 + 8 });
  });

  // Regression: a replica that had applied none of a peer's writes reported its lag as the time
  // since the Unix epoch (about 54 years) instead of the time since the peer's first write.
  it("measures a peer with writes but none applied from its first write, not from the Unix epoch", () => {
    const nowMs = T0 + 5_000;
    const byHeartbeat = progressHeartbeat(EMPTY_PROGRESS, 3, T0 + 4_000, T0, nowMs);
    expect(progressLag(byHeartbeat, nowMs, SILENCE_MS_MAX)).toEqual({ entries: 3, ms: 5_001 });
    // The same when the only news is a range that arrived ahead of the watermark (only the
    // write before it is missing: the range itself is applied).
    const byEarlyRange = progressApplied(EMPTY_PROGRESS, 2, 3, T0 + 30, T0, nowMs);
    expect(progressLag(byEarlyRange, nowMs, SILENCE_MS_MAX)).toEqual({ entries: 1, ms: 5_001 });
  });
});
