/**
 * Drains a replica's outbox into the replication queue. Rows leave the outbox only once every
 * peer has confirmed applying them (bounded: see {@link OUTBOX_KEPT_MAX}); what a peer leaves
 * unconfirmed too long is sent again. Writes for a peer an operator took out are held here
 * until it is back, so they do not burn queue retries, but only up to {@link HELD_ROWS_MAX}:
 * beyond that they go to the queue anyway, whose consumer parks them until the peer returns.
 * Under local WAN emulation a write also stays until it could have crossed to its peer
 * (`ReplicationQueue.crossingMs`): it is in flight, and nothing waits on its way.
 * One drain runs at a time, and each round reads a bounded number of rows and bytes.
 */
import { type RegionId } from "../regions.ts";
import { isTakenOut } from "./cluster.ts";
import { DRAIN_BYTES_MAX, DRAIN_ROWS_MAX, HELD_ROWS_MAX, messagesFor, sendBatches } from "./outbox.ts";
import { type ReplicaPorts, isAssertion, sleep } from "./ports.ts";
import { type ReplicaMachine } from "./replica-machine.ts";
import { type LogRow, type PeerReport } from "./storage.ts";
import { type EntriesMessage } from "./wire.ts";

/** Drain rounds per flush before yielding (bounds one flush's work; the alarm resumes it). */
const FLUSH_ROUNDS_MAX = 20;

/** How the drain is tuned. */
export interface DrainSettings {
  /** How long writes gather before one message per peer carries them (0: at once). */
  readonly batchMs: number;
  /** Fault injection: every message waits this long in the queue, as over a slow link. */
  readonly delaySeconds: number;
  /** Whether each message also goes straight to its target over RPC (the queue stays the durable path). */
  readonly directPush: boolean;
}

/** The drain of one replica's outbox. */
export class Drain {
  /** The drain running now, if any: every caller of `flush` waits for the same one. */
  private running: Promise<void> | undefined;
  private flushAgain = false;
  /** Per peer, the last confirmation seen and since when it has not moved. */
  private readonly confirmations = new Map<RegionId, { seq: number; sinceMs: number; resends: number }>();
  /** Per peer, when a message last left for it: its batch window counts from then. */
  private readonly lastSentMs = new Map<RegionId, number>();
  /** The earliest drain a timer is set for. */
  private wakeMs: number | undefined;
  /** When the first row the last round held back (in flight, or in a batch window) may leave. */
  private heldUntilMs: number | undefined;
  /** Per peer, how far direct pushes have gone (they do not wait for the crossing). */
  private readonly pushed = new Map<RegionId, number>();
  /** Per peer, its direct pushes in the order made: the send watermark moves over the done ones. */
  private readonly pushes = new Map<RegionId, Array<{ to: number; done: boolean }>>();
  /** Per peer, until when pushes are paused after one failed (the queue carries its writes meanwhile). */
  private readonly pushPausedUntil = new Map<RegionId, number>();
  private readonly machine: ReplicaMachine;
  private readonly ports: ReplicaPorts;
  private readonly settings: DrainSettings;

  constructor(machine: ReplicaMachine, ports: ReplicaPorts, settings: DrainSettings) {
    this.machine = machine;
    this.ports = ports;
    this.settings = settings;
  }

  /**
   * Drains a new write: at once when no message left for a peer within the batch window, else
   * when the first peer's window ends. Under load the writes of each window thus travel as one
   * message per peer instead of one each (queue sends and their deliveries cost far more than
   * the rows they carry: batching is what lets replication keep up with the write rate), while
   * a write after a quiet spell waits for nothing.
   */
  schedule(): void {
    const peers = this.machine.peers;
    const windowEndMs = peers.length === 0 ? 0 : Math.min(...peers.map((peer) => this.windowEndMs(peer)));
    this.flushAt(Math.max(this.ports.now(), windowEndMs));
  }

