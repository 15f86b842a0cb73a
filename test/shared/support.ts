// Helpers shared by the core's property tests.

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
