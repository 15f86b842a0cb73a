// A small HTTP client for the black-box tests: the store as `npm start` runs it.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inject } from "vitest";
import { type RunningStore, startStore } from "./store.ts";

export const REGIONS = ["wnam", "enam", "weur", "apac"] as const;
export type Region = (typeof REGIONS)[number];
export const ADMIN_TOKEN = "dev-token";
export const READ_TOKEN = "dev-read-token";

let baseOverride: string | undefined;

/** Points this file's requests at another store (one the file started itself). */
export function useStore(baseUrl: string | undefined): void {
  baseOverride = baseUrl;
}

/** A store a test file starts itself on one state directory, kept across restarts. */
export interface OwnStore {
  /** The state directory (set by the first start). */
  readonly stateDir: string;
  /** Starts it (on the same state as before) with `vars` and points `call` at it. */
  start(vars?: Record<string, string>): Promise<void>;
  /** Stops it, keeping its state. */
  stop(): Promise<void>;
  /** Stops it and removes its state: for `afterEach`. */
  cleanup(): Promise<void>;
  /** What it printed lately (empty when not running). */
  log(): string;
}

/** An {@link OwnStore} whose state directory's name starts with `label`. */
export function ownStore(label: string): OwnStore {
  let store: RunningStore | undefined;
  let dir: string | undefined;
  const stop = async (): Promise<void> => {
    await store?.stop();
    store = undefined;
    useStore(undefined);
  };
  return {
    get stateDir(): string {
      if (dir === undefined) throw new Error("the store has not been started yet");
      return dir;
    },
    async start(vars = {}) {
      dir ??= mkdtempSync(join(tmpdir(), `${label}-`));
      store = await startStore(vars, dir);
      useStore(store.baseUrl);
    },
    stop,
    log: () => store?.log() ?? "",
    async cleanup() {
      await stop();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
      dir = undefined;
    },
  };
}

/** A request against the running store; `token: null` sends none. */
export function call(path: string, init: RequestInit & { token?: string | null } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const token = init.token === undefined ? ADMIN_TOKEN : init.token;
  if (token !== null) headers.set("Authorization", `Bearer ${token}`);
  return fetch(`${baseOverride ?? inject("baseUrl")}${path}`, { ...init, headers });
}

/** JSON of a request, asserting its status. */
export async function json<T>(
  path: string,
  init: RequestInit & { token?: string | null } = {},
  status = 200,
): Promise<T> {
  const res = await call(path, init);
  const text = await res.text();
  if (res.status !== status)
    throw new Error(`${init.method ?? "GET"} ${path}: expected ${status}, got ${res.status}: ${text}`);
  return JSON.parse(text) as T;
}

/** Polls `check` until it stops throwing, within `timeoutMs`; rethrows the last failure. */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 15_000, intervalMs = 50): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (performance.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }
}

/** A key unique to this run. */
export function uniqueKey(label: string): string {
  return `e2e/${label}/${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/** The value of a register in `region`, or null on 404. */
export async function readValue(key: string, region: Region): Promise<{ text: string; etag: string | null } | null> {
  const res = await call(`/v1/kv/${encodeURIComponent(key)}?region=${region}`);
  if (res.status === 404) {
    await res.body?.cancel();
    return null;
  }
  if (res.status !== 200) throw new Error(`GET ${key} in ${region}: ${res.status} ${await res.text()}`);
  return { text: await res.text(), etag: res.headers.get("etag") };
}