  /** When `peer`'s batch window ends: the next message for it may leave then. */
  private windowEndMs(peer: RegionId): number {
    return (this.lastSentMs.get(peer) ?? Number.NEGATIVE_INFINITY) + this.settings.batchMs;
  }

  /** Drains at `at` (at once when it has passed), unless a drain is already set for no later. */
  private flushAt(at: number): void {
    const now = this.ports.now();
    if (this.wakeMs !== undefined && this.wakeMs <= at && this.wakeMs > now) return;
    if (at <= now) {
      this.ports.background(this.flush());
      return;
    }
    this.wakeMs = at;
    this.ports.background(
      sleep(this.ports, at - now).then(() => {
        if (this.wakeMs === at) this.wakeMs = undefined;
        return this.flush();
      }),
    );
  }

  /**
   * Drains what can be sent now, and again if writes arrive meanwhile; resolves when that is
   * done. Failures are logged and wait for the next tick.
   */
  flush(): Promise<void> {
    if (this.running !== undefined) {
      this.flushAgain = true;
      return this.running;
    }
    this.running = this.drain().finally(() => {
      this.running = undefined;
      if (this.heldUntilMs !== undefined) this.flushAt(this.heldUntilMs);
    });
    return this.running;
  }

  private async drain(): Promise<void> {
    try {
      for (let round = 0; round < FLUSH_ROUNDS_MAX; round += 1) {
        this.flushAgain = false;
        const sent = await this.flushOnce();
        if (!sent && !this.flushAgain) break;
      }
    } catch (error) {
      // A failed send waits for the next tick (or write), not for a window: no fast retry loop.
      this.heldUntilMs = undefined;
      this.machine.storage.metrics.add("replication_send_errors_total", this.machine.region, 1);
      this.ports.warn(`replica ${this.machine.region}: outbox drain failed, will retry`, error);
    }
  }

  private async flushOnce(): Promise<boolean> {
    const { machine } = this;
    const { storage } = machine;
    this.heldUntilMs = undefined;
    if (machine.takenOut()) return false;
    const peers = machine.peers;
    if (peers.length === 0) {
      // A single-region store has no one to send to: the outbox only needs emptying.
      storage.log.prune(Number.MAX_SAFE_INTEGER);
      return false;
    }
    const sent = storage.peerSend.all();
    const sentOf = (peer: RegionId): number => sent.get(peer) ?? 0;
    const out = peers.filter((peer) => isTakenOut(machine.view, peer));
    // Held rows beyond the bound go to the queue too: its consumer parks them.
    // A restored region's numbering starts at its base: rows held are those above it.
    const release =
      out.length > 0 && machine.seq - Math.max(machine.baseSeq, Math.min(...out.map(sentOf))) > HELD_ROWS_MAX;
    const targets = release ? peers : peers.filter((peer) => !out.includes(peer));
    if (targets.length === 0) return false;
    const rows = storage.log.after(Math.min(...targets.map(sentOf)), DRAIN_ROWS_MAX, DRAIN_BYTES_MAX);
    if (rows.length === 0) return false;
    // A fault-injected delay stands for a slow link; a direct push would bypass it.
    const pushing = this.settings.directPush && this.settings.delaySeconds === 0;
    const now = this.ports.now();
    // A full read means a backlog: it drains round after round, with no window between them.
    const backlog = rows.length >= DRAIN_ROWS_MAX;
    const holdUntil = (ms: number): void => {
      this.heldUntilMs = Math.min(this.heldUntilMs ?? Number.POSITIVE_INFINITY, ms);
    };
    const messages = targets.flatMap((peer) => {
      const pending = rows.filter((row) => row.seq > sentOf(peer));
      if (pending.length === 0) return [];
      if (!backlog && this.windowEndMs(peer) > now) {
        holdUntil(this.windowEndMs(peer));
        return [];
      }
      const pushed = pushing && (this.pushPausedUntil.get(peer) ?? 0) <= now ? this.push(peer, pending, now) : false;
      // What the queue carries: with pushes, only what no push delivered within the grace.
      const holdMs = Math.max(this.ports.queue.crossingMs?.(peer) ?? 0, pushing ? PUSH_GRACE_MS : 0);
      // A write from a clock that has since gone back is not held for that long.
      const cut = pending.findIndex((row) => row.writtenMs <= now && row.writtenMs + holdMs > now);
      const held = pending[cut];
      if (held !== undefined) holdUntil(held.writtenMs + holdMs);
      const leaving = cut === -1 ? pending : pending.slice(0, cut);
      if (leaving.length > 0 || pushed) this.lastSentMs.set(peer, now);
      return messagesFor(machine.region, peer, machine.shard, leaving, sentOf(peer), machine.firstWrittenMs);
    });
    if (messages.length === 0) return false;
    for (const batch of sendBatches(messages)) {
      await this.ports.queue.sendBatch(
        batch.map((m) => m.message),
        this.settings.delaySeconds,
      );
      storage.transaction(() => {
        for (const { message } of batch) storage.peerSend.set(message.target, message.to);
      });
    }
    this.prune();
    return true;
  }

