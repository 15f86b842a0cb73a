/**
 * Positive-negative counter (Shapiro et al., "A comprehensive study of Convergent and Commutative
 * Replicated Data Types", 2011, §3.1.3). Each region keeps its own running totals of increments
 * (`p`) and decrements (`n`); only that region ever raises them, so merging two states is the
 * pointwise maximum and the value is `sum(p) - sum(n)`.
 *
 * The totals have exactly the shape of a version vector (non-negative safe integers per region,
 * no zero entries, keys in region-table order), so the vector helpers give the canonical form,
 * the pointwise maximum and the binary encoding for free. The separate vector `vv` counts
 * operations, not amounts: an increment by 0 changes no total but is still a write, and the key's
 * version (ETags, session tokens) must move on every write.
 *
 * Arithmetic never wraps. A JSON number is exact only up to 2^53 - 1, so a total or a value past
 * that bound is refused with `counter_overflow` rather than rounded; sums are taken in BigInt
 * because nine regions' totals can add up past the safe range before the difference comes back
 * inside it.
 *
 * **Lives.** A region restored with empty storage is a new actor (its new life, named by the
 * sequence number its writes start above, `baseSeq`): were it to raise the totals of its earlier
 * life, an increment of that life which it never saw (still in a queue, or held by one peer) and
 * its own next one would both claim the same total, and the pointwise maximum would keep only
 * one. So a later life keeps its own totals in `lives`, keyed by (region, life), merged by the
 * same pointwise maximum. A region's first life (life 0) keeps the compact `p` and `n`; `lives`
 * is absent until a region is restored, so the steady-state encoding does not change.
 */
import { assert } from "../assert.ts";
import { ByteReader, ByteWriter, DecodeError, encodeWith, decodeWith } from "../bytes.ts";
import { type Result, fail, ok } from "../errors.ts";
import { type RegionId, regionAt, regionIndex } from "../regions.ts";
import {
  EMPTY_VV,
  type VersionVector,
  readVv,
  vvEntries,
  vvFrom,
  vvGet,
  vvIncrement,
  vvMerge,
  writeVv,
} from "../version-vector.ts";

/** Per-region totals: non-negative safe integers, no zero entries, keys in region-table order. */
export type PnTotals = Readonly<Partial<Record<RegionId, number>>>;

/** The totals of one later life of a region: increments and decrement magnitudes, not both 0. */
export interface PnLife {
  readonly region: RegionId;
  /** The life: the sequence number its writes start above (> 0). */
  readonly life: number;
  readonly p: number;
  readonly n: number;
}

/** A positive-negative counter. */
export interface PnCounter {
  /** Sum of the increments each region has applied (in its first life). */
  readonly p: PnTotals;
  /** Sum of the magnitudes of the decrements each region has applied (in its first life). */
  readonly n: PnTotals;
  /** Operations applied per region, including increments by zero: the key's version. */
  readonly vv: VersionVector;
  /** Totals of regions' later lives, by region-table order then life; absent when none. */
  readonly lives?: readonly PnLife[];
}

const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);
const SAFE_MIN = -SAFE_MAX;

/** The counter that was never written: value 0, no operations. */
export function pnEmpty(): PnCounter {
  return { p: EMPTY_VV, n: EMPTY_VV, vv: EMPTY_VV };
}

function sumTotals(totals: PnTotals): bigint {
  let sum = 0n;
  for (const [, total] of vvEntries(totals)) sum += BigInt(total);
  return sum;
}

/** The exact value, `sum(p) - sum(n)` over every life, which a merged state may carry beyond the safe range. */
export function pnValueExact(state: PnCounter): bigint {
  let value = sumTotals(state.p) - sumTotals(state.n);
  for (const life of state.lives ?? []) value += BigInt(life.p) - BigInt(life.n);
  return value;
}

function compareLives(a: PnLife, b: PnLife): number {
  return regionIndex(a.region) - regionIndex(b.region) || a.life - b.life;
}

