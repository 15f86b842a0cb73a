// The change feed at a replica: a watcher resuming after a position gets every later change of
// its prefix exactly once and in order, whatever interleaving of commits and reads; a position
// no longer kept gets one reset first; a reader that does not keep up is cut off.
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CHANGES_RETAINED } from "../../shared/store/changes.ts";
import {
  WATCHERS_MAX,
  WATCH_QUEUE_MAX,
  WATCH_REPLAY_PAGE,
  type WatchLine,
  type WatchSink,
  WatchHub,
  changeLine,
  formatWatchCursor,
  parseFeedLine,
  parseWatchCursor,
  watchStart,
} from "../../shared/store/watch.ts";
import { MemoryStorage } from "../sim/memory-storage.ts";

/** A sink that queues lines until the test reads them, with room for `capacity`. */
function sink(capacity = WATCH_QUEUE_MAX) {
  const queued: WatchLine[] = [];
  const read: WatchLine[] = [];
  let closed = false;
  const s: WatchSink & { read: WatchLine[]; drain(): void; closed(): boolean } = {
    get desiredSize() {
      return capacity - queued.length;
    },
    push: (line) => {
      queued.push(line);
    },
    close: () => {
      closed = true;
    },
    read,
    drain: () => read.push(...queued.splice(0)),
    closed: () => closed,
  };
  return s;
}

function setup() {
  const storage = new MemoryStorage();
  const hub = new WatchHub(storage.changes);
  storage.changes.listen((records) => hub.committed(records));
  const commit = (...keys: string[]) =>
    storage.transaction(() => {
      for (const key of keys)
        storage.changes.append({ key, type: "register", version: `v-${key}`, origin: "wnam", deleted: false });
    });
  return { storage, hub, commit };
}

/** What a sink read, the opening `start` line left out. */
const keysOf = (lines: readonly WatchLine[]) =>
  lines.filter((l) => !("start" in l)).map((l) => ("change" in l ? l.change.key : JSON.stringify(l)));

describe("a watcher", () => {
  it("hears each committed change of its prefix once, in order, from now", () => {
    const { hub, commit } = setup();
    commit("a/1", "b/1");
    const s = sink();
    const handle = hub.open("a/", null, s);
    handle?.pull();
    commit("a/2", "b/2", "a/3");
    commit("a/4");
    s.drain();
    expect(keysOf(s.read)).toEqual(["a/2", "a/3", "a/4"]);
    expect(s.read[0]).toEqual({ start: { from: 2, reset: false } });
    expect(s.read.map((l) => ("change" in l ? l.change.pos : 0))).toEqual([0, 3, 5, 6]);
  });

  it("resumes after a position with no gap and no duplicate, whatever the interleaving", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(fc.constant("pull" as const), fc.array(fc.constantFrom("p/x", "p/y", "q/z"), { maxLength: 300 })),
          {
            maxLength: 40,
          },
        ),
        fc.nat(50),
        (steps, before) => {
          const { hub, commit, storage } = setup();
          for (let i = 0; i < before; i += 1) commit(i % 2 === 0 ? "p/old" : "q/old");
          const after = Math.floor(before / 2);
          const s = sink(100_000);
          const handle = hub.open("p/", after, s);
          for (const step of steps) {
            if (step === "pull") handle?.pull();
            else commit(...step);
          }
          // The reader keeps pulling until caught up.
          for (let i = 0; i < 200; i += 1) handle?.pull();
          s.drain();
          const expected = storage.changes
            .after(after, 1_000_000)
            .filter((r) => r.key.startsWith("p/"))
            .map((r) => r.pos);
          expect(s.read.map((l) => ("change" in l ? l.change.pos : -1))).toEqual([-1, ...expected]);
        },
      ),
      { numRuns: 150 },
    );
  });

  it("replays a long journal page by page while changes keep landing, then goes live", () => {
    const { hub, commit } = setup();
    for (let i = 0; i < 3 * WATCH_REPLAY_PAGE + 7; i += 1) commit(`old${i}`);
    const s = sink(100_000);
    const handle = hub.open("", 0, s);
    const expected = Array.from({ length: 3 * WATCH_REPLAY_PAGE + 7 }, (_, i) => `old${i}`);
    for (let i = 0; i < 6; i += 1) {
      handle?.pull();
      commit(`new${i}`);
      expected.push(`new${i}`);
    }
    s.drain();
    expect(keysOf(s.read)).toEqual(expected);
  });

  it("gets one reset first when its position is no longer kept, or is from another life", () => {
    const { hub, commit } = setup();
    for (let i = 0; i < CHANGES_RETAINED + 600; i += 1) commit(`k${i}`);
    const old = sink();
    hub.open("", 3, old)?.pull();
    commit("new");
    old.drain();
    expect(old.read[0]).toEqual({ start: { from: CHANGES_RETAINED + 600, reset: true } });
    expect(keysOf(old.read)).toEqual(["new"]);
    const future = sink();
    hub.open("", 999_999, future)?.pull();
    future.drain();
    expect(future.read).toEqual([{ start: { from: CHANGES_RETAINED + 601, reset: true } }]);
  });

  it("is cut off when it falls a whole queue behind, and told where to resume", () => {
    const { hub, commit } = setup();
    const slow = sink(4); // the start line and three changes
    const fast = sink();
    hub.open("", null, slow)?.pull();
    hub.open("", null, fast)?.pull();
    commit("a", "b", "c");
    commit("d");
    expect(slow.closed()).toBe(true);
    slow.drain();
    expect(keysOf(slow.read)).toEqual(["a", "b", "c", '{"cutoff":{"pos":3}}']);
    expect(hub.size).toBe(1);
    fast.drain();
    expect(keysOf(fast.read)).toEqual(["a", "b", "c", "d"]);
  });

  it("waits for a slow reader while replaying instead of cutting it off", () => {
    const { hub, commit } = setup();
    for (let i = 0; i < 20; i += 1) commit(`k${i}`);
    const s = sink(5);
    const handle = hub.open("", 0, s);
    const seen: string[] = [];
    for (let i = 0; i < 10; i += 1) {
      handle?.pull();
      s.drain();
      seen.push(...keysOf(s.read.splice(0)));
    }
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => `k${i}`));
    expect(s.closed()).toBe(false);
  });

  it(`is refused beyond ${WATCHERS_MAX} per replica, and a cancelled one frees its place`, () => {
    const { hub } = setup();
    const handles = Array.from({ length: WATCHERS_MAX }, () => hub.open("", null, sink()));
    expect(handles.every((h) => h !== null)).toBe(true);
    expect(hub.open("", null, sink())).toBeNull();
    handles[0]?.cancel();
    expect(hub.open("", null, sink())).not.toBeNull();
  });
});

