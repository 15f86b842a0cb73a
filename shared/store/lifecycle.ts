/**
 * A replica's life beyond the replication stream: probing and bootstrapping a replica whose
 * storage is new (a region added, or restored empty), and anti-entropy rounds with its peers
 * (every `antiEntropyIntervalMs`, and on demand). The decisions are the machine's and
 * `anti-entropy.ts`'s; this sequences them through the ports.
 *
 * A new replica first probes: it asks every peer whether it holds data and what it knows of
 * this region's earlier writes. When every peer answers that it holds nothing, the store is new
 * and the replica is ready at once. Otherwise it numbers its writes above anything its peers
 * know of its region (a restored region never reuses a sequence number or a dot), and
 * bootstraps: anti-entropy rounds with every healthy peer until each has completed once. Until
 * then it counts as unhealthy ("bootstrapping"); a request pinned to it catches the key up from
 * its peers before answering, so it never answers 404 for a key another region holds.
 */
import { type Result, fail, ok } from "../errors.ts";
import { type RegionId } from "../regions.ts";
import { REGION_LOCATIONS, regionsByDistance } from "../regions.ts";
import { AE_KEYS_MAX, type RoundResult, antiEntropyRound } from "./anti-entropy.ts";
import { mergeSnapshot } from "./apply.ts";
import { raiseHorizon } from "./gc.ts";
import { isHealthy, isTakenOut, majority } from "./cluster.ts";
import { type AeBegin, type AeReport } from "./contract.ts";
import { type ReplicaPorts, bounded } from "./ports.ts";
import { INCARNATION_SEQ_GAP, type ReplicaMachine } from "./replica-machine.ts";
import { isZero } from "../merkle.ts";
import { vvGet } from "../version-vector.ts";

/** How a replica's lifecycle is tuned. */
export interface LifecycleSettings {
  readonly heartbeatIntervalMs: number;
  /** How often a ready replica runs an anti-entropy round with each peer. */
  readonly antiEntropyIntervalMs: number;
}

const META_BOOTSTRAP = "bootstrap";
/** Keys one bootstrap round copies at most (steady-state rounds repair fewer). */
const BOOTSTRAP_KEYS_MAX = 50_000;
/** How long one bootstrap stretch runs, in heartbeats, before it yields to the next tick. */
const BOOTSTRAP_STEP_HEARTBEATS = 20;

/** The lifecycle of one replica. */
export class Lifecycle {
  private readonly machine: ReplicaMachine;
  private readonly ports: ReplicaPorts;
  private readonly settings: LifecycleSettings;
  private probing: Promise<Result<null>> | undefined;
  private rounds: Promise<AeReport[]> | undefined;
  private bootstrapping: Promise<void> | undefined;
  private lastRoundMs = 0;

  constructor(machine: ReplicaMachine, ports: ReplicaPorts, settings: LifecycleSettings) {
    this.machine = machine;
    this.ports = ports;
    this.settings = settings;
    // The first periodic round comes one interval after the start.
    this.lastRoundMs = ports.now();
  }

  private healthyPeers(): RegionId[] {
    return this.machine.peers.filter((peer) => isHealthy(this.machine.view, peer));
  }

  /**
   * Resolves once this replica knows how to number its writes (it has probed its peers). One
   * probe at a time; `region_unavailable` when no peer answered (the next call tries again).
   */
  established(): Promise<Result<null>> {
    if (this.machine.phase !== "probing") return Promise.resolve(ok(null));
    this.probing ??= this.probe().finally(() => {
      this.probing = undefined;
    });
    return this.probing;
  }

