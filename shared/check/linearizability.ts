/**
 * A linearizability checker for one register with compare-and-set: is there one order of the operations,
 * each taking effect at a single instant inside its own interval, in which every read returns the value
 * current at that instant and every compare-and-set succeeds exactly when its expected value was current?
 *
 * The search is Wing and Gong's ("Testing and verifying concurrent objects", 1993) with Lowe's memoization
 * of (set of operations linearized, register value) ("Testing for linearizability", 2017): the algorithm of
 * Porcupine and of Knossos's `linear` checker, plus three reductions that keep every verdict (each says why
 * where it acts): reads and failed CASes are taken as soon as they can be, an unknown operation is taken
 * only just before an operation that needs it, and a state is dropped when a seen one differs only in
 * having taken fewer unknown operations. Histories with a few concurrent clients then check in time
 * roughly linear in their length. The problem is NP-complete in general (Gibbons and Korach, 1997), and
 * many unknown outcomes pending at once still blow up, so the search is bounded by a number of steps and
 * answers `undecided` rather than guess.
 *
 * Linearizability is local (Herlihy and Wing, 1990): a store is linearizable when each key's history is.
 * So the checker takes one key's history; `partitionByKey` splits a recorded one.
 *
 * Intervals are closed. Two operations that touch (one ends at the millisecond the other starts) are
 * concurrent and may be ordered either way: harness clocks round to the millisecond, and ordering such a
 * pair would report violations that only rounding made. Strictly, A precedes B when `A.endMs < B.startMs`.
 *
 * An operation whose outcome is unknown (`endMs: Infinity`, or `outcome: "unknown"`, say after a timeout)
 * may take effect at any instant after it starts, or never. An operation that surely did not take effect
 * (a refusal before anything happened) must be left out by the caller: it promises nothing.
 */
import { assert } from "../assert.ts";

/** A register's value: a string, or null when the key is absent (never written, or deleted). */
export type RegisterValue = string | null;

/** Who issued an operation, and when: it took effect at one instant in `[startMs, endMs]`, if at all. */
export interface OpTiming {
  readonly client: string;
  readonly startMs: number;
  /** When the client learned the outcome; `Infinity` if it never did (it may have taken effect, or not). */
  readonly endMs: number;
}

/** A completed read, and what it returned. */
export interface ReadOp extends OpTiming {
  readonly kind: "read";
  readonly result: RegisterValue;
}

/** An unconditional put (a null value deletes); `unknown` when it may or may not have taken effect. */
export interface WriteOp extends OpTiming {
  readonly kind: "write";
  readonly value: RegisterValue;
  /** Defaults to `ok`. */
  readonly outcome?: "ok" | "unknown";
}

/**
 * Compare-and-set: if the value is `expected`, set it to `value`. `ok`: it took effect; `failed`: the value
 * was not `expected` at its instant and nothing changed; `unknown`: either, or it never happened.
 */
export interface CasOp extends OpTiming {
  readonly kind: "cas";
  readonly expected: RegisterValue;
  readonly value: RegisterValue;
  readonly outcome: "ok" | "failed" | "unknown";
}

/** One operation on the register. */
export type RegisterOp = ReadOp | WriteOp | CasOp;

/**
 * The verdict on one key's history. `linearizable` gives an order that shows it (the unknown operations
 * it leaves out never happened). `violation` names the operation that fits no order (`blocked`) and a
 * sub-history of the input that is by itself not linearizable (`ops`, in input order). `undecided` means
 * the step bound ran out: neither a pass nor a failure.
 */
export type LinearizabilityResult =
  | { readonly verdict: "linearizable"; readonly order: readonly RegisterOp[] }
  | {
      readonly verdict: "violation";
      readonly reason: string;
      readonly blocked: RegisterOp;
      readonly ops: readonly RegisterOp[];
    }
  | { readonly verdict: "undecided"; readonly reason: string; readonly steps: number };

