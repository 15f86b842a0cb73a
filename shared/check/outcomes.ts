/**
 * Checks of what a replicated run ended with, against the writes that replicas committed (the
 * ground truth a simulator records): every replica holds the same state; every acknowledged
 * write survives; counters are exact; sets are add-wins; registers end at the last writer among
 * causally maximal writes; and a deposed primary's writes that its successor did not keep are
 * gone everywhere; a collected tombstone never comes back. Each check returns its violations,
 * empty when the promise held.
 */
import { equalBytes } from "../bytes.ts";
import { type HlcStamp, compareHlc, formatHlc, parseHlc } from "../hlc.ts";
import { type RegionId } from "../regions.ts";
import { orsetMembers } from "../crdt/or-set.ts";
import { pnValueExact } from "../crdt/pn-counter.ts";
import { lwwEmpty } from "../crdt/lww-register.ts";
import { type KeyState, decodeKeyState, keyIsLive, keyVv } from "../store/key-state.ts";
import { type VersionVector, formatVv, parseVv, vvDescends, vvGet } from "../version-vector.ts";

/** A write a replica committed. */
export interface CommittedWrite {
  readonly id: number;
  readonly region: RegionId;
  readonly key: string;
  readonly op:
    | {
        readonly type: "register";
        readonly value: string | null;
        /** The metadata the write set (null or absent: none). */
        readonly metadata?: string | null;
      }
    | { readonly type: "counter"; readonly delta: number }
    | { readonly type: "set"; readonly add: readonly string[]; readonly remove: readonly string[] };
  /** The key's version right after the write (version-vector text). */
  readonly version: string;
  readonly stamp: string;
  /** The fencing epoch of a strong write (null elsewhere). */
  readonly epoch: number | null;
  /** Whether its client was told it succeeded. */
  readonly acknowledged: boolean;
}

/** One replica's final state of a key: its canonical bytes and epoch. */
export interface FinalKey {
  readonly encoded: Uint8Array;
  readonly epoch: number;
}

/** A broken promise. */
export interface OutcomeViolation {
  readonly rule:
    | "convergence"
    | "write_lost"
    | "resurrected"
    | "counter_inexact"
    | "set_not_add_wins"
    | "register_not_last_writer"
    | "phantom_key"
    | "deposed_write_survived";
  readonly message: string;
}

/** Bound on keys one check looks at (the checks are quadratic per key). */
export const CHECK_KEYS_MAX = 100_000;

function dotOf(write: CommittedWrite): { region: RegionId; counter: number } {
  const vv = parseVv(write.version) as VersionVector;
  return { region: write.region, counter: vvGet(vv, write.region) };
}

/** Whether `vv` includes `write`. */
function sees(vv: VersionVector, write: CommittedWrite): boolean {
  const dot = dotOf(write);
  return vvGet(vv, dot.region) >= dot.counter;
}

/** Whether `later` observed `earlier` when it was written. */
function observed(later: CommittedWrite, earlier: CommittedWrite): boolean {
  return later.id !== earlier.id && sees(parseVv(later.version) as VersionVector, earlier);
}

/** Every region holds the same keys with the same states and epochs. */
export function checkConvergence(finals: ReadonlyMap<RegionId, ReadonlyMap<string, FinalKey>>): OutcomeViolation[] {
  const [first, ...rest] = [...finals];
  if (first === undefined) return [];
  const [base, baseKeys] = first;
  const out: OutcomeViolation[] = [];
  for (const [region, keys] of rest) {
    for (const key of new Set([...baseKeys.keys(), ...keys.keys()])) {
      const a = baseKeys.get(key);
      const b = keys.get(key);
      if (a !== undefined && b !== undefined && a.epoch === b.epoch && equalBytes(a.encoded, b.encoded)) continue;
      out.push({ rule: "convergence", message: `${key} differs between ${base} and ${region}` });
      if (out.length >= 10) return out;
    }
  }
  return out;
}

/**
 * The writes that must be reflected at the end: all committed writes, except those of a
 * deposed primary that the next epoch's recovered state did not keep (`kept` decides, from
 * what the simulator saw when each new primary became ready).
 */
export function survivors(
  writes: readonly CommittedWrite[],
  kept: (write: CommittedWrite) => boolean,
): CommittedWrite[] {
  return writes.filter((w) => w.epoch === null || kept(w));
}

/** What a run may legitimately have forgotten. */
export interface Forgotten {
  /**
   * Per key, the vector of every tombstone of it that a replica collected: the writes it covers
   * are accounted for by a delete, and a live state holding nothing beyond them is a collected
   * key resurrected.
   */
  readonly collected?: ReadonlyMap<string, VersionVector>;
  /**
   * Writes that only a region's own storage held when that storage was lost (acknowledged, if
   * at all, under `ack=local`, which promises no more): they may be gone, or may have reached a
   * peer in a message still on its way.
   */
  readonly lost?: ReadonlySet<number>;
}