  /**
   * Asks every peer not taken out what it holds and knows of this region. All must answer: one
   * that did not might hold this region's earlier writes, or a collection horizon this replica
   * needs before it takes in anything (`gc.ts`).
   */
  private async probe(): Promise<Result<null>> {
    const { machine, ports } = this;
    const peers = machine.peers.filter((peer) => !isTakenOut(machine.view, peer));
    const answers = await Promise.all(
      peers.map((peer) =>
        bounded(ports, () => ports.peer(peer).aeBegin(machine.region), this.settings.heartbeatIntervalMs * 2),
      ),
    );
    if (machine.phase !== "probing") return ok(null);
    const heard = answers.filter((a): a is Result<AeBegin> & { ok: true } => a !== null && a.ok).map((a) => a.value);
    if (heard.length < peers.length) {
      const silent = peers.filter((_, i) => answers[i] === null || !(answers[i] as Result<AeBegin>).ok);
      return fail(
        "region_unavailable",
        `region ${machine.region} is new and waits for ${silent.join(", ")} to answer before it serves; retry`,
        { region: machine.region, reason: "bootstrapping" },
      );
    }
    const known = Math.max(0, ...heard.map((a) => Math.max(a.knownOfYou, vvGet(a.horizon, machine.region))));
    // Only a store where every peer holds nothing yet (a new one) needs no bootstrap.
    const empty = machine.peers.length === peers.length && heard.every((a) => isZero(a.root));
    // A region with an earlier life numbers its writes above any its peers (or a queue) may
    // hold from it: no sequence number, and so no dot, is ever reused.
    const earlier = heard.some((a) => a.heardOfYou || a.knownOfYou > 0) || machine.peers.length > peers.length;
    const base = earlier ? known + INCARNATION_SEQ_GAP : 0;
    machine.storage.transaction(() => {
      for (const answer of heard) raiseHorizon(machine, answer.horizon);
    });
    machine.identify(base, !empty, earlier ? known : 0, ports.now());
    if (!empty)
      ports.warn(`replica ${machine.region}: new storage; bootstrapping from its peers, numbering from ${base}`);
    return ok(null);
  }

  /**
   * Work for the periodic tick: probe a new replica, take bootstrap steps, or run the periodic
   * anti-entropy rounds when their interval has passed.
   */
  async tick(): Promise<void> {
    const { machine } = this;
    if (machine.phase === "probing") {
      await this.established();
      return;
    }
    if (machine.phase === "bootstrapping") {
      this.bootstrapping ??= this.bootstrapStep().finally(() => {
        this.bootstrapping = undefined;
      });
      await this.bootstrapping;
      return;
    }
    if (this.rounds === undefined && this.ports.now() - this.lastRoundMs >= this.settings.antiEntropyIntervalMs)
      await this.antiEntropy();
  }

  /**
   * One anti-entropy round with each of `peers` (default: every healthy peer), one set of rounds
   * at a time; the reports of the rounds that ran (a peer that did not answer has none).
   */
  async antiEntropy(peers: readonly RegionId[] = this.healthyPeers()): Promise<AeReport[]> {
    // One set at a time: wait for the one running (it may be with other peers), then run.
    while (this.rounds !== undefined) await this.rounds.catch(() => undefined);
    const rounds = this.runRounds(peers).finally(() => {
      this.rounds = undefined;
    });
    this.rounds = rounds;
    return rounds;
  }

  private async runRounds(peers: readonly RegionId[]): Promise<AeReport[]> {
    this.lastRoundMs = this.ports.now();
    const results = await Promise.all(peers.map((peer) => this.round(peer)));
    return results
      .filter((r): r is RoundResult => r !== null)
      .map(({ peer, keysRepaired, bytes, complete }) => ({ peer, keysRepaired, bytes, complete }));
  }

  private async round(peer: RegionId, keysMax = AE_KEYS_MAX): Promise<RoundResult | null> {
    const { machine, ports } = this;
    const result = await bounded(
      ports,
      () => antiEntropyRound(machine, peer, ports.peer(peer), () => ports.now(), keysMax),
      this.settings.heartbeatIntervalMs * 30,
      (error) => ports.warn(`replica ${machine.region}: anti-entropy with ${peer} failed`, error),
    );
    if (result === null || !result.ok) return null;
    const { storage } = machine;
    storage.metrics.add("anti_entropy_rounds_total", peer, 1);
    if (result.value.keysRepaired > 0)
      storage.metrics.add("anti_entropy_keys_repaired_total", peer, result.value.keysRepaired);
    storage.metrics.add("anti_entropy_bytes_total", peer, result.value.bytes);
    return result.value;
  }

