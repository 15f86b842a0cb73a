// One seeded simulation: start N regions and the control object, run clients and faults for a
// while, heal everything, wait until the system is quiet, and check every promise. The same
// seed gives the same run, so a failure replays with `npm run sim -- --seed S`.
import { type CommittedWrite, checkConvergence, checkOutcome, survivors } from "../../shared/check/outcomes.ts";
import { type HistoryOp, checkHistory } from "../../shared/check/history.ts";
import { equalBytes } from "../../shared/bytes.ts";
import { LOCATION_HINTS, type RegionId } from "../../shared/regions.ts";
import { isTakenOut } from "../../shared/store/cluster.ts";
import { replayDeadLetters } from "../../shared/store/dead-letters.ts";
import { decodeKeyState, keyVv } from "../../shared/store/key-state.ts";
import { prefixEnd } from "../../shared/store/keys.ts";
import { PRIMARY_LEASE_MS, type PrimaryPrefix, prefixOf } from "../../shared/store/primaries.ts";
import { type ReplicaStorage } from "../../shared/store/storage.ts";
import { EMPTY_VV, type VersionVector, formatVv, parseVv, vvGet, vvMerge } from "../../shared/version-vector.ts";
import { Cluster } from "./cluster.ts";
import { SimClient } from "./client.ts";
import { Network } from "./network.ts";
import { Random } from "../../shared/random.ts";
import { Scheduler } from "./scheduler.ts";
import { Trace } from "./trace.ts";
import { type FaultPlan, clientLoop, scheduleFaults, setHealth } from "./workload.ts";

/** Where virtual time starts (any fixed instant). */
const START_MS = 1_800_000_000_000;
/** Virtual time allowed after healing for everything to settle. */
const SETTLE_MS_MAX = 300_000;

/** How one run is set up. */
export interface SimOptions {
  readonly regionCount?: number;
  readonly clients?: number;
  /** Virtual milliseconds of client load (and faults). */
  readonly durationMs?: number;
  readonly faults?: Partial<FaultPlan>;
  /**
   * false: no anti-entropy and no resending of unconfirmed writes, to show what the repair path
   * is for (the run must then fail under the faults only it heals).
   */
  readonly repair?: boolean;
  /** Breaks the protocol on purpose (see broken.test.ts): the run must then fail. */
  readonly wrapStorage?: (storage: ReplicaStorage) => ReplicaStorage;
  /** The primary's lease; by default a third of the seeds take one longer than a failover. */
  readonly leaseMs?: number;
}

/** What a run found. */
export interface SimResult {
  readonly seed: number;
  readonly violations: string[];
  /** A short trace of the run, for a failing seed. */
  readonly trace: string;
  readonly stats: { events: number; writes: number; reads: number; virtualMs: number };
}

/** A lease longer than a failover takes, so that the control object's wait for it shows. */
const LONG_LEASE_MS = 8000;

const DEFAULT_FAULTS: Omit<FaultPlan, "isolatePrimary"> = {
  crashes: true,
  partitions: true,
  takeOuts: true,
  skewMsMax: 5000,
  storageLoss: false,
  addRegion: false,
  loss: 0,
};

/** Storage that never sends again what a peer left unconfirmed (the repair path off). */
function noResend(storage: ReplicaStorage): ReplicaStorage {
  return {
    ...storage,
    transaction: (fn) => storage.transaction(fn),
    peerSend: { ...storage.peerSend, rewind: () => undefined },
  };
}

