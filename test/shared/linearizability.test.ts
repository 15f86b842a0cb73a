// The linearizability checker must accept every history a correct register can produce and reject every
// one it cannot: hand-made histories of both kinds, real register runs made concurrent, and agreement with
// an exhaustive search over every order on small random histories.
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type CasOp,
  type LinearizabilityResult,
  type ReadOp,
  type RegisterOp,
  type RegisterValue,
  type WriteOp,
  checkLinearizable,
  partitionByKey,
} from "../../shared/check/linearizability.ts";
import { permutations } from "./support.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0x11_ea_12;

const read = (client: string, startMs: number, endMs: number, result: RegisterValue): ReadOp => ({
  kind: "read",
  client,
  startMs,
  endMs,
  result,
});
const write = (
  client: string,
  startMs: number,
  endMs: number,
  value: RegisterValue,
  outcome: "ok" | "unknown" = "ok",
): WriteOp => ({ kind: "write", client, startMs, endMs, value, outcome });
const cas = (
  client: string,
  startMs: number,
  endMs: number,
  expected: RegisterValue,
  value: RegisterValue,
  outcome: CasOp["outcome"],
): CasOp => ({ kind: "cas", client, startMs, endMs, expected, value, outcome });

/** Whether `op` may be left out of a linearization (its outcome is unknown). */
const optional = (op: RegisterOp): boolean => op.endMs === Infinity || (op.kind !== "read" && op.outcome === "unknown");

/** The register after `op` at `state`, by the plain meaning of each operation, or undefined if impossible. */
function apply(op: RegisterOp, state: RegisterValue): RegisterValue | undefined {
  if (op.kind === "read") return op.result === state ? state : undefined;
  if (op.kind === "write") return op.value;
  const succeeds = state === op.expected;
  if (op.outcome === "ok") return succeeds ? op.value : undefined;
  if (op.outcome === "failed") return succeeds ? undefined : state;
  return succeeds ? op.value : state;
}

/** Whether `order` is a linearization of `ops`: every required op once, real time kept, the model obeyed. */
function isLinearization(ops: readonly RegisterOp[], order: readonly RegisterOp[], initial: RegisterValue): boolean {
  if (new Set(order).size !== order.length || order.some((op) => !ops.includes(op))) return false;
  if (ops.some((op) => !optional(op) && !order.includes(op))) return false;
  for (const [i, a] of order.entries())
    for (const b of order.slice(i + 1)) if (!optional(b) && b.endMs < a.startMs) return false;
  let state: RegisterValue | undefined = initial;
  for (const op of order) {
    state = apply(op, state);
    if (state === undefined) return false;
  }
  return true;
}

/** Whether any order of any choice of the optional ops is a linearization: n! work, so keep n small. */
function bruteForce(ops: readonly RegisterOp[], initial: RegisterValue = null): boolean {
  const required = ops.filter((op) => !optional(op));
  const extras = ops.filter(optional);
  for (let mask = 0; mask < 1 << extras.length; mask += 1) {
    const chosen = [...required, ...extras.filter((_, i) => mask & (1 << i))];
    if (permutations(chosen).some((order) => isLinearization(ops, order, initial))) return true;
  }
  return false;
}

/**
 * Whether `ops` is linearizable, by the plain memoized search with none of the checker's reductions: from
 * each state (operations taken, value) try every operation that no pending required one must precede.
 */
function plainSearch(ops: readonly RegisterOp[], initial: RegisterValue = null): boolean {
  const taken = ops.map(() => false);
  const failed = new Set<string>();
  const from = (state: RegisterValue): boolean => {
    const pending = ops.filter((op, i) => !taken[i] && !optional(op));
    if (pending.length === 0) return true;
    const key = `${taken.map(Number).join("")} ${JSON.stringify(state)}`;
    if (failed.has(key)) return false;
    const deadlineMs = Math.min(...pending.map((op) => op.endMs));
    for (const [i, op] of ops.entries()) {
      const after = taken[i] || op.startMs > deadlineMs ? undefined : apply(op, state);
      if (after === undefined) continue;
      taken[i] = true;
      const found = from(after);
      taken[i] = false;
      if (found) return true;
    }
    failed.add(key);
    return false;
  };
  return from(initial);
}

