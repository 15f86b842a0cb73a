/**
 * One seed of the fault campaign (`npm run chaos`): starts the store as `npm start` does (fresh
 * state, FAULTS on, WAN emulation on or off), runs a concurrent workload while a seeded
 * schedule injects faults (drops, duplicates, delays, partitions, clock skew within the HLC
 * bound, a region taken out, kill -9 of the whole store and restart, one region's storage wiped
 * while stopped), heals everything, waits (bounded) until every region's digest is equal, and
 * checks what was recorded:
 *
 * - no acknowledged write lost: every register write acknowledged by a quorum (or all) is
 *   included in the key's final version; `ack=local` writes missing after their region was
 *   wiped are counted apart (the documented window), any other missing one is a violation;
 * - convergence: equal digests; each counter between the sum of its acknowledged deltas (less
 *   those lost in the window) and the sum of all attempted ones; a set holds every element an
 *   acknowledged add put there unless a remove that saw the add took it out (add-wins);
 * - sessions: read-your-writes and monotonic reads (`shared/check/history.ts`);
 * - linearizability of the compare-and-set history on `strong/` (`shared/check/linearizability.ts`);
 * - no 5xx other than 503 and 504.
 */
import { rmSync } from "node:fs";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { type HistoryOp, checkHistory } from "../../shared/check/history.ts";
import { type RegisterOp, checkLinearizable } from "../../shared/check/linearizability.ts";
import { Random } from "../../shared/random.ts";
import { parseVv, vvDescends } from "../../shared/version-vector.ts";
import { type RunningStore, replicaFiles, startStore } from "../e2e/store.ts";

export const REGIONS = ["wnam", "enam", "weur", "apac"] as const;
type Region = (typeof REGIONS)[number];
const TOKEN = "dev-token";

/** The kinds of fault a schedule draws from. */
export const FAULT_KINDS = ["drop", "duplicate", "delay", "partition", "skew", "takeout", "kill", "wipe"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface SeedOptions {
  readonly seed: number;
  readonly wan: boolean;
  /** How long the workload runs while faults come and go. */
  readonly durationMs: number;
  /** Faults the schedule injects (drawn from these kinds). */
  readonly events: number;
  /** Replica objects per region (wrangler.toml's `SHARDS` when absent). */
  readonly shards?: number;
  readonly log?: (line: string) => void;
}

export interface SeedResult {
  readonly seed: number;
  readonly faults: FaultKind[];
  readonly ops: number;
  readonly violations: string[];
  /** `ack=local` writes (and counter deltas) lost because their region was wiped before they left. */
  readonly lostInWindow: number;
  /** Compare-and-set histories the checker could not decide within its bound. */
  readonly undecided: number;
  readonly converged: boolean;
  readonly ms: number;
  readonly trace: string[];
  /** Everything the workload recorded, for the results file. */
  readonly history: unknown;
}

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly etag: string | null;
  readonly token: string | null;
  /** The region that answered (X-Served-By), when one did. */
  readonly served: string | null;
}

/** A register write as recorded. */
interface WriteRecord {
  readonly key: string;
  readonly region: Region;
  readonly ack: string;
  readonly status: number;
  readonly version: string | null;
  readonly endMs: number;
  readonly deleted: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The store under test, restartable on its state directory. */
class Store {
  private running: RunningStore | undefined;
  readonly stateDir = mkdtempSync(path.join(tmpdir(), "kv-chaos-"));
  readonly vars: Record<string, string>;
  /** Requests wait while the store is down for a restart. */
  private restarting: Promise<void> | undefined;
  readonly unexpected: string[] = [];

  constructor(wan: boolean, shards: number | undefined) {
    this.vars = {
      FAULTS: "on",
      WAN_EMULATION: wan ? "on" : "off",
      ANTI_ENTROPY_INTERVAL_MS: "2000",
      ...(shards === undefined ? {} : { SHARDS: String(shards) }),
    };
  }