/** `lives` in canonical form: sorted, one entry per (region, life), no empty entry; undefined when none. */
function canonicalLives(lives: readonly PnLife[]): readonly PnLife[] | undefined {
  const kept = lives.filter((l) => l.p > 0 || l.n > 0).sort(compareLives);
  return kept.length === 0 ? undefined : kept;
}

function withLives(state: Omit<PnCounter, "lives">, lives: readonly PnLife[] | undefined): PnCounter {
  return lives === undefined ? state : { ...state, lives };
}

function overflow<T>(message: string): Result<T> {
  return fail("counter_overflow", message, { limit: Number.MAX_SAFE_INTEGER });
}

/**
 * The value as a JSON-safe number, or `counter_overflow` when merging concurrent increments
 * pushed it past ±(2^53 - 1): then no number represents it exactly, and a rounded answer would
 * be silently wrong.
 */
export function pnValue(state: PnCounter): Result<number> {
  const exact = pnValueExact(state);
  if (exact > SAFE_MAX || exact < SAFE_MIN) {
    return overflow(
      `the counter's value ${exact} is outside ±${Number.MAX_SAFE_INTEGER}; apply an opposite delta to bring it back`,
    );
  }
  return ok(Number(exact));
}

/**
 * Applies a local increment (`delta` > 0), decrement (`delta` < 0) or no-op write (`delta` 0)
 * issued by `region`. `delta` must be a safe integer: the adapter parses it at the boundary.
 * Fails with `counter_overflow`, leaving `state` as it was, when the region's running total or
 * the resulting value would leave the safe-integer range.
 */
export function pnApply(state: PnCounter, delta: number, region: RegionId, life = 0): Result<PnCounter> {
  assert(Number.isSafeInteger(delta), "a counter delta must be a safe integer");
  assert(Number.isSafeInteger(life) && life >= 0, "a life must be a non-negative safe integer");
  const magnitude = Math.abs(delta);
  const entry = state.lives?.find((l) => l.region === region && l.life === life);
  const held = life === 0 ? vvGet(delta < 0 ? state.n : state.p, region) : ((delta < 0 ? entry?.n : entry?.p) ?? 0);
  const total = BigInt(held) + BigInt(magnitude);
  if (total > SAFE_MAX) {
    return overflow(
      `region ${region} has already applied ${held} in ${delta < 0 ? "decrements" : "increments"}; adding ${magnitude} would pass ${Number.MAX_SAFE_INTEGER}`,
    );
  }
  const value = pnValueExact(state) + BigInt(delta);
  if (value > SAFE_MAX || value < SAFE_MIN) {
    return overflow(`adding ${delta} would take the counter to ${value}, outside ±${Number.MAX_SAFE_INTEGER}`);
  }
  const { vv } = vvIncrement(state.vv, region);
  let next: PnCounter;
  if (life === 0) {
    const totals = vvFrom([...vvEntries(delta < 0 ? state.n : state.p), [region, Number(total)]]);
    next = withLives(delta < 0 ? { p: state.p, n: totals, vv } : { p: totals, n: state.n, vv }, state.lives);
  } else {
    const raised: PnLife = {
      region,
      life,
      p: delta < 0 ? (entry?.p ?? 0) : Number(total),
      n: delta < 0 ? Number(total) : (entry?.n ?? 0),
    };
    const others = (state.lives ?? []).filter((l) => l !== entry);
    next = withLives({ p: state.p, n: state.n, vv }, canonicalLives([...others, raised]));
  }
  assert(pnValueExact(next) === value, "the applied delta must move the value by exactly delta");
  return ok(next);
}