/** How to check: the register's value before the history (default null) and the search's step bound. */
export interface LinearizabilityOptions {
  readonly initial?: RegisterValue;
  readonly stepsMax?: number;
}

/** Bound on operations in one key's history: memo entries grow with it, and its values get 16-bit ids. */
export const LINEARIZABILITY_OPS_MAX = 10_000;
/** Default bound on search steps; a step looks at one event or undoes one choice. */
export const LINEARIZABILITY_STEPS_MAX_DEFAULT = 5_000_000;
/** Bound on the re-checks spent making a violation's witness smaller. */
const WITNESS_SHRINK_TRIES_MAX = 100;

const NIL = -1;

/** A call (the operation may take effect from here) or a return (it must have by here). */
interface Event {
  readonly op: number;
  readonly call: boolean;
  readonly timeMs: number;
}

type SearchResult =
  | { readonly verdict: "linearizable"; readonly order: readonly number[]; readonly steps: number }
  | {
      readonly verdict: "violation";
      readonly blocked: number;
      readonly prefix: readonly number[];
      readonly states: ReadonlySet<RegisterValue>;
      readonly steps: number;
    }
  | { readonly verdict: "undecided"; readonly steps: number };

/** Whether the operation may never have happened, so that no linearization has to include it. */
function optional(op: RegisterOp): boolean {
  return op.endMs === Infinity || (op.kind !== "read" && op.outcome === "unknown");
}

/** Whether removing the operation keeps every linearization of the rest valid (it changes no state). */
function stateless(op: RegisterOp): boolean {
  return op.kind === "read" || (op.kind === "cas" && op.outcome === "failed");
}

/** The value after `op` takes effect on `state`, or undefined when it cannot take effect there. */
function step(op: RegisterOp, state: RegisterValue): RegisterValue | undefined {
  switch (op.kind) {
    case "read":
      return op.result === state ? state : undefined;
    case "write":
      return op.value;
    case "cas":
      if (op.outcome === "failed") return state === op.expected ? undefined : state;
      // An unknown CAS that finds another value changes nothing, exactly as if it never happened, which
      // the search tries anyway by leaving it out; so only its success is a step.
      return state === op.expected ? op.value : undefined;
  }
}

/**
 * Whether `next`, taken right after an optional operation moved the value from `before` to `after`, needs
 * it there: `next` can take effect after it but not without it. Otherwise the optional operation could
 * go (a write after it overwrites it) or move after `next` (a read or failed CAS that works either way)
 * with the same result. So if there is a linearization, there is one in which every optional operation is
 * followed by one that needs it or by another optional one (or by nothing), and the search tries only
 * those, instead of every unknown outcome at every instant.
 */
function observes(next: RegisterOp, before: RegisterValue, after: RegisterValue): boolean {
  return step(next, after) !== undefined && step(next, before) === undefined;
}

const show = (value: RegisterValue): string => JSON.stringify(value);

function describeOp(op: RegisterOp): string {
  const when = `[${op.startMs}..${op.endMs}]`;
  switch (op.kind) {
    case "read":
      return `${op.client} read ${when} -> ${show(op.result)}`;
    case "write":
      return `${op.client} write ${show(op.value)} ${when}${op.outcome === "unknown" ? " (unknown)" : ""}`;
    case "cas":
      return `${op.client} cas ${show(op.expected)}->${show(op.value)} ${when} (${op.outcome})`;
  }
}

/** `list[i]`, which the caller knows to be in range. */
const at = (list: readonly number[], i: number): number => list[i] as number;

