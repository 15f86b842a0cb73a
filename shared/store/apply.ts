/**
 * Merging what other regions send: entries of a peer's ordered stream (at least once, in any
 * order), single writes pushed for synchronous acks, and whole states (read repair, session
 * fetches). Every path goes through one merge, {@link mergeInto}, which applies the fencing rule
 * of `epochs.ts`; only the stream moves the per-peer progress that lag and sessions rely on.
 */
import { assert } from "../assert.ts";
import { DecodeError, equalBytes } from "../bytes.ts";
import { type Result, fail, ok } from "../errors.ts";
import { type HlcStamp, formatHlc, hlcReceive, parseHlc } from "../hlc.ts";
import { EMPTY_VV, type VersionVector, vvFrom, vvMerge } from "../version-vector.ts";
import { type Applied, type KeySnapshot } from "./contract.ts";
import { judgeEpoch, mergeTagged } from "./epochs.ts";
import { collectable, gated, recordReport } from "./gc.ts";
import { type KeyState, decodeKeyState, encodeKeyState, keyIsLive } from "./key-state.ts";
import { progressAccepts, progressApplied, progressHeartbeat } from "./progress.ts";
import { type ConflictRecord, conflictRecord, fencedRecord } from "./replica-core.ts";
import { type ReplicaMachine, Refusal, refusable, vectorOf } from "./replica-machine.ts";
import { type ReplicaStorage, type StoredKey } from "./storage.ts";
import { putKey } from "./tree.ts";
import { placement } from "./layout.ts";
import {
  type EntriesMessage,
  type HeartbeatMessage,
  type ReplicationMessage,
  replicationMessageSchema,
} from "./wire.ts";

/** What merging one piece of content into a key did. */
export type MergeOutcome = "merged" | "unchanged" | "duplicate" | "wait" | "fenced";

/**
 * How a state for a key this replica does not hold is judged against collection (`gc.ts`):
 * `copy` (the stream and pushes, which may be late or duplicated): dropped when it holds only
 * writes every region merged long ago, a late copy of a collected key; `repair` (a peer's
 * state: anti-entropy, fetches, read repair): the same once this replica is ready, while it is
 * new (and so lacks what its horizon covers) only a tombstone it would collect; `keep`: never.
 */
export type LateCopyRule = "copy" | "repair" | "keep";

function lateCopy(machine: ReplicaMachine, remote: KeyState, seqs: VersionVector, rule: LateCopyRule): boolean {
  if (rule === "copy") return gated(machine, seqs);
  // A replica that holds everything merged within its horizon (it is not new) knows a current
  // state within it for a key it lacks can only be an old answer about a collected key.
  if (rule === "repair")
    return machine.bootstrapping ? !keyIsLive(remote) && collectable(machine, seqs) : gated(machine, seqs);
  return false;
}

/**
 * Merges `remote` (tagged `epoch`, including the origin writes `seqs`) into the stored key and
 * logs any conflict; call inside a transaction. `fenceLog` says whether content refused for its
 * old epoch is logged (stream entries) or skipped quietly (whole states, whose writes the stream
 * logs on its own). "fenced" also when the merge kept the stored state for its newer epoch and
 * dropped the remote one: that content is not applied here, so it must never count as an ack.
 * `rule` says how a state for a key this replica collected is judged ({@link LateCopyRule}).
 * `read` is the stored key when the caller read it already in this transaction (a page's keys in
 * one statement), else it is read here.
 */
