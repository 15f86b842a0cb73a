/**
 * The regional replica: a Durable Object with SQLite storage, one per region. It takes writes
 * locally (multi-leader), commits each together with its outbox row before answering, drains
 * the outbox to the replication Queue, and merges what peers send, in any order and any number
 * of times. It also serves the consistency modes: synchronous acks, session reads that never go
 * back in time, bounded-staleness and strong reads, and compare-and-set on strong prefixes.
 * Decisions are made by the pure core (`shared/store/`); this class reads, persists and talks to
 * the platform.
 */
import { DurableObject } from "cloudflare:workers";
import { assert } from "../../shared/assert.ts";
import { DecodeError } from "../../shared/bytes.ts";
import { type Result, fail, ok } from "../../shared/errors.ts";
import { type HlcStamp, formatHlc, hlcReceive, hlcZero, parseHlc } from "../../shared/hlc.ts";
import { type RegionId, parseRegionId } from "../../shared/regions.ts";
import { type ClusterView, EMPTY_VIEW, isHealthy, isTakenOut, majority } from "../../shared/store/cluster.ts";
import { lwwEmpty } from "../../shared/crdt/lww-register.ts";
import { type KeyOp, type KeyState, decodeKeyState, encodeKeyState } from "../../shared/store/key-state.ts";
import { prefixEnd } from "../../shared/store/keys.ts";
import { prefixOf } from "../../shared/store/primaries.ts";
import {
  type Lag,
  progressAccepts,
  progressApplied,
  progressHeartbeat,
  progressLag,
} from "../../shared/store/progress.ts";
import {
  type KeyView,
  type WriteConditions,
  checkConditions,
  keyView,
  planMerge,
  planWrite,
} from "../../shared/store/replica-core.ts";
import { sessionLagging } from "../../shared/store/session.ts";
import {
  type EntriesMessage,
  type HeartbeatMessage,
  WIRE_VERSION,
  replicationMessageSchema,
} from "../../shared/store/wire.ts";
import {
  EMPTY_VV,
  type VersionVector,
  parseVv,
  vvCompare,
  vvFrom,
  vvGet,
  vvMerge,
} from "../../shared/version-vector.ts";
import { type Config, loadConfig } from "../config.ts";
import { REPLICA_MIGRATIONS, migrate } from "../migrations.ts";
import { withTimeout } from "../timeout.ts";
import { DeadLetters } from "./dead-letters.ts";
import { Outbox } from "./outbox-drain.ts";
import { type ConflictRow, type KeyListing, type ReplicaStore, replicaStore } from "./store.ts";
import { type AckResult, awaitAcks } from "./sync.ts";

/** A peer silent for this many heartbeat periods no longer counts as current for lag. */
const SILENT_HEARTBEATS_MAX = 3;
/** Poll period while a session read waits for replication to catch up. */
const SESSION_POLL_MS = 5;
/** Keys copied per page while a new primary recovers a prefix from a peer. */
const RECOVERY_PAGE_KEYS = 200;
/** Bound on pages per donor during recovery (200 x 5,000 = one million keys). */
const RECOVERY_PAGES_MAX = 5000;

/** What applying one replication message did: how many of its entries were fenced (refused, logged). */
export interface Applied {
  readonly fenced: number;
}

/** A strong (single-leader) operation: the prefix and the epoch the router resolved. */
export interface StrongScope {
  readonly prefix: string;
  readonly epoch: number;
}

/** How a write is acknowledged and guarded. */
export interface WriteOptions extends WriteConditions {
  /** Regions that must have applied the write before it is acknowledged, this one included. */
  readonly acks: number;
  readonly timeoutMs: number;
  readonly strong?: StrongScope;
}

/** A write's answer. */
export interface WriteOutcome {
  readonly region: RegionId;
  readonly seq: number;
  /** The key after the write; a register's value is left out (the writer has it). */
  readonly view: KeyView;
  /** Regions that durably applied the write when this answered, this one first. */
  readonly acked: RegionId[];
  /** Whether `acked` reached the requested count. */
  readonly complete: boolean;
}