/** A verdict with its evidence checked here, apart from the checker, so that a test compares one value. */
type Judged =
  | { readonly verdict: "linearizable"; readonly orderValid: boolean }
  | { readonly verdict: "violation"; readonly blocked: RegisterOp; readonly witnessValid: boolean }
  | { readonly verdict: "undecided" };

const LINEARIZABLE: Judged = { verdict: "linearizable", orderValid: true };
const violationAt = (blocked: RegisterOp): Judged => ({ verdict: "violation", blocked, witnessValid: true });

/**
 * Checks `ops`; a linearizable verdict's order must replay as a linearization, and a violation's witness
 * must be part of the input, hold the blocked operation, and be a violation by itself (by brute force
 * when small enough).
 */
function judge(ops: readonly RegisterOp[], initial: RegisterValue = null): Judged {
  const result = checkLinearizable(ops, { initial });
  if (result.verdict === "linearizable")
    return { verdict: "linearizable", orderValid: isLinearization(ops, result.order, initial) };
  if (result.verdict === "undecided") return { verdict: "undecided" };
  const witness = result.ops;
  const violates =
    witness.length <= 7
      ? !bruteForce(witness, initial)
      : checkLinearizable(witness, { initial }).verdict === "violation";
  const witnessValid = witness.includes(result.blocked) && witness.every((op) => ops.includes(op)) && violates;
  return { verdict: "violation", blocked: result.blocked, witnessValid };
}

/** The violation `result` must be, for tests that look into its witness. */
function violationOf(result: LinearizabilityResult): Extract<LinearizabilityResult, { verdict: "violation" }> {
  if (result.verdict !== "violation") throw new Error(`expected a violation, got ${result.verdict}`);
  return result;
}

describe("linearizable histories", () => {
  it("accepts the empty history and a sequential one of every kind of operation", () => {
    expect(judge([])).toEqual(LINEARIZABLE);
    expect(
      judge([
        read("c1", 0, 1, null),
        write("c1", 2, 3, "a"),
        read("c2", 4, 5, "a"),
        cas("c1", 6, 7, "a", "b", "ok"),
        cas("c2", 8, 9, "a", "c", "failed"),
        read("c1", 10, 11, "b"),
        write("c2", 12, 13, null),
        read("c1", 14, 15, null),
      ]),
    ).toEqual(LINEARIZABLE);
  });

  it("lets reads overlapping a write see either value, and overlapping writes land in either order", () => {
    expect(
      judge([write("w", 0, 10, "a"), read("r1", 1, 2, null), read("r2", 3, 4, "a"), read("r1", 5, 12, "a")]),
    ).toEqual(LINEARIZABLE);
    const racing = [write("c1", 0, 5, "a"), write("c2", 1, 6, "b")];
    expect(judge([...racing, read("c3", 7, 8, "a")])).toEqual(LINEARIZABLE);
    expect(judge([...racing, read("c3", 7, 8, "b")])).toEqual(LINEARIZABLE);
  });

  it("accepts a CAS race where exactly one of two concurrent CAS(null -> x) wins", () => {
    expect(
      judge([cas("c1", 0, 5, null, "x", "ok"), cas("c2", 1, 6, null, "y", "failed"), read("c3", 7, 8, "x")]),
    ).toEqual(LINEARIZABLE);
    expect(
      judge([cas("c1", 0, 5, null, "x", "failed"), cas("c2", 1, 6, null, "y", "ok"), read("c3", 7, 8, "y")]),
    ).toEqual(LINEARIZABLE);
  });

  it("accepts unknown-outcome operations that took effect, late or at once, and ones that never did", () => {
    const unknown = write("c2", 2, Infinity, "b");
    expect(judge([write("c1", 0, 1, "a"), unknown, read("c3", 5, 6, "b")])).toEqual(LINEARIZABLE);
    expect(judge([write("c1", 0, 1, "a"), unknown, read("c3", 5, 6, "a"), read("c3", 7, 8, "a")])).toEqual(
      LINEARIZABLE,
    );
    expect(judge([write("c1", 0, 1, "a"), unknown, read("c3", 5, 6, "a"), read("c3", 9, 10, "b")])).toEqual(
      LINEARIZABLE,
    );
    expect(judge([write("c1", 0, 1, "a"), write("c2", 2, 3, "b", "unknown"), read("c3", 50, 51, "b")])).toEqual(
      LINEARIZABLE,
    );
    expect(judge([write("c1", 0, 1, "a"), cas("c2", 2, 3, "a", "c", "unknown"), read("c3", 4, 5, "c")])).toEqual(
      LINEARIZABLE,
    );
    expect(judge([write("c1", 0, 1, "a"), cas("c2", 2, 3, "a", "c", "unknown"), read("c3", 4, 5, "a")])).toEqual(
      LINEARIZABLE,
    );
  });

  it("treats intervals as closed: operations that touch at a boundary may be ordered either way", () => {
    expect(judge([write("c1", 0, 5, "a"), read("c2", 5, 6, null)])).toEqual(LINEARIZABLE);
    const after = read("c2", 6, 7, null);
    expect(judge([write("c1", 0, 5, "a"), after])).toEqual(violationAt(after));
  });

  it("starts from the initial value the caller gives", () => {
    expect(judge([read("c1", 0, 1, "a")], "a")).toEqual(LINEARIZABLE);
    const r = read("c1", 0, 1, "a");
    expect(judge([r])).toEqual(violationAt(r));
  });

  it("accepts a failed CAS while a concurrent write changes the value", () => {
    expect(judge([write("c1", 0, 1, "a"), cas("c2", 2, 4, "a", "b", "failed"), write("c3", 3, 5, "c")])).toEqual(
      LINEARIZABLE,
    );
  });
});

