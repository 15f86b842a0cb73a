// The simulated deployment: one replica per region (the real ReplicaMachine and ReplicaNode over
// in-memory storage), the control object (the real ControlMachine and ControlNode), the
// replication queue with the consumer's rules (shared/store/delivery.ts), all connected by the
// seeded network and driven by virtual time.
import { type Result } from "../../shared/errors.ts";
import { type RegionId } from "../../shared/regions.ts";
import { isTakenOut } from "../../shared/store/cluster.ts";
import { type Applied, type PeerApi, type ReplicaAdminApi } from "../../shared/store/contract.ts";
import { ControlMachine } from "../../shared/store/control-machine.ts";
import { ControlNode } from "../../shared/store/control-node.ts";
import { deliveryOf } from "../../shared/store/delivery.ts";
import { type GcSettings } from "../../shared/store/gc.ts";
import { recordDeadLetters } from "../../shared/store/dead-letters.ts";
import { type PrimaryPrefix } from "../../shared/store/primaries.ts";
import { type ControlApi, type ReplicaPorts } from "../../shared/store/ports.ts";
import { ReplicaMachine } from "../../shared/store/replica-machine.ts";
import { ReplicaNode } from "../../shared/store/replica-node.ts";
import { type ReplicaStorage } from "../../shared/store/storage.ts";
import { type ReplicationMessage } from "../../shared/store/wire.ts";
import { Incarnation, guardedStorage } from "./host.ts";
import { MemoryControlStorage } from "./memory-control.ts";
import { MemoryStorage } from "./memory-storage.ts";
import { type Network } from "./network.ts";
import { type Random } from "../../shared/random.ts";
import { type Scheduler } from "./scheduler.ts";
import { type Trace } from "./trace.ts";

/** How the simulated deployment is configured (as wrangler.toml configures the real one). */
export interface ClusterSettings {
  readonly regions: readonly RegionId[];
  readonly primaryPrefixes: readonly PrimaryPrefix[];
  /** The control object's region. */
  readonly controlRegion: RegionId;
  readonly heartbeatIntervalMs: number;
  /** The lease the control object grants a primary (`leases.ts`). */
  readonly leaseMs: number;
  readonly sessionWaitMs: number;
  readonly batchMs: number;
  /** Whether replicas push writes to their peers first (DIRECT_PUSH), the queue carrying the rest. */
  readonly directPush: boolean;
  /** The queue's retry limit before the dead-letter queue (wrangler.toml: max_retries). */
  readonly maxRetries: number;
  /** How often each replica runs anti-entropy rounds with its peers. */
  readonly antiEntropyIntervalMs: number;
  /** Collection of tombstones and of the conflict log. */
  readonly gc: GcSettings;
  /** Changes a region's storage before its replica uses it (tests that break the protocol on purpose). */
  readonly wrapStorage?: (storage: ReplicaStorage) => ReplicaStorage;
}

/** Observes every write a replica commits, with its full entry (the simulation's ground truth). */
export type CommitObserver = (
  region: RegionId,
  write: Parameters<ReplicaMachine["write"]>,
  result: ReturnType<ReplicaMachine["write"]>,
) => void;

/** One region's replica host. */
export class SimRegion {
  readonly region: RegionId;
  storage = new MemoryStorage();
  /** Milliseconds this region's clock runs ahead of true time (negative: behind). */
  skewMs = 0;
  node: ReplicaNode | undefined;
  private incarnation = new Incarnation();
  private readonly cluster: Cluster;

  constructor(region: RegionId, cluster: Cluster) {
    this.region = region;
    this.cluster = cluster;
  }

  get up(): boolean {
    return this.node !== undefined;
  }

  /** This region's clock: true time plus its skew. */
  now(): number {
    return this.cluster.scheduler.now + this.skewMs;
  }

