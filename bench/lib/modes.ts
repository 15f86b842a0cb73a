/**
 * Per-consistency-mode latency: writes with `ack=local|quorum|all` and reads with
 * `consistency=eventual|session|quorum`, all at the pinned region, measured next to the floor
 * in the same interleaved rounds as the base scenarios (rounds.ts). Writes are compared with the
 * floor's write, reads with the floor's read, and the caught-up session read also with the
 * eventual read of the same rounds (its target: at most 1.1x).
 *
 * Strong reads and writes go to keys under {@link STRONG_PREFIX} (led by the pinned region in
 * the default configuration): the strong read is compared with the eventual read, the strong
 * write with the `ack=quorum` write (targets: at most 1.2x each).
 *
 * Two session reads are measured:
 * - "caught-up": the token comes from one earlier write at another region that was awaited
 *   until every region showed it, so the serving replica already covers it and only checks.
 * - "after remote write": each operation writes the key at another region (`ack=local`) and at
 *   once reads it at the pinned region with the token that write answered. Only the read is
 *   timed. It is what read-your-writes costs when the client moves faster than replication.
 */
import { type BenchConfig } from "./config.ts";
import { type Operation, closedLoop } from "./load.ts";
import { type RoundsResult, medianDrainMs, runRounds } from "./rounds.ts";
import { type Scenario, keySpace, readOp, writeOp } from "./scenarios.ts";
import { awaitVisible } from "./settle.ts";
import { type KvTarget, type SessionTarget, storeSessionTarget, storeTarget } from "./targets.ts";

/** Names of the per-mode scenarios (keys of the results JSON). */
export const MODE = {
  floorWrite: "floor write",
  writeLocal: "write ack=local",
  writeQuorum: "write ack=quorum",
  writeAll: "write ack=all",
  floorRead: "floor read",
  readEventual: "read eventual",
  readSession: "read session (caught-up)",
  readSessionRemote: "read session after remote write",
  readQuorum: "read quorum",
  writeStrong: "write strong",
  readStrong: "read strong",
} as const;

/** The strong prefix the strong scenarios use (wrangler.toml's default `PRIMARY_PREFIXES`). */
export const STRONG_PREFIX = "strong/";

/**
 * What the per-mode pass needs to know about the store and the run. Operations are pinned to
 * `config.region`; rounds, phases and warm-up follow the run's settings.
 */
export interface ModesSetup {
  readonly config: BenchConfig;
  readonly baseUrl: string;
  /** Every region the store serves (the pinned one included). */
  readonly regions: readonly string[];
  readonly keys: readonly string[];
  readonly values: readonly Uint8Array[];
  /** Waits out replication after a phase that wrote to the store; answers how long it took. */
  readonly settle: () => Promise<number>;
  readonly log: (line: string) => void;
}

/** The per-mode pass's figures, as reported and stored. */
export interface ModesResult {
  readonly concurrency: number;
  readonly rounds: RoundsResult;
  /** Median time for replication to drain after a phase that wrote to the store. */
  readonly drainMs: number;
  /** Where the caught-up session's write went (another region when there is one). */
  readonly anchorRegion: string;
  /** How long after that write's acknowledgement every region showed it. */
  readonly anchorVisibleMs: number;
  /** The region the "after remote write" reads follow; null (scenario skipped) with one region. */
  readonly remoteRegion: string | null;
}

/** Bytes of a value that make it unique to one operation, so a stale value can never pass. */
const TAG_BYTES = 8;

