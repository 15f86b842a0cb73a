/**
 * Starting and stopping what the benchmark measures: the store exactly as `npm start` runs it
 * (scripts/start.mjs), and the storage floor under the same wrangler binary. Each runs in its own
 * process group with fresh state in a temporary directory and its output in a log file; every
 * started group is killed on exit, error or Ctrl-C.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

/** How long a server may take to answer its health check after spawning (a cold wrangler bundles first). */
const STARTUP_MS_MAX = 120_000;
/** What wrangler logs when workerd died and is being restarted. */
const RUNTIME_CRASHED = "The Workers runtime crashed unexpectedly";
const HEALTH_POLL_MS = 250;
/** How long a process group gets to exit on SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 5000;
/** Distinct suspicious log lines kept per server. */
const LOG_FINDINGS_MAX = 20;

/** A started server. */
export interface Server {
  readonly name: string;
  readonly baseUrl: string;
  readonly logPath: string;
  readonly stateDir: string;
  /**
   * CPU seconds (user and system) its Workers runtime has used so far: the workerd process that
   * runs its Worker and Durable Objects (wrangler's own proxy runtime, the same per request for
   * every server, is left out). NaN where /proc is not available.
   */
  cpuSeconds(): number;
  /** Stops the process group and, unless `keepState`, removes its state (the log stays). */
  stop(): Promise<void>;
}

const running = new Set<Server>();

/** Ports handed out by this process: the kernel may offer a just-closed port twice. */
const handedOut = new Set<number>();
const PORT_TRIES_MAX = 20;

function probePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

/** A TCP port that was free a moment ago on 127.0.0.1 and not handed out before by this process. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < PORT_TRIES_MAX; i += 1) {
    const port = await probePort();
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no fresh free port after ${PORT_TRIES_MAX} tries`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitHealthy(name: string, url: string, child: ChildProcess, logPath: string): Promise<void> {
  const deadline = performance.now() + STARTUP_MS_MAX;
  while (performance.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `${name} exited (${child.exitCode ?? child.signalCode}) before it was healthy:\n${tail(logPath)}`,
      );
    }
    // wrangler restarts a crashed workerd, but a restart before the first answer was not seen to
    // come up here; failing at once lets the caller try a fresh start instead of waiting it out.
    if (tail(logPath).includes(RUNTIME_CRASHED)) throw new Error(`${name} crashed while starting:\n${tail(logPath)}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // Not listening yet.
    }
    await sleep(HEALTH_POLL_MS);
  }
  throw new Error(`${name} did not answer ${url} within ${STARTUP_MS_MAX} ms:\n${tail(logPath)}`);
}

function tail(logPath: string): string {
  try {
    return readFileSync(logPath, "utf8").slice(-4000);
  } catch {
    return "(no log)";
  }
}

async function stopGroup(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {
    return; // The group is already gone.
  }
  const timer = sleep(STOP_GRACE_MS).then(() => "timeout" as const);
  if ((await Promise.race([exited.then(() => "exited" as const), timer])) === "timeout") {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // Gone meanwhile.
    }
  }
  // Children of the group (workerd) may outlive the leader by a moment; make sure none remain.
  await sleep(200);
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    // Nothing left: the usual case.
  }
}

/** Clock ticks per second of /proc's CPU counters (USER_HZ: 100 on Linux). */
const CLOCK_TICKS_PER_SEC = 100;

/**
 * CPU seconds used by the workerd processes of process group `pgid` that run user code (wrangler
 * starts them with an inspector; its proxy runtime has none). NaN when /proc cannot be read.
 */
export function runtimeCpuSeconds(pgid: number): number {
  let ticks = 0;
  let found = false;
  try {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      let stat: string;
      let args: string;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        args = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      } catch {
        continue; // Gone meanwhile.
      }
      // Fields after the command name (which may hold spaces): state, ppid, pgrp, ..., utime (14), stime (15).
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) !== pgid || !args.includes("workerd") || !args.includes("--inspector-addr")) continue;
      ticks += Number(fields[11]) + Number(fields[12]);
      found = true;
    }
  } catch {
    return Number.NaN;
  }
  return found ? ticks / CLOCK_TICKS_PER_SEC : Number.NaN;
}

/** What to run for one start attempt, given its port. */
interface Launch {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
}

interface StartOptions {
  readonly name: string;
  readonly root: string;
  readonly stateDir: string;
  readonly healthPath: string;
  readonly keepState: boolean;
  readonly launch: (port: number) => Promise<Launch>;
}

/**
 * Start attempts per server. wrangler picks some ports itself (the inspector's prefers 9229), so
 * two wranglers starting at once on this machine (ours, or other sessions') can collide on one;
 * such a start fails with "Address already in use" and is simply tried again. So is a start whose
 * workerd crashed before it answered (seen here now and then: wrangler then restarts workerd,
 * which never became healthy within STARTUP_MS_MAX).
 */
const START_ATTEMPTS_MAX = 3;

/** Log text of a start that is worth another attempt. */
const RETRYABLE_START = ["Address already in use", RUNTIME_CRASHED];