/** Runs the simulation for `seed`. */
export async function runSeed(seed: number, options: SimOptions = {}): Promise<SimResult> {
  const random = new Random(seed);
  const scheduler = new Scheduler(START_MS);
  const trace = new Trace(() => scheduler.now, START_MS);
  const regionCount = options.regionCount ?? random.pick([3, 4, 5]);
  const regions = pickRegions(random.fork(), regionCount);
  const primaryPrefixes: PrimaryPrefix[] = [{ prefix: "strong/", region: random.pick(regions), failover: true }];
  // A third of the runs isolate the strong prefix's primary under load from a nearby client,
  // the setting in which a deposed primary is still asked to write, with the control object
  // elsewhere, so that the prefix can fail over.
  const plan: FaultPlan = { ...DEFAULT_FAULTS, isolatePrimary: random.chance(0.3), ...options.faults };
  const primary = primaryPrefixes[0]?.region as RegionId;
  const wrapStorage =
    options.repair === false
      ? (storage: ReplicaStorage) => noResend(options.wrapStorage?.(storage) ?? storage)
      : options.wrapStorage;
  const cluster = new Cluster(
    {
      regions,
      primaryPrefixes,
      controlRegion: random.pick(plan.isolatePrimary ? regions.filter((r) => r !== primary) : regions),
      heartbeatIntervalMs: 1000,
      // From the seed, not the generator, so that every other choice of a seed stays as it was.
      leaseMs: options.leaseMs ?? (seed % 3 === 0 ? LONG_LEASE_MS : PRIMARY_LEASE_MS),
      sessionWaitMs: 10,
      batchMs: random.pick([0, 50]),
      // From the seed, not the generator, so that every other choice of a seed stays as it was.
      directPush: seed % 2 === 1,
      maxRetries: 10,
      antiEntropyIntervalMs: options.repair === false ? Number.MAX_SAFE_INTEGER : 5000,
      gc: { tombstoneGraceMs: 3000, conflictRetentionMs: 7 * 86_400_000, conflictRowsMax: 100_000 },
      ...(wrapStorage === undefined ? {} : { wrapStorage }),
    },
    scheduler,
    new Network(scheduler, random.fork()),
    random.fork(),
    trace,
  );
  trace.note(
    `seed ${seed}: regions ${regions.join(",")}, strong/ led by ${primaryPrefixes[0]?.region}, control in ${cluster.settings.controlRegion}, direct push ${cluster.settings.directPush ? "on" : "off"}, lease ${cluster.settings.leaseMs} ms`,
  );

  const writes: CommittedWrite[] = [];
  const seqs: string[] = [];
  cluster.observeCommit = (region, [key, op, , strong], result) => {
    // A delete of a key the region did not hold wrote nothing: there is no write to account for.
    if (!result.ok || result.value.entry === null) return;
    const id = writes.length;
    seqs.push(`${region}:${result.value.seq}`);
    writes.push({
      id,
      region,
      key,
      op:
        op.type === "register"
          ? op.op.kind === "put"
            ? { type: "register", value: new TextDecoder().decode(op.op.value), metadata: op.op.metadata ?? null }
            : { type: "register", value: null }
          : op.type === "counter"
            ? { type: "counter", delta: op.delta }
            : { type: "set", add: op.add, remove: op.remove },
      version: result.value.view.version,
      stamp: result.value.entry.stamp,
      epoch: strong?.epoch ?? null,
      acknowledged: false,
    });
  };
  // What each new primary held when its recovery completed: the writes of older epochs it kept.
  const blessed = new Map<string, Map<number, Map<string, VersionVector>>>();
  cluster.observeReady = (region, prefix, epoch) => {
    const rows = cluster.host(region).storage.kv.rows(prefix, prefixEnd(prefix), null, 1_000_000);
    const byEpoch = blessed.get(prefix) ?? new Map<number, Map<string, VersionVector>>();
    byEpoch.set(epoch, new Map(rows.map((r) => [r.key, vvOfRow(r.encoded)])));
    blessed.set(prefix, byEpoch);
    trace.note(`${region} serves "${prefix}" at epoch ${epoch} (${rows.length} keys recovered)`);
  };

  // Every tombstone a replica collected, by key: the writes it covered are accounted for.
  const collected = new Map<string, VersionVector>();
  const collections: Array<{ key: string; atMs: number; vv: VersionVector }> = [];
  cluster.observeCollect = (region, key, encoded) => {
    collected.set(key, vvMerge(collected.get(key) ?? EMPTY_VV, vvOfRow(encoded)));
    collections.push({ key, atMs: scheduler.now, vv: vvOfRow(encoded) });
    trace.note(`${region} collects the tombstone of ${key}`);
  };

  // Writes that only the region losing its storage held (see `Forgotten.lost`), and when:
  // reads that saw them before are not held to them afterwards.
  const lost = new Map<number, number>();
  cluster.observeStorageLoss = (region) => {
    for (const w of writes) {
      if (lost.has(w.id)) continue;
      const dot = vvGet(parseVv(w.version) ?? EMPTY_VV, w.region);
      const elsewhere = cluster.settings.regions.some((r) => {
        const row = r === region ? null : cluster.host(r).storage.kv.get(w.key);
        return row !== null && vvGet(vvOfRow(row.encoded), w.region) >= dot;
      });
      if (!elsewhere) lost.set(w.id, scheduler.now);
    }
  };

  cluster.start();
  const durationMs = options.durationMs ?? 15_000;
  scheduleFaults(cluster, random.fork(), plan, durationMs);
  const history: HistoryOp[] = [];
  const acknowledged = new Set<string>();
  const homes = (i: number): RegionId => (i === 0 && plan.isolatePrimary ? primary : random.pick(regions));
  const clients = Array.from(
    { length: options.clients ?? random.int(2, 4) },
    (_, i) => new SimClient(`c${i}`, homes(i), cluster, history, acknowledged),
  );
  let running = clients.length;
  for (const client of clients)
    void clientLoop(client, cluster, random.fork(), START_MS + durationMs).finally(() => {
      running -= 1;
    });
  await scheduler.run(START_MS + durationMs);

  // Heal: calm network, every process up, every region back in service, dead letters replayed.
  const faults = cluster.network.faults;
  faults.drop = 0;
  faults.duplicate = 0;
  faults.jitterMs = 0;
  faults.partitions.clear();
  faults.severed.clear();
  if (cluster.control.node === undefined) cluster.control.start();
  for (const region of cluster.settings.regions) if (!cluster.host(region).up) cluster.host(region).start();
  trace.note("heal: calm network, every process up");
  const healedMs = scheduler.now;
  const quiet = await scheduler.run(
    healedMs + SETTLE_MS_MAX,
    () => running === 0 && quiescent(cluster, () => heal(cluster)),
  );

  const violations: string[] = [];
  if (!quiet) violations.push(`no quiescence within ${SETTLE_MS_MAX} ms of healing: ${whyNotQuiet(cluster)}`);
  const told = writes.map((w, i) => ({ ...w, acknowledged: acknowledged.has(seqs[i] as string) }));
  const finals = new Map(
    cluster.settings.regions.map((r) => [
      r,
      new Map([...cluster.host(r).storage.dump()].map(([k, v]) => [k, { encoded: v.encoded, epoch: v.epoch }])),
    ]),
  );
  for (const v of checkConvergence(finals)) violations.push(`${v.rule}: ${v.message}`);
  const kept = (w: CommittedWrite): boolean => {
    const strong = prefixOf(w.key, primaryPrefixes);
    if (strong === undefined || w.epoch === null) return true;
    const epochs = [...(blessed.get(strong.prefix)?.keys() ?? [])]
      .filter((e) => e > (w.epoch as number))
      .sort((a, b) => a - b);
    const next = epochs[0];
    if (next === undefined) return true;
    const vv = blessed.get(strong.prefix)?.get(next)?.get(w.key);
    const dot = vvGet(parseVv(w.version) as VersionVector, w.region);
    return vv !== undefined && vvGet(vv, w.region) >= dot;
  };
  const surviving = survivors(told, kept);
  const deposed = told.filter((w) => !surviving.includes(w));
  for (const w of deposed)
    if (w.acknowledged)
      violations.push(`write_lost: acknowledged strong write ${w.id} on ${w.key} was not kept by the next primary`);
  const first = finals.get(cluster.settings.regions[0] as RegionId);
  if (first !== undefined)
    for (const v of checkOutcome(first, surviving, deposed, { collected, lost: new Set(lost.keys()) }))
      violations.push(`${v.rule}: ${v.message}`);
  // Strong keys promise strong and quorum guarantees; their eventual and session reads may show
  // a deposed primary's write until its region settles, so those are left out.
  const sessionOps = history.filter(
    (op) => prefixOf(op.key, primaryPrefixes) === undefined || op.mode === "quorum" || op.mode === "strong",
  );
  const forgotten = writes.filter((w) => lost.has(w.id));
  // `ack=quorum` (and strong writes) promise to survive a region's loss.
  for (const w of forgotten)
    if (
      history.some(
        (op) => op.kind === "write" && op.ok && op.key === w.key && op.version === w.version && op.mode !== "local",
      )
    )
      violations.push(`write_lost: ${w.key} lost quorum-acknowledged write ${w.id} with one region's storage`);
  const remembered = sessionOps.filter((op) => !forgottenBy(op, forgotten, lost));
  for (const v of checkHistory(remembered.map((op) => asCollected(op, collections))))
    violations.push(`${v.rule}: ${v.message}`);
  return {
    seed,
    violations,
    trace: trace.text(),
    stats: {
      events: scheduler.events,
      writes: writes.length,
      reads: history.filter((op) => op.kind === "read").length,
      virtualMs: scheduler.now - START_MS,
    },
  };
}

