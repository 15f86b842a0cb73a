/**
 * Micro-benchmark of the pure core: merge throughput of every CRDT and the size of one key's
 * version metadata, for 4 and 8 regions. Run with `npm run bench:core`. It prints figures
 * against the targets and asserts nothing about time: speed is measured here, never in tests.
 *
 * Every state is built as it would be after each region has written about a million times, so
 * vector counters take their realistic three varint bytes, and every merged pair is concurrent,
 * so each merge takes its slowest path (a conflict to resolve, siblings to keep).
 */
import { performance } from "node:perf_hooks";
import { ByteWriter, toBase64Url, utf8 } from "../shared/bytes.ts";
import { type LwwRegister, lwwApply, lwwMerge, lwwMergeReport } from "../shared/crdt/lww-register.ts";
import { type MvRegister, mvApply, mvMerge } from "../shared/crdt/mv-register.ts";
import { type OrSet, orsetApply, orsetMerge } from "../shared/crdt/or-set.ts";
import { type PnCounter, pnApply, pnMerge } from "../shared/crdt/pn-counter.ts";
import { unwrap } from "../shared/errors.ts";
import { type HlcStamp, formatHlc, writeHlc } from "../shared/hlc.ts";
import { LOCATION_HINTS, type RegionId } from "../shared/regions.ts";
import { type VersionVector, vvCompare, vvFrom, vvMerge, writeVv } from "../shared/version-vector.ts";

/** Writes per region behind every state: the "busy key" the metadata target is stated for. */
const WRITES_PER_REGION = 1_000_000;
/** A wall clock in late 2025, so the stamp's varint has its real width (6 bytes). */
const WALL_MS = 1_764_000_000_000;
/**
 * Each case runs in rounds and reports the median round, so a burst of load from other processes
 * on the machine moves one round, not the figure; 14 cases stay well under a minute.
 */
const ROUNDS = 7;
const ROUND_MS = 40;
const WARMUP_MS = 60;
/** Upper bound on iterations per timing batch, so a pathological case still returns. */
const BATCH_MAX = 1_000_000;

const TARGET_METADATA_BYTES = 64;
const TARGET_REGISTER_MERGE_NS = 10_000;

const VALUE = utf8(JSON.stringify({ user: "u_123456", plan: "pro", seats: 25, updatedBy: "enam" }));
const CONTENT_TYPE = "application/json";

/** A vector in which every region has written about a million times (slightly different counts). */
function busyVector(regions: readonly RegionId[]): VersionVector {
  return vvFrom(regions.map((region, i) => [region, WRITES_PER_REGION + 17 * i] as const));
}

function stamp(region: RegionId, counter: number): HlcStamp {
  return { wallMs: WALL_MS, counter, region };
}

/** Two LWW registers written concurrently by the first two regions on top of a shared history. */
function lwwPair(regions: readonly RegionId[]): [LwwRegister, LwwRegister] {
  const [r0, r1] = regions as [RegionId, RegionId];
  const base: LwwRegister = {
    stamp: stamp(r0, 0),
    value: VALUE,
    contentType: CONTENT_TYPE,
    metadata: null,
    expirationSeconds: null,
    vv: busyVector(regions),
  };
  const put = { kind: "put", value: VALUE, contentType: CONTENT_TYPE } as const;
  return [lwwApply(base, put, r0, { ...stamp(r0, 1), wallMs: WALL_MS + 5 }), lwwApply(base, put, r1, stamp(r1, 2))];
}

/** Two counters with a million increments and decrements per region, then one concurrent op each. */
function pnPair(regions: readonly RegionId[]): [PnCounter, PnCounter] {
  const [r0, r1] = regions as [RegionId, RegionId];
  const totals = busyVector(regions);
  const base: PnCounter = { p: totals, n: totals, vv: vvMerge(totals, totals) };
  return [unwrap(pnApply(base, 5, r0)), unwrap(pnApply(base, -3, r1))];
}

