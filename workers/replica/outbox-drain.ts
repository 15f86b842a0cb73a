/**
 * Drains a replica's outbox into the replication queue. Rows leave the outbox only once the
 * queue has accepted them for every peer; writes for a peer that is taken out of service are
 * held here until it is back, so they do not burn queue retries. With `DIRECT_PUSH=on` the same
 * messages also go straight to the peers over RPC (the queue stays the durable path).
 */
import { type RegionId } from "../../shared/regions.ts";
import { type ClusterView, isTakenOut } from "../../shared/store/cluster.ts";
import { type EntriesMessage } from "../../shared/store/wire.ts";
import { loadConfig } from "../config.ts";
import { messagesFor, sendBatches } from "./outbox.ts";
import { type ReplicaStore } from "./store.ts";

/** Outbox rows read per drain round. */
const LOG_BATCH_ROWS_MAX = 1000;
/** Drain rounds per flush before yielding to the alarm (bounds one flush's work). */
const FLUSH_ROUNDS_MAX = 20;

/** What the drain needs to know of the replica that owns it. */
export interface OutboxOwner {
  readonly region: RegionId;
  readonly view: ClusterView;
  readonly env: Env;
}

/** The drain of one replica's outbox; one drain runs at a time. */
export class Outbox {
  private flushing = false;
  private flushAgain = false;
  private scheduled = false;
  private readonly ctx: DurableObjectState;
  private readonly store: ReplicaStore;
  private readonly self: () => OutboxOwner;

  /** `self` reads the owner's current region, view and bindings at each drain. */
  constructor(ctx: DurableObjectState, store: ReplicaStore, self: () => OutboxOwner) {
    this.ctx = ctx;
    this.store = store;
    this.self = self;
  }

  private get env(): Env {
    return this.self().env;
  }

  /**
   * Drains soon: after `REPLICATION_BATCH_MS`, so that the writes of that window travel as one
   * message per peer instead of one each. Queue sends and their deliveries cost far more than
   * the rows they carry, so batching is what lets replication keep up with the write rate.
   */
  schedule(): void {
    const delayMs = loadConfig(this.env).replicationBatchMs;
    if (delayMs === 0) {
      this.ctx.waitUntil(this.flush());
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    this.ctx.waitUntil(
      new Promise<void>((resolve) => {
        setTimeout(() => {
          this.scheduled = false;
          void this.flush().finally(resolve);
        }, delayMs);
      }),
    );
  }

  /** Drains what can be sent now; re-runs when writes arrive meanwhile. Failures wait for the next alarm. */
  async flush(): Promise<void> {
    if (this.flushing) {
      this.flushAgain = true;
      return;
    }
    this.flushing = true;
    try {
      for (let round = 0; round < FLUSH_ROUNDS_MAX; round += 1) {
        this.flushAgain = false;
        const sent = await this.flushOnce();
        if (!sent && !this.flushAgain) break;
      }
    } catch (error) {
      this.store.metrics.add("replication_send_errors_total", this.self().region, 1);
      console.error(`replica ${this.self().region}: outbox drain failed, will retry:`, error);
    } finally {
      this.flushing = false;
    }
  }

  private async flushOnce(): Promise<boolean> {
    const { region, view } = this.self();
    if (isTakenOut(view, region)) return false;
    const peers = loadConfig(this.env).regions.filter((r) => r !== region);
    if (peers.length === 0) {
      // A single-region store has no one to send to: the outbox only needs emptying.
      this.store.log.prune(Number.MAX_SAFE_INTEGER);
      return false;
    }
    const targets = peers.filter((peer) => !isTakenOut(view, peer));
    if (targets.length === 0) return false;
    const sent = this.store.peerSend.all();
    const sentOf = (peer: RegionId): number => sent.get(peer) ?? 0;
    const rows = this.store.log.after(Math.min(...targets.map(sentOf)), LOG_BATCH_ROWS_MAX);
    if (rows.length === 0) return false;
    const messages = targets.flatMap((peer) => messagesFor(region, peer, rows, sentOf(peer)));
    if (messages.length === 0) return false;
    const config = loadConfig(this.env);
    // A fault-injected delay stands for a slow link; a direct push would bypass it.
    const delaySeconds = config.replicationDelaySeconds;
    if (config.directPush && delaySeconds === 0) this.ctx.waitUntil(this.pushDirect(messages.map((m) => m.message)));
    for (const batch of sendBatches(messages)) {
      await this.env.REPLICATION_QUEUE.sendBatch(
        batch.map((m) => ({ body: m.message, contentType: "v8" as const })),
        delaySeconds > 0 ? { delaySeconds } : undefined,
      );
      this.store.transaction(() => {
        for (const { message } of batch) this.store.peerSend.set(message.target, message.to);
      });
    }
    // Rows a held peer still needs stay until it is back.
    const after = this.store.peerSend.all();
    this.store.log.prune(Math.min(...peers.map((p) => after.get(p) ?? 0)));
    return true;
  }

  /** The fast path: the same messages straight to the targets; failures are left to the queue. */
  private async pushDirect(messages: readonly EntriesMessage[]): Promise<void> {
    const byTarget = Map.groupBy(messages, (m) => m.target);
    await Promise.all(
      [...byTarget].map(async ([target, group]) => {
        try {
          await this.env.REPLICA.getByName(target).applyReplication(group);
        } catch (error) {
          console.warn(
            `replica ${this.self().region}: direct push to ${target} failed; the queue will deliver:`,
            error,
          );
        }
      }),
    );
  }
}
