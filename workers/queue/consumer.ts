/**
 * Queue consumers. The replication consumer hands each message to its target region's replica
 * and acks it only once the replica has durably merged it; anything else is retried with
 * backoff and, after `max_retries`, lands in the dead-letter queue. Under WAN emulation a
 * message has already crossed when it reaches the queue (the origin's outbox holds each write
 * for the one-way latency, `ReplicationQueue.crossingMs`), so nothing here waits: a consumer
 * invocation that slept would hold back every message behind it. The dead-letter consumer
 * records every message in its target replica, where operators can inspect and replay it.
 */
import { type RegionId, parseRegionId } from "../../shared/regions.ts";
import { SHARDS_MAX, type ShardIndex } from "../../shared/shards.ts";
import { loadConfig } from "../config.ts";
import { isTakenOut } from "../../shared/store/cluster.ts";
import { replicaOf } from "../stubs.ts";
import { type Faults, partitioned, refused } from "../../shared/faults.ts";
import { currentFaults, faultRandom } from "../faults.ts";
import { clusterView } from "../router/view.ts";
import { isAssertion } from "../../shared/store/ports.ts";
import { PARK_DELAY_SECONDS, deliveryOf, retryDelaySeconds } from "../../shared/store/delivery.ts";

/** Queue names, as in wrangler.toml. */
export const REPLICATION_QUEUE = "kv-replication";
export const DEAD_LETTER_QUEUE = "kv-replication-dlq";

/** A message body's region field (`target` or `origin`), when it names a region. */
function regionField(body: unknown, field: "target" | "origin"): RegionId | undefined {
  if (typeof body !== "object" || body === null || !(field in body)) return undefined;
  const value = (body as Record<string, unknown>)[field];
  return typeof value === "string" ? parseRegionId(value) : undefined;
}

/**
 * A message body's shard: its `shard` field, or 0 when it has none (builds before shards);
 * `undefined` when that is no shard index. Any index is delivered, not only those below
 * `SHARDS`: while keys move to fewer shards, the old shards past the new count still replicate.
 */
function shardField(body: unknown): ShardIndex | undefined {
  const value = typeof body === "object" && body !== null && "shard" in body ? body.shard : 0;
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 && value < SHARDS_MAX
    ? value
    : undefined;
}

/** Where a message goes: its target region's replica of its shard. */
interface Destination {
  readonly target: RegionId | undefined;
  readonly shard: ShardIndex | undefined;
}

/**
 * Groups a batch's messages by target region and shard; a message without a valid target or
 * shard goes under `undefined` for it.
 */
function byTarget(messages: readonly Message[]): Array<[Destination, Message[]]> {
  const groups = new Map<string, [Destination, Message[]]>();
  for (const message of messages) {
    const target = regionField(message.body, "target");
    const shard = shardField(message.body);
    const id = `${target}:${shard}`;
    const group = groups.get(id) ?? [{ target, shard }, []];
    group[1].push(message);
    groups.set(id, group);
  }
  return [...groups.values()];
}

/**
 * Re-enqueues messages for a region an operator took out, with a delay, and acks the
 * originals: deliveries wait for the region without using up their retries.
 */
async function park(env: Env, messages: readonly Message[]): Promise<void> {
  try {
    await env.REPLICATION_QUEUE.sendBatch(
      messages.map((m) => ({ body: m.body, contentType: "v8" as const })),
      { delaySeconds: PARK_DELAY_SECONDS },
    );
    for (const m of messages) m.ack();
  } catch (error) {
    console.error(`could not park ${messages.length} messages:`, error);
    for (const m of messages) m.retry({ delaySeconds: PARK_DELAY_SECONDS });
  }
}

/**
 * Fault injection (`REPLICATION_DROP_PERCENT`, and `drop` of the faults in force): acks that
 * share of the batch without delivering it, as a lossy link would lose it (never retried, never
 * dead-lettered); the rest is delivered. Decided by the faults' seeded generator.
 */
function dropSome(messages: readonly Message[], percent: number, faults: Faults): Message[] {
  const share = Math.max(percent / 100, faults.drop);
  if (share === 0) return [...messages];
  const random = faultRandom(faults);
  const kept: Message[] = [];
  for (const m of messages) {
    if (random.next() < share) m.ack();
    else kept.push(m);
  }
  return kept;
}

/** Fault injection (`duplicate`): sends that share of the batch once more, to arrive later. */
async function duplicateSome(env: Env, messages: readonly Message[], faults: Faults): Promise<void> {
  if (faults.duplicate === 0) return;
  const random = faultRandom(faults);
  const copies = messages.filter(() => random.next() < faults.duplicate);
  if (copies.length === 0) return;
  try {
    await env.REPLICATION_QUEUE.sendBatch(
      copies.map((m) => ({ body: m.body, contentType: "v8" as const })),
      { delaySeconds: DUPLICATE_DELAY_SECONDS },
    );
  } catch (error) {
    console.warn(`could not send ${copies.length} injected duplicates:`, error);
  }
}

