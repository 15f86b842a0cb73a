/**
 * Multi-value register with dotted version vectors (Preguiça, Baquero, Almeida, Fonte and
 * Gonçalves, "Dotted Version Vectors: Logical Clocks for Optimistic Replication", 2010). Every
 * write is named by a dot, one event of the region that accepted it, and the register keeps each
 * write that no other write has seen: concurrent writes survive side by side as siblings, and
 * the client resolves them by writing again with the context it read.
 *
 * Why dots: with one vector entry per region alone, two clients writing through the same region
 * with the same stale context look ordered, and one write is silently lost; with one entry per
 * client the vectors grow without bound. A dot per write plus the client's context tells the two
 * apart with one entry per region. The register's vector is the causal context of everything
 * merged into it, so a sibling it has seen and dropped never comes back.
 */
import { ByteReader, ByteWriter, DecodeError, compareBytes, utf8, encodeWith, decodeWith } from "../bytes.ts";
import { type RegionId } from "../regions.ts";
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
  vvSum,
  writeDot,
  writeVv,
} from "../version-vector.ts";

/** One surviving write: its dot, and the value it wrote (null for a delete). */
export interface MvSibling {
  /** The event that wrote this sibling; unique across every replica of the register. */
  readonly dot: Dot;
  /** The written value, or null for a delete that no later write has seen yet. */
  readonly value: Uint8Array | null;
  /** The value's media type, as given by the writer; empty for a delete. */
  readonly contentType: string;
}

/**
 * A multi-value register. Well-formed when every sibling's dot is covered by `vv` and no two
 * siblings share a dot; siblings are sorted by {@link compareDots}.
 */
export interface MvRegister {
  /** Writes no other merged write has seen, in dot order. */
  readonly siblings: readonly MvSibling[];
  /** Causal context: every write and every client context merged into this register. */
  readonly vv: VersionVector;
}

/** A local operation on a multi-value register. */
export type MvOp =
  | { readonly kind: "put"; readonly value: Uint8Array; readonly contentType: string }
  | { readonly kind: "delete" };

/** The register that was never written: no siblings, empty context. */
export function mvEmpty(): MvRegister {
  return { siblings: [], vv: EMPTY_VV };
}

/**
 * Applies a write or delete accepted by `region`. `context` is the vector the client read
 * (by default the register's own, meaning "overwrite everything here"): siblings it covers are
 * replaced, the rest are concurrent with this write and stay.
 *
 * The context joins the register's vector, so a sibling the client overwrote that this region
 * has not received yet is dropped when it arrives instead of resurfacing. The new dot is drawn
 * after that join, so a context can never make the region reuse one of its dots.
 */
export function mvApply(state: MvRegister, op: MvOp, region: RegionId, context: VersionVector = state.vv): MvRegister {
  const { vv, dot } = vvIncrement(vvMerge(state.vv, context), region);
  const written: MvSibling =
    op.kind === "put" ? { dot, value: op.value, contentType: op.contentType } : { dot, value: null, contentType: "" };
  const kept = state.siblings.filter((sibling) => !vvHasDot(context, sibling.dot));
  return { siblings: [...kept, written].sort(bySiblingDot), vv };
}

/** The siblings that hold a value, in dot order; empty when the register reads as deleted. */
export function mvValues(state: MvRegister): MvSibling[] {
  return state.siblings.filter((sibling) => sibling.value !== null);
}

/**
 * Merges two registers: a sibling survives when both sides hold it, or when one side holds it
 * and the other has not seen its dot (seen and absent means overwritten). Vectors join.
 * Commutative, associative and idempotent; linear in the sibling count.
 */
export function mvMerge(a: MvRegister, b: MvRegister): MvRegister {
  const siblings: MvSibling[] = [];
  let i = 0;
  let j = 0;
  // Both lists are sorted by dot, so one walk pairs up equal dots; each step consumes one sibling.
  while (i < a.siblings.length || j < b.siblings.length) {
    const x = a.siblings[i];
    const y = b.siblings[j];
    if (x !== undefined && y !== undefined && compareDots(x.dot, y.dot) === 0) {
      siblings.push(sameDot(x, y));
      i += 1;
      j += 1;
    } else if (x !== undefined && (y === undefined || compareDots(x.dot, y.dot) < 0)) {
      if (!vvHasDot(b.vv, x.dot)) siblings.push(x);
      i += 1;
    } else if (y !== undefined) {
      if (!vvHasDot(a.vv, y.dot)) siblings.push(y);
      j += 1;
    }
  }
  return { siblings, vv: vvMerge(a.vv, b.vv) };
}

function bySiblingDot(a: MvSibling, b: MvSibling): number {
  return compareDots(a.dot, b.dot);
}

/**
 * Picks between two siblings with one dot. A region issues each dot once, so they are the same
 * write; the content order only keeps merge commutative for inputs that break that rule.
 */
function sameDot(a: MvSibling, b: MvSibling): MvSibling {
  if (a.value === null || b.value === null) return a.value === null ? a : b;
  const order = compareBytes(a.value, b.value) || compareBytes(utf8(a.contentType), utf8(b.contentType));
  return order <= 0 ? a : b;
}

/** The canonical binary form: vector, sibling count, then per sibling its dot, a flag and the value. */
export function encodeMv(state: MvRegister): Uint8Array {
  return encodeWith(writeMv, state);
}

/** Writes the canonical form into `writer`. A delete sibling writes no content type or value. */
export function writeMv(writer: ByteWriter, state: MvRegister): void {
  writeVv(writer, state.vv);
  writer.varint(state.siblings.length);
  for (const sibling of state.siblings) {
    writeDot(writer, sibling.dot);
    if (sibling.value === null) writer.byte(0);
    else writer.byte(1).string(sibling.contentType).bytes(sibling.value);
  }
}

/**
 * Reads the canonical form; throws `DecodeError` when malformed, non-canonical (siblings out of
 * dot order or sharing a dot) or not well-formed (a sibling the vector does not cover).
 */
export function readMv(reader: ByteReader): MvRegister {
  const vv = readVv(reader);
  const count = reader.varint();
  // Siblings have distinct dots inside the vector, so the vector bounds their number.
  if (count > vvSum(vv)) throw new DecodeError("register has more siblings than its vector has events");
  const siblings: MvSibling[] = [];
  let previous: Dot | undefined;
  for (let i = 0; i < count; i += 1) {
    const dot = readDot(reader);
    if (previous !== undefined && compareDots(previous, dot) >= 0)
      throw new DecodeError("register siblings out of dot order or duplicated");
    if (!vvHasDot(vv, dot)) throw new DecodeError("register sibling dot is not covered by its vector");
    const flag = reader.byte();
    if (flag > 1) throw new DecodeError("register sibling flag must be 0 or 1");
    if (flag === 0) siblings.push({ dot, value: null, contentType: "" });
    else {
      const contentType = reader.string();
      siblings.push({ dot, value: reader.bytes(), contentType });
    }
    previous = dot;
  }
  return { siblings, vv };
}

/** Decodes {@link encodeMv} output; throws `DecodeError` when malformed. */
export function decodeMv(bytes: Uint8Array): MvRegister {
  return decodeWith(readMv, bytes);
}