export function mergeInto(
  machine: ReplicaMachine,
  key: string,
  remote: KeyState,
  epoch: number,
  seqs: VersionVector,
  from: string,
  nowMs: number,
  fenceLog: boolean,
  rule: LateCopyRule,
  read?: StoredKey | null,
): MergeOutcome {
  const { storage } = machine;
  // A key that moved to another shard (`layout.ts`) and whose move is done: whatever still
  // arrives for it here (a late duplicate, an anti-entropy peer not yet cleaned up) is a copy
  // of what its new shard holds, and is not kept.
  const layout = machine.layout;
  if (layout.from === null && placement(key, layout, machine.shard).kind === "elsewhere") return "duplicate";
  const stored = read === undefined ? storage.kv.get(key) : read;
  if (stored === null && lateCopy(machine, remote, seqs, rule)) {
    storage.metrics.add("gc_late_copies_dropped_total", from, 1);
    return "duplicate";
  }
  const local =
    stored === null ? undefined : { state: decodeKeyState(stored.encoded), epoch: machine.epochOf(key, stored.epoch) };
  const verdict = judgeEpoch(machine.strongOf(key)?.known, epoch, local, remote);
  if (verdict === "wait") return "wait";
  if (verdict === "fence") {
    if (fenceLog) logFenced(machine, key, local, remote, epoch, from, nowMs);
    return "fenced";
  }
  const mergedSeqs = vvMerge(stored?.seqs ?? EMPTY_VV, seqs);
  if (verdict === "duplicate") {
    if (stored !== null && local !== undefined)
      putKey(storage, key, stored, local.state, stored.encoded, mergedSeqs, local.epoch);
    return "duplicate";
  }
  const { merged, conflict } = mergeTagged(local, { state: remote, epoch });
  const encoded = encodeKeyState(merged.state);
  const changed = stored === null || stored.epoch !== merged.epoch || !equalBytes(encoded, stored.encoded);
  putKey(storage, key, stored, merged.state, encoded, mergedSeqs, merged.epoch);
  if (conflict !== undefined) {
    logConflict(storage, key, conflictRecord(conflict), from, nowMs);
    if (conflict.kind === "fenced" && conflict.loser.state === remote) return "fenced";
  }
  return changed ? "merged" : "unchanged";
}

/** Logs content of an older epoch that this replica refused. */
function logFenced(
  machine: ReplicaMachine,
  key: string,
  local: { state: KeyState; epoch: number } | undefined,
  remote: KeyState,
  epoch: number,
  from: string,
  nowMs: number,
): void {
  logConflict(machine.storage, key, fencedRecord(local?.state, local?.epoch ?? 0, remote, epoch), from, nowMs);
}

/**
 * Writes a conflict to the log and counts it: `conflicts_total` counts every entry the log
 * shows, whatever its kind, and fenced ones are also `replication_fenced_total`. `peer` is
 * the region whose write arrived. A duplicate (already logged) counts nothing.
 */
export function logConflict(
  storage: ReplicaStorage,
  key: string,
  record: ConflictRecord,
  peer: string,
  nowMs: number,
): void {
  if (!storage.conflicts.insert({ key, detectedMs: nowMs, ...record })) return;
  storage.metrics.add("conflicts_total", peer, 1);
  if (record.kind === "fenced") storage.metrics.add("replication_fenced_total", peer, 1);
}

/** Deferred writes judged per settle step. */
const DEFERRED_PAGE_MAX = 1000;

/**
 * Judges the writes of older epochs kept aside while this replica was taking in the new
 * primary's recovered prefix, now that it has (call inside the settle's transaction): those
 * the recovered state includes were kept, and are dropped quietly; the others are refused and
 * logged. True when none is left.
 */
export function judgeDeferred(machine: ReplicaMachine, prefix: string, nowMs: number): boolean {
  const { storage } = machine;
  const rows = storage.deferred.page(prefix, DEFERRED_PAGE_MAX);
  for (const row of rows) {
    const outcome = mergeInto(
      machine,
      row.key,
      decodeKeyState(row.state),
      row.epoch,
      EMPTY_VV,
      row.origin,
      nowMs,
      true,
      "keep",
    );
    assert(outcome !== "wait", "a settled prefix judges every older epoch");
  }
  storage.deferred.delete(rows.map((r) => r.id));
  return rows.length < DEFERRED_PAGE_MAX;
}

/** Parses a replication message addressed to this replica; `invalid_body` otherwise. */
export function parseMessage(machine: ReplicaMachine, body: unknown): Result<ReplicationMessage> {
  const parsed = replicationMessageSchema.safeParse(body);
  if (!parsed.success) return fail("invalid_body", `malformed replication message: ${parsed.error.message}`);
  const message = parsed.data;
  if (
    message.target !== machine.region ||
    message.shard !== machine.shard ||
    message.origin === machine.region ||
    !machine.settings.regions.includes(message.origin)
  )
    return fail(
      "invalid_body",
      `message from ${message.origin} for ${message.target}:${message.shard} reached ${machine.region}:${machine.shard}`,
    );
  return ok(message);
}

