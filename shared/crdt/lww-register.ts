/**
 * Last-writer-wins register ordered by hybrid logical clock stamps, ties broken by region id
 * (inside the stamp order). It carries the value's content type and a tombstone (`value` null)
 * for deletes, so a delete replicates and wins over older writes like any other write.
 *
 * A live value may carry Workers KV's two extras: metadata (a JSON text, kept as written) and
 * an expiration (unix seconds, judged by each reader's clock). They belong to the write that
 * set them and travel with it through every merge.
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
  /** The writer's metadata (JSON text), or null; always null for a tombstone. */
  readonly metadata: string | null;
  /** When the value expires (unix seconds), or null for never; always null for a tombstone. */
  readonly expirationSeconds: number | null;
  /** Causal context: every write merged into this register. */
  readonly vv: VersionVector;
}

/** A local operation on a register. */
export type LwwOp =
  | {
      readonly kind: "put";
      readonly value: Uint8Array;
      readonly contentType: string;
      readonly metadata?: string | null;
      readonly expirationSeconds?: number | null;
    }
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
  return {
    stamp: hlcZero(LOCATION_HINTS[0]),
    value: null,
    contentType: "",
    metadata: null,
    expirationSeconds: null,
    vv: EMPTY_VV,
  };
}

/**
 * Applies a local write or delete issued at `stamp` by `region`. The caller draws `stamp` from
 * its clock, which must already have observed `state.stamp`, so the write wins over everything
 * the region has seen.
 */
export function lwwApply(state: LwwRegister, op: LwwOp, region: RegionId, stamp: HlcStamp): LwwRegister {
  const { vv } = vvIncrement(state.vv, region);
  if (op.kind === "delete") return { stamp, value: null, contentType: "", metadata: null, expirationSeconds: null, vv };
  return {
    stamp,
    value: op.value,
    contentType: op.contentType,
    metadata: op.metadata ?? null,
    expirationSeconds: op.expirationSeconds ?? null,
    vv,
  };
}

/** Whether the register holds a value (not a tombstone), expired or not. */
export function lwwIsLive(state: LwwRegister): boolean {
  return state.value !== null;
}

/** Whether the register's value has expired at `nowMs` (by the reader's clock). */
export function lwwExpired(state: LwwRegister, nowMs: number): boolean {
  return state.expirationSeconds !== null && state.expirationSeconds * 1000 <= nowMs;
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
  const state: LwwRegister = { ...winner, vv };
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
  return (
    compareBytes(a.value, b.value) ||
    compareBytes(utf8(a.contentType), utf8(b.contentType)) ||
    compareBytes(utf8(a.metadata ?? ""), utf8(b.metadata ?? "")) ||
    (a.metadata === null ? 0 : 1) - (b.metadata === null ? 0 : 1) ||
    (a.expirationSeconds ?? -1) - (b.expirationSeconds ?? -1)
  );
}

/**
 * The canonical binary form: stamp, vector, content type, then a flag and the value: 0 for a
 * tombstone, 1 for a plain value, 2 for a value with extras, followed by which extras are
 * present (bit 0 metadata, bit 1 expiration) and those. A value without extras keeps form 1,
 * so states written before extras existed encode (and hash into the Merkle tree) as before.
 */
export function encodeLww(state: LwwRegister): Uint8Array {
  return encodeWith(writeLww, state);
}

/** Writes the canonical form into `writer`. */
export function writeLww(writer: ByteWriter, state: LwwRegister): void {
  writeHlc(writer, state.stamp);
  writeVv(writer, state.vv);
  writer.string(state.contentType);
  if (state.value === null) {
    writer.byte(0);
    return;
  }
  const extras = (state.metadata === null ? 0 : 1) | (state.expirationSeconds === null ? 0 : 2);
  writer.byte(extras === 0 ? 1 : 2).bytes(state.value);
  if (extras === 0) return;
  writer.byte(extras);
  if (state.metadata !== null) writer.string(state.metadata);
  if (state.expirationSeconds !== null) writer.varint(state.expirationSeconds);
}

/** Reads the canonical form; throws `DecodeError` when malformed. */
export function readLww(reader: ByteReader): LwwRegister {
  const stamp = readHlc(reader);
  const vv = readVv(reader);
  const contentType = reader.string();
  const flag = reader.byte();
  if (flag > 2) throw new DecodeError("register flag must be 0, 1 or 2");
  // Merge keeps the local side of two equal-stamped tombstones, so a content type on one would
  // make the merged bytes depend on delivery order; lwwApply never writes one.
  if (flag === 0 && contentType !== "") throw new DecodeError("a tombstone carries no content type");
  const value = flag === 0 ? null : reader.bytes();
  let metadata: string | null = null;
  let expirationSeconds: number | null = null;
  if (flag === 2) {
    const extras = reader.byte();
    // Form 2 without extras would be a second encoding of form 1.
    if (extras === 0 || extras > 3) throw new DecodeError("register extras must be 1, 2 or 3");
    if ((extras & 1) !== 0) metadata = reader.string();
    if ((extras & 2) !== 0) expirationSeconds = reader.varint();
  }
  return { stamp, value, contentType, metadata, expirationSeconds, vv };
}

/** Decodes {@link encodeLww} output; throws `DecodeError` when malformed. */
export function decodeLww(bytes: Uint8Array): LwwRegister {
  return decodeWith(readLww, bytes);
}
