/**
 * Version vectors over region ids (Parker et al., 1983) and dots, the unit of causality for
 * the dotted CRDTs. A vector maps each region to the number of events from it that are
 * included; a dot (region, n) names the n-th event of a region. Vectors are immutable plain
 * objects with no zero entries and keys in region-table order, so equal vectors serialise
 * identically.
 *
 * The binary form (region index byte + varint counter per entry) is what ETags and session
 * tokens carry: 8 regions with counters below 2^21 fit in 33 bytes.
 */
import { assert } from "./assert.ts";
import { ByteReader, ByteWriter, DecodeError, fromBase64Url, toBase64Url } from "./bytes.ts";
import { LOCATION_HINTS, type RegionId, regionAt, regionIndex } from "./regions.ts";

/** Events seen per region; missing regions are zero. */
export type VersionVector = Readonly<Partial<Record<RegionId, number>>>;

/** One event: the `counter`-th event originated by `region`. */
export interface Dot {
  readonly region: RegionId;
  readonly counter: number;
}

/** How two vectors relate causally. */
export type Causality = "equal" | "before" | "after" | "concurrent";

/** The empty vector. */
export const EMPTY_VV: VersionVector = Object.freeze({});

/** Builds a canonical vector from entries: zero entries dropped, keys in table order. */
export function vvFrom(entries: Iterable<readonly [RegionId, number]>): VersionVector {
  const counts = new Map<RegionId, number>();
  for (const [region, count] of entries) {
    assert(Number.isSafeInteger(count) && count >= 0, "vector counters are non-negative safe integers");
    counts.set(region, Math.max(counts.get(region) ?? 0, count));
  }
  const out: Partial<Record<RegionId, number>> = {};
  for (const region of LOCATION_HINTS) {
    const count = counts.get(region);
    if (count !== undefined && count > 0) out[region] = count;
  }
  return Object.freeze(out);
}

/** The vector's entries, in region-table order. */
export function vvEntries(vv: VersionVector): Array<[RegionId, number]> {
  return Object.entries(vv) as Array<[RegionId, number]>;
}

/** Events from `region` included in `vv`. */
export function vvGet(vv: VersionVector, region: RegionId): number {
  return vv[region] ?? 0;
}

/** The next dot of `region` after `vv`, and `vv` with that dot included. */
export function vvIncrement(vv: VersionVector, region: RegionId): { vv: VersionVector; dot: Dot } {
  const counter = vvGet(vv, region) + 1;
  assert(Number.isSafeInteger(counter), "vector counter overflow");
  return { vv: vvFrom([...vvEntries(vv), [region, counter]]), dot: { region, counter } };
}

/** The least upper bound: the pointwise maximum. */
export function vvMerge(a: VersionVector, b: VersionVector): VersionVector {
  // A plain loop over the fixed region table: merge sits on every replicated write's path,
  // and this is several times faster than building entry arrays.
  const out: Partial<Record<RegionId, number>> = {};
  for (const region of LOCATION_HINTS) {
    const x = a[region] ?? 0;
    const y = b[region] ?? 0;
    const max = x > y ? x : y;
    if (max > 0) out[region] = max;
  }
  return Object.freeze(out);
}

/** Whether `vv` includes `dot`. */
export function vvHasDot(vv: VersionVector, dot: Dot): boolean {
  return vvGet(vv, dot.region) >= dot.counter;
}

/** Whether `a` includes every event of `b` (a >= b). */
export function vvDescends(a: VersionVector, b: VersionVector): boolean {
  for (const region of LOCATION_HINTS) if ((a[region] ?? 0) < (b[region] ?? 0)) return false;
  return true;
}

/** Compares two vectors: equal, a before b, a after b, or concurrent. */
export function vvCompare(a: VersionVector, b: VersionVector): Causality {
  const aGeB = vvDescends(a, b);
  const bGeA = vvDescends(b, a);
  if (aGeB && bGeA) return "equal";
  if (aGeB) return "after";
  if (bGeA) return "before";
  return "concurrent";
}

/** Total events in the vector. */
export function vvSum(vv: VersionVector): number {
  return vvEntries(vv).reduce((sum, [, count]) => sum + count, 0);
}

/** Orders dots (region table order, then counter) for canonical encodings. */
export function compareDots(a: Dot, b: Dot): number {
  return regionIndex(a.region) - regionIndex(b.region) || a.counter - b.counter;
}

/** Writes the binary form: entry count, then (region index, counter) per entry. */
export function writeVv(writer: ByteWriter, vv: VersionVector): void {
  const entries = vvEntries(vv);
  writer.varint(entries.length);
  for (const [region, count] of entries) writer.byte(regionIndex(region)).varint(count);
}

/** Reads the binary form, rejecting non-canonical input (unsorted, duplicate or zero entries). */
export function readVv(reader: ByteReader): VersionVector {
  const n = reader.varint();
  if (n > LOCATION_HINTS.length) throw new DecodeError("version vector has more entries than regions");
  const entries: Array<[RegionId, number]> = [];
  let previous = -1;
  for (let i = 0; i < n; i += 1) {
    const index = reader.byte();
    const region = regionAt(index);
    if (region === undefined) throw new DecodeError("unknown region index in version vector");
    if (index <= previous) throw new DecodeError("version vector entries out of order");
    const count = reader.varint();
    if (count === 0) throw new DecodeError("version vector has a zero entry");
    entries.push([region, count]);
    previous = index;
  }
  return vvFrom(entries);
}

/** Writes a dot: region index byte, counter varint. */
export function writeDot(writer: ByteWriter, dot: Dot): void {
  writer.byte(regionIndex(dot.region)).varint(dot.counter);
}

/** Reads a dot written by {@link writeDot}. */
export function readDot(reader: ByteReader): Dot {
  const region = regionAt(reader.byte());
  if (region === undefined) throw new DecodeError("unknown region index in dot");
  const counter = reader.varint();
  if (counter === 0) throw new DecodeError("dot counters start at 1");
  return { region, counter };
}

/** The compact text form (base64url of the binary form), used in ETags and tokens. */
export function formatVv(vv: VersionVector): string {
  const writer = new ByteWriter();
  writeVv(writer, vv);
  return toBase64Url(writer.finish());
}

/** Parses {@link formatVv} text; `undefined` when malformed. */
export function parseVv(text: string): VersionVector | undefined {
  try {
    const reader = new ByteReader(fromBase64Url(text));
    const vv = readVv(reader);
    reader.end();
    return vv;
  } catch (error) {
    if (error instanceof DecodeError) return undefined;
    throw error;
  }
}
