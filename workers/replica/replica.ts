/**
 * The regional replica: a Durable Object with SQLite storage, one per region. It takes writes
 * locally (multi-leader), commits each together with its outbox row before answering, drains
 * the outbox to the replication Queue, and merges what peers send, in any order and any number
 * of times. All decisions are made by the pure core (`shared/store/replica-core.ts`); this class
 * reads, persists and talks to the platform.
 */
import { DurableObject } from "cloudflare:workers";
import { assert } from "../../shared/assert.ts";
import { DecodeError, utf8 } from "../../shared/bytes.ts";
import { type Result, fail, ok } from "../../shared/errors.ts";
import { type HlcStamp, formatHlc, hlcReceive, hlcZero, parseHlc } from "../../shared/hlc.ts";
import { type RegionId, parseRegionId } from "../../shared/regions.ts";
import { type KeyOp, type KeyState, decodeKeyState } from "../../shared/store/key-state.ts";
import {
  type Lag,
  progressAccepts,
  progressApplied,
  progressHeartbeat,
  progressLag,
} from "../../shared/store/progress.ts";
import { type KeyView, keyView, planMerge, planWrite } from "../../shared/store/replica-core.ts";
import {
  type EntriesMessage,
  type HeartbeatMessage,
  type ReplicationMessage,
  WIRE_VERSION,
  fromJsonText,
  replicationMessageSchema,
  toJsonText,
} from "../../shared/store/wire.ts";
import { type Config, loadConfig } from "../config.ts";
import { migrate } from "./migrations.ts";
import { messagesFor, sendBatches } from "./outbox.ts";
import { type ConflictRow, type DeadLetterRow, type KeyListing, type ReplicaStore, replicaStore } from "./store.ts";

/** Outbox rows read per drain round. */
const LOG_BATCH_ROWS_MAX = 1000;
/** Drain rounds per flush before yielding to the alarm (bounds one flush's work). */
const FLUSH_ROUNDS_MAX = 20;
/** A peer silent for this many heartbeat periods no longer counts as current for lag. */
const SILENT_HEARTBEATS_MAX = 3;
/** Dead letters replayed per call. */
const REPLAY_BATCH_MAX = 100;

/** A write's answer. */
export interface WriteOutcome {
  readonly region: RegionId;
  readonly seq: number;
  readonly view: KeyView;
}

/** A read's answer: the key's view (null when never written here) and this replica's lag. */
export interface ReadOutcome {
  readonly region: RegionId;
  readonly view: KeyView | null;
  readonly lagMs: number;
}

/** A replica's health and progress, for /v1/regions and /metrics. */
export interface ReplicaStatus {
  readonly region: RegionId;
  readonly seq: number;
  readonly clock: string;
  readonly outboxPending: number;
  readonly deadLetters: number;
  readonly lag: Record<string, Lag & { heardMs: number }>;
  readonly metrics: Array<{ name: string; peer: string; value: number }>;
}

/** A dead letter as recorded by the dead-letter consumer. */
export interface DeadLetterInput {
  readonly body: unknown;
  readonly attempts: number;
  readonly reason: string;
}

