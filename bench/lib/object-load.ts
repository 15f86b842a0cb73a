/**
 * Per-object load: how evenly a store's shards share its writes. Writes go to fresh keys spread
 * uniformly (each write a new key), and each replica object's applied writes are counted from
 * `replica_writes_applied_total{region,shard}` before and after; per region, the busiest shard's
 * count over the region's mean is the figure (1.0 is perfectly even).
 */
import { closedLoop } from "./load.ts";
import { type KvTarget, storeText } from "./targets.ts";

/** The object-load figure of one run. */
export interface ObjectLoad {
  readonly writes: number;
  /** Per region, each shard's applied writes during the run. */
  readonly perRegion: Readonly<Record<string, readonly number[]>>;
  /** The largest busiest/mean ratio over regions. */
  readonly maxToMean: number;
}

/** `replica_writes_applied_total` per region and shard in a metrics text. */
export function appliedWrites(text: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const match of text.matchAll(/^replica_writes_applied_total\{region="(\w+)",shard="(\d+)"\} (\d+)$/gm)) {
    const [, region, shard, value] = match as unknown as [string, string, string, string];
    const shards = out.get(region) ?? [];
    shards[Number(shard)] = Number(value);
    out.set(region, shards);
  }
  return out;
}

/** Writes `opsMax` fresh keys (bounded by `durationMs`) at `concurrency` and measures how evenly every region's shards applied them. */
export async function measureObjectLoad(
  baseUrl: string,
  token: string,
  store: KvTarget,
  value: Uint8Array,
  options: {
    concurrency: number;
    opsMax: number;
    durationMs: number;
    errorsMax: number;
    settle: () => Promise<number>;
  },
): Promise<ObjectLoad> {
  await options.settle();
  const before = appliedWrites(await storeText(baseUrl, token, "/metrics"));
  const tag = Date.now().toString(36);
  const run = await closedLoop((n) => store.put(`load-${tag}-${n}`, value), options);
  await options.settle();
  // Replica counters are flushed at most one heartbeat after they change.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  const after = appliedWrites(await storeText(baseUrl, token, "/metrics"));
  const perRegion: Record<string, number[]> = {};
  let maxToMean = 0;
  for (const [region, counts] of after) {
    const deltas = counts.map((c, shard) => c - (before.get(region)?.[shard] ?? 0));
    perRegion[region] = deltas;
    const mean = deltas.reduce((a, b) => a + b, 0) / deltas.length;
    if (mean > 0) maxToMean = Math.max(maxToMean, Math.max(...deltas) / mean);
  }
  return { writes: run.ok, perRegion, maxToMean };
}
