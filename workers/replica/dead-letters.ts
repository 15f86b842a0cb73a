/**
 * The dead-letter record of one replica: replication messages for this region that exhausted
 * their queue retries, kept verbatim (as JSON with byte arrays in base64url) until an operator
 * replays them into the replication queue.
 */
import { utf8 } from "../../shared/bytes.ts";
import { type ReplicationMessage, fromJsonText, toJsonText } from "../../shared/store/wire.ts";
import { sendBatches } from "./outbox.ts";
import { type DeadLetterRow, type ReplicaStore } from "./store.ts";

/** Dead letters replayed per call. */
const REPLAY_BATCH_MAX = 100;

/** A dead letter as the dead-letter consumer hands it over. */
export interface DeadLetterInput {
  readonly body: unknown;
  readonly attempts: number;
  readonly reason: string;
}

/** Records, lists and replays one replica's dead letters. */
export class DeadLetters {
  private readonly env: Env;
  private readonly store: ReplicaStore;

  constructor(env: Env, store: ReplicaStore) {
    this.env = env;
    this.store = store;
  }

  /** Records a batch in one transaction. */
  record(items: readonly DeadLetterInput[]): void {
    const now = Date.now();
    this.store.transaction(() => {
      for (const item of items) {
        const origin =
          typeof item.body === "object" && item.body !== null && "origin" in item.body
            ? String(item.body.origin)
            : "unknown";
        this.store.deadLetters.insert({
          origin,
          receivedMs: now,
          attempts: item.attempts,
          reason: item.reason,
          body: utf8(toJsonText(item.body)),
        });
        this.store.metrics.add("replication_dead_letters_total", origin, 1);
      }
    });
  }

  /** The dead letters after `afterId`, oldest first. */
  async page(afterId: number, limit: number): Promise<DeadLetterRow[]> {
    return this.store.deadLetters.page(afterId, limit);
  }

  /** Sends up to {@link REPLAY_BATCH_MAX} back to the replication queue, then deletes them. */
  async replay(): Promise<{ replayed: number; remaining: number }> {
    const rows = this.store.deadLetters.page(0, REPLAY_BATCH_MAX);
    const sized = rows.map((row) => ({
      body: fromJsonText(new TextDecoder().decode(row.body)) as ReplicationMessage,
      bytes: row.body.length,
    }));
    for (const batch of sendBatches(sized)) {
      await this.env.REPLICATION_QUEUE.sendBatch(batch.map((m) => ({ body: m.body, contentType: "v8" as const })));
    }
    this.store.transaction(() => this.store.deadLetters.delete(rows.map((r) => r.id)));
    return { replayed: rows.length, remaining: this.store.deadLetters.count() };
  }
}