/** Two concurrent writes to one multi-value register: the merge keeps both as siblings. */
function mvPair(regions: readonly RegionId[]): [MvRegister, MvRegister] {
  const [r0, r1] = regions as [RegionId, RegionId];
  const base: MvRegister = { siblings: [], vv: busyVector(regions) };
  const put = { kind: "put", value: VALUE, contentType: CONTENT_TYPE } as const;
  return [mvApply(base, put, r0), mvApply(base, put, r1)];
}

const SET_SIZE = 32;

/** Two sets of 32 shared elements, each side then adding 4 and removing 4 concurrently. */
function orsetPair(regions: readonly RegionId[]): [OrSet, OrSet] {
  const [r0, r1, r2] = regions as [RegionId, RegionId, RegionId];
  const shared = Array.from({ length: SET_SIZE }, (_, i) => `member-${String(i).padStart(3, "0")}`);
  let base: OrSet = { entries: [], vv: busyVector(regions) };
  base = orsetApply(base, { add: shared, remove: [] }, r2);
  const a = orsetApply(base, { add: ["a-0", "a-1", "a-2", "a-3"], remove: shared.slice(0, 4) }, r0);
  const b = orsetApply(base, { add: ["b-0", "b-1", "b-2", "b-3"], remove: shared.slice(4, 8) }, r1);
  return [a, b];
}

/** Counts merges that returned nothing: reading every result keeps the JIT from dropping the work. */
let sink = 0;

/** Runs `fn` repeatedly for about `durationMs` and returns nanoseconds per call. */
function round(fn: () => unknown, durationMs: number): number {
  let batch = 64;
  let calls = 0;
  let elapsedMs = 0;
  while (elapsedMs < durationMs) {
    const start = performance.now();
    for (let i = 0; i < batch; i += 1) if (fn() === undefined) sink += 1;
    elapsedMs += performance.now() - start;
    calls += batch;
    batch = Math.min(batch * 2, BATCH_MAX);
  }
  return (elapsedMs * 1e6) / calls;
}

interface Row {
  readonly regions: number;
  readonly name: string;
  readonly nsPerOp: number;
}

function measure(regions: number, name: string, fn: () => unknown): Row {
  round(fn, WARMUP_MS);
  const rounds = Array.from({ length: ROUNDS }, () => round(fn, ROUND_MS)).sort((x, y) => x - y);
  return { regions, name, nsPerOp: rounds[Math.floor(ROUNDS / 2)] as number };
}

function cases(regions: readonly RegionId[]): Row[] {
  const n = regions.length;
  const [la, lb] = lwwPair(regions);
  const [pa, pb] = pnPair(regions);
  const [ma, mb] = mvPair(regions);
  const [oa, ob] = orsetPair(regions);
  if (lwwMergeReport(la, lb).conflict === undefined) throw new Error("the LWW pair must be concurrent");
  if (mvMerge(ma, mb).siblings.length !== 2) throw new Error("the MV pair must keep two siblings");
  return [
    measure(n, "LWW register merge", () => lwwMerge(la, lb)),
    measure(n, "LWW register merge + report", () => lwwMergeReport(la, lb)),
    measure(n, "PN-counter merge", () => pnMerge(pa, pb)),
    measure(n, "version vector merge", () => vvMerge(la.vv, lb.vv)),
    measure(n, "version vector compare", () => vvCompare(la.vv, lb.vv)),
    measure(n, "MV register merge (2 siblings)", () => mvMerge(ma, mb)),
    measure(n, `OR-set merge (${SET_SIZE + 4} members)`, () => orsetMerge(oa, ob)),
  ];
}

interface Sizes {
  readonly regions: number;
  readonly stampBytes: number;
  readonly vvBytes: number;
  readonly vvBase64Chars: number;
  readonly metadataBytes: number;
  readonly stampText: string;
}

