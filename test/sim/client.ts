// A simulated client behind the router: it picks regions and primaries with the router's own
// decisions (shared/store/router-core.ts), carries its session vector as a token would, and
// records every operation for the history checker.
import { type HistoryOp } from "../../shared/check/history.ts";
import { type Result } from "../../shared/errors.ts";
import { type RegionId } from "../../shared/regions.ts";
import { type ClusterView, EMPTY_VIEW, majority } from "../../shared/store/cluster.ts";
import { type KeySnapshot, type ReadOptions, type WriteOutcome } from "../../shared/store/contract.ts";
import { type KeyOp, decodeKeyState, keyVersion } from "../../shared/store/key-state.ts";
import { prefixOf } from "../../shared/store/primaries.ts";
import { bounded } from "../../shared/store/ports.ts";
import { chooseRegion, primaryFor, quorumRead, readOrder } from "../../shared/store/router-core.ts";
import { EMPTY_VV, type VersionVector, vvFrom, vvMerge } from "../../shared/version-vector.ts";
import { oneWayMs } from "../../shared/wan-rtt.ts";
import { type Cluster } from "./cluster.ts";

/** How long a client waits for any one request. */
const REQUEST_TIMEOUT_MS = 10_000;
/** How long the router caches the control object's view. */
const VIEW_CACHE_MS = 500;

/** Read consistency levels. */
export type Consistency = "eventual" | "session" | "quorum" | "strong";

/** A client near `home`. */
export class SimClient {
  readonly name: string;
  readonly home: RegionId;
  private readonly cluster: Cluster;
  private readonly history: HistoryOp[];
  /** What this client has seen: its session token. */
  private seen: VersionVector = EMPTY_VV;
  private cached: { view: ClusterView; atMs: number } | undefined;
  /** Writes the client was told succeeded, by (region, seq). */
  readonly acknowledged: Set<string>;

  constructor(name: string, home: RegionId, cluster: Cluster, history: HistoryOp[], acknowledged: Set<string>) {
    this.name = name;
    this.home = home;
    this.cluster = cluster;
    this.history = history;
    this.acknowledged = acknowledged;
  }

  private get clock() {
    return { now: () => this.cluster.scheduler.now, timer: (ms: number) => this.cluster.scheduler.timer(ms) };
  }

  /** The router's cached view (the last one when the control object does not answer). */
  private async view(): Promise<ClusterView> {
    const now = this.cluster.scheduler.now;
    if (this.cached !== undefined && now - this.cached.atMs < VIEW_CACHE_MS) return this.cached.view;
    const view = await bounded(this.clock, () => this.cluster.controlCall(this.home, (c) => c.machine.view), 2000);
    if (view !== null) this.cached = { view, atMs: now };
    return this.cached?.view ?? EMPTY_VIEW;
  }

  private preference(): RegionId[] {
    return [...this.cluster.settings.regions].sort((a, b) => oneWayMs(this.home, a) - oneWayMs(this.home, b));
  }

  /** A call from the router near this client to `region`'s replica, bounded like a request. */
  private call<T>(
    region: RegionId,
    call: (node: NonNullable<ReturnType<Cluster["host"]>["node"]>) => Promise<T> | T,
  ): Promise<T | null> {
    return bounded(
      this.clock,
      () => this.cluster.network.call(this.home, region, () => this.cluster.host(region).serve(call)),
      REQUEST_TIMEOUT_MS,
    );
  }