export class Replica extends DurableObject<Env> {
  private readonly store: ReplicaStore;
  private region: RegionId = "enam";
  private clock: HlcStamp = hlcZero("enam");
  private seq = 0;
  private flushing = false;
  private flushAgain = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = replicaStore(ctx.storage.sql);
    void ctx.blockConcurrencyWhile(async () => {
      migrate(ctx.storage, Date.now());
      const region = parseRegionId(ctx.id.name ?? "");
      assert(region !== undefined, "a replica is addressed by its region name");
      this.region = region;
      this.clock = parseHlc(this.store.meta.get("clock") ?? "") ?? hlcZero(region);
      this.seq = Number(this.store.meta.get("seq") ?? "0");
      if ((await ctx.storage.getAlarm()) === null)
        await ctx.storage.setAlarm(Date.now() + this.config.heartbeatIntervalMs);
    });
  }

  private get config(): Config {
    return loadConfig(this.env);
  }

  private peers(): RegionId[] {
    return this.config.regions.filter((r) => r !== this.region);
  }

  /** Applies a local write, commits it with its outbox row, and starts replicating it. */
  async write(key: string, op: KeyOp): Promise<Result<WriteOutcome>> {
    const now = Date.now();
    const result = this.ctx.storage.transactionSync((): Result<WriteOutcome> => {
      const plan = planWrite(this.store.kv.get(key), op, this.region, this.clock, this.seq, now);
      if (!plan.ok) return plan;
      const { state, encoded, stamp, seq, logState } = plan.value;
      const view = keyView(state);
      if (!view.ok) return view;
      this.store.kv.put(key, state, encoded);
      this.store.log.append({ seq, key, stamp: formatHlc(stamp), writtenMs: now, state: logState });
      this.store.meta.set("clock", formatHlc(stamp));
      this.store.meta.set("seq", String(seq));
      // In-memory copies move only once the transaction has committed, so a failed write
      // never leaves a gap in the sequence numbers peers wait for.
      this.clock = stamp;
      this.seq = seq;
      return ok({ region: this.region, seq, view: view.value });
    });
    if (result.ok) this.ctx.waitUntil(this.flush());
    return result;
  }

  /** The key as this replica holds it, and how far behind its peers it may be. */
  async read(key: string): Promise<Result<ReadOutcome>> {
    const state = this.store.kv.get(key);
    const lagMs = this.maxLagMs();
    if (state === undefined) return ok({ region: this.region, view: null, lagMs });
    const view = keyView(state);
    return view.ok ? ok({ region: this.region, view: view.value, lagMs }) : view;
  }

  /** Live keys in `[low, high)` after `after`; `more` tells whether another page exists. */
  async list(
    low: string,
    high: string | null,
    after: string | null,
    limit: number,
  ): Promise<{ keys: KeyListing[]; more: boolean }> {
    const rows = this.store.kv.list(low, high, after, limit + 1);
    return { keys: rows.slice(0, limit), more: rows.length > limit };
  }

  /** The conflict log, oldest first, after `afterId`. */
  async conflicts(afterId: number, limit: number): Promise<ConflictRow[]> {
    return this.store.conflicts.page(afterId, limit);
  }

  /** The key's canonical state, for peers pulling a state too large to inline. */
  async keyState(key: string): Promise<Uint8Array | null> {
    return this.store.kv.getEncoded(key);
  }

  /** Health, progress and counters. */
  async status(): Promise<ReplicaStatus> {
    const now = Date.now();
    const lag: ReplicaStatus["lag"] = {};
    for (const peer of this.peers()) {
      const progress = this.store.peerRecv.get(peer);
      lag[peer] = { ...progressLag(progress, now, this.silenceMsMax()), heardMs: progress.heardMs };
    }
    return {
      region: this.region,
      seq: this.seq,
      clock: formatHlc(this.clock),
      outboxPending: this.store.log.count(),
      deadLetters: this.store.deadLetters.count(),
      lag,
      metrics: this.store.metrics.all(),
    };
  }

  private silenceMsMax(): number {
    return SILENT_HEARTBEATS_MAX * this.config.heartbeatIntervalMs;
  }

  private maxLagMs(): number {
    const now = Date.now();
    let max = 0;
    for (const peer of this.peers())
      max = Math.max(max, progressLag(this.store.peerRecv.get(peer), now, this.silenceMsMax()).ms);
    return max;
  }

  /**
   * Merges replication messages addressed to this region. Each message is all-or-nothing in
   * its own transaction; the answer per message tells the consumer to ack or retry it.
   */
  async applyReplication(bodies: readonly unknown[]): Promise<Array<Result<null>>> {
    const results: Array<Result<null>> = [];
    for (const body of bodies) {
      const parsed = replicationMessageSchema.safeParse(body);
      if (!parsed.success) {
        results.push(fail("invalid_body", `malformed replication message: ${parsed.error.message}`));
        continue;
      }
      const message = parsed.data;
      if (message.target !== this.region || message.origin === this.region) {
        results.push(
          fail("invalid_body", `message from ${message.origin} for ${message.target} reached ${this.region}`),
        );
        continue;
      }
      const result = message.kind === "heartbeat" ? this.applyHeartbeat(message) : await this.applyEntries(message);
      if (!result.ok) this.store.metrics.add("replication_errors_total", message.origin, 1);
      results.push(result);
    }
    return results;
  }

  private applyHeartbeat(message: HeartbeatMessage): Result<null> {
    const progress = progressHeartbeat(this.store.peerRecv.get(message.origin), message.seq, message.atMs, Date.now());
    this.store.peerRecv.put(message.origin, progress);
    this.store.metrics.add("replication_heartbeats_total", message.origin, 1);
    return ok(null);
  }

  private async applyEntries(message: EntriesMessage): Promise<Result<null>> {
    if (message.to - message.from + 1 !== message.entries.length)
      return fail("invalid_body", "entry count does not match its range");
    if (!progressAccepts(this.store.peerRecv.get(message.origin), message.from, message.to)) {
      return fail("overloaded", `too many gaps in ${message.origin}'s stream; retry once earlier messages arrive`);
    }
    // States too large to inline are pulled from the origin first: no other await may sit
    // inside the transaction below.
    const states: KeyState[] = [];
    for (const entry of message.entries) {
      let bytes = entry.state;
      if (bytes === null) {
        bytes = await this.env.REPLICA.getByName(message.origin).keyState(entry.key);
        if (bytes === null) return fail("not_found", `origin ${message.origin} no longer has ${entry.key}`);
      }
      try {
        states.push(decodeKeyState(bytes));
      } catch (error) {
        if (error instanceof DecodeError)
          return fail("invalid_body", `undecodable state for ${entry.key}: ${error.message}`);
        throw error;
      }
    }
    const now = Date.now();
    return this.ctx.storage.transactionSync((): Result<null> => {
      let clock = this.clock;
      for (const entry of message.entries) {
        const stamp = parseHlc(entry.stamp);
        if (stamp === undefined) return fail("invalid_body", `bad stamp ${entry.stamp}`);
        const received = hlcReceive(clock, stamp, now);
        if (!received.ok) return { ok: false, error: received.error };
        clock = received.stamp;
      }
      let bytes = 0;
      message.entries.forEach((entry, i) => {
        const remote = states[i] as KeyState;
        const plan = planMerge(this.store.kv.get(entry.key), this.store.kv.getEncoded(entry.key), remote);
        if (plan.changed) this.store.kv.put(entry.key, plan.state, plan.encoded);
        if (plan.conflict) {
          const { kind, rule, winnerStamp, loserStamp, winner, loser } = plan.conflict;
          const fresh = this.store.conflicts.insert({
            key: entry.key,
            kind,
            rule,
            detectedMs: now,
            winnerStamp,
            loserStamp,
            winner,
            loser,
          });
          if (fresh) this.store.metrics.add("conflicts_total", message.origin, 1);
        }
        bytes += entry.state?.length ?? 0;
      });
      const last = message.entries.at(-1);
      assert(last !== undefined, "a message has entries");
      this.store.peerRecv.put(
        message.origin,
        progressApplied(this.store.peerRecv.get(message.origin), message.from, message.to, last.writtenMs, now),
      );
      this.store.meta.set("clock", formatHlc(clock));
      this.store.metrics.add("replication_messages_total", message.origin, 1);
      this.store.metrics.add("replication_entries_total", message.origin, message.entries.length);
      this.store.metrics.add("replication_bytes_total", message.origin, bytes);
      this.clock = clock;
      return ok(null);
    });
  }

  /** Drains the outbox to the queue; one drain at a time, re-run when writes arrive meanwhile. */
  private async flush(): Promise<void> {
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
      // The rows stay in the outbox; the next alarm drains them again.
      this.store.metrics.add("replication_send_errors_total", this.region, 1);
      console.error(`replica ${this.region}: outbox drain failed, will retry:`, error);
    } finally {
      this.flushing = false;
    }
  }

  private async flushOnce(): Promise<boolean> {
    const peers = this.peers();
    if (peers.length === 0) return false;
    const sent = this.store.peerSend.all();
    const sentOf = (peer: RegionId): number => sent.get(peer) ?? 0;
    const floor = Math.min(...peers.map(sentOf));
    const rows = this.store.log.after(floor, LOG_BATCH_ROWS_MAX);
    if (rows.length === 0) return false;
    const messages = peers.flatMap((peer) => messagesFor(this.region, peer, rows, sentOf(peer)));
    if (this.config.directPush) this.ctx.waitUntil(this.pushDirect(messages.map((m) => m.message)));
    for (const batch of sendBatches(messages)) {
      await this.env.REPLICATION_QUEUE.sendBatch(batch.map((m) => ({ body: m.message, contentType: "v8" as const })));
      this.ctx.storage.transactionSync(() => {
        for (const { message } of batch) this.store.peerSend.set(message.target, message.to);
      });
    }
    const after = this.store.peerSend.all();
    this.store.log.prune(Math.min(...peers.map((p) => after.get(p) ?? 0)));
    return true;
  }

  /**
   * The optional fast path: hands the same messages straight to the target replicas over RPC.
   * The queue stays the durable path (a failed push is simply dropped, and the queued copy is
   * merged idempotently later), so this only shortens convergence.
   */
  private async pushDirect(messages: readonly EntriesMessage[]): Promise<void> {
    const byTarget = Map.groupBy(messages, (m) => m.target);
    await Promise.all(
      [...byTarget].map(async ([target, group]) => {
        try {
          await this.env.REPLICA.getByName(target).applyReplication(group);
        } catch (error) {
          console.warn(`replica ${this.region}: direct push to ${target} failed; the queue will deliver:`, error);
        }
      }),
    );
  }

  /** Heartbeats every peer, re-drains the outbox, and schedules itself again. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    await this.ctx.storage.setAlarm(now + this.config.heartbeatIntervalMs);
    const heartbeats: HeartbeatMessage[] = this.peers().map((target) => ({
      v: WIRE_VERSION,
      kind: "heartbeat",
      origin: this.region,
      target,
      seq: this.seq,
      atMs: now,
    }));
    try {
      if (heartbeats.length > 0)
        await this.env.REPLICATION_QUEUE.sendBatch(heartbeats.map((body) => ({ body, contentType: "v8" as const })));
    } catch (error) {
      this.store.metrics.add("replication_send_errors_total", this.region, 1);
      console.error(`replica ${this.region}: heartbeat send failed:`, error);
    }
    await this.flush();
  }

  /** Records messages for this region that exhausted their retries. */
  async recordDeadLetters(items: readonly DeadLetterInput[]): Promise<void> {
    const now = Date.now();
    this.ctx.storage.transactionSync(() => {
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

  /** The dead letters after `afterId`. */
  async deadLetters(afterId: number, limit: number): Promise<DeadLetterRow[]> {
    return this.store.deadLetters.page(afterId, limit);
  }

  /** Sends up to {@link REPLAY_BATCH_MAX} dead letters back to the replication queue, then forgets them. */
  async replayDeadLetters(): Promise<{ replayed: number; remaining: number }> {
    const rows = this.store.deadLetters.page(0, REPLAY_BATCH_MAX);
    const bodies = rows.map((row) => fromJsonText(new TextDecoder().decode(row.body)) as ReplicationMessage);
    const sized = bodies.map((body, i) => ({ body, bytes: (rows[i] as DeadLetterRow).body.length }));
    for (const batch of sendBatches(sized)) {
      await this.env.REPLICATION_QUEUE.sendBatch(batch.map((m) => ({ body: m.body, contentType: "v8" as const })));
    }
    this.ctx.storage.transactionSync(() => this.store.deadLetters.delete(rows.map((r) => r.id)));
    return { replayed: rows.length, remaining: this.store.deadLetters.count() };
  }
}
