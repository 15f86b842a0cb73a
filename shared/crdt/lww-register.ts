/**
 * Last-writer-wins register ordered by hybrid logical clock stamps, ties broken by region id
 * (inside the stamp order). It carries the value's content type and a tombstone (`value` null)
 * for deletes, so a delete replicates and wins over older writes like any other write.
 *
 * The register also carries a version vector, the causal context of every write merged into
 * it. LWW alone would silently drop the losing side of concurrent writes; the vector tells a
 * real conflict (neither side saw the other) from a plain overwrite, so {@link lwwMergeReport}
 * can report every conflict it resolves.
 */
import { ByteReader, ByteWriter, DecodeError, compareBytes, utf8, encodeWith, decodeWith } from "../bytes.ts";
import { type HlcStamp, compareHlc, hlcZero, readHlc, writeHlc } from "../hlc.ts";
import { LOCATION_HINTS, type RegionId } from "../regions.ts";
import { EMPTY_VV, type VersionVector, readVv, vvCompare, vvIncrement, vvMerge, writeVv } from "../version-vector.ts";

/** A last-writer-wins register. */
export interface LwwRegister {
  /** Stamp of the winning write; the zero stamp for a register never written. */
  readonly stamp: HlcStamp;
  /** The value, or null for a deleted (or never written) register. */
  readonly value: Uint8Array | null;
  /** The value's media type, as given by the writer; empty for a tombstone. */
  readonly contentType: string;
  /** Causal context: every write merged into this register. */
  readonly vv: VersionVector;
}

/** A local operation on a register. */
export type LwwOp =
  | { readonly kind: "put"; readonly value: Uint8Array; readonly contentType: string }
  | { readonly kind: "delete" };

/** How a conflict was decided: by stamp order, or (equal wall and counter) by region id. */
export type LwwRule = "hlc" | "region_tiebreak";

/** A conflict LWW resolved: two concurrent writes, the winner kept and the loser reported. */
export interface LwwConflict {
  readonly winner: LwwRegister;
  readonly loser: LwwRegister;
  readonly rule: LwwRule;
}

/** The register that was never written: a tombstone at the zero stamp. */
export function lwwEmpty(): LwwRegister {
  return { stamp: hlcZero(LOCATION_HINTS[0]), value: null, contentType: "", vv: EMPTY_VV };
}

/**
 * Applies a local write or delete issued at `stamp` by `region`. The caller draws `stamp` from
 * its clock, which must already have observed `state.stamp`, so the write wins over everything
 * the region has seen.
 */
export function lwwApply(state: LwwRegister, op: LwwOp, region: RegionId, stamp: HlcStamp): LwwRegister {
  const { vv } = vvIncrement(state.vv, region);
  if (op.kind === "delete") return { stamp, value: null, contentType: "", vv };
  return { stamp, value: op.value, contentType: op.contentType, vv };
}

/** Whether the register holds a live value (not a tombstone). */
export function lwwIsLive(state: LwwRegister): boolean {
  return state.value !== null;
}

/** Merges two registers: the later stamp wins, vectors join. Commutative, associative, idempotent. */
export function lwwMerge(a: LwwRegister, b: LwwRegister): LwwRegister {
  return lwwMergeReport(a, b).state;
}

/**
 * Merges `remote` into `local` and reports the conflict when the two were written
 * concurrently (neither vector descends from the other) and their values differ in stamp.
 */
export function lwwMergeReport(
  local: LwwRegister,
  remote: LwwRegister,
): { state: LwwRegister; conflict?: LwwConflict } {
  const order = compareHlc(local.stamp, remote.stamp) || compareSameStamp(local, remote);
  const winner = order >= 0 ? local : remote;
  const loser = order >= 0 ? remote : local;
  const vv = vvMerge(local.vv, remote.vv);
  const state: LwwRegister = { stamp: winner.stamp, value: winner.value, contentType: winner.contentType, vv };
  if (order === 0 || vvCompare(local.vv, remote.vv) !== "concurrent") return { state };
  const rule: LwwRule =
    winner.stamp.wallMs === loser.stamp.wallMs && winner.stamp.counter === loser.stamp.counter
      ? "region_tiebreak"
      : "hlc";
  return { state, conflict: { winner, loser, rule } };
}

/**
 * Orders two registers with equal stamps. A region issues each stamp once, so equal stamps
 * mean the same write; this only keeps merge commutative for inputs that break that rule.
 */
function compareSameStamp(a: LwwRegister, b: LwwRegister): number {
  if (a.value === null || b.value === null) return (a.value === null ? 0 : 1) - (b.value === null ? 0 : 1);
  return compareBytes(a.value, b.value) || compareBytes(utf8(a.contentType), utf8(b.contentType));
}

/** The canonical binary form: stamp, vector, content type, then a tombstone flag and value. */
export function encodeLww(state: LwwRegister): Uint8Array {
  return encodeWith(writeLww, state);
}

/** Writes the canonical form into `writer`. */
export function writeLww(writer: ByteWriter, state: LwwRegister): void {
  writeHlc(writer, state.stamp);
  writeVv(writer, state.vv);
  writer.string(state.contentType);
  if (state.value === null) writer.byte(0);
  else writer.byte(1).bytes(state.value);
}

/** Reads the canonical form; throws `DecodeError` when malformed. */
export function readLww(reader: ByteReader): LwwRegister {
  const stamp = readHlc(reader);
  const vv = readVv(reader);
  const contentType = reader.string();
  const flag = reader.byte();
  if (flag > 1) throw new DecodeError("register tombstone flag must be 0 or 1");
  // Merge keeps the local side of two equal-stamped tombstones, so a content type on one would
  // make the merged bytes depend on delivery order; lwwApply never writes one.
  if (flag === 0 && contentType !== "") throw new DecodeError("a tombstone carries no content type");
  const value = flag === 0 ? null : reader.bytes();
  return { stamp, value, contentType, vv };
}

/** Decodes {@link encodeLww} output; throws `DecodeError` when malformed. */
export function decodeLww(bytes: Uint8Array): LwwRegister {
  return decodeWith(readLww, bytes);
}