describe("positions", () => {
  it("start from now, from the asked position, or over with a reset", () => {
    expect(watchStart(null, { oldest: 5, head: 9 })).toEqual({ from: 9, reset: false });
    expect(watchStart(4, { oldest: 5, head: 9 })).toEqual({ from: 4, reset: false });
    expect(watchStart(9, { oldest: 5, head: 9 })).toEqual({ from: 9, reset: false });
    expect(watchStart(3, { oldest: 5, head: 9 })).toEqual({ from: 9, reset: true });
    expect(watchStart(10, { oldest: 5, head: 9 })).toEqual({ from: 9, reset: true });
    expect(watchStart(0, { oldest: 1, head: 0 })).toEqual({ from: 0, reset: false });
  });

  it("carry a change between replica and router as one line, whatever its key holds", () => {
    const record = {
      pos: 42,
      key: "a b\nc\u2028é",
      type: "register" as const,
      version: "v",
      origin: "apac" as const,
      deleted: true,
    };
    const line = changeLine(record);
    expect(line.includes("\n")).toBe(false);
    const parsed = parseFeedLine(line);
    expect(parsed).toEqual({ pos: 42, data: expect.any(String) });
    expect(JSON.parse((parsed as { data: string }).data)).toEqual({
      key: record.key,
      type: "register",
      version: "v",
      origin: "apac",
      deleted: true,
    });
    expect(parseFeedLine(JSON.stringify({ cutoff: { pos: 3 } }))).toEqual({ cutoff: { pos: 3 } });
  });

  it("round-trip as an event id per shard, and a cursor of another layout is invalid", () => {
    expect(parseWatchCursor(formatWatchCursor([0, 17]), 2)).toEqual([0, 17]);
    expect(parseWatchCursor(undefined, 2)).toBeNull();
    expect(parseWatchCursor("w.1.2.3", 2)).toBe("other-layout");
    expect(parseWatchCursor("w.1.x", 2)).toBe("garbled");
    expect(parseWatchCursor("1.2", 2)).toBe("garbled");
    expect(parseWatchCursor("w", 2)).toBe("garbled");
  });
});
