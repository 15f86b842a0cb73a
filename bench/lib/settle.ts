/**
 * Waiting out replication between phases, so one phase's backlog does not slow the next one
 * (which may be the floor's). The store is settled when a fresh sentinel write is visible in
 * every other region and `/v1/regions` reports no replica behind any peer.
 */
import { type KvTarget, storeJson } from "./targets.ts";

const SENTINEL_POLL_MS = 10;
const REGIONS_POLL_MS = 100;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

let sentinels = 0;

/** Entries every replica still lacks from its peers, summed, per `/v1/regions`. */
export async function replicationBacklog(baseUrl: string, token: string): Promise<number> {
  const body = (await storeJson(baseUrl, token, "/v1/regions")) as {
    regions: Array<{ healthy: boolean; lag: Record<string, { entries: number }> }>;
  };
  let entries = 0;
  for (const region of body.regions) {
    if (!region.healthy) return Number.POSITIVE_INFINITY;
    for (const lag of Object.values(region.lag)) entries += lag.entries;
  }
  return entries;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/**
 * Waits until every one of `targets` answers `key` with exactly `value`; returns how long that
 * took in ms. Throws after `timeoutMs`.
 */
export async function awaitVisible(
  targets: readonly KvTarget[],
  key: string,
  value: Uint8Array,
  timeoutMs: number,
): Promise<number> {
  const started = performance.now();
  const deadline = started + timeoutMs;
  for (const target of targets) {
    for (;;) {
      const got = await target.get(key);
      if (got !== null && sameBytes(got, value)) break;
      if (performance.now() > deadline) throw new Error(`${target.name} did not show ${key} within ${timeoutMs} ms`);
      await sleep(SENTINEL_POLL_MS);
    }
  }
  return performance.now() - started;
}

/**
 * Waits until the store has no replication backlog; returns how long that took in ms. Throws
 * after `timeoutMs`: a store that cannot drain is a finding, not something to benchmark past.
 */
export async function settle(
  baseUrl: string,
  token: string,
  origin: KvTarget,
  peers: readonly KvTarget[],
  timeoutMs: number,
): Promise<number> {
  const started = performance.now();
  const deadline = started + timeoutMs;
  sentinels += 1;
  const key = `settle-${process.pid}-${sentinels}`;
  const value = new TextEncoder().encode(key);
  await origin.put(key, value);
  await awaitVisible(peers, key, value, timeoutMs);
  for (;;) {
    const backlog = await replicationBacklog(baseUrl, token);
    if (backlog === 0) return performance.now() - started;
    if (performance.now() > deadline)
      throw new Error(`replication backlog of ${backlog} entries did not drain within ${timeoutMs} ms`);
    await sleep(REGIONS_POLL_MS);
  }
}