  /**
   * Drops outbox rows every peer has confirmed applying (its heartbeats report how far it has
   * applied this region's stream), and beyond {@link OUTBOX_KEPT_MAX} unconfirmed rows the
   * oldest of those the queue has taken: anti-entropy repairs what a lost message leaves out.
   */
  private prune(): void {
    const { machine } = this;
    const { storage } = machine;
    const sent = storage.peerSend.all();
    const reports = storage.peerReports.all();
    const sentAll = Math.min(...machine.peers.map((p) => sent.get(p) ?? 0));
    const confirmedAll = Math.min(...machine.peers.map((p) => confirmedBy(reports.get(p), machine.region)));
    storage.log.prune(Math.min(sentAll, Math.max(confirmedAll, machine.seq - OUTBOX_KEPT_MAX)));
  }

  /**
   * Sends again what a peer has not confirmed for {@link resendAfterMs}: a message lost on the
   * way (or dead-lettered) then costs a resend, not lasting lag. Called from the alarm.
   */
  resendUnconfirmed(): void {
    const { machine, ports } = this;
    const { storage } = machine;
    const now = ports.now();
    const sent = storage.peerSend.all();
    const reports = storage.peerReports.all();
    const waitMs = resendAfterMs(this.settings);
    for (const peer of machine.peers) {
      if (isTakenOut(machine.view, peer)) continue;
      const confirmed = confirmedBy(reports.get(peer), machine.region);
      const seen = this.confirmations.get(peer);
      if (seen === undefined || confirmed > seen.seq) {
        this.confirmations.set(peer, { seq: confirmed, sinceMs: now, resends: 0 });
        continue;
      }
      const outstanding = (sent.get(peer) ?? 0) > confirmed;
      // Backs off while the peer keeps not confirming; a peer not heard lately is not sent to
      // again at all (its own recovery, or anti-entropy, will cover what it lacks).
      const due = seen.sinceMs + waitMs * 2 ** Math.min(seen.resends, RESEND_BACKOFF_MAX);
      const heard = now - storage.peerRecv.get(peer).heardMs <= waitMs;
      if (!outstanding || now < due || !heard) continue;
      storage.transaction(() => storage.peerSend.rewind(peer, confirmed));
      storage.metrics.add("replication_resends_total", peer, 1);
      this.confirmations.set(peer, { seq: confirmed, sinceMs: now, resends: seen.resends + 1 });
    }
    this.prune();
  }

  /** Sends again, with the next drain, everything `peer` has not confirmed applying. */
  resendTo(peer: RegionId): void {
    const { storage } = this.machine;
    const confirmed = confirmedBy(storage.peerReports.all().get(peer), this.machine.region);
    if ((storage.peerSend.all().get(peer) ?? 0) <= confirmed) return;
    storage.transaction(() => storage.peerSend.rewind(peer, confirmed));
    storage.metrics.add("replication_resends_total", peer, 1);
  }

