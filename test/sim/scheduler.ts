// Virtual time for the simulator: a queue of timed events run one at a time in (time, order)
// order. Between events every pending promise continuation runs to completion (a macrotask
// turn drains the microtask queue), so async code in the core behaves as it does on the
// platform, and the interleaving depends only on the seed.
import { setImmediate as turn } from "node:timers/promises";

interface Event {
  readonly atMs: number;
  readonly order: number;
  readonly run: () => void;
  cancelled: boolean;
}

/** A binary min-heap of events by (atMs, order). */
class EventHeap {
  private readonly items: Event[] = [];

  get size(): number {
    return this.items.length;
  }

  push(event: Event): void {
    const items = this.items;
    items.push(event);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(items[i] as Event, items[parent] as Event)) break;
      [items[i], items[parent]] = [items[parent] as Event, items[i] as Event];
      i = parent;
    }
  }

  pop(): Event | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    items[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < items.length && before(items[l] as Event, items[m] as Event)) m = l;
      if (r < items.length && before(items[r] as Event, items[m] as Event)) m = r;
      if (m === i) break;
      [items[i], items[m]] = [items[m] as Event, items[i] as Event];
      i = m;
    }
    return top;
  }
}

function before(a: Event, b: Event): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.order < b.order);
}

function noop(): void {}

/** Bound on events one simulation may run: a livelock is a failure, not a hang. */
export const EVENTS_MAX = 2_000_000;

/** The simulator's clock and event loop. */
export class Scheduler {
  private readonly heap = new EventHeap();
  private order = 0;
  private nowMs: number;
  /** Events run so far. */
  events = 0;

  constructor(startMs: number) {
    this.nowMs = startMs;
  }

  /** Virtual time now (true time: regions add their own skew). */
  get now(): number {
    return this.nowMs;
  }

  /** Runs `run` after `delayMs`; returns a cancel function. */
  at(delayMs: number, run: () => void): () => void {
    const event: Event = {
      atMs: this.nowMs + Math.max(0, Math.round(delayMs)),
      order: this.order++,
      run,
      cancelled: false,
    };
    this.heap.push(event);
    return () => {
      event.cancelled = true;
    };
  }

  /** A promise that resolves after `delayMs`, and its cancel. */
  timer(delayMs: number): { done: Promise<void>; cancel(): void } {
    let resolve: () => void = noop;
    const done = new Promise<void>((r) => {
      resolve = r;
    });
    return { done, cancel: this.at(delayMs, resolve) };
  }

  /** Runs events until virtual time `untilMs` or until `stop` says so; returns whether `stop` did. */
  async run(untilMs: number, stop: () => boolean = () => false): Promise<boolean> {
    await turn();
    while (this.heap.size > 0) {
      if (stop()) return true;
      const event = this.heap.pop() as Event;
      if (event.cancelled) continue;
      if (event.atMs > untilMs) {
        this.heap.push(event);
        break;
      }
      this.nowMs = event.atMs;
      this.events += 1;
      if (this.events > EVENTS_MAX) throw new Error(`more than ${EVENTS_MAX} events: livelock?`);
      event.run();
      await turn();
    }
    this.nowMs = Math.max(this.nowMs, untilMs);
    return stop();
  }
}
