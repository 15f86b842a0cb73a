// Starts the store exactly as `npm start` does (scripts/start.mjs -> wrangler dev) on a free
// port with fresh local state, and waits until it answers /healthz.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";

const STARTUP_MS_MAX = 90_000;
const POLL_MS = 250;

/** A running store. */
export interface RunningStore {
  readonly baseUrl: string;
  /** Stops the store; resolves once its process has exited (its files are then closed). */
  stop(): Promise<void>;
  /** Kills the store (SIGKILL to its whole process group, as a crash would); resolves once it is gone. */
  kill(): Promise<void>;
  /** The last 20 KB the store printed (its warnings and errors), for a failing test to show. */
  log(): string;
}

async function freePort(): Promise<number> {
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

async function waitHealthy(baseUrl: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = performance.now() + STARTUP_MS_MAX;
  while (performance.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`npm start exited with ${child.exitCode}:\n${log()}`);
    try {
      const res = await fetch(`${baseUrl}/healthz`);
      if (res.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  throw new Error(`the store did not answer /healthz within ${STARTUP_MS_MAX} ms:\n${log()}`);
}

/**
 * Starts a store; `vars` override wrangler.toml vars (as `KV_VARS` does for `npm start`). With
 * `stateDir`, the store keeps its state there (and `stop` leaves it), so a later store started
 * on the same directory carries on from it; without, it starts from nothing and cleans up.
 */
export async function startStore(vars: Record<string, string> = {}, stateDir?: string): Promise<RunningStore> {
  const port = await freePort();
  const inspectorPort = await freePort();
  const persistDir = stateDir ?? mkdtempSync(path.join(tmpdir(), "kv-e2e-"));
  const root = path.resolve(import.meta.dirname, "..", "..");
  let output = "";
  const child = spawn("node", [path.join(root, "scripts", "start.mjs")], {
    cwd: root,
    env: {
      ...process.env,
      PORT: String(port),
      KV_PERSIST_DIR: path.join(persistDir, "state"),
      KV_VARS: Object.entries(vars)
        .map(([name, value]) => `${name}:${value}`)
        .join(";"),
      // Each store gets its own wrangler registry and inspector port: stores started side by
      // side otherwise see (and can take down) each other's workerd.
      WRANGLER_REGISTRY_PATH: path.join(persistDir, "registry"),
      KV_INSPECTOR_PORT: String(inspectorPort),
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const baseUrl = `http://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.pid !== undefined && child.exitCode === null) {
      process.kill(-child.pid, "SIGTERM");
      await exited;
    }
    if (stateDir === undefined) rmSync(persistDir, { recursive: true, force: true });
  };
  const kill = async (): Promise<void> => {
    if (child.pid !== undefined && child.exitCode === null) {
      process.kill(-child.pid, "SIGKILL");
      await exited;
    }
  };
  try {
    await waitHealthy(baseUrl, child, () => output);
  } catch (error) {
    await stop();
    throw error;
  }
  return { baseUrl, stop, kill, log: () => output };
}

/** Replica objects per region in the store `npm start` starts (wrangler.toml's `SHARDS`). */
export const SHARDS = Number(/^SHARDS = "(\d+)"$/m.exec(readFileSync("wrangler.toml", "utf8"))?.[1]);

/**
 * The SQLite files of `region`'s replicas (one per shard) under a store's state directory,
 * found by their clocks' region; when `shards` is given, exactly that many must exist (a replica
 * never used has none).
 */
export function replicaFiles(stateDir: string, region: string, shards?: number): string[] {
  const files = readdirSync(stateDir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".sqlite"))
    .map((f) => path.join(stateDir, f));
  const found = files.filter((file) => {
    // Not read-only: a store killed with -9 leaves its last writes in the WAL, which only a
    // connection that may write recovers (the store is down while this runs).
    const db = new DatabaseSync(file);
    try {
      const row = db.prepare("SELECT value FROM meta WHERE name = 'clock'").get() as { value: string } | undefined;
      return row?.value.endsWith(`.${region}`) === true;
    } catch {
      return false;
    } finally {
      db.close();
    }
  });
  if (shards !== undefined && found.length !== shards)
    throw new Error(`expected ${shards} SQLite files for ${region} (one per shard), found ${found.length}`);
  return found;
}