  /**
   * The fast path (`directPush`): the rows of `pending` not pushed yet go straight to `peer` at
   * once (its stub supplies any crossing), in the background. A push the peer applied moves the
   * send watermark, so the queue never carries those rows; one that failed pauses pushes to the
   * peer for {@link PUSH_GRACE_MS}, and the queue carries what was not delivered. Several pushes
   * may be in flight; the watermark moves over those done, in order. True when it pushed.
   */
  private push(peer: RegionId, pending: readonly LogRow[], now: number): boolean {
    const { machine } = this;
    // A peer that answers none of them gets no more: the queue carries its writes.
    if ((this.pushes.get(peer)?.length ?? 0) >= PUSHES_IN_FLIGHT_MAX) return false;
    const from = Math.max(pending[0]?.seq ?? 1, (this.pushed.get(peer) ?? 0) + 1) - 1;
    const messages = messagesFor(machine.region, peer, machine.shard, pending, from, machine.firstWrittenMs).map(
      (m) => m.message,
    );
    const last = messages.at(-1);
    if (last === undefined) return false;
    this.pushed.set(peer, last.to);
    const record = { to: last.to, done: false };
    const inFlight = this.pushes.get(peer) ?? [];
    inFlight.push(record);
    this.pushes.set(peer, inFlight);
    this.ports.background(this.deliver(peer, messages, record, now));
    return true;
  }

  private async deliver(
    peer: RegionId,
    messages: readonly EntriesMessage[],
    record: { to: number; done: boolean },
    sentMs: number,
  ): Promise<void> {
    const { storage } = this.machine;
    try {
      const results = await this.ports.peer(peer).applyReplication(messages);
      const refused = results.find((r) => !r.ok);
      if (refused !== undefined && !refused.ok) throw new Error(`${refused.error.code}: ${refused.error.message}`);
      record.done = true;
      const inFlight = this.pushes.get(peer) ?? [];
      let upTo: number | undefined;
      while (inFlight[0]?.done === true) upTo = (inFlight.shift() as { to: number }).to;
      if (upTo !== undefined) {
        const to = upTo;
        storage.transaction(() => storage.peerSend.set(peer, to));
      }
    } catch (error) {
      if (isAssertion(error)) throw error;
      // What is in flight to it is left to the queue; pushes resume from what it has.
      this.pushes.delete(peer);
      this.pushed.delete(peer);
      this.pushPausedUntil.set(peer, sentMs + PUSH_GRACE_MS);
      this.ports.warn(`replica ${this.machine.region}: direct push to ${peer} failed; the queue will deliver`, error);
    }
  }
}

/** How far `report`'s region has confirmed applying `origin`'s stream (0 without a report). */
function confirmedBy(report: PeerReport | undefined, origin: RegionId): number {
  return report?.applied[origin] ?? 0;
}

/**
 * With direct pushes, how long a write waits for its push before the queue carries it: well
 * beyond any round trip between regions, so a push that succeeds saves the queue's copy.
 */
export const PUSH_GRACE_MS = 2000;

/** Direct pushes to one peer that may be unanswered at once. */
const PUSHES_IN_FLIGHT_MAX = 32;

/** Unconfirmed rows kept at most: past this the oldest sent ones go, and anti-entropy covers. */
export const OUTBOX_KEPT_MAX = 100_000;

/** How long a peer may leave sent writes unconfirmed before they are sent again. */
export function resendAfterMs(settings: DrainSettings): number {
  return RESEND_AFTER_MS + settings.delaySeconds * 1000;
}

/** Base of {@link resendAfterMs}: well past a queue delivery's usual retries. */
const RESEND_AFTER_MS = 30_000;
/** Resends without a confirmation double the wait, up to 2^this times the base (about 32 minutes). */
const RESEND_BACKOFF_MAX = 6;