/** Checks one converged final state (a replica's keys) against the surviving and deposed writes. */
export function checkOutcome(
  finals: ReadonlyMap<string, FinalKey>,
  surviving: readonly CommittedWrite[],
  deposed: readonly CommittedWrite[],
  forgotten: Forgotten = {},
): OutcomeViolation[] {
  const collected = forgotten.collected ?? new Map<string, VersionVector>();
  const lost = forgotten.lost ?? new Set<number>();
  const out: OutcomeViolation[] = [];
  const byKey = Map.groupBy(surviving, (w) => w.key);
  if (byKey.size > CHECK_KEYS_MAX) throw new RangeError(`more than ${CHECK_KEYS_MAX} keys to check`);
  for (const key of finals.keys())
    if (!byKey.has(key)) out.push({ rule: "phantom_key", message: `${key} exists but no surviving write made it` });
  for (const [key, writes] of byKey) {
    const final = finals.get(key);
    const tombstone = collected.get(key);
    const buried = (w: CommittedWrite): boolean => tombstone !== undefined && sees(tombstone, w);
    if (final === undefined) {
      const unaccounted = writes.filter((w) => !buried(w) && !lost.has(w.id));
      if (unaccounted.length > 0)
        out.push({ rule: "write_lost", message: `${key} is missing; ${unaccounted.length} surviving writes made it` });
      else out.push(...checkKey(key, { type: "register", register: lwwEmpty() }, writes, lost));
      continue;
    }
    const state = decodeKeyState(final.encoded);
    const vv = keyVv(state);
    if (tombstone !== undefined && keyIsLive(state) && vvDescends(tombstone, vv))
      out.push({
        rule: "resurrected",
        message: `${key} was collected as deleted, and is back with nothing newer (${formatVv(vv)})`,
      });
    for (const w of writes)
      if (!sees(vv, w) && !buried(w) && !lost.has(w.id))
        out.push({
          rule: "write_lost",
          message: `${key} lost ${w.acknowledged ? "acknowledged" : "committed"} write ${w.id} (${w.region} ${w.version})`,
        });
    out.push(...checkKey(key, state, writes, lost));
  }
  for (const w of deposed) {
    const final = finals.get(w.key);
    if (final === undefined) continue;
    const state = decodeKeyState(final.encoded);
    const left =
      (w.op.type === "register" &&
        state.type === "register" &&
        w.op.value !== null &&
        text(state.register.value) === w.op.value) ||
      (w.op.type === "set" && state.type === "set" && w.op.add.some((e) => orsetMembers(state.set).includes(e)));
    if (left)
      out.push({
        rule: "deposed_write_survived",
        message: `${w.key} still shows deposed write ${w.id} (${w.region}, epoch ${w.epoch})`,
      });
  }
  return out;
}

function text(bytes: Uint8Array | null): string | null {
  return bytes === null ? null : new TextDecoder().decode(bytes);
}

function checkKey(
  key: string,
  state: KeyState,
  all: readonly CommittedWrite[],
  lost: ReadonlySet<number>,
): OutcomeViolation[] {
  const delta = (w: CommittedWrite): bigint => BigInt(w.op.type === "counter" ? w.op.delta : 0);
  switch (state.type) {
    case "counter": {
      // Writes lost with a region's storage may each count or not.
      const expected = all.filter((w) => !lost.has(w.id)).reduce((sum, w) => sum + delta(w), 0n);
      let low = expected;
      let high = expected;
      for (const w of all.filter((x) => lost.has(x.id))) {
        if (delta(w) < 0n) low += delta(w);
        else high += delta(w);
      }
      const actual = pnValueExact(state.counter);
      if (actual >= low && actual <= high) return [];
      const range = low === high ? `${expected}` : `${low}..${high}`;
      return [{ rule: "counter_inexact", message: `${key} is ${actual}, the surviving writes sum to ${range}` }];
    }
    case "set": {
      const writes = all;
      const members = new Set(orsetMembers(state.set));
      const touchedByLost = new Set(
        all.filter((w) => lost.has(w.id)).flatMap((w) => (w.op.type === "set" ? [...w.op.add, ...w.op.remove] : [])),
      );
      const elements = new Set(
        writes
          .flatMap((w) => (w.op.type === "set" ? [...w.op.add, ...w.op.remove] : []))
          .filter((e) => !touchedByLost.has(e)),
      );
      const out: OutcomeViolation[] = [];
      for (const element of elements) {
        const touches = (w: CommittedWrite): boolean =>
          w.op.type === "set" && (w.op.add.includes(element) || w.op.remove.includes(element));
        // Present iff some add of it was observed by no other write that removed or re-added it.
        const expected = writes.some(
          (a) => a.op.type === "set" && a.op.add.includes(element) && !writes.some((x) => touches(x) && observed(x, a)),
        );
        if (members.has(element) !== expected)
          out.push({
            rule: "set_not_add_wins",
            message: `${key}: "${element}" is ${members.has(element) ? "present" : "absent"}; add-wins says ${expected ? "present" : "absent"}`,
          });
      }
      return out;
    }
    case "register": {
      // A write lost with its region's storage counts only if it is the one the state shows.
      const stampOf = formatHlc(state.register.stamp);
      const writes = all.filter((w) => !lost.has(w.id) || w.stamp === stampOf);
      if (writes.length === 0) return [];
      // The last writer among the writes no other write observed.
      const maximal = writes.filter((w) => !writes.some((x) => observed(x, w)));
      const stamp = (w: CommittedWrite): HlcStamp => parseHlc(w.stamp) as HlcStamp;
      const winner = maximal.reduce((best, w) => (compareHlc(stamp(w), stamp(best)) > 0 ? w : best));
      const expected = winner.op.type === "register" ? winner.op.value : null;
      const actual = text(state.register.value);
      // The extras belong to the write: the winner's value comes with the winner's metadata.
      const metadata = winner.op.type === "register" && expected !== null ? (winner.op.metadata ?? null) : null;
      if (actual === expected && state.register.metadata !== metadata)
        return [
          {
            rule: "register_not_last_writer",
            message: `${key} shows the last writer's value (write ${winner.id}) with metadata ${JSON.stringify(state.register.metadata)}; it wrote ${JSON.stringify(metadata)}`,
          },
        ];
      return actual === expected
        ? []
        : [
            {
              rule: "register_not_last_writer",
              message: `${key} is ${JSON.stringify(actual)}; the last writer (write ${winner.id}) wrote ${JSON.stringify(expected)}`,
            },
          ];
    }
  }
}