  async start(): Promise<void> {
    this.running = await startStore(this.vars, this.stateDir);
  }

  /** kill -9 of the whole store, `between` (a wipe) while it is down, then a start on the same state. */
  async crash(between: () => void = () => undefined): Promise<void> {
    const restart = async (): Promise<void> => {
      await this.running?.kill();
      between();
      await this.start();
    };
    this.restarting = restart().finally(() => {
      this.restarting = undefined;
    });
    await this.restarting;
  }

  async call(pathAndQuery: string, init: RequestInit = {}): Promise<Answer> {
    if (this.restarting !== undefined) await this.restarting;
    const base = this.running?.baseUrl;
    if (base === undefined) return { status: 0, body: "not running", etag: null, token: null, served: null };
    const headers = new Headers(init.headers);
    headers.set("Authorization", `Bearer ${TOKEN}`);
    try {
      const res = await fetch(`${base}${pathAndQuery}`, { ...init, headers, signal: AbortSignal.timeout(15_000) });
      const body = await res.text();
      if (res.status >= 500 && res.status !== 503 && res.status !== 504)
        this.unexpected.push(`${init.method ?? "GET"} ${pathAndQuery}: ${res.status} ${body.slice(0, 200)}`);
      return {
        status: res.status,
        body,
        etag: res.headers.get("etag")?.replace(/^W\/|"/g, "") ?? null,
        token: res.headers.get("x-session-token"),
        served: res.headers.get("x-served-by"),
      };
    } catch (error) {
      // The store was killed under the request: its outcome is unknown.
      return { status: 0, body: String(error), etag: null, token: null, served: null };
    }
  }

  async stop(): Promise<void> {
    await this.running?.stop();
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}

/** The faults in force, as one `POST /v1/admin/faults` body. */
interface ActiveFaults {
  drop?: number;
  duplicate?: number;
  delayMs?: number;
  partitions?: string[][];
  skewMs?: Record<string, number>;
  seed: number;
}

/** Everything the workload recorded. */
class Recorder {
  readonly started = performance.now();
  readonly sessionOps: HistoryOp[] = [];
  readonly writes: WriteRecord[] = [];
  readonly counters = new Map<
    string,
    { acked: Array<{ delta: number; region: Region; ack: string; endMs: number }>; attempted: number }
  >();
  readonly setOps: Array<{ key: string; add: string[]; remove: string[]; status: number; version: string | null }> = [];
  readonly cas = new Map<string, RegisterOp[]>();
  readonly wipes: Array<{ region: Region; atMs: number }> = [];
  readonly trace: string[] = [];
  ops = 0;

  now(): number {
    return performance.now() - this.started;
  }

  note(line: string): void {
    this.trace.push(`${this.now().toFixed(0).padStart(6)} ms  ${line}`);
  }

  /** Whether `region` was wiped after `ms` (a local write then was lost with it). */
  wipedAfter(region: Region, ms: number): boolean {
    return this.wipes.some((w) => w.region === region && w.atMs >= ms);
  }
}

function pick<T>(random: Random, items: readonly T[]): T {
  return random.pick(items);
}

async function sessionClient(store: Store, rec: Recorder, name: string, keys: string[], random: Random, until: number) {
  let token: string | null = null;
  for (let i = 0; rec.now() < until; i += 1) {
    await sleep(random.int(20, 80));
    const key = pick(random, keys);
    const region = pick(random, REGIONS);
    const headers: Record<string, string> = token === null ? {} : { "X-Session-Token": token };
    const keyPath = `/v1/kv/${encodeURIComponent(key)}?region=${region}`;
    const startMs = rec.now();
    rec.ops += 1;
    if (random.chance(0.45)) {
      const ack = pick(random, ["local", "quorum", "all"]);
      const del = random.chance(0.1);
      const res = await store.call(
        `${keyPath}&ack=${ack}`,
        del ? { method: "DELETE", headers } : { method: "PUT", body: `${name}-${i}`, headers },
      );
      token = res.token ?? token;
      const endMs = rec.now();
      rec.writes.push({ key, region, ack, status: res.status, version: res.etag, endMs, deleted: del });
      rec.sessionOps.push({
        client: name,
        kind: "write",
        key,
        region: res.served ?? region,
        mode: "session",
        startMs,
        endMs,
        ok: res.status === 200,
        version: res.etag,
      });
    } else {
      const res = await store.call(`${keyPath}&consistency=session`, { headers });
      token = res.token ?? token;
      const ok = res.status === 200 || res.status === 404;
      rec.sessionOps.push({
        client: name,
        kind: "read",
        key,
        region: res.served ?? region,
        mode: "session",
        startMs,
        endMs: rec.now(),
        ok,
        // A deleted key's 404 names the delete's version too.
        version: ok ? res.etag : null,
      });
    }
  }
}

/**
 * Writes a new key each time and never reads it back: only the stream and repair carry these
 * (a key the other clients read is also repaired by their reads).
 */
async function bulkClient(store: Store, rec: Recorder, tag: string, random: Random, until: number) {
  for (let i = 0; rec.now() < until; i += 1) {
    await sleep(random.int(10, 40));
    const key = `${tag}/b${i}`;
    const region = pick(random, REGIONS);
    const ack = pick(random, ["local", "quorum", "all"]);
    rec.ops += 1;
    const res = await store.call(`/v1/kv/${encodeURIComponent(key)}?region=${region}&ack=${ack}`, {
      method: "PUT",
      body: `bulk-${i}`,
    });
    rec.writes.push({ key, region, ack, status: res.status, version: res.etag, endMs: rec.now(), deleted: false });
  }
}

async function counterClient(store: Store, rec: Recorder, key: string, random: Random, until: number) {
  const entry = { acked: [] as Array<{ delta: number; region: Region; ack: string; endMs: number }>, attempted: 0 };
  rec.counters.set(key, entry);
  while (rec.now() < until) {
    await sleep(random.int(30, 90));
    const region = pick(random, REGIONS);
    const ack = pick(random, ["local", "quorum", "all"]);
    const delta = random.int(1, 5);
    rec.ops += 1;
    entry.attempted += delta;
    const res = await store.call(`/v1/counters/${encodeURIComponent(key)}?region=${region}&ack=${ack}`, {
      method: "POST",
      body: JSON.stringify({ delta }),
    });
    if (res.status === 200) entry.acked.push({ delta, region, ack, endMs: rec.now() });
    // A 4xx refusal changed nothing.
    else if (res.status >= 400 && res.status < 500) entry.attempted -= delta;
  }
}

async function setClient(store: Store, rec: Recorder, key: string, random: Random, until: number) {
  const elements = ["a", "b", "c", "d", "e", "f"];
  while (rec.now() < until) {
    await sleep(random.int(30, 90));
    const region = pick(random, REGIONS);
    const adding = random.chance(0.6);
    const element = pick(random, elements);
    const body = adding ? { add: [element], remove: [] } : { add: [], remove: [element] };
    rec.ops += 1;
    const res = await store.call(
      `/v1/sets/${encodeURIComponent(key)}?region=${region}&ack=${pick(random, ["local", "quorum"])}`,
      { method: "POST", body: JSON.stringify(body) },
    );
    rec.setOps.push({ key, add: body.add, remove: body.remove, status: res.status, version: res.etag });
  }
}

/** Compare-and-set on a strong key: a strong read, then a write conditional on what it read. */
async function casClient(store: Store, rec: Recorder, name: string, key: string, random: Random, until: number) {
  const ops = rec.cas.get(key) ?? [];
  rec.cas.set(key, ops);
  for (let i = 0; rec.now() < until; i += 1) {
    await sleep(random.int(20, 70));
    const keyPath = `/v1/kv/${encodeURIComponent(key)}`;
    let startMs = rec.now();
    rec.ops += 1;
    const read = await store.call(`${keyPath}?consistency=strong`);
    if (read.status !== 200 && read.status !== 404) continue;
    const current = read.status === 200 ? read.body : null;
    ops.push({ client: name, kind: "read", result: current, startMs, endMs: rec.now() });
    const value = `${name}-${i}`;
    const headers: Record<string, string> =
      current === null ? { "If-None-Match": "*" } : { "If-Match": `"${read.etag ?? ""}"` };
    startMs = rec.now();
    rec.ops += 1;
    const res = await store.call(`${keyPath}?ack=quorum`, { method: "PUT", body: value, headers });
    const endMs = rec.now();
    if (res.status === 200)
      ops.push({ client: name, kind: "cas", expected: current, value, outcome: "ok", startMs, endMs });
    else if (res.status === 412)
      ops.push({ client: name, kind: "cas", expected: current, value, outcome: "failed", startMs, endMs });
    else if (res.status === 0 || res.status === 503 || res.status === 504)
      // Refused or cut off: it may still have taken effect (or may later).
      ops.push({
        client: name,
        kind: "cas",
        expected: current,
        value,
        outcome: "unknown",
        startMs,
        endMs: Number.POSITIVE_INFINITY,
      });
    // Other 4xx (fenced, invalid): nothing happened.
  }
}

/** The fault schedule: `events` faults at seeded times, each lifted after a while. */
async function schedule(
  store: Store,
  rec: Recorder,
  random: Random,
  events: number,
  until: number,
  seed: number,
): Promise<FaultKind[]> {
  const kinds: FaultKind[] = Array.from({ length: events }, () => pick(random, FAULT_KINDS));
  const active: ActiveFaults = { seed };
  const push = async (): Promise<void> => {
    await store.call("/v1/admin/faults", { method: "POST", body: JSON.stringify(active) });
  };
  const slot = until / (events + 1);
  for (const [i, kind] of kinds.entries()) {
    const at = slot * (i + 0.5) + random.int(0, Math.floor(slot / 2));
    while (rec.now() < at) await sleep(50);
    const lastMs = random.int(1500, Math.max(2000, Math.floor(slot)));
    const region = pick(random, REGIONS);
    switch (kind) {
      case "drop":
        active.drop = random.int(10, 50) / 100;
        break;
      case "duplicate":
        active.duplicate = random.int(10, 50) / 100;
        break;
      case "delay":
        active.delayMs = random.int(20, 300);
        break;
      case "partition":
        active.partitions = [
          [
            region,
            pick(
              random,
              REGIONS.filter((r) => r !== region),
            ),
          ],
        ];
        break;
      case "skew":
        active.skewMs = { [region]: random.int(-20_000, 20_000) };
        break;
      case "takeout":
        rec.note(`take ${region} out`);
        await store.call(`/v1/admin/regions/${region}/health`, { method: "POST", body: '{"healthy":false}' });
        await sleep(lastMs);
        await store.call(`/v1/admin/regions/${region}/health`, { method: "POST", body: '{"healthy":true}' });
        rec.note(`put ${region} back`);
        continue;
      case "kill":
        rec.note("kill -9 the store");
        await store.crash();
        rec.note("store restarted");
        continue;
      case "wipe":
        rec.note(`kill -9 the store and wipe ${region}'s storage`);
        await store.crash(() => {
          rec.wipes.push({ region, atMs: rec.now() });
          // A replica never used yet has no file: then there is nothing to lose.
          const files = replicaFiles(store.stateDir, region);
          if (files.length === 0) rec.note(`${region} had no storage yet`);
          for (const file of files)
            for (const suffix of ["", "-wal", "-shm"]) rmSync(`${file}${suffix}`, { force: true });
        });
        rec.note("store restarted");
        continue;
    }
    rec.note(`faults: ${JSON.stringify(active)}`);
    await push();
    await sleep(lastMs);
    if (kind === "drop") delete active.drop;
    if (kind === "duplicate") delete active.duplicate;
    if (kind === "delay") delete active.delayMs;
    if (kind === "partition") delete active.partitions;
    if (kind === "skew") delete active.skewMs;
    await push();
    rec.note(`lifted ${kind}`);
  }
  return kinds;
}

interface Digest {
  root: string;
  bootstrapping: boolean;
}

/** Lifts every fault and waits (bounded) for every region to be healthy and every digest equal. */
async function heal(store: Store, rec: Recorder): Promise<boolean> {
  await store.call("/v1/admin/faults", { method: "DELETE" });
  for (const region of REGIONS)
    await store.call(`/v1/admin/regions/${region}/health`, { method: "POST", body: '{"healthy":true}' });
  const deadline = rec.now() + 150_000;
  while (rec.now() < deadline) {
    await store.call("/v1/admin/anti-entropy", { method: "POST" });
    const digests = await Promise.all(REGIONS.map((r) => store.call(`/v1/admin/regions/${r}/digest`)));
    if (digests.every((d) => d.status === 200)) {
      const parsed = digests.map((d) => JSON.parse(d.body) as Digest);
      if (parsed.every((d) => !d.bootstrapping) && new Set(parsed.map((d) => d.root)).size === 1) return true;
    }
    await sleep(1000);
  }
  return false;
}

/** Whether version `final` includes version `version` (both version-vector text; null: none). */
function covers(final: string | null, version: string | null): boolean {
  const wanted = version === null ? undefined : parseVv(version);
  if (wanted === undefined) return true;
  const held = final === null ? undefined : parseVv(final);
  return held !== undefined && vvDescends(held, wanted);
}

/** Checks what the run recorded against the healed store. */
async function check(
  store: Store,
  rec: Recorder,
  result: { violations: string[]; lostInWindow: number; undecided: number },
) {
  const v = result.violations;
  // Registers: every acknowledged write is in the final version.
  for (const key of new Set(rec.writes.map((w) => w.key))) {
    const final = await store.call(`/v1/kv/${encodeURIComponent(key)}?region=enam&consistency=quorum`);
    const finalVersion = final.status === 200 || final.status === 404 ? final.etag : null;
    if (final.status !== 200 && final.status !== 404) v.push(`${key}: final read answered ${final.status}`);
    for (const w of rec.writes.filter((x) => x.key === key && x.status === 200)) {
      if (covers(finalVersion, w.version)) continue;
      if (w.ack === "local" && rec.wipedAfter(w.region, w.endMs)) result.lostInWindow += 1;
      else
        v.push(
          `${key}: acknowledged write (ack=${w.ack} in ${w.region}, version ${w.version}) is missing from the final version ${finalVersion}`,
        );
    }
  }
  // Counters: between what was acknowledged (less the wiped window) and what was attempted.
  for (const [key, c] of rec.counters) {
    const res = await store.call(`/v1/counters/${encodeURIComponent(key)}?region=enam`);
    const value = res.status === 200 ? (JSON.parse(res.body) as { value: number }).value : 0;
    const inWindow = c.acked.filter((a) => a.ack === "local" && rec.wipedAfter(a.region, a.endMs));
    const acked = c.acked.reduce((s, a) => s + a.delta, 0);
    const floor = acked - inWindow.reduce((s, a) => s + a.delta, 0);
    if (value < floor || value > c.attempted)
      v.push(`${key}: counter is ${value}, not within [${floor}, ${c.attempted}] (acknowledged ${acked})`);
    else if (value < acked) result.lostInWindow += 1;
  }
  // Sets: an acknowledged add survives unless a remove of it saw the add (its version descends).
  for (const key of new Set(rec.setOps.map((o) => o.key))) {
    const res = await store.call(`/v1/sets/${encodeURIComponent(key)}?region=enam`);
    const members = new Set(res.status === 200 ? (JSON.parse(res.body) as { members: string[] }).members : []);
    const ops = rec.setOps.filter((o) => o.key === key);
    for (const add of ops.filter((o) => o.status === 200 && o.add.length > 0)) {
      const element = add.add[0] as string;
      if (members.has(element)) continue;
      const removed = ops.some(
        (o) => o.remove.includes(element) && o.status !== 400 && (o.version === null || covers(o.version, add.version)),
      );
      if (!removed) v.push(`${key}: element ${element} added (version ${add.version}) is missing and no remove saw it`);
    }
    for (const element of members)
      if (!ops.some((o) => o.add.includes(element))) v.push(`${key}: element ${element} present but never added`);
  }
  // Sessions.
  for (const violation of checkHistory(rec.sessionOps)) {
    const w = violation.earlier;
    const lost =
      w.kind === "write" &&
      rec.writes.some((x) => x.version === w.version && x.ack === "local" && rec.wipedAfter(x.region, x.endMs));
    if (lost) result.lostInWindow += 1;
    else v.push(`session: ${violation.rule}: ${violation.message}`);
  }
  // Compare-and-set on strong keys.
  for (const [key, ops] of rec.cas) {
    const verdict = checkLinearizable(ops);
    if (verdict.verdict === "violation") v.push(`${key}: not linearizable: ${verdict.reason}`);
    if (verdict.verdict === "undecided") result.undecided += 1;
  }
  v.push(...store.unexpected.map((u) => `unexpected 5xx: ${u}`));
}

/** Runs one seed end to end. */
export async function runSeed(options: SeedOptions): Promise<SeedResult> {
  const started = performance.now();
  const random = new Random(options.seed);
  const store = new Store(options.wan, options.shards);
  const rec = new Recorder();
  const result = { violations: [] as string[], lostInWindow: 0, undecided: 0 };
  let faults: FaultKind[] = [];
  let converged = false;
  try {
    await store.start();
    rec.note(`store started (WAN ${options.wan ? "on" : "off"})`);
    const tag = `chaos-${options.seed}-${Date.now().toString(36)}`;
    const registerKeys = Array.from({ length: 4 }, (_, i) => `${tag}/r${i}`);
    const until = options.durationMs;
    const clients = [
      ...Array.from({ length: 3 }, (_, i) => sessionClient(store, rec, `s${i}`, registerKeys, random.fork(), until)),
      counterClient(store, rec, `${tag}/counter`, random.fork(), until),
      setClient(store, rec, `${tag}/set`, random.fork(), until),
      ...Array.from({ length: 2 }, (_, i) => casClient(store, rec, `c${i}`, `strong/${tag}`, random.fork(), until)),
    ];
    // The schedule's stream comes next, so that a seed's faults do not depend on later clients.
    const faultsRun = schedule(store, rec, random.fork(), options.events, until, options.seed);
    clients.push(bulkClient(store, rec, tag, random.fork(), until));
    const [kinds] = await Promise.all([faultsRun, ...clients]);
    faults = kinds;
    rec.note("workload done; healing");
    converged = await heal(store, rec);
    rec.note(converged ? "digests equal" : "digests still differ after 150 s");
    if (!converged) result.violations.push("convergence: digests still differ 150 s after every fault was lifted");
    await check(store, rec, result);
  } catch (error) {
    result.violations.push(
      `the run failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    );
  } finally {
    await store.stop();
  }
  return {
    seed: options.seed,
    faults,
    ops: rec.ops,
    violations: result.violations,
    lostInWindow: result.lostInWindow,
    undecided: result.undecided,
    converged,
    ms: Math.round(performance.now() - started),
    trace: rec.trace,
    history: {
      sessions: rec.sessionOps,
      writes: rec.writes,
      counters: Object.fromEntries(rec.counters),
      sets: rec.setOps,
      compareAndSet: Object.fromEntries(rec.cas),
      wipes: rec.wipes,
    },
  };
}
