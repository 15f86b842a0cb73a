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
  for (const peer of peers) {
    for (;;) {
      const got = await peer.get(key);
      if (got !== null && new TextDecoder().decode(got) === key) break;
      if (performance.now() > deadline) throw new Error(`${peer.name} did not receive ${key} within ${timeoutMs} ms`);
      await sleep(SENTINEL_POLL_MS);
    }
  }
  for (;;) {
    const backlog = await replicationBacklog(baseUrl, token);
    if (backlog === 0) return performance.now() - started;
    if (performance.now() > deadline)
      throw new Error(`replication backlog of ${backlog} entries did not drain within ${timeoutMs} ms`);
    await sleep(REGIONS_POLL_MS);
  }
}
