/**
 * Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014). A stamp is
 * (wall ms, counter, region): it follows physical time when clocks are sane, never goes
 * backwards, and orders causally related events even when clocks disagree. LWW registers order
 * writes by stamps, never by the raw wall clock.
 *
 * The text form is fixed-width hex, so string order equals stamp order and
 * `ORDER BY stamp` in SQLite is correct: `wwwwwwwwwwww` (48-bit ms) `cccc` (16-bit counter)
 * `.` region id. Region ids break ties between equal (wall, counter) from two regions.
 */
import { assert } from "./assert.ts";
import { type ByteReader, type ByteWriter, DecodeError } from "./bytes.ts";
import { type ErrorData } from "./errors.ts";
import { type RegionId, regionAt, regionIndex, parseRegionId } from "./regions.ts";

/** One hybrid logical clock reading. */
export interface HlcStamp {
  /** Milliseconds since the Unix epoch, at most 2^48 - 1. */
  readonly wallMs: number;
  /** Orders events within one millisecond, 0..0xffff. */
  readonly counter: number;
  /** The region that issued the stamp; breaks ties. */
  readonly region: RegionId;
}

/** Largest wall time a stamp can carry (year 10889). */
export const HLC_WALL_MS_MAX = 2 ** 48 - 1;
/** Largest counter value; one more event in the same millisecond advances the wall by 1 ms. */
export const HLC_COUNTER_MAX = 0xffff;
/** Default bound on how far a remote stamp may be ahead of local physical time. */
export const HLC_SKEW_MS_MAX_DEFAULT = 60_000;

/** The zero stamp of a region: earlier than every real stamp it will issue. */
export function hlcZero(region: RegionId): HlcStamp {
  return { wallMs: 0, counter: 0, region };
}

/** Orders stamps: wall, then counter, then region id (string order). */
export function compareHlc(a: HlcStamp, b: HlcStamp): number {
  if (a.wallMs !== b.wallMs) return a.wallMs < b.wallMs ? -1 : 1;
  if (a.counter !== b.counter) return a.counter < b.counter ? -1 : 1;
  return a.region < b.region ? -1 : a.region > b.region ? 1 : 0;
}

function checkPhysical(physicalMs: number): void {
  assert(Number.isSafeInteger(physicalMs) && physicalMs >= 0, "physical time must be a non-negative integer of ms");
  assert(physicalMs <= HLC_WALL_MS_MAX, "physical time beyond the 48-bit range");
}

/** Advances a stamp by one tick in the same millisecond, rolling the wall on counter overflow. */
function tick(wallMs: number, counter: number, region: RegionId): HlcStamp {
  if (counter < HLC_COUNTER_MAX) return { wallMs, counter: counter + 1, region };
  // 65,536 events in one millisecond: borrow the next millisecond rather than wrap.
  return { wallMs: wallMs + 1, counter: 0, region };
}

/**
 * The stamp for a local event at physical time `physicalMs`, given the clock's last stamp.
 * Strictly greater than `last`.
 */
export function hlcNow(last: HlcStamp, physicalMs: number): HlcStamp {
  checkPhysical(physicalMs);
  const next =
    physicalMs > last.wallMs
      ? { wallMs: physicalMs, counter: 0, region: last.region }
      : tick(last.wallMs, last.counter, last.region);
  assert(compareHlc(next, last) > 0, "hlc must move forward");
  return next;
}

/**
 * Folds a remote stamp into the local clock on receipt. Returns the new clock stamp (strictly
 * greater than both `last` and `remote`'s time), or a `clock_skew` error when `remote` is more
 * than `skewMsMax` ahead of local physical time: such a stamp would drag every later local write
 * into the future, so the message is refused and retried once clocks agree.
 */
export function hlcReceive(
  last: HlcStamp,
  remote: HlcStamp,
  physicalMs: number,
  skewMsMax: number = HLC_SKEW_MS_MAX_DEFAULT,
): { ok: true; stamp: HlcStamp } | { ok: false; error: ErrorData } {
  checkPhysical(physicalMs);
  if (remote.wallMs > physicalMs + skewMsMax) {
    return {
      ok: false,
      error: {
        code: "clock_skew",
        message: `a stamp from ${remote.region} is ${remote.wallMs - physicalMs} ms ahead of this region's clock (bound ${skewMsMax} ms)`,
        details: { aheadMs: remote.wallMs - physicalMs, skewMsMax },
      },
    };
  }
  const wallMs = Math.max(last.wallMs, remote.wallMs, physicalMs);
  let stamp: HlcStamp;
  if (wallMs === last.wallMs && wallMs === remote.wallMs)
    stamp = tick(wallMs, Math.max(last.counter, remote.counter), last.region);
  else if (wallMs === last.wallMs) stamp = tick(wallMs, last.counter, last.region);
  else if (wallMs === remote.wallMs) stamp = tick(wallMs, remote.counter, last.region);
  else stamp = { wallMs, counter: 0, region: last.region };
  assert(compareHlc(stamp, last) > 0, "hlc must move forward on receive");
  return { ok: true, stamp };
}

const HEX_WALL = 12;
const HEX_COUNTER = 4;

/** The text form: fixed-width hex wall and counter, then `.` and the region id. */
export function formatHlc(stamp: HlcStamp): string {
  return `${stamp.wallMs.toString(16).padStart(HEX_WALL, "0")}${stamp.counter.toString(16).padStart(HEX_COUNTER, "0")}.${stamp.region}`;
}

const HLC_TEXT = /^([0-9a-f]{12})([0-9a-f]{4})\.([a-z]+)$/;

/** Parses the text form; `undefined` when malformed. */
export function parseHlc(text: string): HlcStamp | undefined {
  const match = HLC_TEXT.exec(text);
  if (match === null) return undefined;
  const region = parseRegionId(match[3] as string);
  if (region === undefined) return undefined;
  return { wallMs: Number.parseInt(match[1] as string, 16), counter: Number.parseInt(match[2] as string, 16), region };
}

/** Writes the binary form: wall varint, counter varint, region index byte. */
export function writeHlc(writer: ByteWriter, stamp: HlcStamp): void {
  writer.varint(stamp.wallMs).varint(stamp.counter).byte(regionIndex(stamp.region));
}

/** Reads the binary form written by {@link writeHlc}. */
export function readHlc(reader: ByteReader): HlcStamp {
  const wallMs = reader.varint();
  const counter = reader.varint();
  const region = regionAt(reader.byte());
  if (wallMs > HLC_WALL_MS_MAX || counter > HLC_COUNTER_MAX) throw new DecodeError("hlc stamp out of range");
  if (region === undefined) throw new DecodeError("unknown region index in hlc stamp");
  return { wallMs, counter, region };
}