/** How a read is served. */
export interface ReadOptions {
  /** The session's seen vector: never answer a state older than it. */
  readonly session?: VersionVector;
  /** Refuse (`staleness_exceeded`) when this replica may be staler than this. */
  readonly maxStalenessMs?: number;
  readonly strong?: StrongScope;
}

/** A read's answer: the key's view (null when never written here), lag, and the key's origin sequence numbers. */
export interface ReadOutcome {
  readonly region: RegionId;
  readonly view: KeyView | null;
  readonly lagMs: number;
  /** Per origin region, the highest of its writes the answered state includes (for session tokens). */
  readonly seqs: VersionVector;
}

/** A key's raw state as one replica holds it, for quorum reads and session fetches. */
export interface KeySnapshot {
  readonly state: Uint8Array | null;
  readonly seqs: VersionVector;
}

/** A replica's health and progress, for /v1/regions, /metrics and the control object. */
export interface ReplicaStatus {
  readonly region: RegionId;
  readonly seq: number;
  readonly clock: string;
  readonly takenOut: boolean;
  readonly outboxPending: number;
  readonly deadLetters: number;
  readonly lag: Record<string, Lag & { heardMs: number; appliedSeq: number }>;
  readonly metrics: Array<{ name: string; peer: string; value: number }>;
}

