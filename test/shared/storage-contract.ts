// One contract suite for every `ReplicaStorage` adapter, in the manner of automerge-repo's
// storage adapter tests: the SQLite adapter (test/workers/storage.test.ts) and the simulator's
// in-memory one (test/shared/memory-storage.test.ts) run the same tests, so the simulator's
// verdicts hold for the Durable Object. Every test body is synchronous because the storage is:
// the SQLite harness runs each body inside one `transactionSync`, which cannot await.
import { MERKLE_BUCKETS, MERKLE_DIGEST_BYTES, MerkleLevels, bucketOf, stateDigest } from "../../shared/merkle.ts";
import { describe, expect, it } from "vitest";
import { hlcNow, hlcZero } from "../../shared/hlc.ts";
import { type RegionId } from "../../shared/regions.ts";
import { type KeyOp, type KeyState, applyKeyOp, encodeKeyState, keyVersion } from "../../shared/store/key-state.ts";
import { CHANGES_RETAINED } from "../../shared/store/changes.ts";
import { putKey } from "../../shared/store/tree.ts";
import { EMPTY_PROGRESS, type PeerProgress } from "../../shared/store/progress.ts";
import {
  type ConflictInput,
  type DeadLetterInput,
  type LogRow,
  type MetricRow,
  type ReplicaStorage,
} from "../../shared/store/storage.ts";
import { EMPTY_VV, type VersionVector, vvFrom } from "../../shared/version-vector.ts";

/**
 * Runs `body` against a fresh, empty storage. `reopen` returns another adapter over the same
 * durable state, as after a restart, so a read through it comes from the durable copy and not
 * from a write-through cache (increments not yet flushed may be lost, as in a restart).
 */
export type WithStorage = (body: (storage: ReplicaStorage, reopen: () => ReplicaStorage) => void) => Promise<void>;

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A key state made by one local operation (`prior` first, when given) at wall time `atMs`. */
function stateOf(op: KeyOp, region: RegionId, atMs: number, prior?: KeyState): KeyState {
  const result = applyKeyOp(prior, op, region, hlcNow(hlcZero(region), atMs));
  if (!result.ok) throw new Error(result.error.message);
  return result.value;
}

const putOp = (value: string): KeyOp => ({
  type: "register",
  op: { kind: "put", value: text(value), contentType: "text/plain" },
});
const LIVE = stateOf(putOp("v1"), "wnam", 1_000);
const TOMBSTONE = stateOf({ type: "register", op: { kind: "delete" } }, "enam", 2_000, LIVE);
const COUNTER = stateOf({ type: "counter", delta: 3 }, "weur", 3_000);
/** A value with metadata `{"m":<byte>}` that expires at `expirationSeconds` (unix). */
const withExtras = (byte: number, expirationSeconds: number): KeyState =>
  stateOf(
    {
      type: "register",
      op: {
        kind: "put",
        value: new Uint8Array([byte]),
        contentType: "text/plain",
        metadata: `{"m":${byte}}`,
        expirationSeconds,
      },
    },
    "apac",
    4_000,
  );
/** Expires at 5,000 s (unix), long before the listings below look. */
const EXPIRING = withExtras(1, 5_000);
/** Expires far ahead. */
const LASTING = withExtras(2, 4_000_000_000);
/** When the listings look: after EXPIRING's expiration, before LASTING's. */
const NOW_MS = 1_800_000_000_000;
const SET = stateOf({ type: "set", add: ["x"], remove: [] }, "apac", 4_000);
const SEQS: VersionVector = vvFrom([
  ["wnam", 7],
  ["enam", 300],
  ["apac", 1],
]);

/** Rows in the order `bucketRows` pages them: by bucket, then by key. */
function byBucketThenKey(a: string, b: string): number {
  return bucketOf(a) - bucketOf(b) || (a < b ? -1 : a > b ? 1 : 0);
}

function put(storage: ReplicaStorage, key: string, state: KeyState, seqs = EMPTY_VV, epoch = 0): void {
  const encoded = encodeKeyState(state);
  storage.kv.put(key, state, encoded, seqs, epoch, stateDigest(encoded, epoch), bucketOf(key));
}

/** A log row whose state is `stateBytes` bytes long (null: too large to inline). */
function logRow(seq: number, stateBytes: number | null, epoch: number | null = null): LogRow {
  const state = stateBytes === null ? null : new Uint8Array(stateBytes).fill(seq % 256);
  return { seq, key: `key-${seq}`, stamp: `stamp-${seq}`, writtenMs: 10_000 + seq, state, epoch };
}

function appendAll(storage: ReplicaStorage, stateBytes: ReadonlyArray<number | null>): void {
  stateBytes.forEach((bytes, i) => storage.log.append(logRow(i + 1, bytes)));
}

/** The stored key's interface fields (an adapter may return more, such as the key itself). */
function storedKey(storage: ReplicaStorage, key: string) {
  const stored = storage.kv.get(key);
  return stored === null ? null : { encoded: stored.encoded, seqs: stored.seqs, epoch: stored.epoch };
}

const seqsOf = (rows: readonly LogRow[]): number[] => rows.map((r) => r.seq);

function conflict(key: string, winnerStamp: string, loserStamp: string, rule = "hlc"): ConflictInput {
  return {
    key,
    kind: "register",
    rule,
    detectedMs: 5_000,
    winnerStamp,
    loserStamp,
    winner: text("w"),
    loser: text("l"),
  };
}

