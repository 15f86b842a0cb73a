/**
 * Pure pieces of the replica state machine (`replica-machine.ts`): what a reader sees of a
 * state, how a local write is planned, compare-and-set conditions, and conflict records.
 */
import { compareHlc, formatHlc, type HlcStamp, hlcNow } from "../hlc.ts";
import { type Result, fail, ok } from "../errors.ts";
import { orsetMembers } from "../crdt/or-set.ts";
import { pnValue } from "../crdt/pn-counter.ts";
import { type RegionId } from "../regions.ts";
import { EMPTY_VV, type VersionVector } from "../version-vector.ts";
import { lwwEmpty } from "../crdt/lww-register.ts";
import { type TaggedConflict } from "./epochs.ts";
import {
  type KeyOp,
  type KeyState,
  applyKeyOp,
  encodeKeyState,
  keyIsLive,
  keyVersion,
  withOwnCounter,
} from "./key-state.ts";

/**
 * Largest encoded state carried inside a replication message. Queue messages are limited to
 * 128 KB; larger states (big values) travel by reference and the target pulls them from the
 * origin replica over RPC.
 */
export const INLINE_STATE_BYTES_MAX = 96 * 1024;

/** What a reader sees of a key. */
export type KeyView =
  | {
      readonly type: "register";
      readonly version: string;
      readonly live: boolean;
      readonly stamp: string;
      readonly contentType: string;
      /** Null for a deleted key, and for one whose expiration has passed by the reader's clock. */
      readonly value: Uint8Array | null;
      /** The writer's metadata (JSON text), or null. */
      readonly metadata: string | null;
      /** When the value expires (unix seconds), or null. */
      readonly expirationSeconds: number | null;
    }
  | { readonly type: "counter"; readonly version: string; readonly value: number }
  | { readonly type: "set"; readonly version: string; readonly members: string[] };

/**
 * The reader's view of a state at `nowMs` (the reader's clock): an expired register reads as
 * absent. Fails with `counter_overflow` for a counter beyond the safe range.
 */
export function keyView(state: KeyState, nowMs: number): Result<KeyView> {
  const version = keyVersion(state);
  switch (state.type) {
    case "register": {
      const r = state.register;
      const live = keyIsLive(state, nowMs);
      return ok({
        type: "register",
        version,
        live,
        stamp: formatHlc(r.stamp),
        contentType: r.contentType,
        value: live ? r.value : null,
        metadata: live ? r.metadata : null,
        expirationSeconds: live ? r.expirationSeconds : null,
      });
    }
    case "counter": {
      const value = pnValue(state.counter);
      return value.ok ? ok({ type: "counter", version, value: value.value }) : value;
    }
    case "set":
      return ok({ type: "set", version, members: orsetMembers(state.set) });
  }
}

/** The outcome of a local write: the new state, its encoding, and the outbox entry. */
export interface PlannedWrite {
  readonly state: KeyState;
  readonly encoded: Uint8Array;
  readonly stamp: HlcStamp;
  readonly seq: number;
  /** The state to inline in replication messages, or null when peers must pull it. */
  readonly logState: Uint8Array | null;
}

/**
 * Plans a local write: draws the next stamp from the clock (`lastStamp`), applies `op`, and
 * assigns the next sequence number. Nothing changes on failure.
 */
export function planWrite(
  current: KeyState | undefined,
  op: KeyOp,
  region: RegionId,
  lastStamp: HlcStamp,
  lastSeq: number,
  physicalMs: number,
  absentContext: VersionVector = EMPTY_VV,
  life = 0,
): Result<PlannedWrite> {
  // A register may hold a stamp from a region whose clock runs ahead (merged by a repair or a
  // session fetch, which do not move this clock): the write must still order after it, or a
  // causally later write would lose to the value it overwrote.
  const held = current?.type === "register" ? current.register.stamp : undefined;
  const floor = held !== undefined && compareHlc(held, lastStamp) > 0 ? { ...held, region } : lastStamp;
  const stamp = hlcNow(floor, physicalMs);
  // The write's dot takes this region's next sequence number (see `withOwnCounter`).
  const base =
    current === undefined || current.type === op.type
      ? withOwnCounter(current, op.type, region, lastSeq, absentContext)
      : current;
  const next = applyKeyOp(base, op, region, stamp, life);
  if (!next.ok) return next;
  const encoded = encodeKeyState(next.value);
  return ok({
    state: next.value,
    encoded,
    stamp,
    seq: lastSeq + 1,
    logState: encoded.length <= INLINE_STATE_BYTES_MAX ? encoded : null,
  });
}