export class Replica extends DurableObject<Env> {
  private readonly store: ReplicaStore;
  private region: RegionId = "enam";
  private clock: HlcStamp = hlcZero("enam");
  private seq = 0;
  private view: ClusterView = EMPTY_VIEW;
  private readonly outbox: Outbox;
  /** Dead-letter records of messages for this region, and their replay. */
  private readonly letters: DeadLetters;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = replicaStore(ctx.storage);
    this.outbox = new Outbox(ctx, this.store, () => ({ region: this.region, view: this.view, env: this.env }));
    this.letters = new DeadLetters(env, this.store);
    void ctx.blockConcurrencyWhile(async () => {
      migrate(ctx.storage, REPLICA_MIGRATIONS, Date.now());
      const region = parseRegionId(ctx.id.name ?? "");
      assert(region !== undefined, "a replica is addressed by its region name");
      this.region = region;
      this.clock = parseHlc(this.store.meta.get("clock") ?? "") ?? hlcZero(region);
      this.seq = Number(this.store.meta.get("seq") ?? "0");
      // Configured strong prefixes start at epoch 1; the control object moves them forward.
      for (const p of this.config.primaryPrefixes) this.store.primaries.advance(p.prefix, p.region, 1);
      // A restarted replica must know at once whether it is taken out; the push may be long past.
      const view = await withTimeout(
        () => this.env.CONTROL.getByName("control").getView(),
        this.config.heartbeatIntervalMs,
      );
      if (view !== null) this.view = view;
      if ((await ctx.storage.getAlarm()) === null)
        await ctx.storage.setAlarm(Date.now() + this.config.heartbeatIntervalMs);
    });
  }

  private get config(): Config {
    return loadConfig(this.env);
  }

  private peers(): RegionId[] {
    return this.config.regions.filter((r) => r !== this.region);
  }

  private unavailable<T>(): Result<T> {
    return fail("region_unavailable", `region ${this.region} is taken out of service`, { region: this.region });
  }

  /** Takes the control object's view: health, and primaries whose epochs fence old writes. */
  async applyView(view: ClusterView): Promise<void> {
    if (view.atMs < this.view.atMs) return;
    this.view = view;
    this.store.transaction(() => {
      for (const [prefix, p] of Object.entries(view.primaries)) this.store.primaries.advance(prefix, p.region, p.epoch);
    });
    // Writes held for a region that was out go as soon as the view says it is back.
    this.ctx.waitUntil(this.outbox.flush());
  }

  /** Checks that this replica is the primary of `scope` under its epoch, here and at the control object. */
  private async confirmPrimary(scope: StrongScope): Promise<Result<null>> {
    const known = this.store.primaries.all().get(scope.prefix);
    const fenced = fail<null>(
      "fenced",
      `region ${this.region} is not the primary of "${scope.prefix}" at epoch ${scope.epoch}; retry`,
      {
        prefix: scope.prefix,
      },
    );
    if (known === undefined || known.region !== this.region || known.epoch !== scope.epoch) return fenced;
    const confirmed = await this.env.CONTROL.getByName("control").confirmPrimary(
      scope.prefix,
      this.region,
      scope.epoch,
    );
    return confirmed ? ok(null) : fenced;
  }

  /**
   * Applies a local write and commits it with its outbox row; then, for `acks` > 1, pushes it
   * to healthy peers and waits for them (bounded by `timeoutMs`). The commit is never undone.
   */
  async write(
    key: string,
    op: KeyOp,
    options: WriteOptions = { acks: 1, timeoutMs: 0 },
  ): Promise<Result<WriteOutcome>> {
    if (isTakenOut(this.view, this.region)) return this.unavailable();
    let acks = Math.min(options.acks, this.config.regions.length);
    if (options.strong !== undefined) {
      const confirmed = await this.confirmPrimary(options.strong);
      if (!confirmed.ok) return confirmed;
      acks = Math.max(acks, majority(this.config.regions.length));
    }
    const now = Date.now();
    const epoch = options.strong?.epoch ?? null;
    const committed = this.store.transaction(() => {
      const row = this.store.kv.getRow(key);
      const current = row === null ? undefined : decodeKeyState(row.encoded);
      const conditions = checkConditions(current, options);
      if (!conditions.ok) return conditions;
      const plan = planWrite(current, op, this.region, this.clock, this.seq, now);
      if (!plan.ok) return plan;
      const { state, encoded, stamp, seq, logState } = plan.value;
      const view = keyView(state);
      if (!view.ok) return view;
      this.store.kv.put(key, state, encoded, vvMerge(row?.seqs ?? EMPTY_VV, vvFrom([[this.region, seq]])));
      this.store.log.append({ seq, key, stamp: formatHlc(stamp), writtenMs: now, state: logState, epoch });
      this.store.meta.setPosition(formatHlc(stamp), seq);
      // In-memory copies move only once the transaction has committed, so a failed write
      // never leaves a gap in the sequence numbers peers wait for.
      this.clock = stamp;
      this.seq = seq;
      // The writer already has the value it wrote: do not copy it back over RPC.
      const summary: KeyView = view.value.type === "register" ? { ...view.value, value: null } : view.value;
      return ok({ seq, view: summary, encoded, stamp });
    });
    if (!committed.ok) return committed;
    const { seq, view, encoded, stamp } = committed.value;
    this.outbox.schedule();
    let result: AckResult = { acked: [], complete: true };
    if (acks > 1) {
      const entry = {
        seq,
        key,
        stamp: formatHlc(stamp),
        writtenMs: now,
        state: encoded,
        ...(epoch === null ? {} : { epoch }),
      };
      const messages: EntriesMessage[] = this.peers()
        .filter((peer) => isHealthy(this.view, peer))
        .map((target) => ({
          v: WIRE_VERSION,
          kind: "entries",
          origin: this.region,
          target,
          from: seq,
          to: seq,
          entries: [entry],
        }));
      result = await awaitAcks(messages, acks - 1, options.timeoutMs, async (message) => {
        const [applied] = await this.env.REPLICA.getByName(message.target).applyReplication([message]);
        // A peer that fenced the write (it knows a newer epoch) has not applied it.
        return applied?.ok === true && applied.value.fenced === 0;
      });
    }
    return ok({ region: this.region, seq, view, acked: [this.region, ...result.acked], complete: result.complete });
  }

  /**
   * The regions whose writes this replica may still lack for `key`, given a session that has
   * seen `seen`: a region's writes are covered when its ordered stream is applied that far, or
   * when the key's state already includes one of its writes that far (a region's writes to one
   * key are causally ordered, so the later one carries the earlier ones).
   */
  private lagging(key: string, seen: VersionVector): RegionId[] {
    const seqs = this.store.kv.getRow(key)?.seqs ?? EMPTY_VV;
    return sessionLagging(
      vvFrom([
        [this.region, this.seq],
        ...this.peers().map((p) => [p, this.store.peerRecv.get(p).appliedSeq] as const),
      ]),
      seen,
    ).filter((region) => vvGet(seqs, region) < vvGet(seen, region));
  }

  /** The key as this replica holds it, served under the requested consistency. */
  async read(key: string, options: ReadOptions = {}): Promise<Result<ReadOutcome>> {
    if (isTakenOut(this.view, this.region)) return this.unavailable();
    if (options.strong !== undefined) {
      const confirmed = await this.confirmPrimary(options.strong);
      if (!confirmed.ok) return confirmed;
    }
    const lagMs = this.maxLagMs();
    if (options.maxStalenessMs !== undefined && lagMs > options.maxStalenessMs) {
      return fail(
        "staleness_exceeded",
        `region ${this.region} may be ${lagMs} ms stale (bound ${options.maxStalenessMs} ms)`,
        {
          region: this.region,
          lagMs,
        },
      );
    }
    if (options.session !== undefined) {
      const caughtUp = await this.catchUp(key, options.session);
      if (!caughtUp.ok) return caughtUp;
    }
    const row = this.store.kv.getRow(key);
    if (row === null) return ok({ region: this.region, view: null, lagMs, seqs: EMPTY_VV });
    const view = keyView(decodeKeyState(row.encoded));
    return view.ok ? ok({ region: this.region, view: view.value, lagMs, seqs: row.seqs }) : view;
  }

  /**
   * Makes sure this replica holds everything `seen` covers for `key`: waits up to the
   * configured bound for replication, then fetches the key from each region it still lags
   * (that region's current state includes all its own writes to the key).
   */
  private async catchUp(key: string, seen: VersionVector): Promise<Result<null>> {
    const deadline = Date.now() + this.config.sessionWaitMs;
    let lagging = this.lagging(key, seen);
    while (lagging.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, SESSION_POLL_MS));
      lagging = this.lagging(key, seen);
    }
    for (const origin of lagging) {
      if (origin === this.region || !this.config.regions.includes(origin)) continue;
      let snapshot: KeySnapshot;
      try {
        snapshot = await this.env.REPLICA.getByName(origin).snapshot(key);
      } catch (error) {
        console.warn(`session read in ${this.region}: ${origin} unreachable:`, error);
        return fail(
          "region_unavailable",
          `region ${this.region} lags ${origin}, which did not answer; retry or read elsewhere`,
          {
            region: origin,
          },
        );
      }
      if (snapshot.state !== null) this.mergeState(key, snapshot.state, snapshot.seqs, origin);
    }
    return ok(null);
  }

  /** Merges a whole state into the key (read repair, session fetches); true when it changed. */
  private mergeState(key: string, bytes: Uint8Array, seqs: VersionVector, from: string): boolean {
    const remote = decodeKeyState(bytes);
    return this.store.transaction(() => this.mergeInto(key, remote, seqs, from, Date.now()));
  }

  /** Merges `remote` (which includes `seqs`) into the stored key and logs any conflict; call inside a transaction. */
  private mergeInto(key: string, remote: KeyState, seqs: VersionVector, from: string, now: number): boolean {
    const row = this.store.kv.getRow(key);
    const plan = planMerge(row === null ? undefined : decodeKeyState(row.encoded), row?.encoded ?? null, remote);
    const mergedSeqs = vvMerge(row?.seqs ?? EMPTY_VV, seqs);
    if (plan.changed || vvCompare(mergedSeqs, row?.seqs ?? EMPTY_VV) !== "equal")
      this.store.kv.put(key, plan.state, plan.encoded, mergedSeqs);
    if (plan.conflict) {
      const { kind, rule, winnerStamp, loserStamp, winner, loser } = plan.conflict;
      const fresh = this.store.conflicts.insert({
        key,
        kind,
        rule,
        detectedMs: now,
        winnerStamp,
        loserStamp,
        winner,
        loser,
      });
      if (fresh) this.store.metrics.add("conflicts_total", from, 1);
    }
    return plan.changed;
  }

  /** Read repair: merges a state the router assembled from a quorum. */
  async repair(key: string, bytes: Uint8Array, seqs: VersionVector): Promise<boolean> {
    return this.mergeState(key, bytes, seqs, "repair");
  }

  /** Live keys in `[low, high)` after `after`; `more` tells whether another page exists. */
  async list(
    low: string,
    high: string | null,
    after: string | null,
    limit: number,
  ): Promise<{ keys: KeyListing[]; more: boolean }> {
    const rows = this.store.kv.list(low, high, after, limit + 1);
    return { keys: rows.slice(0, limit), more: rows.length > limit };
  }

  /** Keys and encoded states (tombstones too) of a prefix, for recovery by a new primary. */
  async prefixStates(
    low: string,
    high: string | null,
    after: string | null,
    limit: number,
  ): Promise<Array<{ key: string; state: Uint8Array; seqs: string }>> {
    return this.store.prefixStates.page(low, high, after, limit);
  }

  /**
   * Run by a newly promoted primary before it serves: merges every key of the prefix from
   * each donor, so any write a quorum acknowledged under the old primary is here, and logs
   * each key that changed as a new write under the new epoch so every region converges on it.
   */
  async recoverPrefix(prefix: string, epoch: number, donors: readonly RegionId[]): Promise<number> {
    const high = prefixEnd(prefix);
    let merged = 0;
    for (const donor of donors) {
      let after: string | null = null;
      for (let page = 0; page < RECOVERY_PAGES_MAX; page += 1) {
        const rows = await this.env.REPLICA.getByName(donor).prefixStates(prefix, high, after, RECOVERY_PAGE_KEYS);
        const now = Date.now();
        this.store.transaction(() => {
          for (const row of rows) {
            if (!this.mergeInto(row.key, decodeKeyState(row.state), parseVv(row.seqs) ?? EMPTY_VV, donor, now))
              continue;
            merged += 1;
            const state = this.store.kv.getEncoded(row.key);
            assert(state !== null, "a merged key is stored");
            this.seq += 1;
            this.store.log.append({
              seq: this.seq,
              key: row.key,
              stamp: formatHlc(this.clock),
              writtenMs: now,
              state,
              epoch,
            });
            this.store.meta.setPosition(formatHlc(this.clock), this.seq);
          }
        });
        after = rows.at(-1)?.key ?? null;
        if (rows.length < RECOVERY_PAGE_KEYS) break;
      }
    }
    this.ctx.waitUntil(this.outbox.flush());
    return merged;
  }

  /** The conflict log, oldest first, after `afterId`. */
  async conflicts(afterId: number, limit: number): Promise<ConflictRow[]> {
    return this.store.conflicts.page(afterId, limit);
  }

  /** The key's encoded state and origin sequence numbers; refused while taken out, as if down. */
  async snapshot(key: string): Promise<KeySnapshot> {
    if (isTakenOut(this.view, this.region)) throw new Error(`region ${this.region} is taken out of service`);
    const row = this.store.kv.getRow(key);
    return { state: row?.encoded ?? null, seqs: row?.seqs ?? EMPTY_VV };
  }

  /** The key's canonical state (null when never written here); refused while taken out, as if down. */
  async keyState(key: string): Promise<Uint8Array | null> {
    if (isTakenOut(this.view, this.region)) throw new Error(`region ${this.region} is taken out of service`);
    return this.store.kv.getEncoded(key);
  }

  /** Health, progress and counters. */
  async status(): Promise<ReplicaStatus> {
    const now = Date.now();
    const lag: ReplicaStatus["lag"] = {};
    for (const peer of this.peers()) {
      const progress = this.store.peerRecv.get(peer);
      lag[peer] = {
        ...progressLag(progress, now, this.silenceMsMax()),
        heardMs: progress.heardMs,
        appliedSeq: progress.appliedSeq,
      };
    }
    return {
      region: this.region,
      seq: this.seq,
      clock: formatHlc(this.clock),
      takenOut: isTakenOut(this.view, this.region),
      outboxPending: this.store.log.count(),
      deadLetters: this.store.deadLetters.count(),
      lag,
      metrics: this.store.metrics.all(),
    };
  }

  private silenceMsMax(): number {
    return SILENT_HEARTBEATS_MAX * this.config.heartbeatIntervalMs;
  }

  private maxLagMs(): number {
    const now = Date.now();
    let max = 0;
    for (const peer of this.peers())
      max = Math.max(max, progressLag(this.store.peerRecv.get(peer), now, this.silenceMsMax()).ms);
    return max;
  }

  /**
   * Merges replication messages addressed to this region. Each message is all-or-nothing in
   * its own transaction; the answer per message tells the consumer to ack or retry it.
   */
  async applyReplication(bodies: readonly unknown[]): Promise<Array<Result<Applied>>> {
    const results: Array<Result<Applied>> = [];
    for (const body of bodies) {
      if (isTakenOut(this.view, this.region)) {
        results.push(this.unavailable());
        continue;
      }
      const parsed = replicationMessageSchema.safeParse(body);
      if (!parsed.success) {
        results.push(fail("invalid_body", `malformed replication message: ${parsed.error.message}`));
        continue;
      }
      const message = parsed.data;
      if (message.target !== this.region || message.origin === this.region) {
        results.push(
          fail("invalid_body", `message from ${message.origin} for ${message.target} reached ${this.region}`),
        );
        continue;
      }
      const result = message.kind === "heartbeat" ? this.applyHeartbeat(message) : await this.applyEntries(message);
      if (!result.ok) this.store.metrics.add("replication_errors_total", message.origin, 1);
      results.push(result);
    }
    return results;
  }

  private applyHeartbeat(message: HeartbeatMessage): Result<Applied> {
    const progress = progressHeartbeat(this.store.peerRecv.get(message.origin), message.seq, message.atMs, Date.now());
    this.store.peerRecv.put(message.origin, progress);
    this.store.metrics.add("replication_heartbeats_total", message.origin, 1);
    return ok({ fenced: 0 });
  }

  private async applyEntries(message: EntriesMessage): Promise<Result<Applied>> {
    if (message.to - message.from + 1 !== message.entries.length)
      return fail("invalid_body", "entry count does not match its range");
    if (!progressAccepts(this.store.peerRecv.get(message.origin), message.from, message.to)) {
      return fail("overloaded", `too many gaps in ${message.origin}'s stream; retry once earlier messages arrive`);
    }
    // States too large to inline are pulled from the origin first: no other await may sit
    // inside the transaction below.
    const states: KeyState[] = [];
    for (const entry of message.entries) {
      let bytes = entry.state;
      if (bytes === null) {
        bytes = await this.env.REPLICA.getByName(message.origin).keyState(entry.key);
        if (bytes === null) return fail("not_found", `origin ${message.origin} no longer has ${entry.key}`);
      }
      try {
        states.push(decodeKeyState(bytes));
      } catch (error) {
        if (error instanceof DecodeError)
          return fail("invalid_body", `undecodable state for ${entry.key}: ${error.message}`);
        throw error;
      }
    }
    const now = Date.now();
    return this.store.transaction((): Result<Applied> => {
      let clock = this.clock;
      for (const entry of message.entries) {
        const stamp = parseHlc(entry.stamp);
        if (stamp === undefined) return fail("invalid_body", `bad stamp ${entry.stamp}`);
        const received = hlcReceive(clock, stamp, now);
        if (!received.ok) return { ok: false, error: received.error };
        clock = received.stamp;
      }
      const epochs = this.store.primaries.all();
      let bytes = 0;
      let fenced = 0;
      message.entries.forEach((entry, i) => {
        const remote = states[i] as KeyState;
        bytes += entry.state?.length ?? 0;
        const strong = prefixOf(entry.key, this.config.primaryPrefixes);
        const known = strong === undefined ? undefined : epochs.get(strong.prefix);
        if (strong !== undefined && known !== undefined) {
          const entryEpoch = entry.epoch ?? 0;
          if (entryEpoch < known.epoch) {
            this.fence(entry.key, remote, entry.stamp, entryEpoch, known.epoch, message.origin, now);
            fenced += 1;
            return;
          }
          // A newer epoch than known means the control object's push has not arrived yet.
          if (entryEpoch > known.epoch) this.store.primaries.advance(strong.prefix, message.origin, entryEpoch);
        }
        this.mergeInto(entry.key, remote, vvFrom([[message.origin, entry.seq]]), message.origin, now);
      });
      const last = message.entries.at(-1);
      assert(last !== undefined, "a message has entries");
      this.store.peerRecv.put(
        message.origin,
        progressApplied(this.store.peerRecv.get(message.origin), message.from, message.to, last.writtenMs, now),
      );
      this.store.meta.set("clock", formatHlc(clock));
      this.store.metrics.add("replication_messages_total", message.origin, 1);
      this.store.metrics.add("replication_entries_total", message.origin, message.entries.length);
      this.store.metrics.add("replication_bytes_total", message.origin, bytes);
      this.clock = clock;
      return ok({ fenced });
    });
  }

  /**
   * Refuses a strong write accepted under an epoch older than the prefix's current one (a
   * deposed primary's late write): it is not merged, and it is logged as a `fenced` conflict
   * so it is never lost silently.
   */
  private fence(
    key: string,
    remote: KeyState,
    stamp: string,
    epoch: number,
    current: number,
    origin: string,
    now: number,
  ): void {
    const kept = this.store.kv.getEncoded(key);
    const fresh = this.store.conflicts.insert({
      key,
      kind: "fenced",
      rule: "stale_epoch",
      detectedMs: now,
      winnerStamp: `epoch ${current}`,
      loserStamp: `${stamp}@${epoch}`,
      winner: kept ?? encodeKeyState({ type: "register", register: lwwEmpty() }),
      loser: encodeKeyState(remote),
    });
    if (fresh) this.store.metrics.add("replication_fenced_total", origin, 1);
  }

  /** Heartbeats every healthy peer, re-drains the outbox, refreshes the view, and schedules itself again. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    await this.ctx.storage.setAlarm(now + this.config.heartbeatIntervalMs);
    this.store.metrics.flush();
    try {
      // The control object pushes every change; this pull only heals a missed push.
      await this.applyView(await this.env.CONTROL.getByName("control").getView());
    } catch (error) {
      console.warn(`replica ${this.region}: could not refresh the cluster view:`, error);
    }
    if (isTakenOut(this.view, this.region)) return;
    // Heartbeats go straight to the peers over RPC, not through the queue: a replication
    // backlog must show up as lag (writes known but not applied), never as a dead region.
    const heartbeats = this.peers()
      .filter((target) => !isTakenOut(this.view, target))
      .map(async (target) => {
        const body: HeartbeatMessage = {
          v: WIRE_VERSION,
          kind: "heartbeat",
          origin: this.region,
          target,
          seq: this.seq,
          atMs: now,
        };
        const sent = await withTimeout(
          () => this.env.REPLICA.getByName(target).applyReplication([body]),
          this.config.heartbeatIntervalMs,
        );
        if (sent === null) this.store.metrics.add("replication_heartbeat_failures_total", target, 1);
      });
    await Promise.all([...heartbeats, this.outbox.flush()]);
  }

  /** Records messages for this region that exhausted their retries. */
  async recordDeadLetters(items: Parameters<DeadLetters["record"]>[0]): Promise<void> {
    this.letters.record(items);
  }

  /** The dead letters after `afterId`. */
  async deadLetters(afterId: number, limit: number): ReturnType<DeadLetters["page"]> {
    return this.letters.page(afterId, limit);
  }

  /** Sends a batch of dead letters back to the replication queue, then forgets them. */
  async replayDeadLetters(): ReturnType<DeadLetters["replay"]> {
    return this.letters.replay();
  }
}
