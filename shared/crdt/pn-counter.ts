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
 */
import { assert } from "../assert.ts";
import { ByteReader, ByteWriter, DecodeError, encodeWith, decodeWith } from "../bytes.ts";
import { type Result, fail, ok } from "../errors.ts";
import { type RegionId } from "../regions.ts";
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

/** A positive-negative counter. */
export interface PnCounter {
  /** Sum of the increments each region has applied. */
  readonly p: PnTotals;
  /** Sum of the magnitudes of the decrements each region has applied. */
  readonly n: PnTotals;
  /** Operations applied per region, including increments by zero: the key's version. */
  readonly vv: VersionVector;
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

/** The exact value, `sum(p) - sum(n)`, which a merged state may carry beyond the safe range. */
export function pnValueExact(state: PnCounter): bigint {
  return sumTotals(state.p) - sumTotals(state.n);
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
export function pnApply(state: PnCounter, delta: number, region: RegionId): Result<PnCounter> {
  assert(Number.isSafeInteger(delta), "a counter delta must be a safe integer");
  const magnitude = Math.abs(delta);
  const totals = delta < 0 ? state.n : state.p;
  const total = BigInt(vvGet(totals, region)) + BigInt(magnitude);
  if (total > SAFE_MAX) {
    return overflow(
      `region ${region} has already applied ${vvGet(totals, region)} in ${delta < 0 ? "decrements" : "increments"}; adding ${magnitude} would pass ${Number.MAX_SAFE_INTEGER}`,
    );
  }
  const value = pnValueExact(state) + BigInt(delta);
  if (value > SAFE_MAX || value < SAFE_MIN) {
    return overflow(`adding ${delta} would take the counter to ${value}, outside ±${Number.MAX_SAFE_INTEGER}`);
  }
  const nextTotals = vvFrom([...vvEntries(totals), [region, Number(total)]]);
  const { vv } = vvIncrement(state.vv, region);
  const next: PnCounter = delta < 0 ? { p: state.p, n: nextTotals, vv } : { p: nextTotals, n: state.n, vv };
  assert(pnValueExact(next) === value, "the applied delta must move the value by exactly delta");
  return ok(next);
}

/**
 * Merges two counters: pointwise maximum of each region's totals and of the operation vector.
 * Commutative, associative and idempotent; never fails, even when the merged value leaves the
 * safe range (that is reported by {@link pnValue} instead, so replication never stalls).
 */
export function pnMerge(a: PnCounter, b: PnCounter): PnCounter {
  return { p: vvMerge(a.p, b.p), n: vvMerge(a.n, b.n), vv: vvMerge(a.vv, b.vv) };
}

/** The canonical binary form: operation vector, then increment totals, then decrement totals. */
export function encodePn(state: PnCounter): Uint8Array {
  return encodeWith(writePn, state);
}

/** Writes the canonical form into `writer`. */
export function writePn(writer: ByteWriter, state: PnCounter): void {
  writeVv(writer, state.vv);
  writeVv(writer, state.p);
  writeVv(writer, state.n);
}

/**
 * Reads the canonical form; throws `DecodeError` when malformed, including a region with a
 * total but no operation, which no sequence of {@link pnApply} and {@link pnMerge} can produce.
 */
export function readPn(reader: ByteReader): PnCounter {
  const vv = readVv(reader);
  const p = readVv(reader);
  const n = readVv(reader);
  for (const [region] of [...vvEntries(p), ...vvEntries(n)]) {
    if (vvGet(vv, region) === 0) throw new DecodeError(`counter has a total for ${region} but no operation from it`);
  }
  return { p, n, vv };
}

/** Decodes {@link encodePn} output; throws `DecodeError` when malformed. */
export function decodePn(bytes: Uint8Array): PnCounter {
  return decodeWith(readPn, bytes);
}
