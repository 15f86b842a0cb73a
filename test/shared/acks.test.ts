// Synchronous acknowledgement: how many regions a write needs, and the wait for them, driven by a
// hand-fired clock so "before the deadline" and "at the deadline" are facts of the test.
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../shared/assert.ts";
import { type RegionId } from "../../shared/regions.ts";
import { awaitAcks, requiredAcks } from "../../shared/store/acks.ts";
import { majority } from "../../shared/store/cluster.ts";
import { type Deferred, FakeClock, deferred, observe } from "./fake-clock.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0xac_c5;

const TIMEOUT_MS = 1_000;
const TARGETS: readonly RegionId[] = ["enam", "weur", "apac"];

/** A push per target that the test answers by hand, and the targets pushed to, in order. */
function manualPushes(targets: readonly RegionId[]) {
  const calls = new Map<RegionId, Deferred<boolean>>(targets.map((t) => [t, deferred<boolean>()]));
  const pushed: RegionId[] = [];
  const push = (target: RegionId): Promise<boolean> => {
    pushed.push(target);
    return (calls.get(target) as Deferred<boolean>).promise;
  };
  const answer = (target: RegionId): Deferred<boolean> => calls.get(target) as Deferred<boolean>;
  return { push, answer, pushed };
}

/** An onError that records what it was told. */
function errorLog() {
  const reported: Array<[RegionId, unknown]> = [];
  const onError = (target: RegionId, error: unknown): void => {
    reported.push([target, error]);
  };
  return { onError, reported };
}

describe("requiredAcks", () => {
  it("caps the request to between one region and every region", () => {
    expect(requiredAcks(0, 5, false)).toBe(1);
    expect(requiredAcks(-2, 5, false)).toBe(1);
    expect(requiredAcks(3, 5, false)).toBe(3);
    expect(requiredAcks(9, 5, false)).toBe(5);
  });

  it("raises a strong prefix's request to a majority, and keeps a larger request", () => {
    expect(requiredAcks(1, 5, true)).toBe(3);
    expect(requiredAcks(1, 4, true)).toBe(3);
    expect(requiredAcks(4, 5, true)).toBe(4);
    expect(requiredAcks(9, 5, true)).toBe(5);
    expect(requiredAcks(1, 1, true)).toBe(1);
  });

  it("is the least count, at most every region, that meets the request and, when strong, a majority", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -3, max: 12 }),
        fc.integer({ min: 1, max: 9 }),
        fc.boolean(),
        (requested, n, strong) => {
          const needed = requiredAcks(requested, n, strong);
          const capped = Math.max(1, Math.min(requested, n));
          expect(needed).toBeLessThanOrEqual(n);
          // The least count that honours the request and, on a strong prefix, a majority.
          expect(needed).toBe(strong ? Math.max(capped, majority(n)) : capped);
        },
      ),
      { seed: SEED },
    );
  });
});