async function startOnce(options: StartOptions, attempt: number): Promise<Server> {
  const { name, root, stateDir, healthPath, keepState } = options;
  const port = await freePort();
  const { command, args, env } = await options.launch(port);
  const logPath = path.join(stateDir, attempt === 1 ? `${name}.log` : `${name}.${attempt}.log`);
  const log = createWriteStream(logPath);
  const child = spawn(command, args, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const baseUrl = `http://127.0.0.1:${port}`;
  const server: Server = {
    name,
    baseUrl,
    logPath,
    stateDir,
    cpuSeconds: () => (child.pid === undefined ? Number.NaN : runtimeCpuSeconds(child.pid)),
    async stop() {
      running.delete(server);
      await stopGroup(child);
      log.end();
      if (!keepState) rmSync(path.join(stateDir, "state"), { recursive: true, force: true });
    },
  };
  running.add(server);
  try {
    await waitHealthy(name, `${baseUrl}${healthPath}`, child, logPath);
  } catch (error) {
    await server.stop();
    throw error;
  }
  return server;
}

async function start(options: StartOptions): Promise<Server> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startOnce(options, attempt);
    } catch (error) {
      const cause = error instanceof Error ? RETRYABLE_START.find((text) => error.message.includes(text)) : undefined;
      if (cause === undefined || attempt >= START_ATTEMPTS_MAX) throw error;
      console.log(`${options.name}: "${cause}" while starting; trying again (${attempt + 1}/${START_ATTEMPTS_MAX})`);
    }
  }
}

/** A fresh directory for this run's server logs and state. */
export function runDir(): string {
  return mkdtempSync(path.join(tmpdir(), "kv-bench-"));
}

/**
 * The environment for a child: ours, with this Node first on the PATH, because wrangler refuses
 * Node < 22 and the machine's default `node` may be older.
 */
function childEnv(stateDir: string, extra: Readonly<Record<string, string>>): NodeJS.ProcessEnv {
  const pathVar = `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ""}`;
  return {
    ...process.env,
    PATH: pathVar,
    // Every `wrangler dev` on the machine shares one registry of running Workers by default and
    // reacts when another one starts or stops; under that churn (other sessions run their own
    // tests here) workerd was seen crashing and hanging. A registry per server keeps each alone.
    WRANGLER_REGISTRY_PATH: path.join(stateDir, "registry"),
    ...extra,
  };
}

/**
 * Starts the store as `npm start` does from the project at `root`, with `vars` as KV_VARS (e.g.
 * "DIRECT_PUSH:on"). `reuse`: the state directory of an earlier store, to carry on from its state.
 */
export async function startStore(
  root: string,
  dir: string,
  label: string,
  vars: string,
  keepState: boolean,
  reuse?: string,
): Promise<Server> {
  const stateDir = reuse ?? mkdtempSync(path.join(dir, `store-${label}-`));
  return start({
    name: `store-${label}`,
    root,
    stateDir,
    healthPath: "/healthz",
    keepState,
    launch: async (port) => ({
      command: process.execPath,
      args: [path.join(root, "scripts", "start.mjs")],
      env: childEnv(stateDir, { PORT: String(port), KV_PERSIST_DIR: path.join(stateDir, "state"), KV_VARS: vars }),
    }),
  });
}

/** Starts the storage floor Worker (bench/floor) under the wrangler of the project at `root`. */
export async function startFloor(root: string, dir: string, keepState: boolean): Promise<Server> {
  const stateDir = mkdtempSync(path.join(dir, "floor-"));
  const wrangler = path.join(root, "node_modules", ".bin", "wrangler");
  return start({
    name: "floor",
    root,
    stateDir,
    healthPath: "/healthz",
    keepState,
    launch: async (port) => ({
      command: wrangler,
      args: [
        "dev",
        "-c",
        path.join("bench", "floor", "wrangler.toml"),
        "--ip",
        "127.0.0.1",
        "--port",
        String(port),
        // An inspector port of its own, so the floor never races the store for the default 9229.
        "--inspector-port",
        String(await freePort()),
        "--persist-to",
        path.join(stateDir, "state"),
        "--show-interactive-dev-session=false",
      ],
      env: childEnv(stateDir, { CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" }),
    }),
  });
}

/** Stops every server still running; safe to call more than once. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
}

/** wrangler colours its errors; the colour codes are dropped from findings. */
const ANSI_COLOUR = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g");

/** A kind of suspicious log line: its first occurrence and how often lines of its shape appeared. */
export interface LogFinding {
  readonly line: string;
  count: number;
}

/**
 * Lines of a server's log that look like trouble (errors, warnings, uncaught exceptions, 5xx
 * answers), with digits masked so repeats collapse; each with how often it occurred.
 */
export function logFindings(logPath: string): LogFinding[] {
  const counts = new Map<string, LogFinding>();
  let text = "";
  try {
    text = readFileSync(logPath, "utf8");
  } catch {
    return [];
  }
  for (const raw of text.split("\n")) {
    const line = raw.replace(ANSI_COLOUR, "").trim();
    if (!/error|warn|exception|uncaught|✘|▲| 5\d\d /i.test(line)) continue;
    const shape = line.replace(/\d+/g, "N").slice(0, 300);
    const entry = counts.get(shape) ?? { line: line.slice(0, 300), count: 0 };
    entry.count += 1;
    counts.set(shape, entry);
  }
  return [...counts.values()].sort((a, b) => b.count - a.count).slice(0, LOG_FINDINGS_MAX);
}