/** How much later an injected duplicate arrives. */
const DUPLICATE_DELAY_SECONDS = 1;

/** Hands `messages` to `target`'s replica of `shard` in one call; acks what it merged, retries the rest. */
async function deliverTo(env: Env, target: RegionId, shard: ShardIndex, messages: readonly Message[]): Promise<void> {
  try {
    const results = await replicaOf(env, target, shard).applyReplication(messages.map((m) => m.body));
    messages.forEach((m, i) => {
      const result = results[i];
      const delivery = deliveryOf(result ?? "unreachable", false, m.attempts);
      if (delivery.kind === "ack") m.ack();
      else {
        if (result !== undefined && !result.ok)
          console.warn(
            `replication to ${target} refused (attempt ${m.attempts}): ${result.error.code}: ${result.error.message}`,
          );
        m.retry({ delaySeconds: delivery.delaySeconds });
      }
    });
  } catch (error) {
    if (isAssertion(error)) throw error;
    console.error(`replica ${target} unreachable; retrying ${messages.length} messages:`, error);
    for (const m of messages) m.retry({ delaySeconds: retryDelaySeconds(m.attempts) });
  }
}

/** Delivers a replication batch, one replica call per target region. */
export async function consumeReplication(batch: MessageBatch, env: Env): Promise<void> {
  const config = loadConfig(env);
  const [view, faults] = await Promise.all([clusterView(env), currentFaults(env)]);
  const delivered = dropSome(batch.messages, config.replicationDropPercent, faults);
  await duplicateSome(env, delivered, faults);
  await Promise.all(
    byTarget(delivered).map(async ([{ target, shard }, group]) => {
      if (target !== undefined && isTakenOut(view, target)) {
        await park(env, group);
        return;
      }
      if (target === undefined || !config.regions.includes(target) || shard === undefined) {
        // Cannot be delivered anywhere: let it exhaust its retries into the dead-letter queue.
        console.error(`replication message without a configured target region and shard; ${group.length} to retry`);
        for (const m of group) m.retry({ delaySeconds: retryDelaySeconds(m.attempts) });
        return;
      }
      // An injected partition holds what crosses it: the queue tries again later. An injected
      // refusal fails each attempt at once, so the message runs out of retries within seconds.
      const messages = group.filter((m) => {
        const origin = regionField(m.body, "origin");
        if (origin !== undefined && refused(faults, origin, target)) {
          m.retry({ delaySeconds: 0 });
          return false;
        }
        if (origin === undefined || !partitioned(faults, origin, target)) return true;
        m.retry({ delaySeconds: retryDelaySeconds(m.attempts) });
        return false;
      });
      if (messages.length > 0) await deliverTo(env, target, shard, messages);
    }),
  );
}

/** How long a dead letter that no region could record waits before it is tried again. */
const DEAD_LETTER_RECHECK_SECONDS = 60;

/**
 * Records dead letters in their target replica, or, when that one cannot take them (or the
 * target is unknown), in the first other region that can (the same shard, or shard 0 when the
 * shard is unknown: dead letters are listed across every shard). When no region can, the letters are
 * sent back to the dead-letter queue with a delay and acked, so they never run out of retries
 * and vanish; only when that send fails too are they retried (and `max_retries` is the last
 * bound, documented in docs/replication.md).
 */
export async function consumeDeadLetters(batch: MessageBatch, env: Env): Promise<void> {
  const config = loadConfig(env);
  await Promise.all(
    byTarget(batch.messages).map(async ([{ target, shard }, messages]) => {
      const known = target !== undefined && config.regions.includes(target) && shard !== undefined ? target : undefined;
      const candidates = [...(known === undefined ? [] : [known]), ...config.regions.filter((r) => r !== known)];
      for (const region of candidates) {
        try {
          await replicaOf(env, region, shard ?? 0).recordDeadLetters(
            messages.map((m) => ({
              body: m.body,
              attempts: m.attempts,
              reason:
                known === undefined
                  ? "no configured target region and shard"
                  : region === known
                    ? "retries exhausted"
                    : `retries exhausted; recorded in ${region} because ${known} could not record it`,
            })),
          );
          for (const m of messages) m.ack();
          return;
        } catch (error) {
          if (isAssertion(error)) throw error;
          console.error(`could not record ${messages.length} dead letters in ${region}:`, error);
        }
      }
      try {
        await env.DEAD_LETTER_QUEUE.sendBatch(
          messages.map((m) => ({ body: m.body, contentType: "v8" as const })),
          { delaySeconds: DEAD_LETTER_RECHECK_SECONDS },
        );
        for (const m of messages) m.ack();
      } catch (error) {
        console.error(`no region could record ${messages.length} dead letters, nor could they be re-queued:`, error);
        for (const m of messages) m.retry({ delaySeconds: retryDelaySeconds(m.attempts) });
      }
    }),
  );
}