describe("violations", () => {
  it("rejects a stale read after a completed write, with the writes and the read as witness", () => {
    const stale = read("c3", 4, 5, "a");
    const result = violationOf(checkLinearizable([write("c1", 0, 1, "a"), write("c2", 2, 3, "b"), stale]));
    expect(result.blocked).toBe(stale);
    expect(result.ops).toHaveLength(3);
    expect(result.reason).toContain('holding "b"');
  });

  it("rejects a read of a value never written", () => {
    const ghost = read("c2", 2, 3, "z");
    expect(judge([write("c1", 0, 1, "a"), ghost])).toEqual(violationAt(ghost));
  });

  it("rejects two concurrent CAS(null -> a) and CAS(null -> b) that both succeed", () => {
    const first = cas("c1", 0, 5, null, "a", "ok");
    const second = cas("c2", 1, 6, null, "b", "ok");
    const result = violationOf(checkLinearizable([first, second]));
    expect(result.blocked).toBe(second);
    expect(result.ops).toEqual([first, second]);
  });

  it("rejects reads that go back: b, then a, while the write of b over a is still in flight", () => {
    const back = read("r2", 5, 6, "a");
    expect(judge([write("c1", 0, 1, "a"), write("c2", 2, 10, "b"), read("r1", 3, 4, "b"), back])).toEqual(
      violationAt(back),
    );
  });

  it("rejects a failed CAS whose expected value was current for its whole interval", () => {
    const failed = cas("c2", 2, 3, "a", "b", "failed");
    expect(judge([write("c1", 0, 1, "a"), failed, write("c3", 4, 5, "c")])).toEqual(violationAt(failed));
  });

  it("rejects a lost update: two increments from the same base both succeed", () => {
    const second = cas("c2", 1, 3, "0", "1", "ok");
    expect(judge([cas("c1", 0, 2, "0", "1", "ok"), second, read("c3", 4, 5, "1")], "0")).toEqual(violationAt(second));
  });

  it("rejects a read of a value whose only write started after the read ended, even an unknown one", () => {
    const early = read("c1", 0, 1, "a");
    expect(judge([early, write("c2", 2, 3, "a")])).toEqual(violationAt(early));
    const earlyToo = read("c1", 0, 1, "a");
    expect(judge([earlyToo, write("c2", 2, Infinity, "a")])).toEqual(violationAt(earlyToo));
  });

  it("lets an unknown write take effect at most once", () => {
    const again = read("c3", 9, 10, "a");
    const ops = [write("c1", 0, 1, "a"), write("c2", 2, Infinity, "b"), read("c3", 5, 6, "b"), again];
    expect(judge(ops)).toEqual(violationAt(again));
  });

  it("keeps in the witness only the reads the violation needs", () => {
    const stale = read("c9", 40, 41, "a");
    const ops = [
      write("c1", 0, 1, "a"),
      ...Array.from({ length: 10 }, (_, i) => read(`r${i}`, 2 + i, 3 + i, "a")),
      write("c2", 20, 21, "b"),
      read("c3", 22, 23, "b"),
      stale,
    ];
    const result = violationOf(checkLinearizable(ops));
    expect(result.blocked).toBe(stale);
    expect(result.ops.filter((op) => op.kind === "read")).toEqual([stale]);
  });
});