  /** Starts a new incarnation over the stored state. */
  start(): void {
    const { cluster } = this;
    const life = new Incarnation();
    this.incarnation = life;
    const settings = cluster.settings;
    this.storage.onDrop = (key, row) => {
      if (!row.live) cluster.observeCollect?.(this.region, key, row.encoded);
    };
    const raw = settings.wrapStorage === undefined ? this.storage : settings.wrapStorage(this.storage);
    const storage = guardedStorage(raw, life);
    const machine = new ReplicaMachine(
      storage,
      {
        region: this.region,
        regions: settings.regions,
        primaryPrefixes: settings.primaryPrefixes,
        silenceMsMax: 3 * settings.heartbeatIntervalMs,
      },
      this.now(),
    );
    const write = machine.write.bind(machine);
    machine.write = (...args) => {
      const result = write(...args);
      cluster.observeCommit?.(this.region, args, result);
      return result;
    };
    const node = new ReplicaNode(machine, this.ports(life), {
      heartbeatIntervalMs: settings.heartbeatIntervalMs,
      sessionWaitMs: settings.sessionWaitMs,
      batchMs: settings.batchMs,
      delaySeconds: 0,
      directPush: settings.directPush,
      antiEntropyIntervalMs: settings.antiEntropyIntervalMs,
      gc: settings.gc,
    });
    this.node = node;
    node.start();
    // The view the control object holds now, as the Durable Object fetches it when it starts.
    void life.guard(cluster.controlCall(this.region, (c) => c.machine.view)).then(
      (view) => node.machine.applyView(view),
      () => undefined,
    );
    const tick = (): void => {
      if (!life.alive) return;
      void life
        .guard(node.tick())
        .catch((error: unknown) => cluster.trace.note(`${this.region} tick failed: ${String(error)}`));
      cluster.scheduler.at(settings.heartbeatIntervalMs, tick);
    };
    cluster.scheduler.at(cluster.random.int(0, settings.heartbeatIntervalMs), tick);
  }

  /** Loses the in-memory state; storage is kept. */
  crash(): void {
    this.incarnation.crash();
    this.node = undefined;
  }

  /** Loses the storage too (the region comes back empty when restarted). */
  loseStorage(): void {
    this.cluster.observeStorageLoss?.(this.region);
    this.crash();
    this.storage = new MemoryStorage();
  }

  /** Runs `call` against this replica as a served call; undefined when it is down. */
  serve<T>(call: (node: ReplicaNode) => Promise<T> | T): Promise<T> | undefined {
    const node = this.node;
    if (node === undefined) return undefined;
    return this.incarnation.serve(async () => call(node));
  }

  private ports(life: Incarnation): ReplicaPorts {
    const { cluster } = this;
    const self = this.region;
    const peer = (target: RegionId): PeerApi => {
      const rpc = <T>(call: (node: ReplicaNode) => Promise<T> | T): Promise<T> =>
        life.guard(
          cluster.network.replicasLinked(self, target)
            ? cluster.network.call(self, target, () => cluster.host(target).serve(call))
            : cluster.network.call(self, target, () => undefined),
        );
      return {
        applyReplication: (bodies) => rpc((n) => n.applyReplication(bodies)),
        pushWrite: (body) => rpc((n) => n.pushWrite(body)),
        snapshot: (key) => rpc((n) => n.snapshot(key)),
        covers: (key, version, epoch) => rpc((n) => n.covers(key, version, epoch)),
        prefixStates: (low, high, after, limit) => rpc((n) => n.prefixStates(low, high, after, limit)),
        aeBegin: (from) => rpc((n) => n.aeBegin(from)),
        merkleChildren: (level, indices) => rpc((n) => n.merkleChildren(level, indices)),
        bucketEntries: (buckets) => rpc((n) => n.bucketEntries(buckets)),
        keyStates: (keys) => rpc((n) => n.keyStates(keys)),
        bucketRows: (from, to, after, limit) => rpc((n) => n.bucketRows(from, to, after, limit)),
        repairStates: (from, rows) => rpc((n) => n.repairStates(from, rows)),
      };
    };
    const control: ControlApi = {
      getView: () => life.guard(cluster.controlCall(self, (c) => c.machine.view)),
      confirmPrimary: (prefix, region, epoch) =>
        life.guard(
          cluster.controlCall(self, (c) => c.machine.confirmPrimary(prefix, region, epoch, cluster.scheduler.now)),
        ),
    };
    return {
      now: () => this.now(),
      timer: (ms) => {
        const t = cluster.scheduler.timer(ms);
        return { done: life.guard(t.done), cancel: t.cancel };
      },
      peer,
      control,
      queue: { sendBatch: (messages, delaySeconds) => life.guard(cluster.queue.send(self, messages, delaySeconds)) },
      background: (work) =>
        void work.catch((error: unknown) => cluster.trace.note(`${self} background work failed: ${String(error)}`)),
      warn: (message) => cluster.trace.note(`${self}: ${message}`),
    };
  }
}

/** The control object's host (it lives in one region and can crash and restart too). */
export class SimControl {
  readonly storage = new MemoryControlStorage();
  node: ControlNode | undefined;
  private incarnation = new Incarnation();
  private readonly cluster: Cluster;

  constructor(cluster: Cluster) {
    this.cluster = cluster;
  }

