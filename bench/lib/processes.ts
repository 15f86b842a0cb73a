/**
 * Starting and stopping what the benchmark measures: the store exactly as `npm start` runs it
 * (scripts/start.mjs), and the storage floor under the same wrangler binary. Each runs in its own
 * process group with fresh state in a temporary directory and its output in a log file; every
 * started group is killed on exit, error or Ctrl-C.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

/** How long a server may take to answer its health check after spawning (a cold wrangler bundles first). */
const STARTUP_MS_MAX = 120_000;
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
  /** Stops the process group and, unless `keepState`, removes its state (the log stays). */
  stop(): Promise<void>;
}

const running = new Set<Server>();

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
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
    try {
      const res = await fetch(url);
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

interface StartOptions {
  readonly name: string;
  readonly root: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly port: number;
  readonly stateDir: string;
  readonly healthPath: string;
  readonly keepState: boolean;
}

async function start(options: StartOptions): Promise<Server> {
  const { name, root, command, args, env, port, stateDir, healthPath, keepState } = options;
  const logPath = path.join(stateDir, `${name}.log`);
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

/** A fresh directory for this run's server logs and state. */
export function runDir(): string {
  return mkdtempSync(path.join(tmpdir(), "kv-bench-"));
}

/**
 * The environment for a child: ours, with this Node first on the PATH, because wrangler refuses
 * Node < 22 and the machine's default `node` may be older.
 */
function childEnv(extra: Readonly<Record<string, string>>): NodeJS.ProcessEnv {
  const pathVar = `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ""}`;
  return { ...process.env, PATH: pathVar, ...extra };
}

/** Starts the store as `npm start` does, with `vars` as KV_VARS (e.g. "DIRECT_PUSH:on"). */
export async function startStore(
  root: string,
  dir: string,
  label: string,
  vars: string,
  keepState: boolean,
): Promise<Server> {
  const port = await freePort();
  const stateDir = mkdtempSync(path.join(dir, `store-${label}-`));
  return start({
    name: `store-${label}`,
    root,
    command: process.execPath,
    args: [path.join(root, "scripts", "start.mjs")],
    env: childEnv({ PORT: String(port), KV_PERSIST_DIR: path.join(stateDir, "state"), KV_VARS: vars }),
    port,
    stateDir,
    healthPath: "/healthz",
    keepState,
  });
}

/** Starts the storage floor Worker (bench/floor) under the project's wrangler. */
export async function startFloor(root: string, dir: string, keepState: boolean): Promise<Server> {
  const port = await freePort();
  const stateDir = mkdtempSync(path.join(dir, "floor-"));
  const wrangler = path.join(root, "node_modules", ".bin", "wrangler");
  const args = ["dev", "-c", path.join("bench", "floor", "wrangler.toml"), "--ip", "127.0.0.1", "--port", String(port)];
  args.push("--persist-to", path.join(stateDir, "state"), "--show-interactive-dev-session=false");
  return start({
    name: "floor",
    root,
    command: wrangler,
    args,
    env: childEnv({ CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" }),
    port,
    stateDir,
    healthPath: "/healthz",
    keepState,
  });
}

/** Stops every server still running; safe to call more than once. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
}

/**
 * Lines of a server's log that look like trouble (errors, warnings, uncaught exceptions, 5xx
 * answers), with digits masked so repeats collapse; each with how often it occurred.
 */
export function logFindings(logPath: string): Array<{ line: string; count: number }> {
  const counts = new Map<string, { line: string; count: number }>();
  let text = "";
  try {
    text = readFileSync(logPath, "utf8");
  } catch {
    return [];
  }
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!/error|warn|exception|uncaught|✘|▲| 5\d\d /i.test(line)) continue;
    const shape = line.replace(/\d+/g, "N").slice(0, 300);
    const entry = counts.get(shape) ?? { line: line.slice(0, 300), count: 0 };
    entry.count += 1;
    counts.set(shape, entry);
  }
  return [...counts.values()].sort((a, b) => b.count - a.count).slice(0, LOG_FINDINGS_MAX);
}