describe("reductions that must keep every verdict", () => {
  // Found by the cross-check with the plain search when the memo let a state that had taken an unknown
  // write stand for one that had not: here "b" must still be available after "c" has been read.
  it("does not let a state that took an unknown write stand for one that can still take it", () => {
    const ops = [
      read("c0", 0, 10, "c"),
      write("c1", 10, 10, "b", "unknown"),
      write("c2", 10, 20, "c", "unknown"),
      cas("c3", 30, 30, "b", null, "unknown"),
      cas("c4", 40, 40, null, null, "ok"),
      write("c0", 50, 50, null),
      write("c1", 60, 60, null),
    ];
    expect(judge(ops)).toEqual(LINEARIZABLE);
    expect(bruteForce(ops)).toBe(true);
  });
});

describe("search bound and partition", () => {
  it("answers undecided, not a violation, when the step bound runs out", () => {
    const ops = [write("c1", 0, 10, "a"), write("c2", 0, 10, "b"), read("c3", 0, 10, "a"), read("c3", 11, 12, "b")];
    const result = checkLinearizable(ops, { stepsMax: 2 });
    expect(result.verdict).toBe("undecided");
    expect(checkLinearizable(ops).verdict).toBe("linearizable");
  });

  it("splits a history by key, keeping each key's order", () => {
    const ops = [
      { ...write("c1", 0, 1, "a"), key: "x" },
      { ...write("c1", 2, 3, "b"), key: "y" },
      { ...read("c2", 4, 5, "a"), key: "x" },
    ];
    const parts = partitionByKey(ops);
    expect([...parts.keys()]).toEqual(["x", "y"]);
    expect(parts.get("x")).toEqual([ops[0], ops[2]]);
  });
});

/** An operation to run against a real register, and whether its client learns the outcome. */
interface Planned {
  readonly client: string;
  readonly startMs: number;
  readonly endMs: number;
  /** The instant it takes effect, inside its interval. */
  readonly pointMs: number;
  readonly action:
    | { readonly kind: "read" }
    | { readonly kind: "write"; readonly value: RegisterValue }
    | { readonly kind: "cas"; readonly expected: RegisterValue; readonly value: RegisterValue };
  /** `lost`: it never took effect; `applied`: it did, but the client does not know; reads are always known. */
  readonly fate: "known" | "applied" | "lost";
}