function letter(target: string, reason: string): DeadLetterInput {
  return { origin: "enam", target, receivedMs: 6_000, attempts: 3, reason, body: text(`{"reason":"${reason}"}`) };
}

const PROGRESS: PeerProgress = {
  appliedSeq: 12,
  knownSeq: 40,
  freshMs: 7_000,
  heardMs: 7_500,
  pending: [
    { from: 14, to: 20, lastWrittenMs: 7_100 },
    { from: 30, to: 30, lastWrittenMs: 7_200 },
  ],
};

const byNameAndPeer = (rows: readonly MetricRow[]): MetricRow[] =>
  [...rows].sort((a, b) => a.name.localeCompare(b.name) || a.peer.localeCompare(b.peer));

/** Every group's observable state, except metrics (reading those flushes the buffer). */
function tables(s: ReplicaStorage) {
  return {
    kv: s.kv.rows("", null, null, 100),
    listing: s.kv.list("", null, null, 100, NOW_MS),
    log: s.log.after(0, 100, Number.MAX_SAFE_INTEGER),
    logCount: s.log.count(),
    peerSend: [...s.peerSend.all()].sort(),
    peerRecv: [s.peerRecv.get("enam"), s.peerRecv.get("weur")],
    primaries: [...s.primaries.all()].sort(),
    conflicts: s.conflicts.page(0, 100),
    deadLetters: s.deadLetters.page(0, 100),
    deadLetterCount: s.deadLetters.count(),
    deferred: s.deferred.page("strong/", 100),
    root: s.merkle.root(),
    counts: s.kv.counts(),
    deferredCount: s.deferred.count(),
    meta: [s.meta.get("clock"), s.meta.get("seq")],
  };
}

/** A deferred write of `key` at `epoch`. */
function deferredRow(key: string, epoch: number, prefix = "strong/") {
  return { prefix, key, origin: "enam", epoch, state: Uint8Array.of(1, epoch) };
}

/** A digest-sized delta, different for every `n`. */
function delta(n: number): Uint8Array {
  return Uint8Array.from({ length: MERKLE_DIGEST_BYTES }, (_, i) => (i * 7 + n) % 256);
}

/** A committed row or value in every group, so a rollback has something to restore. */
function seed(s: ReplicaStorage): void {
  s.transaction(() => {
    put(s, "k-live", LIVE, SEQS, 1);
    put(s, "k-other", COUNTER);
    s.log.append(logRow(1, 3));
    s.log.append(logRow(2, null));
    s.peerSend.set("enam", 10);
    s.peerRecv.put("enam", PROGRESS);
    s.primaries.put("strong/", { region: "enam", epoch: 1, settledEpoch: 1 });
    s.conflicts.insert(conflict("k-live", "s2", "s1"));
    s.deadLetters.insert(letter("weur", "seed"));
    s.deferred.add(deferredRow("strong/a", 1));
    s.merkle.add(
      7,
      Uint8Array.from({ length: MERKLE_DIGEST_BYTES }, (_, i) => i),
    );
    s.meta.set("clock", "c1");
    s.metrics.add("writes_total", "wnam", 1);
  });
}

/** Changes every group: overwrites, deletions and new rows alike. */
function changeEverything(s: ReplicaStorage): void {
  put(s, "k-live", TOMBSTONE, EMPTY_VV, 2);
  s.kv.delete("k-other");
  put(s, "k-new", SET);
  s.log.prune(1);
  s.log.append(logRow(3, 5, 2));
  s.log.append(logRow(4, null, 2));
  s.peerSend.set("enam", 50);
  s.peerSend.set("weur", 5);
  s.peerRecv.put("enam", { ...PROGRESS, appliedSeq: 40, pending: [] });
  s.peerRecv.put("weur", PROGRESS);
  s.primaries.put("strong/", { region: "weur", epoch: 2, settledEpoch: 1 });
  s.primaries.put("manual/", { region: "wnam", epoch: 1, settledEpoch: 1 });
  s.conflicts.insert(conflict("k-new", "s4", "s3"));
  const [seeded] = s.deadLetters.page(0, 1);
  s.deadLetters.delete([seeded!.id]);
  s.deadLetters.insert(letter("apac", "changed"));
  s.deadLetters.insert(letter("eeur", "changed"));
  const [kept] = s.deferred.page("strong/", 1);
  s.deferred.delete([kept!.id]);
  s.deferred.add(deferredRow("strong/b", 2));
  s.deferred.add(deferredRow("strong/c", 2));
  s.merkle.add(9, new Uint8Array(MERKLE_DIGEST_BYTES).fill(1));
  s.meta.set("clock", "c2");
  s.meta.set("seq", "9");
  s.metrics.add("writes_total", "wnam", 10);
  s.metrics.add("conflicts_total", "enam", 1);
}

/** The error `fn` throws (fails the test when it returns). */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected a throw");
}

/** Declares the contract's tests for the adapter called `name`. */
/** A change record's input for `key`. */
const change = (key: string, origin: RegionId = "wnam") => ({
  key,
  type: "register" as const,
  version: `v-${key}`,
  origin,
  deleted: false,
});

