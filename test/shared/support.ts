// Helpers shared by the core's property tests.
import * as fc from "fast-check";
import { utf8 } from "../../shared/bytes.ts";
import { LOCATION_HINTS, type RegionId } from "../../shared/regions.ts";
import { type PeerApi } from "../../shared/store/contract.ts";
import { type KeyOp } from "../../shared/store/key-state.ts";
import { type ReplicaNode } from "../../shared/store/replica-node.ts";

/** A register write of `text`. */
export const put = (text: string): KeyOp => ({
  type: "register",
  op: { kind: "put", value: utf8(text), contentType: "text/plain" },
});
/** A register delete. */
export const del: KeyOp = { type: "register", op: { kind: "delete" } };
/** A counter change by `delta`. */
export const add = (delta: number): KeyOp => ({ type: "counter", delta });
/** A set operation. */
export const change = (adds: string[], removes: string[] = []): KeyOp => ({ type: "set", add: adds, remove: removes });

/**
 * Any local operation on a key, every type equally likely, over few values and elements, so
 * that replicas writing before they sync often collide (and pick different types).
 */
export const keyOpArb: fc.Arbitrary<KeyOp> = fc.oneof(
  fc.record({
    type: fc.constant("register" as const),
    op: fc.oneof(
      fc.nat({ max: 3 }).map((n) => ({ kind: "put" as const, value: utf8(`v${n}`), contentType: "text/plain" })),
      fc.constant({ kind: "delete" as const }),
    ),
  }),
  fc.record({ type: fc.constant("counter" as const), delta: fc.integer({ min: -5, max: 5 }) }),
  fc.record({
    type: fc.constant("set" as const),
    add: fc.uniqueArray(fc.constantFrom("a", "b", "c"), { maxLength: 2 }),
    remove: fc.uniqueArray(fc.constantFrom("a", "b", "c"), { maxLength: 2 }),
  }),
);

/** Every ordering of `items` (n! of them: keep n small). */
export function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  );
}

/** A CRDT as its laws see it: a join, its identity, and the canonical encoding to compare by. */
export interface Lattice<T> {
  readonly merge: (a: T, b: T) => T;
  readonly empty: () => T;
  readonly encode: (state: T) => Uint8Array;
}

function hexOf<T>(lattice: Lattice<T>, state: T): string {
  return Array.from(lattice.encode(state), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Throws unless merge is commutative, associative and idempotent on these states, with `empty` as identity. */
export function checkMergeLaws<T>(lattice: Lattice<T>, a: T, b: T, c: T): void {
  const { merge, empty } = lattice;
  const same = (x: T, y: T, law: string): void => {
    if (hexOf(lattice, x) !== hexOf(lattice, y)) throw new Error(`merge is not ${law}`);
  };
  same(merge(a, b), merge(b, a), "commutative");
  same(merge(merge(a, b), c), merge(a, merge(b, c)), "associative");
  same(merge(a, a), a, "idempotent");
  same(merge(a, empty()), a, "neutral on empty");
}

/**
 * Folds `states` (at most 5, so all 120 orders are tried) in every delivery order, and with each
 * order's states delivered twice, and throws unless every fold gives one encoded state; returns it.
 */
export function checkConvergence<T>(lattice: Lattice<T>, states: readonly T[]): T {
  if (states.length > 5) throw new RangeError("at most 5 states: every permutation is tried");
  const fold = (list: readonly T[]): T => list.reduce(lattice.merge, lattice.empty());
  const merged = fold(states);
  const expected = hexOf(lattice, merged);
  for (const order of permutations(states)) {
    if (hexOf(lattice, fold(order)) !== expected) throw new Error("a delivery order changes the result");
    const duplicated = order.flatMap((state, k) => [state, order[k >> 1] as T]);
    if (hexOf(lattice, fold(duplicated)) !== expected) throw new Error("duplicate delivery changes the result");
  }
  return merged;
}

/** One step of a replicated history: a local op, a sync from one replica to another, or a promotion to a new epoch. */
export type HistoryStep =
  | { readonly kind: "op"; readonly at: number; readonly dtMs: number; readonly op: KeyOp }
  | { readonly kind: "sync"; readonly from: number; readonly to: number; readonly dtMs: number }
  | { readonly kind: "promote"; readonly at: number };

/** A history over 2 to 4 regions (replicas are picked by index modulo their count). */
export interface ReplicatedHistory {
  readonly regions: RegionId[];
  readonly steps: HistoryStep[];
}

/**
 * Replicated histories of ops and syncs (and, with `promotions`, promotions to new epochs),
 * with clocks that drift a little between steps, for replaying through merges.
 */
export function historyArb(promotions: boolean): fc.Arbitrary<ReplicatedHistory> {
  const index = fc.nat({ max: 3 });
  const dtMs = fc.integer({ min: -1, max: 2 });
  const steps: Array<fc.WeightedArbitrary<HistoryStep>> = [
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("op" as const), at: index, dtMs, op: keyOpArb }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("sync" as const), from: index, to: index, dtMs }) },
  ];
  if (promotions) steps.push({ weight: 1, arbitrary: fc.record({ kind: fc.constant("promote" as const), at: index }) });
  return fc.record({
    regions: fc.shuffledSubarray([...LOCATION_HINTS], { minLength: 2, maxLength: 4 }),
    steps: fc.array(fc.oneof(...steps), { minLength: 1, maxLength: 25 }),
  });
}

/** A call over RPC: its answer arrives as a structured clone, as Durable Object RPC delivers it. */
export async function cloned<T>(call: () => T | Promise<T>): Promise<T> {
  return structuredClone(await call());
}

/**
 * `node()` as a peer reaches it over RPC (the node is looked up at each call, so a test may
 * replace it): every answer passes through `rpc`, a structured clone unless a test cuts it off.
 */
export function peerOver(
  node: () => ReplicaNode,
  rpc: <T>(call: () => T | Promise<T>) => Promise<T> = cloned,
): PeerApi {
  return {
    applyReplication: (bodies) => rpc(() => node().applyReplication(bodies)),
    pushWrite: (body) => rpc(() => node().pushWrite(body)),
    snapshot: (key) => rpc(() => node().snapshot(key)),
    covers: (key, version, epoch) => rpc(() => node().covers(key, version, epoch)),
    prefixStates: (low, high, after, limit) => rpc(() => node().prefixStates(low, high, after, limit)),
    aeBegin: (from) => rpc(() => node().aeBegin(from)),
    merkleChildren: (level, indices) => rpc(() => node().merkleChildren(level, indices)),
    bucketEntries: (buckets) => rpc(() => node().bucketEntries(buckets)),
    bucketRows: (from, to, after, limit) => rpc(() => node().bucketRows(from, to, after, limit)),
    keyStates: (keys) => rpc(() => node().keyStates(keys)),
    repairStates: (from, rows) => rpc(() => node().repairStates(from, rows)),
  };
}
