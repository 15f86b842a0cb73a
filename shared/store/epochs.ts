/**
 * Fencing for strong (single-leader) prefixes, as one rule every merge path applies.
 *
 * Each stored state of a key under a strong prefix carries the epoch of the primary that wrote
 * or recovered it. A failover to epoch E makes the new primary merge the prefix from a quorum of
 * replicas that already know E, then re-log every key it holds under E (`recovery.ts`). So a
 * state tagged E includes everything legitimate from older epochs, and:
 *
 * - merging orders states by epoch first (a higher epoch replaces a lower one) and merges CRDTs
 *   only within one epoch: a lexicographic join, still commutative, associative and idempotent;
 * - content from an older epoch arriving at a replica that knows E is never merged: it is a
 *   duplicate (already included), or it waits until the replica has taken in the new
 *   primary's recovered state, after which it is refused and logged as `fenced`.
 *
 * Together these make a deposed primary's late writes vanish everywhere, counters and sets
 * included, while every write a quorum acknowledged survives.
 */
import { vvDescends } from "../version-vector.ts";
import { type KeyConflict, type KeyState, keyVv, mergeKeyState } from "./key-state.ts";
import { type PrimaryRecord } from "./storage.ts";

/** A key state with the epoch it belongs to (0 outside strong prefixes). */
export interface TaggedState {
  readonly state: KeyState;
  readonly epoch: number;
}

/** A conflict found by a tagged merge: a CRDT conflict within one epoch, or content of an older epoch dropped. */
export type TaggedConflict =
  | KeyConflict
  | { readonly kind: "fenced"; readonly winner: TaggedState; readonly loser: TaggedState };

/** Whether `a` already includes every write of `b`. */
export function includes(a: KeyState, b: KeyState): boolean {
  return a.type === b.type && vvDescends(keyVv(a), keyVv(b));
}

/**
 * Merges `remote` into `local`: the higher epoch wins outright, equal epochs merge as CRDTs.
 * A state dropped for its older epoch is reported as a `fenced` conflict unless the winner
 * already includes it.
 */
export function mergeTagged(
  local: TaggedState | undefined,
  remote: TaggedState,
): { merged: TaggedState; conflict?: TaggedConflict } {
  if (local === undefined) return { merged: remote };
  if (local.epoch === remote.epoch) {
    const { state, conflict } = mergeKeyState(local.state, remote.state);
    const merged = { state, epoch: local.epoch };
    return conflict === undefined ? { merged } : { merged, conflict };
  }
  const [winner, loser] = local.epoch > remote.epoch ? [local, remote] : [remote, local];
  if (includes(winner.state, loser.state)) return { merged: winner };
  return { merged: winner, conflict: { kind: "fenced", winner, loser } };
}

/** What to do with content of a key that arrives from elsewhere. */
export type EpochVerdict =
  /** Merge it (not a strong key, or an epoch at least as new as the one known here). */
  | "merge"
  /** An older epoch, but already included here: nothing to do, and nothing lost. */
  | "duplicate"
  /** An older epoch, and this replica has not yet taken in the new primary's recovered state: ask again later. */
  | "wait"
  /** An older epoch that the new primary did not keep: refuse it and log it. */
  | "fence";

/**
 * Judges content tagged `epoch` for a key whose prefix this replica knows as `known`
 * (undefined outside strong prefixes), given what it holds for the key.
 */
export function judgeEpoch(
  known: PrimaryRecord | undefined,
  epoch: number,
  local: TaggedState | undefined,
  remote: KeyState,
): EpochVerdict {
  if (known === undefined || epoch >= known.epoch) return "merge";
  if (local !== undefined && local.epoch >= epoch && includes(local.state, remote)) return "duplicate";
  return known.settledEpoch < known.epoch ? "wait" : "fence";
}
