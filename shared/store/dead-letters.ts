/**
 * The dead-letter record of one replica: replication messages that exhausted their queue
 * retries, kept verbatim (as JSON with byte arrays in base64url) until an operator replays them
 * into the replication queue. A message is normally recorded by the region it was for; when
 * that region cannot take it, another region records it, so nothing is dropped.
 */
import { utf8 } from "../bytes.ts";
import { type DeadLetterItem, type ReplicationQueue } from "./contract.ts";
import { sendBatches } from "./outbox.ts";
import { type ReplicaMachine } from "./replica-machine.ts";
import { type DeadLetterRow } from "./storage.ts";
import { type ReplicationMessage, fromJsonText, toJsonText } from "./wire.ts";

/** Dead letters replayed per call. */
export const REPLAY_BATCH_MAX = 100;

function field(body: unknown, name: string): string {
  return typeof body === "object" && body !== null && name in body
    ? String((body as Record<string, unknown>)[name])
    : "unknown";
}

/** Records a batch in one transaction. */
export function recordDeadLetters(machine: ReplicaMachine, items: readonly DeadLetterItem[], nowMs: number): void {
  const { storage } = machine;
  storage.transaction(() => {
    for (const item of items) {
      const origin = field(item.body, "origin");
      storage.deadLetters.insert({
        origin,
        target: field(item.body, "target"),
        receivedMs: nowMs,
        attempts: item.attempts,
        reason: item.reason,
        body: utf8(toJsonText(item.body)),
      });
      storage.metrics.add("replication_dead_letters_total", origin, 1);
    }
  });
}

/** The dead letters after `afterId`, oldest first. */
export function deadLetterPage(machine: ReplicaMachine, afterId: number, limit: number): DeadLetterRow[] {
  return machine.storage.deadLetters.page(afterId, limit);
}

/** Sends up to {@link REPLAY_BATCH_MAX} back to the replication queue, then forgets them. */
export async function replayDeadLetters(
  machine: ReplicaMachine,
  queue: ReplicationQueue,
): Promise<{ replayed: number; remaining: number }> {
  const { storage } = machine;
  const rows = storage.deadLetters.page(0, REPLAY_BATCH_MAX);
  const sized = rows.map((row) => ({
    message: fromJsonText(new TextDecoder().decode(row.body)) as ReplicationMessage,
    bytes: row.body.length,
  }));
  for (const batch of sendBatches(sized))
    await queue.sendBatch(
      batch.map((m) => m.message),
      0,
    );
  storage.transaction(() => storage.deadLetters.delete(rows.map((r) => r.id)));
  return { replayed: rows.length, remaining: storage.deadLetters.count() };
}