export function storageContract(name: string, withStorage: WithStorage): void {
  describe(`${name} satisfies the ReplicaStorage contract`, () => {
    it("starts empty in every group", () =>
      withStorage((s) => {
        expect(s.kv.get("a")).toBeNull();
        expect(s.kv.rows("", null, null, 10)).toEqual([]);
        expect(s.log.count()).toBe(0);
        expect(s.peerRecv.get("enam")).toEqual(EMPTY_PROGRESS);
        expect(s.metrics.all()).toEqual([]);
        expect(tables(s)).toEqual({
          kv: [],
          listing: [],
          log: [],
          logCount: 0,
          peerSend: [],
          peerRecv: [EMPTY_PROGRESS, EMPTY_PROGRESS],
          primaries: [],
          conflicts: [],
          deadLetters: [],
          deadLetterCount: 0,
          deferred: [],
          deferredCount: 0,
          root: new Uint8Array(MERKLE_DIGEST_BYTES),
          counts: { live: 0, tombstones: 0 },
          meta: [undefined, undefined],
        });
      }));

    describe("kv", () => {
      it("round-trips a key's bytes, seqs and epoch, and a second put replaces all three", () =>
        withStorage((s, reopen) => {
          put(s, "k", LIVE, SEQS, 4);
          expect(storedKey(s, "k")).toEqual({ encoded: encodeKeyState(LIVE), seqs: SEQS, epoch: 4 });
          put(s, "k", COUNTER, EMPTY_VV, 0);
          expect(storedKey(s, "k")).toEqual({ encoded: encodeKeyState(COUNTER), seqs: {}, epoch: 0 });
          expect(storedKey(reopen(), "k")).toEqual({ encoded: encodeKeyState(COUNTER), seqs: {}, epoch: 0 });
          expect(s.kv.get("K")).toBeNull();
        }));

      it("deletes one key entirely, tombstone or not, and ignores unknown keys", () =>
        withStorage((s) => {
          put(s, "a", LIVE);
          put(s, "b", TOMBSTONE);
          put(s, "c", LIVE);
          s.kv.delete("a");
          s.kv.delete("b");
          s.kv.delete("never-written");
          expect([s.kv.get("a"), s.kv.get("b")]).toEqual([null, null]);
          expect(s.kv.rows("", null, null, 10).map((r) => r.key)).toEqual(["c"]);
          expect(s.kv.list("", null, null, 10, NOW_MS).map((r) => r.name)).toEqual(["c"]);
        }));

      it("lists live keys only, with their versions, in [low, high) after the cursor, at most limit", () =>
        withStorage((s) => {
          put(s, "a", LIVE);
          put(s, "b", TOMBSTONE);
          put(s, "c", COUNTER);
          put(s, "d", SET);
          put(s, "e", LIVE);
          const names = (low: string, high: string | null, after: string | null, limit: number) =>
            s.kv.list(low, high, after, limit, NOW_MS).map((r) => r.name);
          expect(s.kv.list("", null, null, 10, NOW_MS)).toEqual([
            { name: "a", version: keyVersion(LIVE) },
            { name: "c", version: keyVersion(COUNTER) },
            { name: "d", version: keyVersion(SET) },
            { name: "e", version: keyVersion(LIVE) },
          ]);
          expect(names("b", "d", null, 10)).toEqual(["c"]);
          expect(names("c", "e", null, 10)).toEqual(["c", "d"]);
          expect(names("", null, "c", 10)).toEqual(["d", "e"]);
          expect(names("c", null, "a", 10)).toEqual(["c", "d", "e"]);
          expect(names("", null, null, 2)).toEqual(["a", "c"]);
          expect(names("", "e", "c", 1)).toEqual(["d"]);
          expect(names("", null, "e", 10)).toEqual([]);
        }));

      it("lists a value's expiration and metadata, and leaves out values expired by then", () =>
        withStorage((s, reopen) => {
          put(s, "a", EXPIRING);
          put(s, "b", LASTING);
          put(s, "c", LIVE);
          const expected = [
            { name: "b", version: keyVersion(LASTING), expiration: 4_000_000_000, metadata: '{"m":2}' },
            { name: "c", version: keyVersion(LIVE) },
          ];
          expect(s.kv.list("", null, null, 10, NOW_MS)).toEqual(expected);
          expect(reopen().kv.list("", null, null, 10, NOW_MS)).toEqual(expected);
          // Before its expiration it is listed like any other value.
          expect(s.kv.list("", null, null, 1, 4_999_999)).toEqual([
            { name: "a", version: keyVersion(EXPIRING), expiration: 5_000, metadata: '{"m":1}' },
          ]);
          // A later plain write replaces both, as in Workers KV.
          put(s, "b", LIVE);
          expect(s.kv.list("b", null, null, 1, NOW_MS)).toEqual([{ name: "b", version: keyVersion(LIVE) }]);
        }));

      it("orders keys by UTF-8 bytes, where characters beyond U+FFFF sort after U+E000..U+FFFF", () =>
        withStorage((s) => {
          const keys = ["\u{1F600}", "z", "\uFFFD", "\u{10000}", "\uE000", "a"];
          const utf8Order = ["a", "z", "\uE000", "\uFFFD", "\u{10000}", "\u{1F600}"];
          // The fixture must tell the two orders apart, or this test could not fail.
          expect([...keys].sort()).not.toEqual(utf8Order);
          for (const key of keys) put(s, key, LIVE);
          expect(s.kv.list("", null, null, 10, NOW_MS).map((r) => r.name)).toEqual(utf8Order);
          expect(s.kv.rows("", null, null, 10).map((r) => r.key)).toEqual(utf8Order);
          expect(s.kv.list("\uE000", "\u{1F600}", null, 10, NOW_MS).map((r) => r.name)).toEqual([
            "\uE000",
            "\uFFFD",
            "\u{10000}",
          ]);
          expect(s.kv.list("", null, "\uFFFD", 10, NOW_MS).map((r) => r.name)).toEqual(["\u{10000}", "\u{1F600}"]);
          expect(s.kv.rows("\uFFFE", null, "\u{10000}", 10).map((r) => r.key)).toEqual(["\u{1F600}"]);
        }));

      it("pages rows with tombstones included, in [low, high) after the cursor, at most limit", () =>
        withStorage((s, reopen) => {
          put(s, "a", LIVE, SEQS, 3);
          put(s, "b", TOMBSTONE, vvFrom([["enam", 2]]), 0);
          put(s, "c", COUNTER);
          expect(reopen().kv.rows("", null, null, 10)).toEqual([
            {
              key: "a",
              encoded: encodeKeyState(LIVE),
              seqs: SEQS,
              epoch: 3,
              digest: stateDigest(encodeKeyState(LIVE), 3),
            },
            {
              key: "b",
              encoded: encodeKeyState(TOMBSTONE),
              seqs: { enam: 2 },
              epoch: 0,
              digest: stateDigest(encodeKeyState(TOMBSTONE), 0),
            },
            {
              key: "c",
              encoded: encodeKeyState(COUNTER),
              seqs: {},
              epoch: 0,
              digest: stateDigest(encodeKeyState(COUNTER), 0),
            },
          ]);
          const keys = (low: string, high: string | null, after: string | null, limit: number) =>
            s.kv.rows(low, high, after, limit).map((r) => r.key);
          expect(keys("b", "c", null, 10)).toEqual(["b"]);
          expect(keys("", null, "a", 10)).toEqual(["b", "c"]);
          expect(keys("", null, null, 2)).toEqual(["a", "b"]);
          expect(keys("a", null, "b", 1)).toEqual(["c"]);
        }));
    });

    describe("log", () => {
      it("returns rows after the cursor in seq order, field for field, at most limit", () =>
        withStorage((s, reopen) => {
          const rows = [logRow(3, 2, 7), logRow(1, null), logRow(2, 4)];
          for (const row of rows) s.log.append(row);
          expect(s.log.count()).toBe(3);
          expect(reopen().log.after(0, 10, 1_000)).toEqual([rows[1], rows[2], rows[0]]);
          expect(seqsOf(s.log.after(1, 10, 1_000))).toEqual([2, 3]);
          expect(seqsOf(s.log.after(0, 2, 1_000))).toEqual([1, 2]);
          expect(s.log.after(3, 10, 1_000)).toEqual([]);
        }));

      it("refuses a second row with the same seq and keeps the first", () =>
        withStorage((s) => {
          s.log.append(logRow(1, 2));
          expect(() => s.log.append(logRow(1, 9))).toThrow(/UNIQUE constraint failed/);
          expect(s.log.after(0, 10, 1_000)).toEqual([logRow(1, 2)]);
        }));

      it("stops once the state bytes before a row reach bytesMax", () =>
        withStorage((s) => {
          appendAll(s, [4, 4, 4, 4]);
          expect(seqsOf(s.log.after(0, 10, 8))).toEqual([1, 2]);
          expect(seqsOf(s.log.after(0, 10, 9))).toEqual([1, 2, 3]);
          expect(seqsOf(s.log.after(0, 10, 1))).toEqual([1]);
          expect(seqsOf(s.log.after(1, 10, 8))).toEqual([2, 3]);
          expect(seqsOf(s.log.after(0, 3, 1_000))).toEqual([1, 2, 3]);
        }));

      it("always returns the first row, however large, so one large state still drains", () =>
        withStorage((s) => {
          appendAll(s, [100, 1]);
          expect(seqsOf(s.log.after(0, 10, 10))).toEqual([1]);
          expect(seqsOf(s.log.after(0, 10, 0))).toEqual([1]);
        }));

      it("counts a null state as 0 bytes", () =>
        withStorage((s) => {
          appendAll(s, [null, null, 4, null, 4]);
          expect(seqsOf(s.log.after(0, 10, 4))).toEqual([1, 2, 3]);
          expect(seqsOf(s.log.after(0, 10, 5))).toEqual([1, 2, 3, 4, 5]);
          expect(seqsOf(s.log.after(3, 10, 1))).toEqual([4, 5]);
          // A budget of 0 is spent before the second row, though the rows before it hold no bytes.
          expect(seqsOf(s.log.after(0, 10, 0))).toEqual([1]);
        }));

      it("prunes every row up to a seq and nothing after it", () =>
        withStorage((s) => {
          appendAll(s, [1, 1, 1, 1]);
          s.log.prune(0);
          expect(s.log.count()).toBe(4);
          s.log.prune(2);
          expect(s.log.count()).toBe(2);
          expect(seqsOf(s.log.after(0, 10, 1_000))).toEqual([3, 4]);
          s.log.prune(Number.MAX_SAFE_INTEGER);
          expect(s.log.count()).toBe(0);
        }));
    });

    it("raises send watermarks per target and never lowers them", () =>
      withStorage((s, reopen) => {
        expect(s.peerSend.all().size).toBe(0);
        s.peerSend.set("enam", 5);
        expect(s.peerSend.all().get("enam")).toBe(5);
        s.peerSend.set("enam", 9);
        s.peerSend.set("enam", 3);
        s.peerSend.set("weur", 1);
        expect([...s.peerSend.all()].sort()).toEqual([
          ["enam", 9],
          ["weur", 1],
        ]);
        expect([...reopen().peerSend.all()].sort()).toEqual([
          ["enam", 9],
          ["weur", 1],
        ]);
      }));

    it("round-trips peer progress, pending ranges included, per origin", () =>
      withStorage((s, reopen) => {
        expect(s.peerRecv.get("enam")).toEqual(EMPTY_PROGRESS);
        s.peerRecv.put("enam", PROGRESS);
        s.peerRecv.put("weur", EMPTY_PROGRESS);
        expect(s.peerRecv.get("enam")).toEqual(PROGRESS);
        expect(reopen().peerRecv.get("enam")).toEqual(PROGRESS);
        expect(reopen().peerRecv.get("weur")).toEqual(EMPTY_PROGRESS);
        const caughtUp = { ...PROGRESS, appliedSeq: 40, pending: [] };
        s.peerRecv.put("enam", caughtUp);
        expect(reopen().peerRecv.get("enam")).toEqual(caughtUp);
      }));

    it("stores one primary record per prefix, the latest put winning", () =>
      withStorage((s, reopen) => {
        s.primaries.put("strong/", { region: "enam", epoch: 1, settledEpoch: 1 });
        s.primaries.put("manual/", { region: "wnam", epoch: 1, settledEpoch: 0 });
        s.primaries.put("strong/", { region: "weur", epoch: 2, settledEpoch: 1 });
        const expected = [
          ["manual/", { region: "wnam", epoch: 1, settledEpoch: 0 }],
          ["strong/", { region: "weur", epoch: 2, settledEpoch: 1 }],
        ];
        expect([...s.primaries.all()].sort()).toEqual(expected);
        expect([...reopen().primaries.all()].sort()).toEqual(expected);
      }));

    it("records a conflict once per key and stamp pair, and pages them by id", () =>
      withStorage((s) => {
        expect(s.conflicts.insert(conflict("k", "s2", "s1"))).toBe(true);
        // Only the key and the two stamps identify a conflict: a redelivery may differ in the rest.
        expect(s.conflicts.insert({ ...conflict("k", "s2", "s1", "region_tiebreak"), detectedMs: 9 })).toBe(false);
        expect(s.conflicts.insert(conflict("k", "s2", "s0"))).toBe(true);
        expect(s.conflicts.insert(conflict("k", "s3", "s1"))).toBe(true);
        expect(s.conflicts.insert(conflict("j", "s2", "s1"))).toBe(true);
        const rows = s.conflicts.page(0, 10);
        const { winnerStamp: _w, loserStamp: _l, ...fields } = conflict("k", "s2", "s1");
        expect(rows[0]).toEqual({ id: rows[0]!.id, ...fields });
        expect(rows.map((r) => r.key)).toEqual(["k", "k", "k", "j"]);
        const ids = rows.map((r) => r.id);
        expect(ids).toEqual([...ids].sort((a, b) => a - b));
        expect(new Set(ids).size).toBe(4);
        expect(s.conflicts.page(ids[0]!, 2).map((r) => r.id)).toEqual([ids[1], ids[2]]);
        expect(s.conflicts.page(ids[3]!, 10)).toEqual([]);
      }));

    it("records dead letters with their target, pages them by id, deletes by id and counts them", () =>
      withStorage((s, reopen) => {
        const inputs = [letter("weur", "one"), letter("apac", "two"), letter("", "three")];
        for (const input of inputs) s.deadLetters.insert(input);
        const rows = reopen().deadLetters.page(0, 10);
        expect(rows).toEqual(inputs.map((input, i) => ({ ...input, id: rows[i]!.id })));
        const ids = rows.map((r) => r.id);
        expect(ids[0]! < ids[1]! && ids[1]! < ids[2]!).toBe(true);
        expect(s.deadLetters.count()).toBe(3);
        expect(s.deadLetters.page(ids[0]!, 1).map((r) => r.reason)).toEqual(["two"]);
        s.deadLetters.delete([]);
        s.deadLetters.delete([ids[0]!, ids[2]!, ids[2]! + 1_000]);
        expect(s.deadLetters.count()).toBe(1);
        expect(s.deadLetters.page(0, 10).map((r) => r.reason)).toEqual(["two"]);
      }));

    it("keeps deferred writes per prefix, oldest first, and deletes and counts them", () =>
      withStorage((s, reopen) => {
        const inputs = [deferredRow("strong/a", 1), deferredRow("other/x", 2, "other/"), deferredRow("strong/b", 3)];
        for (const input of inputs) s.deferred.add(input);
        const rows = reopen().deferred.page("strong/", 10);
        expect(rows.map(({ id: _id, ...rest }) => rest)).toEqual([inputs[0], inputs[2]]);
        expect(rows[0]!.id < rows[1]!.id).toBe(true);
        expect(s.deferred.page("strong/", 1).map((r) => r.key)).toEqual(["strong/a"]);
        expect(s.deferred.count()).toBe(3);
        s.deferred.delete([rows[0]!.id]);
        expect(s.deferred.page("strong/", 10).map((r) => r.key)).toEqual(["strong/b"]);
        expect(s.deferred.count()).toBe(2);
      }));

    it("rewinds a send watermark only downwards, and only for a target sent to", () =>
      withStorage((s, reopen) => {
        s.peerSend.set("enam", 40);
        s.peerSend.rewind("enam", 50);
        s.peerSend.rewind("weur", 3);
        expect(s.peerSend.all()).toEqual(new Map([["enam", 40]]));
        s.peerSend.rewind("enam", 12);
        for (const storage of [s, reopen()]) expect(storage.peerSend.all()).toEqual(new Map([["enam", 12]]));
        s.peerSend.set("enam", 13);
        expect(s.peerSend.all().get("enam")).toBe(13);
      }));

    it("keeps each peer's latest report, and drops a report written in a rolled-back transaction", () =>
      withStorage((s, reopen) => {
        const report = { seq: 9, applied: { wnam: 4, weur: 0 }, heardMs: 1234, baseSeq: 1_048_580, priorSeq: 4 };
        s.peerReports.put("enam", report);
        s.peerReports.put("enam", { ...report, seq: 10 });
        expect(() =>
          s.transaction(() => {
            s.peerReports.put("weur", report);
            throw new Error("abort");
          }),
        ).toThrow("abort");
        for (const storage of [s, reopen()])
          expect(storage.peerReports.all()).toEqual(new Map([["enam", { ...report, seq: 10 }]]));
      }));

    it("deletes conflicts by id and counts the rest; a deleted one may be recorded again", () =>
      withStorage((s, reopen) => {
        for (const key of ["a", "b", "c"]) expect(s.conflicts.insert(conflict(key, "w", "l"))).toBe(true);
        const [a, b] = s.conflicts.page(0, 2);
        s.conflicts.delete([a!.id, b!.id, 999]);
        for (const storage of [s, reopen()]) {
          expect(storage.conflicts.count()).toBe(1);
          expect(storage.conflicts.page(0, 10).map((r) => r.key)).toEqual(["c"]);
        }
        expect(s.conflicts.insert(conflict("a", "w", "l"))).toBe(true);
        expect(s.conflicts.page(0, 10).map((r) => r.key)).toEqual(["c", "a"]);
      }));

    it("sums Merkle bucket deltas into the buckets and every level above, and forgets emptied buckets", () =>
      withStorage((s, reopen) => {
        s.merkle.add(0x1234, delta(1));
        s.merkle.add(0x1235, delta(2));
        s.merkle.add(0xffff, delta(3));
        const expected = MerkleLevels.fromBuckets([
          [0x1234, delta(1)],
          [0x1235, delta(2)],
          [0xffff, delta(3)],
        ]);
        for (const storage of [s, reopen()]) {
          expect(storage.merkle.root()).toEqual(expected.root());
          // The buckets' parent (level 3, node 0x123) shows the two buckets under it.
          const leaves = storage.merkle.children(3, 0x123);
          expect(leaves[4]).toEqual(delta(1));
          expect(leaves[5]).toEqual(delta(2));
          expect(leaves[0]).toEqual(new Uint8Array(MERKLE_DIGEST_BYTES));
          expect(storage.merkle.children(0, 0)[1]).toEqual(expected.node(1, 1));
        }
        // XORing a delta twice takes it back out: the tree is as if it never came.
        s.merkle.add(0x1234, delta(1));
        s.merkle.add(0x1235, delta(2));
        s.merkle.add(0xffff, delta(3));
        expect(s.merkle.root()).toEqual(new Uint8Array(MERKLE_DIGEST_BYTES));
        expect(reopen().merkle.root()).toEqual(new Uint8Array(MERKLE_DIGEST_BYTES));
      }));

    it("lists a bucket's keys with their digests, counts live keys and tombstones, and pages tombstones", () =>
      withStorage((s, reopen) => {
        put(s, "x1", LIVE);
        put(s, "x2", TOMBSTONE);
        put(s, "x3", COUNTER);
        put(s, "x4", TOMBSTONE, EMPTY_VV, 2);
        const r = reopen();
        for (const key of ["x1", "x2", "x3", "x4"])
          expect(r.kv.bucket(bucketOf(key)).find((e) => e.key === key)?.digest).toEqual(s.kv.get(key)?.digest);
        expect(r.kv.counts()).toEqual({ live: 2, tombstones: 2 });
        expect(r.kv.tombstones(null, 10, NOW_MS).map((row) => [row.key, row.epoch])).toEqual([
          ["x2", 0],
          ["x4", 2],
        ]);
        expect(r.kv.tombstones("x2", 10, NOW_MS).map((row) => row.key)).toEqual(["x4"]);
        expect(r.kv.tombstones(null, 1, NOW_MS).map((row) => row.key)).toEqual(["x2"]);
        // Values expired before the given time page with them; those expiring later do not.
        put(s, "x0", EXPIRING);
        put(s, "x5", LASTING);
        expect(
          reopen()
            .kv.tombstones(null, 10, NOW_MS)
            .map((row) => row.key),
        ).toEqual(["x0", "x2", "x4"]);
        expect(s.kv.tombstones(null, 10, 5_000_000).map((row) => row.key)).toEqual(["x0", "x2", "x4"]);
        expect(s.kv.tombstones(null, 10, 4_999_999).map((row) => row.key)).toEqual(["x2", "x4"]);
        expect(r.kv.undigested(10)).toEqual([]);
      }));

    it("reads many keys at once as get reads each, leaving absent ones out, past one statement's worth", () =>
      withStorage((s, reopen) => {
        const keys = Array.from({ length: 250 }, (_, i) => `m${i}`);
        keys.forEach((key, i) => {
          if (i % 3 !== 0) put(s, key, i % 2 === 0 ? LIVE : TOMBSTONE);
        });
        const r = reopen();
        const asked = [...keys, "never-written"];
        const many = r.kv.getMany(asked);
        expect([...many.keys()].sort()).toEqual(keys.filter((_, i) => i % 3 !== 0).sort());
        for (const key of asked) expect(many.get(key) ?? null).toEqual(r.kv.get(key));
        expect(r.kv.getMany([]).size).toBe(0);
      }));

    it("pages whole buckets' rows in (bucket, key) order, in a bucket range, after a cursor", () =>
      withStorage((s, reopen) => {
        const keys = Array.from({ length: 40 }, (_, i) => `b${i}`);
        for (const key of keys) put(s, key, LIVE);
        s.kv.delete("b7");
        const r = reopen();
        const expected = keys.filter((k) => k !== "b7").sort(byBucketThenKey);
        expect(r.kv.bucketRows(0, MERKLE_BUCKETS, null, 100).map((row) => row.key)).toEqual(expected);
        // Pages of 7 join up to the same order, and a row carries everything `get` does.
        const paged: string[] = [];
        let after: { bucket: number; key: string } | null = null;
        for (;;) {
          const page = r.kv.bucketRows(0, MERKLE_BUCKETS, after, 7);
          paged.push(...page.map((row) => row.key));
          if (page.length < 7) break;
          const last = page.at(-1)!;
          after = { bucket: bucketOf(last.key), key: last.key };
        }
        expect(paged).toEqual(expected);
        const first = r.kv.bucketRows(0, MERKLE_BUCKETS, null, 1)[0]!;
        expect({ ...first, key: undefined }).toEqual({ ...r.kv.get(first.key), key: undefined });
        // A range holds only its buckets.
        const mid = bucketOf(expected[20]!);
        expect(r.kv.bucketRows(mid, mid + 1, null, 100).map((row) => row.key)).toEqual(
          expected.filter((k) => bucketOf(k) === mid),
        );
        expect(r.kv.bucketRows(0, mid, null, 100).every((row) => bucketOf(row.key) < mid)).toBe(true);
      }));

    it("stores named meta values, the latest set winning", () =>
      withStorage((s, reopen) => {
        expect(s.meta.get("clock")).toBeUndefined();
        s.meta.set("clock", "c1");
        s.meta.set("seq", "1");
        s.meta.set("clock", "c2");
        expect([s.meta.get("clock"), s.meta.get("seq")]).toEqual(["c2", "1"]);
        expect(reopen().meta.get("clock")).toBe("c2");
      }));

    it("accumulates metric increments per name and peer across flushes", () =>
      withStorage((s, reopen) => {
        s.metrics.add("writes_total", "wnam", 2);
        s.metrics.add("writes_total", "wnam", 3);
        s.metrics.add("writes_total", "enam", 1);
        s.metrics.flush();
        s.metrics.add("writes_total", "wnam", 5);
        s.metrics.add("conflicts_total", "wnam", 1);
        const expected = [
          { name: "conflicts_total", peer: "wnam", value: 1 },
          { name: "writes_total", peer: "enam", value: 1 },
          { name: "writes_total", peer: "wnam", value: 10 },
        ];
        expect(byNameAndPeer(s.metrics.all())).toEqual(expected);
        expect(byNameAndPeer(reopen().metrics.all())).toEqual(expected);
      }));

    describe("transactions", () => {
      it("commit every group's writes and return the body's result; reads inside see them", () =>
        withStorage((s, reopen) => {
          seed(s);
          const before = tables(s);
          let inside: ReturnType<typeof tables> | undefined;
          const result = s.transaction(() => {
            changeEverything(s);
            inside = tables(s);
            return "done";
          });
          expect(result).toBe("done");
          for (const [group, value] of Object.entries(before))
            expect({ [group]: inside?.[group as keyof typeof before] }).not.toEqual({ [group]: value });
          expect(tables(s)).toEqual(inside);
          expect(tables(reopen())).toEqual(inside);
          expect(byNameAndPeer(s.metrics.all())).toEqual([
            { name: "conflicts_total", peer: "enam", value: 1 },
            { name: "writes_total", peer: "wnam", value: 11 },
          ]);
        }));

      it("roll back every group's writes and metric increments on a throw, and rethrow the same error", () =>
        withStorage((s, reopen) => {
          seed(s);
          const metricsBefore = s.metrics.all();
          const before = tables(s);
          const failure = new Error("roll back");
          let inside: ReturnType<typeof tables> | undefined;
          const thrown = thrownBy(() =>
            s.transaction(() => {
              changeEverything(s);
              inside = tables(s);
              throw failure;
            }),
          );
          expect(thrown).toBe(failure);
          // Every group did change inside, so each comparison below could fail.
          for (const [group, value] of Object.entries(before))
            expect({ [group]: inside?.[group as keyof typeof before] }).not.toEqual({ [group]: value });
          expect(tables(s)).toEqual(before);
          expect(tables(reopen())).toEqual(before);
          expect(s.metrics.all()).toEqual(metricsBefore);
          // The rolled-back conflict is forgotten, so it records again.
          expect(s.conflicts.insert(conflict("k-new", "s4", "s3"))).toBe(true);
        }));

      it("count metric increments only when their transaction commits, keeping earlier ones", () =>
        withStorage((s) => {
          const failure = new Error("roll back");
          s.metrics.add("m", "p", 1);
          const thrown = thrownBy(() =>
            s.transaction(() => {
              s.metrics.add("m", "p", 10);
              throw failure;
            }),
          );
          expect(thrown).toBe(failure);
          s.transaction(() => s.metrics.add("m", "p", 100));
          expect(s.metrics.all()).toEqual([{ name: "m", peer: "p", value: 101 }]);
        }));

      it("keep an inner transaction's writes and increments, and the outer one's around it, on commit", () =>
        withStorage((s) => {
          s.transaction(() => {
            s.metrics.add("m", "p", 1);
            s.transaction(() => {
              s.metrics.add("m", "p", 10);
              s.meta.set("inner", "yes");
            });
            s.metrics.add("m", "p", 100);
          });
          expect(s.meta.get("inner")).toBe("yes");
          expect(s.metrics.all()).toEqual([{ name: "m", peer: "p", value: 111 }]);
        }));

      it("roll back an inner transaction that committed when the outer one throws", () =>
        withStorage((s) => {
          const failure = new Error("outer");
          const thrown = thrownBy(() =>
            s.transaction(() => {
              s.transaction(() => {
                put(s, "inner", LIVE);
                s.meta.set("inner", "yes");
                s.metrics.add("m", "p", 1);
              });
              expect(s.kv.get("inner")).not.toBeNull();
              throw failure;
            }),
          );
          expect(thrown).toBe(failure);
          expect([s.kv.get("inner"), s.meta.get("inner")]).toEqual([null, undefined]);
          expect(s.metrics.all()).toEqual([]);
        }));
    });

    describe("changes", () => {
      it("numbers changes from 1, pages them in order, and keeps them across a reopen", () =>
        withStorage((s, reopen) => {
          expect(s.changes.bounds()).toEqual({ oldest: 1, head: 0 });
          for (const key of ["a", "b", "c", "d"]) s.transaction(() => s.changes.append(change(key)));
          expect(s.changes.bounds()).toEqual({ oldest: 1, head: 4 });
          expect(s.changes.after(0, 2)).toEqual([
            { pos: 1, ...change("a") },
            { pos: 2, ...change("b") },
          ]);
          expect(s.changes.after(2, 10).map((r) => r.key)).toEqual(["c", "d"]);
          expect(s.changes.after(4, 10)).toEqual([]);
          const again = reopen();
          expect(again.changes.bounds()).toEqual({ oldest: 1, head: 4 });
          again.transaction(() => again.changes.append(change("e", "apac")));
          expect(again.changes.after(4, 10)).toEqual([{ pos: 5, ...change("e", "apac") }]);
        }));

      it("tell listeners what committed, once the outermost transaction commits, and forget what rolled back", () =>
        withStorage((s) => {
          const heard: string[][] = [];
          const stop = s.changes.listen((records) => heard.push(records.map((r) => `${r.pos}:${r.key}`)));
          s.transaction(() => {
            s.changes.append(change("a"));
            s.transaction(() => s.changes.append(change("b")));
            expect(heard).toEqual([]);
          });
          expect(heard).toEqual([["1:a", "2:b"]]);
          thrownBy(() =>
            s.transaction(() => {
              s.changes.append(change("lost"));
              throw new Error("roll back");
            }),
          );
          expect(heard).toHaveLength(1);
          s.transaction(() => s.changes.append(change("c")));
          // The rolled-back change's position is taken again: no gap a watcher could see.
          expect(heard).toEqual([["1:a", "2:b"], ["3:c"]]);
          expect(s.changes.after(0, 10).map((r) => r.key)).toEqual(["a", "b", "c"]);
          stop();
          s.transaction(() => s.changes.append(change("d")));
          expect(heard).toHaveLength(2);
        }));

      it(`keep the newest ${CHANGES_RETAINED} changes`, () =>
        withStorage((s) => {
          const total = CHANGES_RETAINED + 600;
          s.transaction(() => {
            for (let i = 1; i <= total; i += 1) s.changes.append(change(`k${i}`));
          });
          const { oldest, head } = s.changes.bounds();
          expect(head).toBe(total);
          expect(head - oldest + 1).toBeGreaterThanOrEqual(CHANGES_RETAINED);
          expect(head - oldest + 1).toBeLessThan(CHANGES_RETAINED + 300);
          expect(s.changes.after(0, 1)[0]?.pos).toBe(oldest);
        }));

      it("are recorded by putKey for each write a key takes in, not for a state it already held", () =>
        withStorage((s) => {
          const through = (state: KeyState, seqs: VersionVector) =>
            putKey(s, "k", s.kv.get("k"), state, encodeKeyState(state), seqs, 0);
          through(LIVE, { wnam: 1 });
          through(LIVE, { wnam: 1 });
          through(TOMBSTONE, { wnam: 1, enam: 1 });
          expect(s.changes.after(0, 10)).toEqual([
            { pos: 1, key: "k", type: "register", version: keyVersion(LIVE), origin: "wnam", deleted: false },
            { pos: 2, key: "k", type: "register", version: keyVersion(TOMBSTONE), origin: "enam", deleted: true },
          ]);
        }));
    });
  });
}
