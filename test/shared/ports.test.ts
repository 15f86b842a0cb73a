// `bounded`: a fan-out call that must not hang on one slow or unreachable object, but must not
// hide a bug either. Driven by a hand-fired clock.
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../shared/assert.ts";
import { bounded, isAssertion } from "../../shared/store/ports.ts";
import { FakeClock, deferred, observe } from "./fake-clock.ts";

const TIMEOUT_MS = 500;

/** An onError that records what it was told. */
function errorLog() {
  const reported: unknown[] = [];
  const onError = (error: unknown): void => {
    reported.push(error);
  };
  return { onError, reported };
}

describe("bounded", () => {
  it("answers the call's value and cancels its timer", async () => {
    const clock = new FakeClock();
    const call = deferred<number>();
    const { onError, reported } = errorLog();
    const result = bounded(clock, () => call.promise, TIMEOUT_MS, onError);
    expect(clock.pending()).toBe(1);
    call.resolve(42);
    expect(await observe(result)).toEqual({ state: "fulfilled", value: 42 });
    expect(clock.timers).toEqual([{ atMs: TIMEOUT_MS, fired: false, cancelled: true }]);
    expect(reported).toEqual([]);
  });

  it("answers null at the timeout, not before, and ignores a later value", async () => {
    const clock = new FakeClock();
    const call = deferred<string>();
    const result = bounded(clock, () => call.promise, TIMEOUT_MS);
    await clock.advance(TIMEOUT_MS - 1);
    expect(await observe(result)).toEqual({ state: "pending" });
    await clock.advance(1);
    expect(await observe(result)).toEqual({ state: "fulfilled", value: null });
    call.resolve("too late");
    expect(await observe(result)).toEqual({ state: "fulfilled", value: null });
  });

  it("answers null for an ordinary error, reports it through onError, and cancels its timer", async () => {
    const clock = new FakeClock();
    const call = deferred<number>();
    const { onError, reported } = errorLog();
    const result = bounded(clock, () => call.promise, TIMEOUT_MS, onError);
    const down = new Error("unreachable");
    call.reject(down);
    expect(await observe(result)).toEqual({ state: "fulfilled", value: null });
    expect(reported).toEqual([down]);
    expect(clock.pending()).toBe(0);
    expect(clock.timers[0]?.cancelled).toBe(true);
  });

  it("answers null for an ordinary error without an onError", async () => {
    const clock = new FakeClock();
    const result = bounded(clock, () => Promise.reject(new Error("unreachable")), TIMEOUT_MS);
    expect(await observe(result)).toEqual({ state: "fulfilled", value: null });
    expect(clock.pending()).toBe(0);
  });

  it("rethrows an AssertionError, local or crossed over RPC by name, without onError, and cancels its timer", async () => {
    const remote = Object.assign(new Error("broken over there"), { name: "AssertionError" });
    for (const bug of [new AssertionError("broken here"), remote]) {
      const clock = new FakeClock();
      const call = deferred<number>();
      const { onError, reported } = errorLog();
      const result = bounded(clock, () => call.promise, TIMEOUT_MS, onError);
      call.reject(bug);
      expect(await observe(result)).toEqual({ state: "rejected", reason: bug });
      expect(reported).toEqual([]);
      expect(clock.pending()).toBe(0);
    }
  });

  it("makes the call exactly once", async () => {
    const clock = new FakeClock();
    let calls = 0;
    const call = (): Promise<string> => {
      calls += 1;
      return Promise.resolve("once");
    };
    expect(await bounded(clock, call, TIMEOUT_MS)).toBe("once");
    expect(calls).toBe(1);
  });
});

describe("isAssertion", () => {
  it("recognises our AssertionError and one that kept only its name, and nothing else", () => {
    expect(isAssertion(new AssertionError("x"))).toBe(true);
    expect(isAssertion(Object.assign(new Error("x"), { name: "AssertionError" }))).toBe(true);
    expect(isAssertion(new Error("AssertionError"))).toBe(false);
    expect(isAssertion(new TypeError("x"))).toBe(false);
    expect(isAssertion({ name: "AssertionError" })).toBe(false);
    expect(isAssertion("AssertionError")).toBe(false);
  });
});