  start(): void {
    const { cluster } = this;
    const life = new Incarnation();
    this.incarnation = life;
    const settings = cluster.settings;
    const machine = new ControlMachine(
      guardedStorage(this.storage, life),
      {
        regions: settings.regions,
        primaryPrefixes: settings.primaryPrefixes,
        silenceMs: 3 * settings.heartbeatIntervalMs,
        leaseMs: settings.leaseMs,
      },
      cluster.scheduler.now,
    );
    const here = settings.controlRegion;
    const replica = (region: RegionId): ReplicaAdminApi => {
      const rpc = <T>(call: (node: ReplicaNode) => Promise<T> | T): Promise<T> =>
        life.guard(cluster.network.call(here, region, () => cluster.host(region).serve(call)));
      return {
        pulse: () => rpc((n) => n.machine.pulse(cluster.host(region).now())),
        applyView: (view) => rpc((n) => n.applyView(view)),
        recoverPrefix: (prefix, epoch, donors, floorEpoch) =>
          rpc((n) => n.recoverPrefix(prefix, epoch, donors, floorEpoch)),
        handOver: (id) => rpc((n) => n.handOver(id)),
      };
    };
    const ready = machine.readyIfReplicated.bind(machine);
    machine.readyIfReplicated = (prefix, statuses, nowMs) => {
      const done = ready(prefix, statuses, nowMs);
      const p = machine.view.primaries[prefix];
      if (done && p !== undefined) cluster.observeReady?.(p.region, prefix, p.epoch);
      return done;
    };
    const node = new ControlNode(machine, {
      now: () => cluster.scheduler.now,
      timer: (ms) => {
        const t = cluster.scheduler.timer(ms);
        return { done: life.guard(t.done), cancel: t.cancel };
      },
      replica,
      warn: (message) => cluster.trace.note(`control: ${message}`),
    });
    this.node = node;
    const tick = (): void => {
      if (!life.alive) return;
      void life
        .guard(node.tick())
        .catch((error: unknown) => cluster.trace.note(`control tick failed: ${String(error)}`));
      cluster.scheduler.at(settings.heartbeatIntervalMs, tick);
    };
    cluster.scheduler.at(settings.heartbeatIntervalMs, tick);
  }

  crash(): void {
    this.incarnation.crash();
    this.node = undefined;
  }

  serve<T>(call: (node: ControlNode) => Promise<T> | T): Promise<T> | undefined {
    const node = this.node;
    if (node === undefined) return undefined;
    return this.incarnation.serve(async () => call(node));
  }
}

/** A message in the simulated queue. */
interface Queued {
  readonly body: ReplicationMessage;
  attempts: number;
}

/**
 * The replication queue: at least once, in any order. Sends may fail (the message may or may
 * not be enqueued), deliveries may repeat, and the consumer acks, retries with backoff, parks,
 * or dead-letters by the same rules as the Worker's consumer.
 */
export class SimQueue {
  private readonly cluster: Cluster;
  /** Messages accepted and not yet acked or dead-lettered. */
  inFlight = 0;
  /** Share of accepted messages lost outright (fault injection). */
  loss = 0;

  constructor(cluster: Cluster) {
    this.cluster = cluster;
  }

  /** A `sendBatch` from `origin`: enqueued (then answered), or failed (possibly enqueued anyway, as when the answer is lost). */
  send(origin: RegionId, messages: readonly ReplicationMessage[], delaySeconds: number): Promise<void> {
    const { cluster } = this;
    const { network, scheduler, random } = cluster;
    return new Promise<void>((resolve, reject) => {
      const hop = network.delay(origin, origin);
      // The queue is modelled as reachable only together with the target: a region cut off
      // from a target cannot hand it anything, through the queue or otherwise.
      const cut = messages.find((m) => !network.replicasLinked(origin, m.target));
      if (cut !== undefined) {
        scheduler.at(hop, () => reject(new Error(`queue send ${origin} -> ${cut.target} cut off`)));
        return;
      }
      if (random.chance(network.faults.drop)) {
        scheduler.at(hop, () => reject(new Error("queue send failed")));
        return;
      }
      scheduler.at(hop, () => {
        for (const body of messages) this.enqueue({ body, attempts: 0 }, delaySeconds * 1000);
        if (random.chance(network.faults.drop)) scheduler.at(hop, () => reject(new Error("queue send answer lost")));
        else scheduler.at(hop, () => resolve());
      });
    });
  }

  private enqueue(message: Queued, delayMs: number): void {
    const { cluster } = this;
    if (this.loss > 0 && cluster.random.chance(this.loss)) return;
    this.inFlight += 1;
    const target = message.body.target;
    const origin = message.body.origin;
    const at = delayMs + cluster.network.delay(origin, target);
    cluster.scheduler.at(at, () => void this.deliver(message));
    if (cluster.random.chance(cluster.network.faults.duplicate)) {
      this.inFlight += 1;
      cluster.scheduler.at(at + cluster.random.int(0, 500), () => void this.deliver({ ...message }));
    }
  }