/**
 * Whether `op` is a write lost with its region's storage, or a read that saw one before the loss
 * (the guarantees of `ack=local` end with the region's disk).
 */
function forgottenBy(
  op: HistoryOp,
  forgotten: readonly CommittedWrite[],
  lostAt: ReadonlyMap<number, number>,
): boolean {
  const version = op.version === null ? undefined : parseVv(op.version);
  return forgotten.some((w) => {
    if (w.key !== op.key) return false;
    if (op.kind === "write") return op.version === w.version;
    const dot = vvGet(parseVv(w.version) ?? EMPTY_VV, w.region);
    return version !== undefined && op.endMs <= (lostAt.get(w.id) ?? 0) && vvGet(version, w.region) >= dot;
  });
}

/**
 * A read that found a key absent after a replica collected its tombstone answered that delete:
 * it reads as the version of the tombstones collected by the time it ended.
 */
function asCollected(
  op: HistoryOp,
  collections: ReadonlyArray<{ key: string; atMs: number; vv: VersionVector }>,
): HistoryOp {
  if (op.kind !== "read" || op.version !== null) return op;
  const buried = collections.filter((c) => c.key === op.key && c.atMs <= op.endMs);
  if (buried.length === 0) return op;
  return { ...op, version: formatVv(buried.reduce((vv, c) => vvMerge(vv, c.vv), EMPTY_VV)) };
}