/** A conflict ready to store: both sides encoded, with the stamps that identify it. */
export interface ConflictRecord {
  readonly kind: "register" | "type" | "fenced";
  readonly rule: string;
  readonly winnerStamp: string;
  readonly loserStamp: string;
  readonly winner: Uint8Array;
  readonly loser: Uint8Array;
}

/** The stored form of a conflict a merge reported. */
export function conflictRecord(conflict: TaggedConflict): ConflictRecord {
  switch (conflict.kind) {
    case "register": {
      const { winner, loser, rule } = conflict.conflict;
      return {
        kind: "register",
        rule,
        winnerStamp: formatHlc(winner.stamp),
        loserStamp: formatHlc(loser.stamp),
        winner: encodeKeyState({ type: "register", register: winner }),
        loser: encodeKeyState({ type: "register", register: loser }),
      };
    }
    case "type":
      return {
        kind: "type",
        rule: "type_rank",
        winnerStamp: `${conflict.winner.type}:${keyVersion(conflict.winner)}`,
        loserStamp: `${conflict.loser.type}:${keyVersion(conflict.loser)}`,
        winner: encodeKeyState(conflict.winner),
        loser: encodeKeyState(conflict.loser),
      };
    case "fenced":
      return fencedRecord(conflict.winner.state, conflict.winner.epoch, conflict.loser.state, conflict.loser.epoch);
  }
}

/**
 * The record of content from an older epoch that was refused or dropped: `winner` is what the
 * replica keeps (undefined when it holds nothing for the key).
 */
export function fencedRecord(
  winner: KeyState | undefined,
  winnerEpoch: number,
  loser: KeyState,
  loserEpoch: number,
): ConflictRecord {
  const kept = winner ?? { type: "register", register: lwwEmpty() };
  return {
    kind: "fenced",
    rule: "stale_epoch",
    winnerStamp: `epoch ${winnerEpoch}:${keyVersion(kept)}`,
    loserStamp: `epoch ${loserEpoch}:${keyVersion(loser)}`,
    winner: encodeKeyState(kept),
    loser: encodeKeyState(loser),
  };
}

/** Conditions of a compare-and-set write (HTTP `If-Match` / `If-None-Match: *`). */
export interface WriteConditions {
  /** The write applies only if the key is live (`*`), or live at one of these versions. */
  readonly ifMatch?: "*" | readonly string[];
  /** The write applies only if the key is absent or deleted. */
  readonly ifNoneMatch?: boolean;
}

/** Checks CAS conditions against the key's current state; `precondition_failed` when they do not hold. */
export function checkConditions(
  current: KeyState | undefined,
  conditions: WriteConditions,
  nowMs: number,
): Result<null> {
  // An expired value is absent, as a read at this moment would answer.
  const live = current !== undefined && keyIsLive(current, nowMs);
  const version = current === undefined ? null : keyVersion(current);
  if (conditions.ifNoneMatch === true && live) {
    return fail("precondition_failed", "If-None-Match: * but the key exists", { version });
  }
  const wanted = conditions.ifMatch;
  if (wanted !== undefined && (!live || (wanted !== "*" && !wanted.includes(version ?? "")))) {
    const named =
      wanted === "*" ? "*" : wanted.length === 0 ? "(only weak tags, which never match)" : wanted.join(", ");
    return fail(
      "precondition_failed",
      `If-Match ${named} but the key is ${live ? `at version ${version}` : "absent"}`,
      {
        version: live ? version : null,
      },
    );
  }
  return ok(null);
}
