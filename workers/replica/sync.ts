/**
 * Synchronous replication for `ack=` beyond local: the serving replica hands the write's
 * message straight to its healthy peers over RPC and waits until enough of them have durably
 * merged it, or until the deadline. The queue still carries the same write (the durable path),
 * so a peer that misses the push, or is out, gets it later; merges are idempotent.
 */
import { type RegionId } from "../../shared/regions.ts";
import { type EntriesMessage } from "../../shared/store/wire.ts";

/** Who applied a pushed write, and whether the required count was reached in time. */
export interface AckResult {
  readonly acked: RegionId[];
  readonly complete: boolean;
}

/**
 * Pushes `messages` (one per target) with `push` and resolves once `needed` targets succeeded,
 * every push settled, or `timeoutMs` passed. Pushes still running at the deadline go on in
 * the background and are simply not counted.
 */
export function awaitAcks(
  messages: readonly EntriesMessage[],
  needed: number,
  timeoutMs: number,
  push: (message: EntriesMessage) => Promise<boolean>,
): Promise<AckResult> {
  const acked: RegionId[] = [];
  if (needed <= 0) return Promise.resolve({ acked, complete: true });
  return new Promise((resolve) => {
    let settled = 0;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ acked: [...acked], complete: acked.length >= needed });
    };
    const timer = setTimeout(finish, timeoutMs);
    if (messages.length === 0) finish();
    for (const message of messages) {
      push(message)
        .then((ok) => {
          if (ok && !done) acked.push(message.target);
        })
        .catch(() => undefined)
        .finally(() => {
          settled += 1;
          if (acked.length >= needed || settled === messages.length) finish();
        });
    }
  });
}
