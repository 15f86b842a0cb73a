// A hand-driven Clock for tests of the core's async flows (acks, bounded calls, quorum reads):
// nothing fires until the test advances time, so "the deadline has not passed yet" is a fact of
// the test, not a race against a real timer.
import { setImmediate as turn } from "node:timers/promises";
import { type Clock, type Timer } from "../../shared/store/ports.ts";

/** One timer the fake clock handed out, as a test inspects it. */
export interface FakeTimer {
  /** Virtual time at which it fires. */
  readonly atMs: number;
  readonly fired: boolean;
  readonly cancelled: boolean;
}

const noop = (): void => undefined;

interface TimerEntry {
  atMs: number;
  fired: boolean;
  cancelled: boolean;
  readonly resolve: () => void;
}

/** A {@link Clock} whose time moves only when the test calls {@link FakeClock.advance}. */
export class FakeClock implements Clock {
  private nowMs: number;
  private readonly entries: TimerEntry[] = [];

  constructor(startMs = 0) {
    this.nowMs = startMs;
  }

  /** The current virtual time. */
  now(): number {
    return this.nowMs;
  }

  /** A timer due `ms` after the current virtual time; a cancelled timer's `done` never resolves. */
  timer(ms: number): Timer {
    let resolve: () => void = noop;
    const done = new Promise<void>((r) => {
      resolve = r;
    });
    const entry: TimerEntry = { atMs: this.nowMs + ms, fired: false, cancelled: false, resolve };
    this.entries.push(entry);
    return {
      done,
      cancel: () => {
        if (!entry.fired) entry.cancelled = true;
      },
    };
  }

  /** Every timer handed out so far, oldest first, as it stands now. */
  get timers(): FakeTimer[] {
    return this.entries.map(({ atMs, fired, cancelled }) => ({ atMs, fired, cancelled }));
  }

  /** Timers neither fired nor cancelled. */
  pending(): number {
    return this.entries.filter((t) => !t.fired && !t.cancelled).length;
  }

  /**
   * Moves virtual time forward by `ms`, fires every timer now due in order of due time, and
   * lets the promise callbacks that firing set off run before it returns. Timers due at
   * different times within one advance fire together: advance in steps to see each one's effect.
   */
  async advance(ms: number): Promise<void> {
    this.nowMs += ms;
    const due = this.entries
      .filter((t) => !t.fired && !t.cancelled && t.atMs <= this.nowMs)
      .sort((a, b) => a.atMs - b.atMs);
    for (const entry of due) {
      entry.fired = true;
      entry.resolve();
    }
    await settle();
  }
}

/**
 * Lets every promise callback that is ready run: one macrotask turn, which Node takes only
 * after the microtask queue is empty. Not a sleep: no time passes on any clock a test reads.
 */
export async function settle(): Promise<void> {
  await turn();
}

/** Where a promise stands after every ready callback ran. */
export type Observed<T> =
  | { readonly state: "pending" }
  | { readonly state: "fulfilled"; readonly value: T }
  | { readonly state: "rejected"; readonly reason: unknown };

/**
 * Reports whether `promise` has settled once everything ready has run, without waiting for it:
 * a test can then assert that a flow has answered (or has not) at this point of virtual time.
 */
export async function observe<T>(promise: Promise<T>): Promise<Observed<T>> {
  let seen: Observed<T> = { state: "pending" };
  promise.then(
    (value) => {
      seen = { state: "fulfilled", value };
    },
    (reason: unknown) => {
      seen = { state: "rejected", reason };
    },
  );
  await settle();
  return seen;
}

/** A promise with its resolve and reject in hand, for a call the test answers when it chooses. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
}

/** A {@link Deferred}. */
export function deferred<T>(): Deferred<T> {
  let resolve: (value: T) => void = noop;
  let reject: (reason: unknown) => void = noop;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