function vvOfRow(encoded: Uint8Array): VersionVector {
  return keyVv(decodeKeyState(encoded));
}

function pickRegions(random: Random, count: number): RegionId[] {
  const pool = [...LOCATION_HINTS];
  const out: RegionId[] = [];
  while (out.length < count) {
    const r = random.pick(pool);
    if (!out.includes(r)) out.push(r);
  }
  return out;
}

/** Puts every region back in service (idempotent: the control object ignores repeats). */
function heal(cluster: Cluster): void {
  const view = cluster.control.node?.machine.view;
  if (view === undefined) return;
  for (const region of cluster.settings.regions) if (isTakenOut(view, region)) void setHealth(cluster, region, true);
  for (const region of cluster.settings.regions) {
    const node = cluster.host(region).node;
    if (node !== undefined && node.machine.storage.deadLetters.count() > 0) {
      cluster.trace.note(`operator replays ${region}'s dead letters`);
      void replayDeadLetters(node.machine, {
        sendBatch: (messages, delay) => cluster.queue.send(region, messages, delay),
      }).catch(() => undefined);
    }
  }
}

/** Whether every replica has everything, nothing is in flight, and every prefix is settled. */
function quiescent(cluster: Cluster, nudge: () => void): boolean {
  nudge();
  return whyNotQuiet(cluster) === "";
}

function whyNotQuiet(cluster: Cluster): string {
  const control = cluster.control.node?.machine.view;
  if (control === undefined) return "the control object is down";
  if (cluster.queue.inFlight > 0) return `${cluster.queue.inFlight} queue messages in flight`;
  for (const region of cluster.settings.regions) {
    if (isTakenOut(control, region)) return `${region} is taken out`;
    const node = cluster.host(region).node;
    if (node === undefined) return `${region} is down`;
    const storage = node.machine.storage;
    if (node.machine.bootstrapping) return `${region} is ${node.machine.phase}`;
    if (storage.log.count() > 0) return `${region} has ${storage.log.count()} outbox rows`;
    if (storage.deadLetters.count() > 0) return `${region} holds dead letters`;
    for (const peer of node.machine.peers) {
      const applied = storage.peerRecv.get(peer).appliedSeq;
      const issued = cluster.host(peer).node?.machine.seq ?? -1;
      if (applied !== issued) return `${region} applied ${applied} of ${peer}'s ${issued} writes`;
    }
    const root = storage.merkle.root();
    const first = cluster.host(cluster.settings.regions[0] as RegionId).node?.machine.storage.merkle.root();
    if (first !== undefined && !equalBytes(root, first)) return `${region}'s Merkle root differs`;
    for (const [prefix, p] of Object.entries(control.primaries)) {
      if (!p.ready) return `"${prefix}" is not ready`;
      const known = storage.primaries.all().get(prefix);
      if (known?.epoch !== p.epoch || known.settledEpoch !== p.epoch)
        return `${region} has not settled "${prefix}" at epoch ${p.epoch}`;
    }
  }
  return "";
}
