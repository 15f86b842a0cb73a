// Starts the store exactly as `npm start` does (scripts/start.mjs -> wrangler dev), on a free
// port with fresh local state, waits until it answers /healthz, and hands the base URL to the
// tests. The process group is killed at teardown.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";

const STARTUP_MS_MAX = 90_000;
const POLL_MS = 250;

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string;
  }
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

export default async function setup(project: TestProject): Promise<() => void> {
  const port = await freePort();
  const persistDir = mkdtempSync(path.join(tmpdir(), "kv-e2e-"));
  const root = path.resolve(import.meta.dirname, "..", "..");
  let output = "";
  const child = spawn("node", [path.join(root, "scripts", "start.mjs")], {
    cwd: root,
    env: { ...process.env, PORT: String(port), KV_PERSIST_DIR: persistDir },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const baseUrl = `http://127.0.0.1:${port}`;
  const stop = (): void => {
    if (child.pid !== undefined && child.exitCode === null) process.kill(-child.pid, "SIGTERM");
    rmSync(persistDir, { recursive: true, force: true });
  };
  try {
    await waitHealthy(baseUrl, child, () => output);
  } catch (error) {
    stop();
    throw error;
  }
  project.provide("baseUrl", baseUrl);
  return stop;
}
