/**
 * Synchronous acknowledgement of writes (`ack=` beyond local): how many regions a write needs,
 * and the wait for them. The serving replica hands the write straight to its healthy peers and
 * waits until enough have durably merged it, or until the deadline. The queue still carries
 * the same write (the durable path), so a peer that misses the push gets it later; merges are
 * idempotent.
 */
import { type RegionId } from "../regions.ts";
import { majority } from "./cluster.ts";
import { type Clock, isAssertion } from "./ports.ts";

/**
 * How many regions must apply a write, this one included: the requested count, at most every
 * region, and at least a majority on a strong prefix (a quorum is what survives failover).
 */
export function requiredAcks(requested: number, regionCount: number, strong: boolean): number {
  const capped = Math.max(1, Math.min(requested, regionCount));
  return strong ? Math.max(capped, majority(regionCount)) : capped;
}

/** Who applied a pushed write, and whether the required count was reached in time. */
export interface AckResult {
  readonly acked: RegionId[];
  readonly complete: boolean;
}

/**
 * Pushes to each of `targets` with `push` and resolves once `needed` of them succeeded, every
 * push settled, or `timeoutMs` passed. Pushes still running at the deadline go on in the
 * background and are simply not counted. A push that fails is reported through `onError`; a
 * broken invariant rejects the wait, or, when the answer is already given, surfaces as an
 * unhandled rejection: never swallowed.
 */
export function awaitAcks(
  clock: Clock,
  targets: readonly RegionId[],
  needed: number,
  timeoutMs: number,
  push: (target: RegionId) => Promise<boolean>,
  onError: (target: RegionId, error: unknown) => void,
): Promise<AckResult> {
  const acked: RegionId[] = [];
  if (needed <= 0) return Promise.resolve({ acked, complete: true });
  return new Promise((resolve, reject) => {
    let settled = 0;
    let done = false;
    const timer = clock.timer(timeoutMs);
    const finish = (): void => {
      if (done) return;
      done = true;
      timer.cancel();
      resolve({ acked: [...acked], complete: acked.length >= needed });
    };
    void timer.done.then(finish);
    if (targets.length === 0) finish();
    for (const target of targets) {
      push(target)
        .then(
          (ok) => {
            if (ok && !done) acked.push(target);
          },
          (error: unknown) => {
            if (isAssertion(error)) {
              // Fail the write's answer if it is still pending; otherwise let the broken
              // invariant surface as an unhandled rejection rather than vanish.
              if (done) throw error;
              done = true;
              timer.cancel();
              reject(error);
              return;
            }
            onError(target, error);
          },
        )
        .finally(() => {
          settled += 1;
          if (acked.length >= needed || settled === targets.length) finish();
        });
    }
  });
}
