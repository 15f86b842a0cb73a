/**
 * `npm run bench:profile`: where a write's CPU goes. Starts the store as `npm start` does (fresh
 * state; KV_VARS from BENCH_PROFILE_VARS, default "SHARDS:1") with an inspector port, writes
 * every key once to warm up, then records workerd's V8 CPU profile (the DevTools protocol's
 * Profiler domain) over BENCH_PROFILE_WRITES (3000) writes at BENCH_PROFILE_CONCURRENCY (8)
 * workers, waits for replication to drain, and prints self time by function and by kind of
 * work. Everything the store does in that time is in it: the router, the replica objects of
 * every region, the queue consumer and the background ticks (native calls such as SQLite and
 * crypto count as the JavaScript function that made them; so does the commit of a Durable
 * Object's implicit transaction, which lands on the first storage call of the next turn).
 * The profile is saved under bench/results/ for DevTools; BENCH_KEEP=1 keeps the servers' logs.
 */
import path from "node:path";
import { rmSync, writeFileSync } from "node:fs";
import { closedLoop } from "./lib/load.ts";
import { freePort, runDir, startStore, stopAll } from "./lib/processes.ts";
import { keySpace, valuePool, writeOp } from "./lib/scenarios.ts";
import { settle } from "./lib/settle.ts";
import { snapshot } from "./lib/source.ts";
import { storeHealthRegions, storeTarget } from "./lib/targets.ts";

const projectRoot = path.resolve(import.meta.dirname, "..");
const vars = process.env.BENCH_PROFILE_VARS ?? "SHARDS:1";
const writes = Number(process.env.BENCH_PROFILE_WRITES ?? 3000);
const concurrency = Number(process.env.BENCH_PROFILE_CONCURRENCY ?? 8);
const token = process.env.BENCH_TOKEN ?? "dev-token";
const region = process.env.BENCH_REGION ?? "enam";
/** Rows of the per-function table. */
const TOP_FUNCTIONS = 45;

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}
interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/**
 * A DevTools protocol session over wrangler's inspector proxy. The proxy wants an `Origin`
 * header (Node's WebSocket takes one as undici's `headers` option) and renumbers message ids, so
 * calls go one at a time and the next answer (a message with `result` or `error`) is theirs.
 */
async function devtools(port: number): Promise<(method: string, params?: object) => Promise<unknown>> {
  const targets = (await (await fetch(`http://127.0.0.1:${port}/json`)).json()) as Array<{
    webSocketDebuggerUrl?: string;
  }>;
  const url = targets.find((t) => t.webSocketDebuggerUrl !== undefined)?.webSocketDebuggerUrl;
  if (url === undefined) throw new Error(`no inspector target on port ${port}`);
  const init = { headers: { origin: `http://127.0.0.1:${port}` } };
  const socket = new WebSocket(url, init as unknown as string[]);
  await new Promise((resolve, reject) => {
    socket.addEventListener("open", resolve, { once: true });
    socket.addEventListener("error", reject, { once: true });
  });
  let answer: ((value: unknown) => void) | undefined;
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(String(event.data)) as { result?: unknown; error?: unknown };
    if (!("result" in message) && !("error" in message)) return;
    const waiting = answer;
    answer = undefined;
    waiting?.(message.error === undefined ? message.result : Promise.reject(new Error(JSON.stringify(message.error))));
  });
  let next = 0;
  let queue: Promise<unknown> = Promise.resolve();
  return (method, params = {}) => {
    const run = queue.then(
      () =>
        new Promise((resolve) => {
          next += 1;
          answer = resolve;
          socket.send(JSON.stringify({ id: next, method, params }));
        }),
    );
    queue = run.catch(() => undefined);
    return run;
  };
}

/** Self time in ms per node id. */
function selfTimes(profile: Profile): Map<number, number> {
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000));
  return self;
}

/** What kind of work a function is, from its name and file: a coarse map for the summary. */
function kindOf(frame: ProfileNode["callFrame"]): string {
  const name = frame.functionName;
  if (name.startsWith("(")) return name;
  if (frame.url === "") return `native: ${name || "(anonymous)"}`;
  if (frame.url.includes("node_modules/hono")) return "hono";
  if (frame.url.includes("node_modules/zod")) return "zod";
  if (frame.url.includes("node_modules/@noble")) return "noble hashes";
  const file = path.basename(frame.url).replace(/\?.*$/, "");
  return `js: ${file}`;
}

const dir = runDir();
try {
  const source = snapshot(projectRoot, dir, "worktree");
  const inspectorPort = await freePort();
  process.env.KV_INSPECTOR_PORT = String(inspectorPort);
  const server = await startStore(source.root, dir, "profile", vars, false);
  const store = storeTarget(server.baseUrl, token, region);
  const regions = await storeHealthRegions(server.baseUrl);
  const peers = regions.filter((r) => r !== region).map((r) => storeTarget(server.baseUrl, token, r));
  const keys = keySpace("profile", 500);
  const values = valuePool(256);
  const op = writeOp(store, keys, values);
  await closedLoop(op, { concurrency, durationMs: 600_000, errorsMax: 10, opsMax: keys.length });
  await settle(server.baseUrl, token, store, peers, 60_000);
  const call = await devtools(inspectorPort);
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: 200 });
  const cpuBefore = server.cpuSeconds();
  await call("Profiler.start");
  const run = await closedLoop(op, { concurrency, durationMs: 600_000, errorsMax: 10, opsMax: writes });
  await settle(server.baseUrl, token, store, peers, 60_000);
  const { profile } = (await call("Profiler.stop")) as { profile: Profile };
  const cpuMs = (server.cpuSeconds() - cpuBefore) * 1000;
  writeFileSync(
    path.join(projectRoot, "bench", "results", `profile-${Date.now()}.cpuprofile`),
    JSON.stringify(profile),
  );

  const self = selfTimes(profile);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const byFunction = new Map<string, number>();
  const byKind = new Map<string, number>();
  let sampledMs = 0;
  for (const [id, ms] of self) {
    const frame = byId.get(id)?.callFrame;
    if (frame === undefined) continue;
    sampledMs += ms;
    const label = `${frame.functionName || "(anonymous)"} ${path.basename(frame.url)}:${frame.lineNumber + 1}`;
    byFunction.set(label, (byFunction.get(label) ?? 0) + ms);
    byKind.set(kindOf(frame), (byKind.get(kindOf(frame)) ?? 0) + ms);
  }
  const busyMs = sampledMs - (byKind.get("(idle)") ?? 0);
  console.log(
    `${run.ok} writes at ${concurrency} workers (${vars}, ${regions.length} regions): workerd CPU ${(cpuMs / run.ok).toFixed(2)} ms per write; ` +
      `JavaScript thread busy ${(busyMs / run.ok).toFixed(2)} ms per write`,
  );
  const table = (rows: Map<string, number>, top: number): void => {
    for (const [label, ms] of [...rows].sort((a, b) => b[1] - a[1]).slice(0, top))
      console.log(
        `${(ms / run.ok).toFixed(3).padStart(8)} ms/write ${((100 * ms) / Math.max(1, busyMs)).toFixed(1).padStart(5)}%  ${label}`,
      );
  };
  console.log("\nby kind of work (share of the busy thread):");
  table(byKind, 30);
  console.log("\nby function (self time):");
  table(byFunction, TOP_FUNCTIONS);
} finally {
  await stopAll();
  if (process.env.BENCH_KEEP !== "1") rmSync(dir, { recursive: true, force: true });
}