/** Murmur3's 32-bit finalizer of an index: a fixed, well-spread share of a state's Zobrist hash. */
function mix(i: number): number {
  let h = Math.imul(i + 1, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Wing and Gong's search over `ops[subset]`, with Lowe's memo; `prefix` and `order` index `ops`. */
function search(
  ops: readonly RegisterOp[],
  subset: readonly number[],
  initial: RegisterValue,
  stepsMax: number,
): SearchResult {
  const events: Event[] = [];
  for (const i of subset) {
    const op = ops[i] as RegisterOp;
    // An optional operation that changes nothing constrains nothing: leaving it out is always possible.
    if (optional(op) && stateless(op)) continue;
    events.push({ op: i, call: true, timeMs: op.startMs });
    // An optional operation has no return: nothing forces it into the linearization.
    if (!optional(op)) events.push({ op: i, call: false, timeMs: op.endMs });
  }
  // Closed intervals: at one instant, calls come before returns, so operations that touch overlap.
  events.sort((a, b) => a.timeMs - b.timeMs || Number(b.call) - Number(a.call) || a.op - b.op);
  const opAt = (event: number): RegisterOp => ops[(events[event] as Event).op] as RegisterOp;
  const isCall = (event: number): boolean => (events[event] as Event).call;

  // Two doubly linked lists (Knuth's dancing links) of the events not yet linearized, in time order: the
  // required operations' calls and returns, and the optional operations' calls.
  const REQUIRED = events.length;
  const OPTIONAL = events.length + 1;
  const next = Array.from({ length: events.length + 2 }, () => NIL);
  const prev = Array.from({ length: events.length + 2 }, () => NIL);
  const tails = [REQUIRED, OPTIONAL];
  const returnOf = new Map<number, number>();
  for (const [i, e] of events.entries()) {
    const list = optional(ops[e.op] as RegisterOp) ? 1 : 0;
    next[at(tails, list)] = i;
    prev[i] = at(tails, list);
    tails[list] = i;
    if (!e.call) returnOf.set(e.op, i);
  }
  const unlink = (i: number): void => {
    next[at(prev, i)] = at(next, i);
    if (at(next, i) !== NIL) prev[at(next, i)] = at(prev, i);
  };
  const relink = (i: number): void => {
    next[at(prev, i)] = i;
    if (at(next, i) !== NIL) prev[at(next, i)] = i;
  };
  const firstReturn = (): number => {
    let e = at(next, REQUIRED);
    while (e !== NIL && isCall(e)) e = at(next, e);
    return e;
  };

  // A state of the search: one bit per operation linearized, then the register value's id. The memo
  // buckets copies of seen states by a Zobrist hash, kept up to date as bits flip, of the value and the
  // required operations only: a state is no better than a seen one that differs only in having taken
  // fewer optional operations, as those may still be taken later, or never. Without that, unknown
  // outcomes would multiply the states for the rest of the history.
  const words = Math.ceil(ops.length / 16);
  const config = new Uint16Array(words + 1);
  const optionalBits = new Uint16Array(words);
  for (const { op } of events)
    if (optional(ops[op] as RegisterOp)) optionalBits[op >> 4] = (optionalBits[op >> 4] as number) | (1 << (op & 15));
  let requiredHash = 0;
  const flip = (event: number): void => {
    const op = (events[event] as Event).op;
    config[op >> 4] = (config[op >> 4] as number) ^ (1 << (op & 15));
    if (!optional(ops[op] as RegisterOp)) requiredHash ^= mix(op);
  };
  const valueIds = new Map<RegisterValue, number>();
  const hashWith = (value: RegisterValue): number => {
    const id = valueIds.get(value) ?? valueIds.size;
    valueIds.set(value, id);
    config[words] = id;
    return requiredHash ^ mix(ops.length + id);
  };
  const seen = new Map<number, Uint16Array[]>();
  const covered = (hash: number): boolean =>
    seen.get(hash)?.some((other) => {
      for (let i = 0; i < words; i += 1) {
        const mine = config[i] as number;
        const theirs = other[i] as number;
        if (((mine ^ theirs) & ~(optionalBits[i] as number)) !== 0 || (theirs & ~mine) !== 0) return false;
      }
      return other[words] === config[words];
    }) ?? false;

  const stack: Array<{ readonly event: number; readonly state: RegisterValue; readonly forced: boolean }> = [];
  let state = initial;
  /** Takes `event`'s operation into the linearization unless a state as good was seen already. */
  const linearize = (event: number, after: RegisterValue, forced: boolean): boolean => {
    flip(event);
    const hash = hashWith(after);
    if (covered(hash)) {
      flip(event);
      return false;
    }
    // A state just after an optional operation is constrained (see `observes`), so it stands for no other.
    if (!optional(opAt(event))) {
      const bucket = seen.get(hash);
      if (bucket === undefined) seen.set(hash, [config.slice()]);
      else bucket.push(config.slice());
    }
    stack.push({ event, state, forced });
    state = after;
    unlink(event);
    const ret = returnOf.get((events[event] as Event).op);
    if (ret !== undefined) unlink(ret);
    return true;
  };
  /** The value before the last operation taken, if that one was optional (see `observes`). */
  const valueBeforeOptional = (): RegisterValue | undefined => {
    const top = stack.at(-1);
    return top !== undefined && optional(opAt(top.event)) ? top.state : undefined;
  };

  let furthest = NIL;
  const furthestStates = new Set<RegisterValue>();
  let steps = 0;
  // Each state walks the required calls before the first pending return, then the optional calls before
  // it, so that states which leave an unknown operation out are seen before those that take it.
  let entry = NIL;
  let optionalPass = false;
  let limit = NIL;
  let fresh = true;
  let beforeOptional: ReturnType<typeof valueBeforeOptional>;
  for (;;) {
    steps += 1;
    if (steps > stepsMax) return { verdict: "undecided", steps };
    let stuck = false;
    if (fresh) {
      fresh = false;
      optionalPass = false;
      beforeOptional = valueBeforeOptional();
      // A read or failed CAS that can take effect now changes nothing, so taking it now is never worse
      // than later (a partial-order reduction): commit to it, and if that fails, so does this state.
      let forced = beforeOptional === undefined ? at(next, REQUIRED) : NIL;
      while (forced !== NIL && isCall(forced) && !(stateless(opAt(forced)) && step(opAt(forced), state) !== undefined))
        forced = at(next, forced);
      if (forced !== NIL && isCall(forced)) {
        fresh = linearize(forced, state, true);
        if (fresh) continue;
        stuck = true;
      }
      entry = at(next, REQUIRED);
    }
    if (!stuck && entry !== NIL && (optionalPass ? entry < limit : isCall(entry))) {
      const op = opAt(entry);
      const after = stateless(op) && beforeOptional === undefined ? undefined : step(op, state);
      // An optional operation that changes nothing is better left out.
      const useful = optionalPass
        ? after !== state
        : beforeOptional === undefined || observes(op, beforeOptional, state);
      fresh = after !== undefined && useful && linearize(entry, after, false);
      if (!fresh) entry = at(next, entry);
      continue;
    }
    if (!stuck && !optionalPass) {
      // No pending return: every required operation is in.
      if (entry === NIL) break;
      optionalPass = true;
      limit = entry;
      entry = at(next, OPTIONAL);
      continue;
    }
    if (!stuck) {
      // The earliest pending return: its operation must take effect before it, and has not.
      if (limit > furthest) furthestStates.clear();
      furthest = Math.max(furthest, limit);
      if (limit === furthest) furthestStates.add(state);
    }
    // Undo the last choice; undoing a forced one fails its whole state, so undo on past it.
    let top = stack.pop();
    while (top !== undefined) {
      flip(top.event);
      state = top.state;
      const ret = returnOf.get((events[top.event] as Event).op);
      if (ret !== undefined) relink(ret);
      relink(top.event);
      if (!top.forced) break;
      top = stack.pop();
    }
    if (top === undefined) {
      assert(furthest !== NIL, "a failed search met a return it could not pass");
      const blocked = (events[furthest] as Event).op;
      const prefix = events.slice(0, furthest).flatMap((e) => (e.call ? [e.op] : []));
      return { verdict: "violation", blocked, prefix, states: furthestStates, steps };
    }
    entry = at(next, top.event);
    optionalPass = optional(opAt(top.event));
    if (optionalPass) limit = firstReturn();
    beforeOptional = valueBeforeOptional();
  }
  return { verdict: "linearizable", order: stack.map((s) => (events[s.event] as Event).op), steps };
}

/**
 * Whether one key's history is linearizable (see the module comment for the model). Throws a RangeError
 * for a malformed history: an interval that does not start at a finite time or ends before it starts.
 */
export function checkLinearizable(
  ops: readonly RegisterOp[],
  options: LinearizabilityOptions = {},
): LinearizabilityResult {
  const initial = options.initial ?? null;
  const stepsMax = options.stepsMax ?? LINEARIZABILITY_STEPS_MAX_DEFAULT;
  assert(Number.isInteger(stepsMax) && stepsMax > 0, "stepsMax must be a positive integer");
  if (ops.length > LINEARIZABILITY_OPS_MAX)
    throw new RangeError(`history longer than ${LINEARIZABILITY_OPS_MAX} operations; split it by key`);
  for (const op of ops) {
    if (!Number.isFinite(op.startMs) || !(op.endMs >= op.startMs))
      throw new RangeError(`malformed interval: ${describeOp(op)}`);
  }
  const all = ops.map((_, i) => i);
  const found = search(ops, all, initial, stepsMax);
  if (found.verdict === "undecided")
    return {
      verdict: "undecided",
      reason: `search bound reached after ${found.steps} steps: raise stepsMax, or record fewer unknown outcomes`,
      steps: found.steps,
    };
  if (found.verdict === "linearizable")
    return { verdict: "linearizable", order: found.order.map((i) => ops[i] as RegisterOp) };

  const witness = shrink(ops, found, initial, stepsMax - found.steps);
  assert(witness.prefix.includes(witness.blocked), "the witness holds the blocked operation");
  const blocked = ops[witness.blocked] as RegisterOp;
  const values = [...witness.states].map(show).join(" or ");
  return {
    verdict: "violation",
    reason:
      `not linearizable: ${describeOp(blocked)} fits no order of the ${witness.prefix.length - 1} operations ` +
      `that start before it returns (the orders tried left the register holding ${values})`,
    blocked,
    ops: witness.prefix.map((i) => ops[i] as RegisterOp),
  };
}

/**
 * A smaller violation inside `found`. The operations called before the blocked one returned are, with their
 * own intervals, already not linearizable: no order of them got past that return. Then it drops what the
 * violation does not need, in halving chunks as delta debugging does. Only stateless operations may go: a
 * history without them is linearizable whenever the whole one is, while dropping a write could invent a
 * violation. The result's `prefix` is sorted.
 */
function shrink(
  ops: readonly RegisterOp[],
  found: Extract<SearchResult, { verdict: "violation" }>,
  initial: RegisterValue,
  budget: number,
): Extract<SearchResult, { verdict: "violation" }> {
  let witness = { ...found, prefix: [...found.prefix].sort((a, b) => a - b) };
  const candidates = witness.prefix.filter((i) => i !== found.blocked && stateless(ops[i] as RegisterOp));
  let tries = 0;
  for (let size = candidates.length; size >= 1; size = Math.floor(size / 2)) {
    for (let from = 0; from < candidates.length; from += size) {
      if (tries >= WITNESS_SHRINK_TRIES_MAX || budget <= 0) return witness;
      const chunk = new Set(candidates.slice(from, from + size).filter((i) => i !== witness.blocked));
      if (!witness.prefix.some((i) => chunk.has(i))) continue;
      tries += 1;
      const kept = witness.prefix.filter((i) => !chunk.has(i));
      const again = search(ops, kept, initial, budget);
      budget -= again.steps;
      if (again.verdict === "violation") witness = { ...again, prefix: [...again.prefix].sort((a, b) => a - b) };
    }
  }
  return witness;
}

/** One history per key, each in the order given: the unit `checkLinearizable` works on. */
export function partitionByKey<T extends { readonly key: string }>(history: readonly T[]): Map<string, T[]> {
  return Map.groupBy(history, (op) => op.key);
}