/** Pointwise maximum of two canonical `lives` lists. */
function mergeLives(a: readonly PnLife[] | undefined, b: readonly PnLife[] | undefined): readonly PnLife[] | undefined {
  if (b === undefined) return a;
  if (a === undefined) return b;
  const joined = new Map<string, PnLife>();
  for (const l of [...a, ...b]) {
    const id = `${l.region}:${l.life}`;
    const seen = joined.get(id);
    joined.set(id, seen === undefined ? l : { ...l, p: Math.max(l.p, seen.p), n: Math.max(l.n, seen.n) });
  }
  return canonicalLives([...joined.values()]);
}

/**
 * Merges two counters: pointwise maximum of each region's totals and of the operation vector.
 * Commutative, associative and idempotent; never fails, even when the merged value leaves the
 * safe range (that is reported by {@link pnValue} instead, so replication never stalls).
 */
export function pnMerge(a: PnCounter, b: PnCounter): PnCounter {
  return withLives(
    { p: vvMerge(a.p, b.p), n: vvMerge(a.n, b.n), vv: vvMerge(a.vv, b.vv) },
    mergeLives(a.lives, b.lives),
  );
}

/**
 * The canonical binary form: operation vector, then increment totals, then decrement totals,
 * then (only when a region has a later life) the lives section of {@link writePn}.
 */
export function encodePn(state: PnCounter): Uint8Array {
  return encodeWith(writePn, state);
}

/**
 * Writes the canonical form into `writer`; the lives section (a count, then per life its region
 * index byte and the life, increments and decrements as varints) only when there are lives, so
 * an embedding format must record whether it follows ({@link pnHasLives}).
 */
export function writePn(writer: ByteWriter, state: PnCounter): void {
  writeVv(writer, state.vv);
  writeVv(writer, state.p);
  writeVv(writer, state.n);
  if (state.lives === undefined) return;
  writer.varint(state.lives.length);
  for (const l of state.lives) writer.byte(regionIndex(l.region)).varint(l.life).varint(l.p).varint(l.n);
}

/** Whether {@link writePn} writes a lives section for `state`. */
export function pnHasLives(state: PnCounter): boolean {
  return state.lives !== undefined;
}

function readLives(reader: ByteReader): readonly PnLife[] {
  const count = reader.varint();
  if (count === 0) throw new DecodeError("counter has an empty lives section");
  const lives: PnLife[] = [];
  for (let i = 0; i < count; i += 1) {
    const region = regionAt(reader.byte());
    if (region === undefined) throw new DecodeError("unknown region index in a counter's lives");
    const l: PnLife = { region, life: reader.varint(), p: reader.varint(), n: reader.varint() };
    if (l.life === 0) throw new DecodeError("a counter's later life cannot be life 0");
    if (l.p === 0 && l.n === 0) throw new DecodeError("a counter's life has no totals");
    const previous = lives.at(-1);
    if (previous !== undefined && compareLives(previous, l) >= 0) throw new DecodeError("counter lives out of order");
    lives.push(l);
  }
  return lives;
}

/**
 * Reads the canonical form, with a lives section when `lives` says one follows; throws
 * `DecodeError` when malformed, including a region with a total but no operation, which no
 * sequence of {@link pnApply} and {@link pnMerge} can produce.
 */
export function readPn(reader: ByteReader, lives = false): PnCounter {
  const vv = readVv(reader);
  const p = readVv(reader);
  const n = readVv(reader);
  const later = lives ? readLives(reader) : undefined;
  for (const region of [...vvEntries(p), ...vvEntries(n)].map(([r]) => r).concat((later ?? []).map((l) => l.region))) {
    if (vvGet(vv, region) === 0) throw new DecodeError(`counter has a total for ${region} but no operation from it`);
  }
  return withLives({ p, n, vv }, later);
}

/** Decodes {@link encodePn} output (a lives section is whatever follows the totals); throws `DecodeError` when malformed. */
export function decodePn(bytes: Uint8Array): PnCounter {
  const probe = new ByteReader(bytes);
  readPn(probe);
  return decodeWith((reader) => readPn(reader, !probe.done), bytes);
}