function sizes(regions: readonly RegionId[]): Sizes {
  const [register] = lwwPair(regions);
  const stampWriter = new ByteWriter();
  writeHlc(stampWriter, register.stamp);
  const vvWriter = new ByteWriter();
  writeVv(vvWriter, register.vv);
  // The version metadata is exactly what the register encoding puts before the content type.
  const metadata = new ByteWriter();
  writeHlc(metadata, register.stamp);
  writeVv(metadata, register.vv);
  const vvBytes = vvWriter.finish();
  return {
    regions: regions.length,
    stampBytes: stampWriter.finish().length,
    vvBytes: vvBytes.length,
    vvBase64Chars: toBase64Url(vvBytes).length,
    metadataBytes: metadata.finish().length,
    stampText: formatHlc(register.stamp),
  };
}

function pad(text: string, width: number): string {
  return text.padEnd(width);
}

function padLeft(text: string, width: number): string {
  return text.padStart(width);
}

function verdict(okay: boolean): string {
  return okay ? "met" : "MISSED";
}

function formatRate(nsPerOp: number): string {
  return Math.round(1e9 / nsPerOp).toLocaleString("en-US");
}

function main(): void {
  const startMs = performance.now();
  const regionSets = [4, 8].map((n) => LOCATION_HINTS.slice(0, n));
  const rows = regionSets.flatMap(cases);

  console.log(`bench:core on Node ${process.version}: median of ${ROUNDS} rounds of ${ROUND_MS} ms per case\n`);
  console.log("Merge throughput (every pair concurrent; each region ~1e6 writes)");
  const header = `${pad("case", 34)}${padLeft("regions", 8)}${padLeft("merges/s", 14)}${padLeft("ns/merge", 11)}`;
  console.log(header);
  console.log("-".repeat(header.length));
  for (const row of rows) {
    console.log(
      `${pad(row.name, 34)}${padLeft(String(row.regions), 8)}${padLeft(formatRate(row.nsPerOp), 14)}${padLeft(row.nsPerOp.toFixed(0), 11)}`,
    );
  }

  console.log("\nVersion metadata of one key (each region ~1e6 writes)");
  const sizeHeader = `${pad("regions", 9)}${padLeft("stamp B", 9)}${padLeft("vector B", 10)}${padLeft("vector b64url", 15)}${padLeft("stamp+vector B", 16)}  stamp text`;
  console.log(sizeHeader);
  console.log("-".repeat(sizeHeader.length + 20));
  const allSizes = regionSets.map(sizes);
  for (const s of allSizes) {
    console.log(
      `${pad(String(s.regions), 9)}${padLeft(String(s.stampBytes), 9)}${padLeft(String(s.vvBytes), 10)}${padLeft(String(s.vvBase64Chars), 15)}${padLeft(String(s.metadataBytes), 16)}  ${s.stampText}`,
    );
  }

  console.log("\nTargets");
  const metadata8 = allSizes.find((s) => s.regions === 8)?.metadataBytes ?? Number.NaN;
  const lww8 = rows.find((row) => row.regions === 8 && row.name === "LWW register merge")?.nsPerOp ?? Number.NaN;
  const mv8 = rows.find((row) => row.regions === 8 && row.name.startsWith("MV register"))?.nsPerOp ?? Number.NaN;
  console.log(
    `  version metadata, 8 regions: ${metadata8} B (target <= ${TARGET_METADATA_BYTES} B): ${verdict(metadata8 <= TARGET_METADATA_BYTES)}`,
  );
  console.log(
    `  LWW register merge, 8 regions: ${(lww8 / 1000).toFixed(2)} us (target well under ${TARGET_REGISTER_MERGE_NS / 1000} us): ${verdict(lww8 < TARGET_REGISTER_MERGE_NS)}`,
  );
  console.log(
    `  MV register merge, 8 regions: ${(mv8 / 1000).toFixed(2)} us (target well under ${TARGET_REGISTER_MERGE_NS / 1000} us): ${verdict(mv8 < TARGET_REGISTER_MERGE_NS)}`,
  );
  if (sink !== 0) console.log(`\n${sink} timed calls returned undefined: the cases are broken`);
  console.log(`\ndone in ${((performance.now() - startMs) / 1000).toFixed(1)} s`);
}

main();
