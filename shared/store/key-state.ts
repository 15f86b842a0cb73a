/**
 * The state of one key: exactly one of the store's data types, each a CRDT from `crdt/`.
 * A key's type is fixed at its first write and kept by its tombstone, so merging states of one
 * key never has to reconcile two types, except when two regions create the same key as
 * different types concurrently; that rare case is settled by a fixed type rank (a total order,
 * so merge stays a semilattice join) and reported as a conflict.
 */
import { ByteReader, ByteWriter, DecodeError } from "../bytes.ts";
import {
  type LwwConflict,
  type LwwOp,
  type LwwRegister,
  lwwApply,
  lwwEmpty,
  lwwExpired,
  lwwMergeReport,
  readLww,
  writeLww,
} from "../crdt/lww-register.ts";
import { type OrSet, orsetApply, orsetEmpty, orsetMerge, readOrset, writeOrset } from "../crdt/or-set.ts";
import { type PnCounter, pnApply, pnEmpty, pnHasLives, pnMerge, readPn, writePn } from "../crdt/pn-counter.ts";
import { type Result, fail, ok } from "../errors.ts";
import { type HlcStamp } from "../hlc.ts";
import { type RegionId } from "../regions.ts";
import { EMPTY_VV, type VersionVector, formatVv, vvCompare, vvFrom, vvGet, vvMerge } from "../version-vector.ts";

/** The data types a key can hold. */
export type KeyType = "register" | "counter" | "set";

/** One key's state, tagged by type. */
export type KeyState =
  | { readonly type: "register"; readonly register: LwwRegister }
  | { readonly type: "counter"; readonly counter: PnCounter }
  | { readonly type: "set"; readonly set: OrSet };

/** A local operation on a key; its kind decides the key's type. */
export type KeyOp =
  | { readonly type: "register"; readonly op: LwwOp }
  | { readonly type: "counter"; readonly delta: number }
  | { readonly type: "set"; readonly add: readonly string[]; readonly remove: readonly string[] };

/** A conflict found while merging: concurrent register writes, or concurrent creation as two types. */
export type KeyConflict =
  | { readonly kind: "register"; readonly conflict: LwwConflict }
  | { readonly kind: "type"; readonly winner: KeyState; readonly loser: KeyState };

/**
 * Rank used only when two regions created one key as different types concurrently: the higher
 * rank wins. Registers rank highest because a lost register write is the costliest to lose
 * silently; the loser is reported either way.
 */
const TYPE_RANK: Readonly<Record<KeyType, number>> = { counter: 0, set: 1, register: 2 };
const TYPE_TAG: Readonly<Record<KeyType, number>> = { register: 1, counter: 2, set: 3 };
/** A counter with totals from a region's later life (`PnCounter.lives`): rare, so tagged apart. */
const COUNTER_LIVES_TAG = 4;

/** The causal context of a key's state. */
export function keyVv(state: KeyState): VersionVector {
  switch (state.type) {
    case "register":
      return state.register.vv;
    case "counter":
      return state.counter.vv;
    case "set":
      return state.set.vv;
  }
}

/** The key's version: the compact text of its vector, equal exactly when two replicas saw the same writes. */
export function keyVersion(state: KeyState): string {
  return formatVv(keyVv(state));
}

/**
 * Whether the key reads as present: a live register, or any counter or set that was ever
 * written. With `nowMs`, a register whose expiration has passed by then is not.
 */
export function keyIsLive(state: KeyState, nowMs?: number): boolean {
  if (state.type !== "register") return true;
  return state.register.value !== null && (nowMs === undefined || !lwwExpired(state.register, nowMs));
}

function typeMismatch<T>(existing: KeyType, wanted: KeyType): Result<T> {
  return fail("type_mismatch", `this key holds a ${existing}; it cannot be used as a ${wanted}`, {
    type: existing,
  });
}

/**
 * The key's state (or, when never written, the empty state of `type`) with `region`'s entry of
 * its vector raised to at least `atLeast`. A local write applied to it takes the next number
 * after that, so passing the region's write sequence number makes every dot a region ever
 * issues unique, even after a newer epoch's state replaced the region's own copy of the key
 * (which can lower that entry): a version, and so an ETag, never names two different writes.
 * A key not held starts from `context`: the writes every region has merged (`gc.ts`), so a
 * write after a collected delete descends from it.
 */
