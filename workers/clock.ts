/**
 * The platform's clock for the core's ports: `Date.now` and cancellable `setTimeout` timers.
 * Durable Object clocks are the machine's wall clock; the core treats them as skewed anyway.
 */
import { type Clock, type Timer } from "../shared/store/ports.ts";

/** A timer on `setTimeout`. */
function timer(ms: number): Timer {
  let id: ReturnType<typeof setTimeout> | undefined;
  const done = new Promise<void>((resolve) => {
    id = setTimeout(resolve, ms);
  });
  return { done, cancel: () => clearTimeout(id) };
}

/** Wall-clock time and timers of this isolate. */
export const platformClock: Clock = { now: () => Date.now(), timer };