  /**
   * The peers a new replica pulls from: those in service that are healthy or bootstrapping
   * themselves (a peer that is silent or unreachable is not waited for).
   */
  private sources(): RegionId[] {
    const { view } = this.machine;
    return this.machine.peers.filter(
      (peer) => !isTakenOut(view, peer) && (isHealthy(view, peer) || view.health[peer]?.reason === "bootstrapping"),
    );
  }

  /**
   * A bounded stretch of bootstrapping: back-to-back rounds with the sources, nearest first,
   * each until it completes. Done once every source that is ready has completed one; when none
   * is (every replica of the store is new, as when regions start together), once a round with
   * every source has completed, so that each holds what any of them does. Progress is stored,
   * so an eviction or restart resumes it.
   */
  private async bootstrapStep(): Promise<void> {
    const { machine, ports } = this;
    const done = new Set<RegionId>(JSON.parse(machine.storage.meta.get(META_BOOTSTRAP) ?? "[]") as RegionId[]);
    const booting = new Set<RegionId>();
    const deadline = ports.now() + this.settings.heartbeatIntervalMs * BOOTSTRAP_STEP_HEARTBEATS;
    const sources = this.sources();
    for (const peer of regionsByDistance(REGION_LOCATIONS[machine.region], sources)) {
      while (!done.has(peer) && ports.now() < deadline) {
        const report = await this.round(peer, BOOTSTRAP_KEYS_MAX);
        if (report === null) break;
        if (!report.complete) continue;
        if (report.begin.bootstrapping) booting.add(peer);
        else done.add(peer);
        break;
      }
    }
    machine.storage.transaction(() => machine.storage.meta.set(META_BOOTSTRAP, JSON.stringify([...done])));
    const ready = sources.filter((peer) => !booting.has(peer));
    // Every ready source, and as many sources as meet every write quorum when there are that
    // many (a new source that completed a round counts: it holds what it had taken in).
    const finished =
      sources.length > 0 &&
      (ready.length > 0 ? ready.every((peer) => done.has(peer)) : sources.every((p) => booting.has(p))) &&
      done.size + booting.size >= Math.min(this.quorumPeers(), sources.length);
    if (machine.phase === "bootstrapping" && finished) {
      machine.bootstrapped(ports.now());
      ports.warn(`replica ${machine.region}: bootstrapped from ${[...done, ...booting].join(", ")}`);
    }
  }

  /**
   * While bootstrapping: merges what the healthy peers hold of `key`, so a request answers as
   * much as any region holds. `region_unavailable` (reason bootstrapping) when none answers.
   */
  async catchUpKey(key: string): Promise<Result<null>> {
    const { machine, ports } = this;
    const peers = this.sources();
    const snapshots = await Promise.all(
      peers.map((peer) => bounded(ports, () => ports.peer(peer).snapshot(key), this.settings.heartbeatIntervalMs)),
    );
    let answered = 0;
    snapshots.forEach((snapshot, i) => {
      if (snapshot === null || !snapshot.ok) return;
      answered += 1;
      mergeSnapshot(machine, key, snapshot.value, peers[i] as RegionId, ports.now());
    });
    if (answered >= this.quorumPeers()) return ok(null);
    return fail(
      "region_unavailable",
      `region ${machine.region} is bootstrapping and only ${answered} of the ${this.quorumPeers()} peers it needs answered for "${key}"; retry`,
      { region: machine.region, reason: "bootstrapping" },
    );
  }

  /**
   * Peers whose answers meet every write quorum: n - majority(n) + 1 of the n regions, this
   * one's lost copy aside. A write acknowledged by a quorum is held by at least one of them.
   */
  private quorumPeers(): number {
    const n = this.machine.settings.regions.length;
    return Math.min(this.machine.peers.length, n - majority(n) + 1);
  }
}