export function withOwnCounter(
  state: KeyState | undefined,
  type: KeyType,
  region: RegionId,
  atLeast: number,
  context: VersionVector = EMPTY_VV,
): KeyState {
  const base: KeyState =
    state ??
    (type === "register"
      ? { type, register: { ...lwwEmpty(), vv: context } }
      : type === "counter"
        ? { type, counter: { ...pnEmpty(), vv: context } }
        : { type, set: { ...orsetEmpty(), vv: context } });
  const raise = (vv: VersionVector): VersionVector =>
    vvGet(vv, region) >= atLeast ? vv : vvMerge(vv, vvFrom([[region, atLeast]]));
  switch (base.type) {
    case "register":
      return { type: "register", register: { ...base.register, vv: raise(base.register.vv) } };
    case "counter":
      return { type: "counter", counter: { ...base.counter, vv: raise(base.counter.vv) } };
    case "set":
      return { type: "set", set: { ...base.set, vv: raise(base.set.vv) } };
  }
}

/**
 * Applies a local operation at `stamp` by `region` to the key's current state (undefined when
 * the key was never written). Fails with `type_mismatch` when the key holds another type (a
 * deleted register keeps its type), or with `counter_overflow`. `life` is the region's life
 * (its `baseSeq`; 0 for its first): a counter keeps each life's totals apart.
 */
export function applyKeyOp(
  state: KeyState | undefined,
  op: KeyOp,
  region: RegionId,
  stamp: HlcStamp,
  life = 0,
): Result<KeyState> {
  if (state !== undefined && state.type !== op.type) return typeMismatch(state.type, op.type);
  switch (op.type) {
    case "register": {
      const current = state?.type === "register" ? state.register : lwwEmpty();
      return ok({ type: "register", register: lwwApply(current, op.op, region, stamp) });
    }
    case "counter": {
      const current = state?.type === "counter" ? state.counter : pnEmpty();
      const next = pnApply(current, op.delta, region, life);
      return next.ok ? ok({ type: "counter", counter: next.value }) : next;
    }
    case "set": {
      const current = state?.type === "set" ? state.set : orsetEmpty();
      return ok({ type: "set", set: orsetApply(current, { add: op.add, remove: op.remove }, region) });
    }
  }
}

/**
 * Merges a remote state of a key into the local one and reports any conflict resolved on the
 * way. Commutative, associative and idempotent in the resulting state; never throws.
 */
export function mergeKeyState(
  local: KeyState | undefined,
  remote: KeyState,
): { state: KeyState; conflict?: KeyConflict } {
  if (local === undefined) return { state: remote };
  if (local.type !== remote.type) {
    const localWins = TYPE_RANK[local.type] > TYPE_RANK[remote.type];
    const winner = localWins ? local : remote;
    const loser = localWins ? remote : local;
    const related = vvCompare(keyVv(local), keyVv(remote));
    // A type can only change through concurrency, so a loser is always a conflict to report.
    return related === "equal" ? { state: winner } : { state: winner, conflict: { kind: "type", winner, loser } };
  }
  switch (local.type) {
    case "register": {
      const merged = lwwMergeReport(local.register, (remote as typeof local).register);
      const state: KeyState = { type: "register", register: merged.state };
      return merged.conflict ? { state, conflict: { kind: "register", conflict: merged.conflict } } : { state };
    }
    case "counter":
      return { state: { type: "counter", counter: pnMerge(local.counter, (remote as typeof local).counter) } };
    case "set":
      return { state: { type: "set", set: orsetMerge(local.set, (remote as typeof local).set) } };
  }
}

/** The canonical binary form: a type tag byte, then the CRDT's own canonical form. */
export function encodeKeyState(state: KeyState): Uint8Array {
  const tag = state.type === "counter" && pnHasLives(state.counter) ? COUNTER_LIVES_TAG : TYPE_TAG[state.type];
  const writer = new ByteWriter().byte(tag);
  switch (state.type) {
    case "register":
      writeLww(writer, state.register);
      break;
    case "counter":
      writePn(writer, state.counter);
      break;
    case "set":
      writeOrset(writer, state.set);
      break;
  }
  return writer.finish();
}

/** Decodes {@link encodeKeyState} output; throws `DecodeError` when malformed. */
export function decodeKeyState(bytes: Uint8Array): KeyState {
  const reader = new ByteReader(bytes);
  const tag = reader.byte();
  let state: KeyState;
  if (tag === TYPE_TAG.register) state = { type: "register", register: readLww(reader) };
  else if (tag === TYPE_TAG.counter || tag === COUNTER_LIVES_TAG)
    state = { type: "counter", counter: readPn(reader, tag === COUNTER_LIVES_TAG) };
  else if (tag === TYPE_TAG.set) state = { type: "set", set: readOrset(reader) };
  else throw new DecodeError(`unknown key type tag ${tag}`);
  reader.end();
  return state;
}