/** Runs the plan on a register in point order and records what each client saw, in plan order. */
function record(plan: readonly Planned[]): RegisterOp[] {
  const ops: RegisterOp[] = [];
  let state: RegisterValue = null;
  const byPoint = [...plan.entries()].sort(([i, a], [j, b]) => a.pointMs - b.pointMs || i - j);
  for (const [i, p] of byPoint) {
    const timing = { client: p.client, startMs: p.startMs, endMs: p.endMs };
    const known = p.fate === "known" || p.action.kind === "read";
    const outcome = known ? undefined : ("unknown" as const);
    const take = p.fate !== "lost" || p.action.kind === "read";
    if (p.action.kind === "read") ops[i] = { ...timing, kind: "read", result: state };
    else if (p.action.kind === "write") {
      ops[i] = { ...timing, kind: "write", value: p.action.value, outcome: outcome ?? "ok" };
      if (take) state = p.action.value;
    } else {
      const succeeds = state === p.action.expected;
      ops[i] = { ...timing, ...p.action, outcome: outcome ?? (succeeds ? "ok" : "failed") };
      if (take && succeeds) state = p.action.value;
    }
  }
  return ops;
}

const valueArb = fc.constantFrom<RegisterValue>(null, "a", "b", "c");
const actionArb: fc.Arbitrary<Planned["action"]> = fc.oneof(
  fc.constant({ kind: "read" as const }),
  fc.record({ kind: fc.constant("write" as const), value: valueArb }),
  fc.record({ kind: fc.constant("cas" as const), expected: valueArb, value: valueArb }),
);
/** Fates with `knownPerUnknown` known outcomes for every two unknown ones (one applied, one lost). */
const fateArb = (knownPerUnknown: number) =>
  fc.constantFrom<Planned["fate"]>(...Array<"known">(knownPerUnknown).fill("known"), "applied", "lost");

/** A sequential run, one op every 10 ms, each interval widened around its point by up to 30 ms. */
const widenedRun = (fate: fc.Arbitrary<Planned["fate"]>, maxLength: number) =>
  fc
    .array(fc.record({ action: actionArb, fate, beforeMs: fc.nat(30), afterMs: fc.nat(30), forever: fc.boolean() }), {
      minLength: 1,
      maxLength,
    })
    .map((steps) =>
      steps.map((s, i): Planned => ({
        client: `c${i % 5}`,
        pointMs: 10 * i,
        startMs: 10 * i - s.beforeMs,
        // An unknown outcome sometimes never comes back at all.
        endMs: s.fate !== "known" && s.action.kind !== "read" && s.forever ? Infinity : 10 * i + s.afterMs,
        action: s.action,
        fate: s.fate,
      })),
    );

