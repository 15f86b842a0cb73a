/**
 * A region's status from its shards' (`shared/shards.ts`): what `/v1/regions` shows for a
 * region and what its health rests on. A region is as current as its least current shard:
 * lag in milliseconds is the worst shard's, lag in writes and every count is the sum, and a
 * region whose shard did not answer did not answer.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import { assert } from "../assert.ts";
import { utf8 } from "../bytes.ts";
import { type RegionId } from "../regions.ts";
import { type PeerLag, type ReplicaDigest, type ReplicaStatus } from "./contract.ts";
import { type DelaySummary } from "./delays.ts";

/** The worst of two lags (unknown is worst; then the larger figure), with their writes summed. */
function worseLag(a: PeerLag, b: PeerLag): PeerLag {
  const entries = a.entries + b.entries;
  const heard = {
    heardMs: Math.min(a.heardMs, b.heardMs),
    silentMs: a.silentMs === null || b.silentMs === null ? null : Math.max(a.silentMs, b.silentMs),
    appliedSeq: a.appliedSeq + b.appliedSeq,
  };
  if (a.ms === null) return { ...heard, entries, ms: null, unknown: a.unknown };
  if (b.ms === null) return { ...heard, entries, ms: null, unknown: b.unknown };
  return { ...heard, entries, ms: Math.max(a.ms, b.ms) };
}

/** The worst quantiles of two delay windows, with their samples and totals summed. */
function worseDelay(a: DelaySummary, b: DelaySummary): DelaySummary {
  return {
    p50Ms: Math.max(a.p50Ms, b.p50Ms),
    p99Ms: Math.max(a.p99Ms, b.p99Ms),
    samples: a.samples + b.samples,
    count: a.count + b.count,
    sumMs: a.sumMs + b.sumMs,
  };
}

/** Combines per-peer records of every shard with `worse`. */
function perPeer<T>(
  records: ReadonlyArray<Partial<Record<RegionId, T>>>,
  worse: (a: T, b: T) => T,
): Partial<Record<RegionId, T>> {
  const out: Partial<Record<RegionId, T>> = {};
  for (const record of records)
    for (const [peer, value] of Object.entries(record) as Array<[RegionId, T]>) {
      const known = out[peer];
      out[peer] = known === undefined ? value : worse(known, value);
    }
  return out;
}

/**
 * A region's status from every shard's (index = shard), or null when a shard did not answer.
 * Sequence numbers and applied positions are summed, so they order progress within a
 * region but are not any one shard's stream position.
 */
export function regionStatus(shards: readonly (ReplicaStatus | null)[]): ReplicaStatus | null {
  const first = shards[0];
  if (first === undefined || first === null || shards.some((s) => s === null)) return null;
  if (shards.length === 1) return first;
  const all = shards as readonly ReplicaStatus[];
  const sum = (f: (s: ReplicaStatus) => number): number => all.reduce((n, s) => n + f(s), 0);
  const metrics = new Map<string, { name: string; peer: string; value: number }>();
  for (const s of all)
    for (const m of s.metrics) {
      const id = `${m.name}\u0000${m.peer}`;
      const known = metrics.get(id);
      metrics.set(id, { ...m, value: (known?.value ?? 0) + m.value });
    }
  return {
    ...first,
    seq: sum((s) => s.seq),
    clock: all.map((s) => s.clock).reduce((a, b) => (b > a ? b : a)),
    takenOut: all.some((s) => s.takenOut),
    bootstrapping: all.some((s) => s.bootstrapping),
    outboxPending: sum((s) => s.outboxPending),
    deadLetters: sum((s) => s.deadLetters),
    keys: { live: sum((s) => s.keys.live), tombstones: sum((s) => s.keys.tombstones) },
    lag: perPeer(
      all.map((s) => s.lag),
      worseLag,
    ),
    delays: perPeer(
      all.map((s) => s.delays),
      worseDelay,
    ),
    metrics: [...metrics.values()],
  };
}

/**
 * A region's digest from every shard's: counts summed, and a root that is the shard's own with
 * one shard, else the SHA-256 of the shards' roots in shard order (equal regions have equal
 * roots, and a root changes when any shard's does).
 */
export function regionDigest(shards: readonly ReplicaDigest[]): ReplicaDigest & { shards: ReplicaDigest[] } {
  const first = shards[0];
  assert(first !== undefined, "a region has at least one shard");
  const root = shards.length === 1 ? first.root : bytesToHex(sha256(utf8(shards.map((s) => s.root).join("\n"))));
  return {
    region: first.region,
    keys: shards.reduce((n, s) => n + s.keys, 0),
    tombstones: shards.reduce((n, s) => n + s.tombstones, 0),
    root,
    bootstrapping: shards.some((s) => s.bootstrapping),
    shards: [...shards],
  };
}
