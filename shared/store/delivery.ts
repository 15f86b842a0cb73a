/**
 * What the replication queue's consumer does with one delivered message, given how its target
 * answered: ack it, retry it with backoff (it lands in the dead-letter queue after the queue's
 * retry limit), or park it for a region an operator took out (re-queued with a delay and acked,
 * so an outage does not use up its retries). The Worker's consumer and the simulator's queue
 * both follow these rules.
 */
import { type Result } from "../errors.ts";
import { type Applied } from "./contract.ts";

/** Retry delay bounds: exponential from 1 s, capped, so a long outage does not burn retries quickly. */
export const RETRY_DELAY_SECONDS_MIN = 1;
export const RETRY_DELAY_SECONDS_MAX = 60;
/** How long a message for a region taken out of service waits before it is looked at again. */
export const PARK_DELAY_SECONDS = 30;

/** The delay before retry number `attempts` of a message. */
export function retryDelaySeconds(attempts: number): number {
  return Math.min(RETRY_DELAY_SECONDS_MAX, RETRY_DELAY_SECONDS_MIN * 2 ** Math.max(0, attempts - 1));
}

/** The consumer's action for one message. */
export type Delivery =
  | { readonly kind: "ack" }
  | { readonly kind: "retry"; readonly delaySeconds: number }
  | { readonly kind: "park"; readonly delaySeconds: number };

/**
 * The action for a message on its `attempts`-th delivery: `answer` is the target's result, or
 * "unreachable" when the call failed outright; `takenOut` whether the target is out of service.
 */
export function deliveryOf(answer: Result<Applied> | "unreachable", takenOut: boolean, attempts: number): Delivery {
  if (takenOut) return { kind: "park", delaySeconds: PARK_DELAY_SECONDS };
  if (answer !== "unreachable" && answer.ok) return { kind: "ack" };
  return { kind: "retry", delaySeconds: retryDelaySeconds(attempts) };
}
