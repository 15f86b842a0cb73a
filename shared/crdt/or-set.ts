/**
 * Add-wins observed-remove set without tombstones (ORSWOT: Bieniusa, Zawirski, Preguiça,
 * Shapiro, Baquero, Balegas and Duarte, "An Optimized Conflict-free Replicated Set", 2012).
 * Each present element carries the dots of the adds that put it there; the set's version vector
 * is its causal context. A remove forgets the element's dots, and the vector remembers that
 * they were seen, so merge can tell "removed here" (seen, absent) from "not yet received" (not
 * seen) without keeping a tombstone per removed element.
 *
 * An add observes only the dots the replica holds, so an add concurrent with a remove keeps a
 * dot the remove never saw: add wins.
 */
import { ByteReader, ByteWriter, DecodeError, encodeWith, decodeWith } from "../bytes.ts";
import { LOCATION_HINTS, type RegionId, regionIndex } from "../regions.ts";
import {
  type Dot,
  EMPTY_VV,
  type VersionVector,
  compareDots,
  readDot,
  readVv,
  vvHasDot,
  vvIncrement,
  vvMerge,
  writeDot,
  writeVv,
} from "../version-vector.ts";

/** A present element and the dots of the adds that keep it present. */
export interface OrSetEntry {
  readonly element: string;
  /** Never empty; sorted by {@link compareDots}, at most one per region. */
  readonly dots: readonly Dot[];
}

/**
 * An add-wins observed-remove set. Entries are sorted by element (JavaScript string order);
 * every dot is covered by `vv`.
 */
export interface OrSet {
  readonly entries: readonly OrSetEntry[];
  /** Causal context: every operation merged into this set, including removes. */
  readonly vv: VersionVector;
}

/** One local operation: removes first, then adds, all under one new dot. */
export interface OrSetOp {
  readonly add: readonly string[];
  readonly remove: readonly string[];
}

/** The empty set with an empty context. */
export function orsetEmpty(): OrSet {
  return { entries: [], vv: EMPTY_VV };
}

/**
 * Applies a local operation accepted by `region`. Every operation, even a bare remove, consumes
 * one dot, so the vector (the key's version) changes on every write. Removes drop the element's
 * entry; each added element then holds only the new dot, replacing the dots it had observed,
 * so an element both removed and added by one operation ends present.
 */
export function orsetApply(state: OrSet, op: OrSetOp, region: RegionId): OrSet {
  const { vv, dot } = vvIncrement(state.vv, region);
  const removed = new Set(op.remove);
  const added = new Set(op.add);
  const entries = state.entries.filter((entry) => !removed.has(entry.element) && !added.has(entry.element));
  for (const element of added) entries.push({ element, dots: [dot] });
  return { entries: entries.sort(byElement), vv };
}

/** Whether `element` is in the set. */
export function orsetHas(state: OrSet, element: string): boolean {
  // Entries are sorted, so a binary search finds the element in O(log n).
  let low = 0;
  let high = state.entries.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    const probe = (state.entries[middle] as OrSetEntry).element;
    if (probe === element) return true;
    if (probe < element) low = middle + 1;
    else high = middle;
  }
  return false;
}

/** The elements in the set, sorted. */
export function orsetMembers(state: OrSet): string[] {
  return state.entries.map((entry) => entry.element);
}

/**
 * Merges two sets. Per element, a dot survives when both sides hold it, or when one side holds
 * it and the other has not seen it; an element left with no dots is gone. Vectors join.
 * Commutative, associative and idempotent.
 */
export function orsetMerge(a: OrSet, b: OrSet): OrSet {
  const dotsByElement = new Map<string, { a: readonly Dot[]; b: readonly Dot[] }>();
  for (const entry of a.entries) dotsByElement.set(entry.element, { a: entry.dots, b: [] });
  for (const entry of b.entries) {
    const seen = dotsByElement.get(entry.element);
    dotsByElement.set(entry.element, { a: seen?.a ?? [], b: entry.dots });
  }
  const entries: OrSetEntry[] = [];
  for (const [element, both] of dotsByElement) {
    const dots = [
      ...both.a.filter((dot) => hasDot(both.b, dot) || !vvHasDot(b.vv, dot)),
      ...both.b.filter((dot) => !hasDot(both.a, dot) && !vvHasDot(a.vv, dot)),
    ];
    if (dots.length > 0) entries.push({ element, dots: dots.sort(compareDots) });
  }
  return { entries: entries.sort(byElement), vv: vvMerge(a.vv, b.vv) };
}

/** Whether `dots` holds `dot`; lists hold at most one dot per region, so a scan is cheap. */
function hasDot(dots: readonly Dot[], dot: Dot): boolean {
  return dots.some((other) => compareDots(other, dot) === 0);
}

function byElement(a: OrSetEntry, b: OrSetEntry): number {
  return a.element < b.element ? -1 : a.element > b.element ? 1 : 0;
}

/** The canonical binary form: vector, entry count, then per entry the element and its dots. */
export function encodeOrset(state: OrSet): Uint8Array {
  return encodeWith(writeOrset, state);
}

/** Writes the canonical form into `writer`. */
export function writeOrset(writer: ByteWriter, state: OrSet): void {
  writeVv(writer, state.vv);
  writer.varint(state.entries.length);
  for (const entry of state.entries) {
    writer.string(entry.element).varint(entry.dots.length);
    for (const dot of entry.dots) writeDot(writer, dot);
  }
}

/**
 * Reads the canonical form; throws `DecodeError` when malformed, non-canonical (elements out of
 * order or repeated, an element with no dots) or not well-formed (a dot the vector does not
 * cover, two dots of one region on an element).
 */
export function readOrset(reader: ByteReader): OrSet {
  const vv = readVv(reader);
  const count = reader.varint();
  const entries: OrSetEntry[] = [];
  let previous: string | undefined;
  // Each entry is at least two bytes, so a count beyond the input fails at its end.
  for (let i = 0; i < count; i += 1) {
    const element = reader.string();
    if (previous !== undefined && !(previous < element))
      throw new DecodeError("set elements out of order or duplicated");
    const dotCount = reader.varint();
    if (dotCount === 0) throw new DecodeError("set element has no dots");
    // An add replaces the element's observed dots and merge keeps the newer of two dots from one
    // region (the other side has seen the older), so an element never holds two from one region.
    if (dotCount > LOCATION_HINTS.length) throw new DecodeError("set element has more dots than regions");
    const dots: Dot[] = [];
    for (let k = 0; k < dotCount; k += 1) {
      const dot = readDot(reader);
      const last = dots[dots.length - 1];
      if (last !== undefined && regionIndex(last.region) >= regionIndex(dot.region))
        throw new DecodeError("set element dots must be in region order, one per region");
      if (!vvHasDot(vv, dot)) throw new DecodeError("set element dot is not covered by its vector");
      dots.push(dot);
    }
    entries.push({ element, dots });
    previous = element;
  }
  return { entries, vv };
}

/** Decodes {@link encodeOrset} output; throws `DecodeError` when malformed. */
export function decodeOrset(bytes: Uint8Array): OrSet {
  return decodeWith(readOrset, bytes);
}
