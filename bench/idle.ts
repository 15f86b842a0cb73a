/**
 * `npm run bench:idle`: what a store costs while nobody uses it, by shard count. Each replica
 * object heartbeats its peers, re-drains its outbox and answers the control object's status
 * round every HEARTBEAT_INTERVAL_MS, so this background cost grows with regions x shards; on
 * the local run (every object in one workerd) it also competes with the write path for the one
 * thread, and it is part of every per-write CPU figure `npm run bench` reports.
 *
 * For each count in BENCH_IDLE_SHARDS (default 1,2,8): starts the store as `npm start` does with
 * fresh state, touches every replica object once (a status round), waits BENCH_IDLE_WARMUP_MS
 * (5000), then reads the workerd process's CPU over BENCH_IDLE_MS (10000). Prints CPU ms per
 * second, in total and per replica object.
 */
import os from "node:os";
import path from "node:path";
import { rmSync } from "node:fs";
import { runDir, startStore, stopAll } from "./lib/processes.ts";
import { snapshot } from "./lib/source.ts";
import { storeText } from "./lib/targets.ts";

const projectRoot = path.resolve(import.meta.dirname, "..");
const shardCounts = (process.env.BENCH_IDLE_SHARDS ?? "1,2,8").split(",").map(Number);
const warmupMs = Number(process.env.BENCH_IDLE_WARMUP_MS ?? 5000);
const idleMs = Number(process.env.BENCH_IDLE_MS ?? 10_000);
const token = process.env.BENCH_TOKEN ?? "dev-token";
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const dir = runDir();
try {
  const source = snapshot(projectRoot, dir, "worktree");
  console.log(`sources at ${source.commit}; ${os.cpus().length} CPUs, load average ${os.loadavg()[0]?.toFixed(2)}`);
  console.log("shards  objects  CPU ms/s  CPU ms/s per object");
  for (const shards of shardCounts) {
    const server = await startStore(source.root, dir, `idle-${shards}`, `SHARDS:${shards}`, false);
    try {
      // /metrics asks every replica object for its status: all of them exist from here on.
      const metrics = await storeText(server.baseUrl, token, "/metrics");
      const objects = new Set(metrics.match(/region_up\{region="\w+",shard="\d+"\}/g) ?? []).size;
      await sleep(warmupMs);
      const before = server.cpuSeconds();
      await sleep(idleMs);
      const msPerSec = ((server.cpuSeconds() - before) * 1000) / (idleMs / 1000);
      console.log(
        `${String(shards).padStart(6)}  ${String(objects).padStart(7)}  ${msPerSec.toFixed(1).padStart(8)}  ${(msPerSec / objects).toFixed(2).padStart(19)}`,
      );
    } finally {
      await server.stop();
    }
  }
} finally {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}