describe("properties", () => {
  it("accepts every real run made concurrent, and rejects it once a read returns a value never written", () => {
    let mutated = 0;
    fc.assert(
      fc.property(widenedRun(fateArb(8), 40), fc.nat(), (plan, pick) => {
        const ops = record(plan);
        expect(judge(ops)).toEqual(LINEARIZABLE);
        const reads = ops.flatMap((op, i) => (op.kind === "read" ? [i] : []));
        if (reads.length === 0) return;
        const victim = reads[pick % reads.length] as number;
        const forged = { ...(ops[victim] as ReadOp), result: "fresh" };
        expect(judge(ops.map((op, i) => (i === victim ? forged : op)))).toEqual(violationAt(forged));
        mutated += 1;
      }),
      { seed: SEED, numRuns: 300 },
    );
    expect(mutated).toBeGreaterThan(200);
  });

  it("agrees with an exhaustive search over every order on small random histories", () => {
    const opArb: fc.Arbitrary<RegisterOp> = fc
      .record({
        client: fc.constantFrom("c1", "c2", "c3"),
        startMs: fc.nat(10),
        lengthMs: fc.oneof({ weight: 9, arbitrary: fc.nat(6) }, { weight: 1, arbitrary: fc.constant(Infinity) }),
        kind: fc.constantFrom("read", "write", "cas"),
        a: valueArb,
        b: valueArb,
        outcome: fc.constantFrom("ok", "failed", "unknown"),
      })
      .map(({ client, startMs, lengthMs, kind, a, b, outcome }): RegisterOp => {
        const timing = { client, startMs, endMs: startMs + lengthMs };
        if (kind === "read") return { ...timing, kind, result: a };
        if (kind === "write") return { ...timing, kind, value: a, outcome: outcome === "unknown" ? outcome : "ok" };
        return { ...timing, kind: "cas", expected: a, value: b, outcome: outcome as CasOp["outcome"] };
      });
    const seen = { linearizable: 0, violation: 0 };
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 7 }), (ops) => {
        const judged = judge(ops);
        const evidenceValid =
          judged.verdict === "linearizable" ? judged.orderValid : judged.verdict === "violation" && judged.witnessValid;
        expect({ linearizable: judged.verdict === "linearizable", evidenceValid }).toEqual({
          linearizable: bruteForce(ops),
          evidenceValid: true,
        });
        seen[judged.verdict === "linearizable" ? "linearizable" : "violation"] += 1;
      }),
      { seed: SEED, numRuns: 400 },
    );
    // Both answers must be common, or the agreement says little.
    expect(seen.linearizable).toBeGreaterThan(50);
    expect(seen.violation).toBeGreaterThan(50);
  });

  it("agrees with a plain memoized search on longer real runs, some with one read's result replaced", () => {
    const seen = { linearizable: 0, violation: 0 };
    fc.assert(
      fc.property(widenedRun(fateArb(3), 20), fc.nat(), valueArb, fc.boolean(), (plan, pick, value, forge) => {
        const ops = record(plan);
        const reads = ops.flatMap((op, i) => (op.kind === "read" ? [i] : []));
        const victim = forge && reads.length > 0 ? reads[pick % reads.length] : undefined;
        const history = ops.map((op, i) => (i === victim ? { ...(op as ReadOp), result: value } : op));
        const judged = judge(history);
        // Which operation a violation blocks at depends on the search order; the evidence must hold.
        const summary =
          judged.verdict === "violation" ? { verdict: "violation", witnessValid: judged.witnessValid } : judged;
        expect(summary).toEqual(plainSearch(history) ? LINEARIZABLE : { verdict: "violation", witnessValid: true });
        seen[judged.verdict === "linearizable" ? "linearizable" : "violation"] += 1;
      }),
      { seed: SEED, numRuns: 400 },
    );
    expect(seen.linearizable).toBeGreaterThan(100);
    expect(seen.violation).toBeGreaterThan(50);
  });
});

/** Five clients, each issuing its operations one after another, with points at random inside intervals. */
function fiveClients(length: number): Planned[] {
  const [steps] = fc.sample(
    fc.array(
      fc.record({
        client: fc.nat(4),
        gapMs: fc.nat(3),
        durationMs: fc.integer({ min: 1, max: 20 }),
        pointFraction: fc.double({ min: 0, max: 1, noNaN: true }),
        action: actionArb,
      }),
      { minLength: length, maxLength: length },
    ),
    { seed: SEED, numRuns: 1 },
  );
  const clockMs = [0, 0, 0, 0, 0];
  return (steps ?? []).map((s, i) => {
    const startMs = (clockMs[s.client] as number) + s.gapMs;
    const endMs = startMs + s.durationMs;
    clockMs[s.client] = endMs;
    // A few writes time out, some having taken effect and some not; the client moves on, as a real one does.
    const fate = s.action.kind === "read" ? "known" : i % 61 === 29 ? "applied" : i % 97 === 13 ? "lost" : "known";
    const pointMs = startMs + s.pointFraction * s.durationMs;
    return { client: `c${s.client}`, startMs, endMs, pointMs, action: s.action, fate };
  });
}

describe("size", () => {
  it("decides a 300-operation history of five concurrent clients, and a violation hidden at its end", () => {
    const ops = record(fiveClients(300));
    expect(ops).toHaveLength(300);
    expect(ops.filter((op) => op.kind !== "read" && op.outcome === "unknown").length).toBeGreaterThan(2);
    expect(judge(ops)).toEqual(LINEARIZABLE);
    const lastRead = ops.findLastIndex((op) => op.kind === "read");
    const forged = { ...(ops[lastRead] as ReadOp), result: "fresh" };
    expect(judge(ops.map((op, i) => (i === lastRead ? forged : op)))).toEqual(violationAt(forged));
  });
});