  private async deliver(message: Queued): Promise<void> {
    const { cluster } = this;
    message.attempts += 1;
    const target = message.body.target;
    const host = cluster.host(target);
    let answer: Result<Applied> | "unreachable" = "unreachable";
    try {
      const results = await (host.serve((n) => n.applyReplication([message.body])) ??
        Promise.reject(new Error("down")));
      answer = results[0] ?? "unreachable";
    } catch {
      answer = "unreachable";
    }
    const view = cluster.control.node?.machine.view;
    const delivery = deliveryOf(answer, view !== undefined && isTakenOut(view, target), message.attempts);
    this.inFlight -= 1;
    if (delivery.kind === "ack") return;
    if (delivery.kind === "park") {
      this.enqueue({ body: message.body, attempts: 0 }, delivery.delaySeconds * 1000);
      return;
    }
    if (message.attempts > cluster.settings.maxRetries) {
      this.deadLetter(message);
      return;
    }
    this.inFlight += 1;
    cluster.scheduler.at(delivery.delaySeconds * 1000, () => {
      this.inFlight -= 1;
      this.enqueue(message, 0);
    });
  }

  /** The dead-letter consumer: recorded in the target, or any region up, or re-queued to try again. */
  private deadLetter(message: Queued): void {
    const { cluster } = this;
    cluster.deadLettered += 1;
    const target = cluster.host(message.body.target);
    const recorder = target.up ? target : cluster.settings.regions.map((r) => cluster.host(r)).find((h) => h.up);
    if (recorder?.node === undefined) {
      this.inFlight += 1;
      cluster.scheduler.at(60_000, () => {
        this.inFlight -= 1;
        this.deadLetter(message);
      });
      return;
    }
    recordDeadLetters(
      recorder.node.machine,
      [{ body: message.body, attempts: message.attempts, reason: "retries exhausted" }],
      recorder.now(),
    );
  }
}

/** The whole simulated deployment. */
export class Cluster {
  /** Replaced when a region is added. */
  settings: ClusterSettings;
  readonly scheduler: Scheduler;
  readonly network: Network;
  readonly random: Random;
  readonly trace: Trace;
  readonly regions: Map<RegionId, SimRegion>;
  readonly control: SimControl;
  readonly queue: SimQueue;
  observeCommit: CommitObserver | undefined;
  /** Called when the control object marks a new primary ready (its epoch starts to serve). */
  observeReady: ((region: RegionId, prefix: string, epoch: number) => void) | undefined;
  /** Told when a region's storage is about to be lost. */
  observeStorageLoss: ((region: RegionId) => void) | undefined;
  /** Told of every tombstone a replica forgets (`encoded` is its state). */
  observeCollect: ((region: RegionId, key: string, encoded: Uint8Array) => void) | undefined;
  /** Messages that ran out of retries. */
  deadLettered = 0;

  constructor(settings: ClusterSettings, scheduler: Scheduler, network: Network, random: Random, trace: Trace) {
    this.settings = settings;
    this.scheduler = scheduler;
    this.network = network;
    this.random = random;
    this.trace = trace;
    this.regions = new Map(settings.regions.map((r) => [r, new SimRegion(r, this)]));
    this.control = new SimControl(this);
    this.queue = new SimQueue(this);
  }

  host(region: RegionId): SimRegion {
    const host = this.regions.get(region);
    if (host === undefined) throw new Error(`no region ${region}`);
    return host;
  }

  /**
   * Adds `region` as an operator would: the configuration grows, and every process restarts
   * with it (a deploy); the new region's replica starts empty.
   */
  addRegion(region: RegionId): void {
    this.trace.note(`add region ${region}: every process restarts with the new configuration`);
    this.settings = { ...this.settings, regions: [...this.settings.regions, region] };
    this.regions.set(region, new SimRegion(region, this));
    const wasUp = [...this.regions.values()].filter((host) => host.up);
    const controlUp = this.control.node !== undefined;
    for (const host of wasUp) host.crash();
    this.control.crash();
    if (controlUp) this.control.start();
    for (const host of [...wasUp, this.host(region)]) host.start();
  }

  /** Starts the control object, then every replica. */
  start(): void {
    this.control.start();
    for (const host of this.regions.values()) host.start();
  }

  /** A call from `from` to the control object. */
  controlCall<T>(from: RegionId, call: (node: ControlNode) => Promise<T> | T): Promise<T> {
    return this.network.call(from, this.settings.controlRegion, () => this.control.serve(call));
  }
}