/** Folds in a peer's heartbeat. */
export function applyHeartbeat(machine: ReplicaMachine, message: HeartbeatMessage, nowMs: number): Result<Applied> {
  if (machine.takenOut()) return machine.unavailable();
  const { storage } = machine;
  storage.transaction(() => {
    const progress = progressHeartbeat(
      storage.peerRecv.get(message.origin),
      message.seq,
      message.atMs,
      message.firstMs,
      nowMs,
      message.baseSeq,
      message.priorSeq,
    );
    storage.peerRecv.put(message.origin, progress);
    if (message.applied !== undefined)
      recordReport(
        machine,
        message.origin,
        {
          seq: message.seq,
          applied: message.applied,
          heardMs: nowMs,
          baseSeq: message.baseSeq,
          priorSeq: message.priorSeq,
        },
        vectorOf(message.horizon),
      );
    storage.metrics.add("replication_heartbeats_total", message.origin, 1);
  });
  return ok({ fenced: 0 });
}

/**
 * A large state pulled from a message's origin: its current state of the key with the origin
 * sequence numbers it holds (`seqs`), or null when it no longer has the key.
 */
export type Pulled = { readonly state: Uint8Array; readonly epoch: number; readonly seqs: VersionVector } | null;

/**
 * An entry's content: its state, epoch and the origin sequence numbers it holds beyond the
 * entry's own (a pulled state is the origin's current one, which may hold later writes), or null
 * when it is gone (its origin dropped the key).
 */
export type EntryContent = { readonly state: KeyState; readonly epoch: number; readonly seqs: VersionVector } | null;

/**
 * Decodes the content of a message's entries. `pulled` fills those too large to inline, with
 * the epoch of the state the origin holds now (it may have re-logged it under a newer epoch).
 */
export function entryStates(
  machine: ReplicaMachine,
  message: EntriesMessage,
  pulled: ReadonlyMap<number, Pulled>,
): Result<EntryContent[]> {
  const out: EntryContent[] = [];
  for (const entry of message.entries) {
    const epoch = machine.epochOf(entry.key, entry.epoch ?? 0);
    let bytes = entry.state;
    let stateEpoch = epoch;
    let seqs = EMPTY_VV;
    if (bytes === null) {
      const got = pulled.get(entry.seq);
      if (got === undefined) return fail("invalid_body", `the state of ${entry.key} was neither inline nor pulled`);
      if (got === null) {
        // Only a strong prefix's settling or recovery ever drops a key (and logs the drop);
        // anywhere else the origin must still have it, so ask again later.
        if (machine.strongOf(entry.key) === undefined)
          return fail("not_found", `origin ${message.origin} no longer has ${entry.key}`);
        out.push(null);
        continue;
      }
      bytes = got.state;
      stateEpoch = machine.epochOf(entry.key, got.epoch);
      seqs = got.seqs;
    }
    try {
      out.push({ state: decodeKeyState(bytes), epoch: stateEpoch, seqs });
    } catch (error) {
      if (error instanceof DecodeError)
        return fail("invalid_body", `undecodable state for ${entry.key}: ${error.message}`);
      throw error;
    }
  }
  return ok(out);
}

/**
 * Applies an entries message, all or nothing, in one transaction. `stream` true: it is part of
 * the origin's ordered stream, so the origin's progress moves (and a message that would open too
 * many gaps is refused for later). False: a synchronous-ack push, which merges the same way but
 * leaves progress to the stream's own delivery of the write.
 */