describe("awaitAcks", () => {
  it("resolves as soon as the needed pushes succeed, without waiting for the rest or the deadline", async () => {
    const clock = new FakeClock();
    const { push, answer, pushed } = manualPushes(TARGETS);
    const { onError, reported } = errorLog();
    const result = awaitAcks(clock, TARGETS, 2, TIMEOUT_MS, push, onError);
    expect(pushed).toEqual(TARGETS);
    answer("weur").resolve(true);
    expect(await observe(result)).toEqual({ state: "pending" });
    answer("enam").resolve(true);
    // apac never answers and no time passes: the result is there anyway.
    expect(await observe(result)).toEqual({ state: "fulfilled", value: { acked: ["weur", "enam"], complete: true } });
    expect(clock.pending()).toBe(0);
    expect(reported).toEqual([]);
  });

  it("does not count a push that answers false, and waits on for the others", async () => {
    const clock = new FakeClock();
    const { push, answer } = manualPushes(TARGETS);
    const result = awaitAcks(clock, TARGETS, 2, TIMEOUT_MS, push, errorLog().onError);
    answer("enam").resolve(false);
    answer("weur").resolve(true);
    expect(await observe(result)).toEqual({ state: "pending" });
    answer("apac").resolve(true);
    expect(await observe(result)).toEqual({ state: "fulfilled", value: { acked: ["weur", "apac"], complete: true } });
  });

  it("resolves incomplete once every push settled without enough successes, before the deadline", async () => {
    const clock = new FakeClock();
    const { push, answer } = manualPushes(TARGETS);
    const result = awaitAcks(clock, TARGETS, 2, TIMEOUT_MS, push, errorLog().onError);
    answer("enam").resolve(true);
    answer("weur").resolve(false);
    answer("apac").resolve(false);
    expect(await observe(result)).toEqual({ state: "fulfilled", value: { acked: ["enam"], complete: false } });
    expect(clock.pending()).toBe(0);
  });

  it("resolves incomplete at the deadline with what was acked, and ignores later acks", async () => {
    const clock = new FakeClock();
    const { push, answer } = manualPushes(TARGETS);
    const result = awaitAcks(clock, TARGETS, 2, TIMEOUT_MS, push, errorLog().onError);
    answer("apac").resolve(true);
    await clock.advance(TIMEOUT_MS - 1);
    expect(await observe(result)).toEqual({ state: "pending" });
    await clock.advance(1);
    const outcome = { acked: ["apac"], complete: false };
    expect(await observe(result)).toEqual({ state: "fulfilled", value: outcome });
    answer("enam").resolve(true);
    expect(await observe(result)).toEqual({ state: "fulfilled", value: outcome });
  });

  it("reports a failed push through onError and counts it as settled, not acked", async () => {
    const clock = new FakeClock();
    const { push, answer } = manualPushes(TARGETS);
    const { onError, reported } = errorLog();
    const result = awaitAcks(clock, TARGETS, 2, TIMEOUT_MS, push, onError);
    const down = new Error("weur is down");
    answer("weur").reject(down);
    answer("enam").resolve(true);
    expect(await observe(result)).toEqual({ state: "pending" });
    expect(reported).toEqual([["weur", down]]);
    const alsoDown = new Error("apac is down");
    answer("apac").reject(alsoDown);
    expect(await observe(result)).toEqual({ state: "fulfilled", value: { acked: ["enam"], complete: false } });
    expect(reported).toEqual([
      ["weur", down],
      ["apac", alsoDown],
    ]);
  });

  it("rejects with a push's AssertionError instead of swallowing the programmer error", async () => {
    const clock = new FakeClock();
    const { push, answer } = manualPushes(TARGETS);
    const { onError, reported } = errorLog();
    const result = awaitAcks(clock, TARGETS, 2, TIMEOUT_MS, push, onError);
    const bug = new AssertionError("a broken invariant in the peer");
    answer("enam").resolve(true);
    answer("weur").reject(bug);
    expect(await observe(result)).toEqual({ state: "rejected", reason: bug });
    expect(reported).toEqual([]);
    expect(clock.pending()).toBe(0);
  });

  it("treats an error named AssertionError that crossed an RPC boundary as a programmer error too", async () => {
    const clock = new FakeClock();
    const { push, answer } = manualPushes(TARGETS);
    const { onError, reported } = errorLog();
    const result = awaitAcks(clock, TARGETS, 1, TIMEOUT_MS, push, onError);
    const remote = Object.assign(new Error("invariant broken over there"), { name: "AssertionError" });
    answer("apac").reject(remote);
    expect(await observe(result)).toEqual({ state: "rejected", reason: remote });
    expect(reported).toEqual([]);
  });

  it("resolves at once when nothing is needed or there is no one to ask", async () => {
    const clock = new FakeClock();
    const { push, pushed } = manualPushes(TARGETS);
    expect(await observe(awaitAcks(clock, TARGETS, 0, TIMEOUT_MS, push, errorLog().onError))).toEqual({
      state: "fulfilled",
      value: { acked: [], complete: true },
    });
    expect(pushed).toEqual([]);
    expect(await observe(awaitAcks(clock, [], 1, TIMEOUT_MS, push, errorLog().onError))).toEqual({
      state: "fulfilled",
      value: { acked: [], complete: false },
    });
    expect(clock.pending()).toBe(0);
  });
});