  /** A write with `acks` regions to apply it; true when the client is told it succeeded. */
  async write(key: string, op: KeyOp, acks: number): Promise<boolean> {
    const startMs = this.cluster.scheduler.now;
    const view = await this.view();
    const strong = prefixOf(key, this.cluster.settings.primaryPrefixes);
    let region: RegionId;
    let scope: { prefix: string; epoch: number } | undefined;
    if (strong !== undefined) {
      const primary = primaryFor(view, strong);
      if (!primary.ok) return this.record("write", key, "strong", startMs, "-", null, false);
      region = primary.value.region;
      scope = { prefix: strong.prefix, epoch: primary.value.epoch };
    } else {
      const chosen = chooseRegion(this.preference(), view, undefined);
      if (!chosen.ok) return this.record("write", key, "local", startMs, "-", null, false);
      region = chosen.value;
    }
    const result: Result<WriteOutcome> | null = await this.call(region, (n) =>
      n.write(key, op, { acks, timeoutMs: 3000, ...(scope === undefined ? {} : { strong: scope }) }),
    );
    const mode =
      strong !== undefined ? "strong" : acks >= majority(this.cluster.settings.regions.length) ? "quorum" : "local";
    if (result === null || !result.ok) return this.record("write", key, mode, startMs, region, null, false);
    const outcome = result.value;
    // Committed either way: the token covers it even when the acks fell short.
    this.seen = vvMerge(this.seen, vvFrom([[outcome.region, outcome.seq]]));
    if (outcome.complete && outcome.written) this.acknowledged.add(`${outcome.region}:${outcome.seq}`);
    // A write that wrote nothing (a delete of a key the region did not hold) promises nothing.
    const version = outcome.written ? outcome.view.version : null;
    return this.record("write", key, mode, startMs, region, version, outcome.complete);
  }

  /** A read under `consistency`, recorded with the version it returned. */
  async read(key: string, consistency: Consistency): Promise<void> {
    const startMs = this.cluster.scheduler.now;
    const view = await this.view();
    let answer: { region: RegionId; version: string | null; seqs: VersionVector } | null = null;
    if (consistency === "quorum") answer = await this.quorum(key, view);
    else {
      const strong = prefixOf(key, this.cluster.settings.primaryPrefixes);
      let target: { region: RegionId; options: ReadOptions } | undefined;
      if (consistency === "strong") {
        const primary = strong === undefined ? undefined : primaryFor(view, strong);
        if (strong !== undefined && primary?.ok === true)
          target = {
            region: primary.value.region,
            options: { strong: { prefix: strong.prefix, epoch: primary.value.epoch } },
          };
      } else {
        const chosen = chooseRegion(this.preference(), view, undefined);
        if (chosen.ok)
          target = { region: chosen.value, options: consistency === "session" ? { session: this.seen } : {} };
      }
      if (target !== undefined) {
        const { region, options } = target;
        const result = await this.call(region, (n) => n.read(key, options));
        if (result !== null && result.ok)
          answer = { region, version: result.value.view?.version ?? null, seqs: result.value.seqs };
      }
    }
    if (answer !== null) this.seen = vvMerge(this.seen, answer.seqs);
    const mode = consistency;
    this.record("read", key, mode, startMs, answer?.region ?? "-", answer?.version ?? null, answer !== null);
  }

  private async quorum(
    key: string,
    view: ClusterView,
  ): Promise<{ region: RegionId; version: string | null; seqs: VersionVector } | null> {
    const order = readOrder(this.preference(), view, undefined);
    const need = majority(this.cluster.settings.regions.length);
    const read = async (region: RegionId): Promise<Result<KeySnapshot>> => {
      const result = await this.call(region, (n) => n.snapshot(key));
      if (result === null) throw new Error(`${region} did not answer`);
      return result;
    };
    const answer = await quorumRead(this.clock, order, need, 2000, read);
    if (!answer.ok) return null;
    const { merged, answered, stale } = answer.value;
    for (const region of stale) void this.call(region, (n) => n.repair(key, merged));
    const version = merged.state === null ? null : keyVersion(decodeKeyState(merged.state));
    return { region: answered[0] as RegionId, version, seqs: merged.seqs };
  }

  private record(
    kind: "write" | "read",
    key: string,
    mode: string,
    startMs: number,
    region: string,
    version: string | null,
    ok: boolean,
  ): boolean {
    this.history.push({
      client: this.name,
      kind,
      key,
      region,
      mode,
      startMs,
      endMs: this.cluster.scheduler.now,
      ok,
      version,
    });
    return ok;
  }
}