export function applyEntries(
  machine: ReplicaMachine,
  message: EntriesMessage,
  contents: readonly EntryContent[],
  nowMs: number,
  stream: boolean,
): Result<Applied> {
  if (machine.takenOut()) return machine.unavailable();
  const { storage } = machine;
  const origin = message.origin;
  let clock: HlcStamp = machine.clock;
  /** Delays of the entries this message made visible (counted once it commits). */
  const visible: number[] = [];
  const result = refusable(storage, (): Result<Applied> => {
    // Checked inside the transaction: another message may have filled or opened gaps while
    // this one's large states were being pulled.
    if (stream && !progressAccepts(storage.peerRecv.get(origin), message.from, message.to))
      return fail("overloaded", `too many gaps in ${origin}'s stream; retry once earlier messages arrive`);
    for (const entry of message.entries) {
      const stamp = parseHlc(entry.stamp);
      if (stamp === undefined) return fail("invalid_body", `bad stamp ${entry.stamp}`);
      const received = hlcReceive(clock, stamp, nowMs);
      if (!received.ok) return { ok: false, error: received.error };
      clock = received.stamp;
    }
    let fenced = 0;
    let bytes = 0;
    visible.length = 0;
    const report = storage.peerReports.all().get(origin);
    message.entries.forEach((entry, i) => {
      const content = contents[i] as EntryContent;
      bytes += entry.state?.length ?? 0;
      // A write of the origin's lost life that no region held when it was restored: every
      // replica drops it alike (it was acknowledged, if at all, under ack=local, whose promise
      // ended with the origin's disk), so that no new write of the origin is merged under it.
      if (report !== undefined && entry.seq > report.priorSeq && entry.seq <= report.baseSeq) {
        storage.metrics.add("replication_lost_life_dropped_total", origin, 1);
        return;
      }
      if (content === null) {
        fenced += 1;
        return;
      }
      const strong = machine.strongOf(entry.key);
      // A newer epoch than known means the control object's push has not arrived yet.
      if (strong !== undefined && content.epoch > (strong.known?.epoch ?? 0))
        machine.advanceEpoch(strong.prefix, origin, content.epoch);
      const seqs = vvMerge(vvFrom([[origin, entry.seq]]), content.seqs);
      const outcome = mergeInto(machine, entry.key, content.state, content.epoch, seqs, origin, nowMs, true, "copy");
      if (outcome === "wait") {
        // A synchronous push is simply not applied (it does not count as an ack). The stream
        // must not stall on it: the new primary's re-log may come later in this very stream.
        if (!stream)
          throw new Refusal({
            code: "primary_unavailable",
            message: `"${entry.key}" comes from an older epoch of its prefix while this region takes in the new primary's state`,
          });
        storage.deferred.add({
          prefix: (strong as { prefix: string }).prefix,
          key: entry.key,
          origin,
          epoch: content.epoch,
          state: encodeKeyState(content.state),
        });
        return;
      }
      if (outcome === "fenced") fenced += 1;
      if (outcome === "merged") visible.push(nowMs - entry.writtenMs);
    });
    if (stream) {
      const last = message.entries.at(-1) as (typeof message.entries)[number];
      const progress = progressApplied(
        storage.peerRecv.get(origin),
        message.from,
        message.to,
        last.writtenMs,
        message.firstMs,
        nowMs,
      );
      storage.peerRecv.put(origin, progress);
      storage.metrics.add("replication_messages_total", origin, 1);
      storage.metrics.add("replication_entries_total", origin, message.entries.length);
      storage.metrics.add("replication_bytes_total", origin, bytes);
    } else storage.metrics.add("replication_pushes_total", origin, 1);
    // Every entry merged here, however it came: the object's share of the store's write load.
    if (visible.length > 0) storage.metrics.add("writes_applied_total", origin, visible.length);
    storage.meta.set("clock", formatHlc(clock));
    return ok({ fenced });
  });
  if (result.ok) {
    machine.observed(clock);
    for (const ms of visible) machine.delays.record(origin, ms);
  }
  return result;
}

/**
 * Merges a key's state pulled or handed over from its old shard while keys move between shards
 * (`layout.ts`). Its stream positions are the old shard's numbering, so none are kept here; and
 * it is never taken for a late copy of a collected key (this shard may never have held it).
 */
export function mergeMoved(machine: ReplicaMachine, key: string, snapshot: KeySnapshot, nowMs: number): boolean {
  if (snapshot.state === null) return false;
  const remote = decodeKeyState(snapshot.state);
  const outcome = machine.storage.transaction(() =>
    mergeInto(machine, key, remote, snapshot.epoch, EMPTY_VV, "reshard", nowMs, false, "keep"),
  );
  return outcome === "merged";
}

/**
 * Merges a whole state of `key` from `from` (read repair, a session fetch), fenced like
 * everything else. True when the stored key changed.
 */
export function mergeSnapshot(
  machine: ReplicaMachine,
  key: string,
  snapshot: KeySnapshot,
  from: string,
  nowMs: number,
): boolean {
  if (snapshot.state === null) return false;
  const remote = decodeKeyState(snapshot.state);
  const outcome = machine.storage.transaction(() =>
    mergeInto(machine, key, remote, snapshot.epoch, snapshot.seqs, from, nowMs, false, "repair"),
  );
  return outcome === "merged";
}