/** A copy of `base` whose first bytes hold `serial` (when it has room for them). */
function tagged(base: Uint8Array, serial: number): Uint8Array {
  const value = base.slice();
  if (value.length >= TAG_BYTES) new DataView(value.buffer).setBigUint64(0, BigInt(serial));
  return value;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** Session reads at `reader` with one fixed `session` token, each checking the value's size. */
function sessionReadOp(reader: SessionTarget, keys: readonly string[], valueBytes: number, session: string): Operation {
  return async (n) => {
    const key = keys[(n * 7919) % keys.length] as string;
    const { value } = await reader.get(key, session);
    if (value === null) throw new Error(`${reader.name}: ${key} is missing`);
    if (value.length !== valueBytes) throw new Error(`${reader.name}: ${key} holds ${value.length} bytes`);
  };
}

/**
 * Writes at `writer`, then reads the same key at `reader` with the token the write answered;
 * only the read is timed. A read that does not answer the value just written is an error: it
 * would break read-your-writes.
 */
function readAfterRemoteWriteOp(
  writer: SessionTarget,
  reader: SessionTarget,
  keys: readonly string[],
  values: readonly Uint8Array[],
): Operation {
  // Every phase numbers its operations from 0 again; a serial over all of them keeps values unique.
  let serial = 0;
  return async (n, stopwatch) => {
    serial += 1;
    const key = keys[n % keys.length] as string;
    const value = tagged(values[n % values.length] as Uint8Array, serial);
    const session = await writer.put(key, value);
    stopwatch.restart();
    const got = await reader.get(key, session);
    if (got.value === null || !sameBytes(got.value, value))
      throw new Error(`${reader.name}: session read of ${key} right after the write at ${writer.name} missed it`);
  };
}

/**
 * Writes `key` at `region` and waits until every region shows it: the answered token is then
 * covered everywhere. Answers the token and how long visibility took.
 */
async function caughtUpSession(setup: ModesSetup, region: string): Promise<{ session: string; visibleMs: number }> {
  const { config, baseUrl, regions } = setup;
  const key = `modes-anchor-${process.pid}-${Date.now()}`;
  const value = new TextEncoder().encode(key);
  const session = await storeSessionTarget(baseUrl, config.token, region).put(key, value);
  const everywhere = regions.map((r) => storeTarget(baseUrl, config.token, r));
  const visibleMs = await awaitVisible(everywhere, key, value, config.settleTimeoutMs);
  return { session, visibleMs };
}

/** As many keys as the run's under {@link STRONG_PREFIX}. */
function strongKeys(keys: readonly string[]): string[] {
  return keySpace(`${STRONG_PREFIX}bench`, keys.length);
}

/** The per-mode scenarios; the "after remote write" read only when `remoteRegion` is set. */
function modeScenarios(setup: ModesSetup, floor: KvTarget, session: string, remoteRegion: string | null): Scenario[] {
  const { config, baseUrl, keys, values } = setup;
  const strong = strongKeys(keys);
  const { token, region } = config;
  const valueBytes = (values[0] as Uint8Array).length;
  const writer = (ack: string): KvTarget => storeTarget(baseUrl, token, region, { ack });
  const reader = (consistency: string): KvTarget => storeTarget(baseUrl, token, region, { consistency });
  const sessionReader = storeSessionTarget(baseUrl, token, region, { consistency: "session" });
  const scenarios: Scenario[] = [
    { name: MODE.floorWrite, kind: "write", system: "floor", op: writeOp(floor, keys, values) },
    { name: MODE.writeLocal, kind: "write", system: "store", op: writeOp(writer("local"), keys, values) },
    { name: MODE.writeQuorum, kind: "write", system: "store", op: writeOp(writer("quorum"), keys, values) },
    { name: MODE.writeAll, kind: "write", system: "store", op: writeOp(writer("all"), keys, values) },
    { name: MODE.floorRead, kind: "read", system: "floor", op: readOp(floor, keys, valueBytes) },
    { name: MODE.readEventual, kind: "read", system: "store", op: readOp(reader("eventual"), keys, valueBytes) },
    {
      name: MODE.readSession,
      kind: "read",
      system: "store",
      op: sessionReadOp(sessionReader, keys, valueBytes, session),
      baseline: MODE.readEventual,
    },
  ];
  if (remoteRegion !== null) {
    const remoteWriter = storeSessionTarget(baseUrl, token, remoteRegion, { ack: "local" });
    scenarios.push({
      name: MODE.readSessionRemote,
      kind: "read",
      system: "store",
      op: readAfterRemoteWriteOp(remoteWriter, sessionReader, keys, values),
      writesStore: true,
      baseline: MODE.readEventual,
    });
  }
  const quorumRead = readOp(reader("quorum"), keys, valueBytes);
  scenarios.push(
    { name: MODE.readQuorum, kind: "read", system: "store", op: quorumRead },
    {
      name: MODE.writeStrong,
      kind: "write",
      system: "store",
      op: writeOp(writer("quorum"), strong, values),
      baseline: MODE.writeQuorum,
    },
    {
      name: MODE.readStrong,
      kind: "read",
      system: "store",
      op: readOp(reader("strong"), strong, valueBytes),
      baseline: MODE.readEventual,
    },
  );
  return scenarios;
}

/**
 * Runs the per-mode pass with `concurrency` workers on a store whose `keys` all hold a value
 * already: takes the caught-up session token, warms every scenario up, then runs the rounds.
 */
export async function runModes(setup: ModesSetup, floor: KvTarget, concurrency: number): Promise<ModesResult> {
  const { config, regions, log } = setup;
  const { region, rounds, phaseMs, warmupMs, errorsMax } = config;
  const remoteRegion = regions.find((r) => r !== region) ?? null;
  const anchorRegion = remoteRegion ?? region;
  // The strong scenarios read keys of their own: each must hold a value first.
  const filled = await closedLoop(
    writeOp(storeTarget(setup.baseUrl, config.token, region), strongKeys(setup.keys), setup.values),
    {
      concurrency,
      durationMs: 600_000,
      errorsMax,
      opsMax: setup.keys.length,
    },
  );
  if (filled.errors > 0) throw new Error(`modes: writing the strong keys failed: ${filled.firstError}`);
  await setup.settle();
  const anchor = await caughtUpSession(setup, anchorRegion);
  const remote =
    remoteRegion === null ? "one region: no read after a remote write" : `remote writes at ${remoteRegion}`;
  log(
    `modes: session token from a write at ${anchorRegion}, visible in ${regions.length} regions ` +
      `${anchor.visibleMs.toFixed(0)} ms after its acknowledgement; ${remote}`,
  );
  const scenarios = modeScenarios(setup, floor, anchor.session, remoteRegion);
  for (const s of scenarios) {
    await closedLoop(s.op, { concurrency, durationMs: warmupMs, errorsMax });
    if (s.system === "store" && (s.kind === "write" || s.writesStore === true)) await setup.settle();
  }
  log(`modes: ${rounds} rounds, ${phaseMs} ms per phase, concurrency ${concurrency}, at ${region}`);
  const result = await runRounds(scenarios, {
    rounds,
    phaseMs,
    concurrency,
    errorsMax,
    settleAfterStoreWrite: setup.settle,
    log,
  });
  return {
    concurrency,
    rounds: result,
    drainMs: medianDrainMs(result),
    anchorRegion,
    anchorVisibleMs: anchor.visibleMs,
    remoteRegion,
  };
}
