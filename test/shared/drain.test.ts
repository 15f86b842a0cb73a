// When the outbox lets writes leave, on a hand-driven clock: a write after a quiet spell leaves at
// once and later ones gather in each peer's batch window; under WAN emulation a write stays in
// flight for its crossing to each peer, and never longer because a clock went back; a backlog
// drains round after round; a peer back in service is sent again what it had not confirmed. And
// the delay windows that say how long writes took to become visible.
import { describe, expect, it } from "vitest";
import { formatHlc, hlcNow, hlcZero } from "../../shared/hlc.ts";
import { type RegionId } from "../../shared/regions.ts";
import { DELAY_WINDOW, DelayWindows } from "../../shared/store/delays.ts";
import { GC_DEFAULTS } from "../../shared/store/gc.ts";
import { applyKeyOp, encodeKeyState } from "../../shared/store/key-state.ts";
import { DRAIN_ROWS_MAX } from "../../shared/store/outbox.ts";
import { ReplicaMachine } from "../../shared/store/replica-machine.ts";
import { ReplicaNode } from "../../shared/store/replica-node.ts";
import { type ReplicationMessage, WIRE_VERSION } from "../../shared/store/wire.ts";
import { type Result, ok } from "../../shared/errors.ts";
import { type Applied, type PeerApi } from "../../shared/store/contract.ts";
import { PUSH_GRACE_MS } from "../../shared/store/drain.ts";
import { type EntriesMessage } from "../../shared/store/wire.ts";
import { MemoryStorage } from "../sim/memory-storage.ts";
import { FakeClock, settle } from "./fake-clock.ts";

const REGIONS: RegionId[] = ["wnam", "enam", "weur"];
const START = 1_800_000_000_000;

interface Harness {
  node: ReplicaNode;
  clock: FakeClock;
  /** What reached the queue: target and last sequence number of each message. */
  sent: Array<[string, number]>;
  /** The queue: whether its sends fail now, and how many were tried. */
  queue: { failing: boolean; attempts: number };
}

/** A peer's answer to a direct push: applied, or refused with an error. */
type PushAnswer = (messages: readonly EntriesMessage[]) => Promise<Array<Result<Applied>>>;

function harness(
  batchMs: number,
  crossing: Partial<Record<RegionId, number>> = {},
  push?: Partial<Record<RegionId, PushAnswer>>,
): Harness {
  const clock = new FakeClock(START);
  const machine = new ReplicaMachine(
    new MemoryStorage(),
    { region: "wnam", regions: REGIONS, primaryPrefixes: [], silenceMsMax: 3000 },
    START,
  );
  if (machine.phase === "probing") machine.identify(0, false);
  const sent: Array<[string, number]> = [];
  const queue = { failing: false, attempts: 0 };
  const node = new ReplicaNode(
    machine,
    {
      now: () => clock.now(),
      timer: (ms) => clock.timer(ms),
      peer: (region) => {
        const answer = push?.[region];
        if (answer === undefined) throw new Error("no peer calls in these tests");
        return { applyReplication: answer } as unknown as PeerApi;
      },
      control: { getView: () => Promise.reject(new Error("no control")), confirmPrimary: async () => 2000 },
      queue: {
        sendBatch: async (messages: readonly ReplicationMessage[]) => {
          queue.attempts += 1;
          if (queue.failing) throw new Error("queue unavailable");
          for (const m of messages) if (m.kind === "entries") sent.push([m.target, m.to]);
        },
        crossingMs: (target) => crossing[target] ?? 0,
      },
      background: (work) => void work.catch(() => undefined),
      warn: () => undefined,
    },
    {
      heartbeatIntervalMs: 1000,
      sessionWaitMs: 0,
      batchMs,
      delaySeconds: 0,
      directPush: push !== undefined,
      antiEntropyIntervalMs: 30_000,
      gc: GC_DEFAULTS,
    },
  );
  return { node, clock, sent, queue };
}

async function write(h: Harness, key: string): Promise<void> {
  const result = await h.node.write(key, { type: "counter", delta: 1 });
  expect(result.ok).toBe(true);
  await settle();
}

describe("the outbox's timing", () => {
  it("sends a write after a quiet spell at once and gathers later ones in each peer's batch window", async () => {
    const h = harness(50);
    await write(h, "a");
    expect(h.sent).toEqual([
      ["enam", 1],
      ["weur", 1],
    ]);
    h.sent.length = 0;
    await h.clock.advance(10);
    await write(h, "b");
    await h.clock.advance(10);
    await write(h, "c");
    expect(h.sent).toEqual([]);
    await h.clock.advance(29);
    expect(h.sent).toEqual([]);
    // The window of the first send ends: both writes leave as one message per peer.
    await h.clock.advance(1);
    expect(h.sent).toEqual([
      ["enam", 3],
      ["weur", 3],
    ]);
    // Quiet again for a window: the next write leaves at once.
    h.sent.length = 0;
    await h.clock.advance(50);
    await write(h, "d");
    expect(h.sent).toEqual([
      ["enam", 4],
      ["weur", 4],
    ]);
  });

  it("holds a write in flight for its crossing to each peer, and no longer", async () => {
    const h = harness(0, { enam: 30, weur: 80 });
    await write(h, "a");
    expect(h.sent).toEqual([]);
    await h.clock.advance(29);
    expect(h.sent).toEqual([]);
    await h.clock.advance(1);
    expect(h.sent).toEqual([["enam", 1]]);
    await h.clock.advance(49);
    expect(h.sent).toEqual([["enam", 1]]);
    await h.clock.advance(1);
    expect(h.sent).toEqual([
      ["enam", 1],
      ["weur", 1],
    ]);
  });

  it("does not hold a write from a clock that has since gone back", async () => {
    const h = harness(0, { enam: 30, weur: 30 });
    // Written under a clock 10 s ahead (an injected skew, since removed).
    const written = h.node.machine.write("a", { type: "counter", delta: 1 }, {}, undefined, START + 10_000);
    expect(written.ok).toBe(true);
    await h.node.drain.flush();
    expect(h.sent).toEqual([
      ["enam", 1],
      ["weur", 1],
    ]);
  });

  it("drains a backlog round after round without waiting for the batch window", async () => {
    const h = harness(50);
    const rows = 2 * DRAIN_ROWS_MAX + 5;
    for (let i = 0; i < rows; i += 1)
      h.node.machine.write(`k${i % 100}`, { type: "counter", delta: 1 }, {}, undefined, START);
    await h.node.drain.flush();
    const last = (target: string): number => Math.max(...h.sent.filter(([t]) => t === target).map(([, to]) => to));
    // Full reads leave back to back; the short rest waits for the window like any batch.
    expect([last("enam"), last("weur")]).toEqual([2 * DRAIN_ROWS_MAX, 2 * DRAIN_ROWS_MAX]);
    await h.clock.advance(50);
    expect([last("enam"), last("weur")]).toEqual([rows, rows]);
  });
});

/** Applies every message it is handed (and records the ranges). */
const applying =
  (seen: string[]): PushAnswer =>
  async (messages) => {
    for (const m of messages) seen.push(`${m.from}-${m.to}`);
    return messages.map(() => ok({ fenced: 0 }));
  };

describe("direct pushes", () => {
  it("deliver a write at once, and the queue carries none of what a push delivered", async () => {
    const toEnam: string[] = [];
    const toWeur: string[] = [];
    const h = harness(0, {}, { enam: applying(toEnam), weur: applying(toWeur) });
    await write(h, "a");
    await write(h, "b");
    expect([toEnam, toWeur]).toEqual([
      ["1-1", "2-2"],
      ["1-1", "2-2"],
    ]);
    await h.clock.advance(PUSH_GRACE_MS);
    expect(h.sent).toEqual([]);
    expect(h.node.machine.storage.peerSend.all()).toEqual(
      new Map([
        ["enam", 2],
        ["weur", 2],
      ]),
    );
  });

  it("leave to the queue what a failed push did not deliver, after the grace, and pause", async () => {
    const toEnam: string[] = [];
    const h = harness(0, {}, { enam: applying(toEnam), weur: () => Promise.reject(new Error("weur is down")) });
    await write(h, "a");
    expect(toEnam).toEqual(["1-1"]);
    expect(h.sent).toEqual([]);
    await h.clock.advance(PUSH_GRACE_MS - 1);
    expect(h.sent).toEqual([]);
    await h.clock.advance(1);
    expect(h.sent).toEqual([["weur", 1]]);
    // Refused answers count as failures too; the paused peer is not pushed to meanwhile.
    h.sent.length = 0;
    await write(h, "b");
    expect(toEnam).toEqual(["1-1", "2-2"]);
    await h.clock.advance(PUSH_GRACE_MS);
    expect(h.sent).toEqual([["weur", 2]]);
  });

  it("move the send watermark only over pushes done in order", async () => {
    const answers: Array<(results: Array<Result<Applied>>) => void> = [];
    const held: PushAnswer = (messages) =>
      new Promise((resolve) => answers.push(() => resolve(messages.map(() => ok({ fenced: 0 })))));
    const h = harness(0, {}, { enam: held, weur: held });
    await write(h, "a");
    await write(h, "b");
    const sentTo = (peer: string): number | undefined => h.node.machine.storage.peerSend.all().get(peer);
    // enam answers its second push first: nothing moves until the first is done too.
    answers[2]?.([]);
    await settle();
    expect(sentTo("enam")).toBeUndefined();
    answers[0]?.([]);
    await settle();
    expect(sentTo("enam")).toBe(2);
    expect(sentTo("weur")).toBeUndefined();
  });
});

describe("a failed queue send", () => {
  it("waits for the next tick or write, not for a batch window or a crossing", async () => {
    // weur's copy is held for its crossing while enam's leaves: the failed round holds one back.
    const h = harness(50, { weur: 30 });
    h.queue.failing = true;
    await write(h, "a");
    expect(h.queue.attempts).toBe(1);
    for (let i = 0; i < 20; i += 1) await h.clock.advance(50);
    expect(h.queue.attempts).toBe(1);
    h.queue.failing = false;
    await h.node.drain.flush();
    expect(h.sent).toEqual([
      ["enam", 1],
      ["weur", 1],
    ]);
  });
});

describe("a peer back in service", () => {
  it("is sent again at once what it had not confirmed when it went out", async () => {
    const h = harness(0);
    await write(h, "a");
    await write(h, "b");
    expect(h.sent).toEqual([
      ["enam", 1],
      ["weur", 1],
      ["enam", 2],
      ["weur", 2],
    ]);
    // weur confirmed the first write only, then an operator took it out (the second message
    // may sit in the queue's park for half a minute).
    h.node.machine.storage.peerReports.put("weur", {
      seq: 0,
      applied: { wnam: 1 },
      heardMs: START,
      baseSeq: 0,
      priorSeq: 0,
    });
    h.node.applyView({ atMs: START + 1, health: { weur: { healthy: false, reason: "admin" } }, primaries: {} });
    await settle();
    h.sent.length = 0;
    h.node.applyView({ atMs: START + 2, health: {}, primaries: {} });
    await settle();
    expect(h.sent).toEqual([["weur", 2]]);
    // A view that changes nothing for it sends nothing again.
    h.sent.length = 0;
    h.node.applyView({ atMs: START + 3, health: {}, primaries: {} });
    await settle();
    expect(h.sent).toEqual([]);
  });
});

describe("delay windows", () => {
  it("give nearest-rank quantiles over the last writes of each origin, and totals since start", () => {
    const delays = new DelayWindows();
    expect(delays.summary("enam")).toBeUndefined();
    for (let ms = 1; ms <= 100; ms += 1) delays.record("enam", ms);
    delays.record("weur", -5);
    expect(delays.summary("enam")).toEqual({ p50Ms: 50, p99Ms: 99, samples: 100, count: 100, sumMs: 5050 });
    // A negative delay (the origin's clock ahead) counts as none.
    expect(delays.summary("weur")).toMatchObject({ p50Ms: 0, p99Ms: 0, samples: 1 });
    // The window keeps the last writes only; the totals keep counting.
    for (let i = 0; i < DELAY_WINDOW; i += 1) delays.record("enam", 7);
    expect(delays.summary("enam")).toMatchObject({
      p50Ms: 7,
      p99Ms: 7,
      samples: DELAY_WINDOW,
      count: 100 + DELAY_WINDOW,
    });
  });

  it("count a replicated write once, when it becomes visible, from its commit at the origin", async () => {
    const h = harness(0);
    const writtenMs = START - 40;
    const stamp = hlcNow(hlcZero("enam"), writtenMs);
    const state = applyKeyOp(undefined, { type: "counter", delta: 1 }, "enam", stamp);
    if (!state.ok) throw new Error(state.error.message);
    const message: ReplicationMessage = {
      v: WIRE_VERSION,
      kind: "entries",
      shard: 0,
      origin: "enam",
      target: "wnam",
      from: 1,
      to: 1,
      firstMs: START - 1000,
      entries: [{ seq: 1, key: "r", stamp: formatHlc(stamp), writtenMs, state: encodeKeyState(state.value) }],
    };
    expect((await h.node.applyReplication([message])).every((r) => r.ok)).toBe(true);
    expect(h.node.machine.delays.summary("enam")).toMatchObject({ p50Ms: 40, samples: 1 });
    // The same write again (at least once) changes nothing and is not counted again.
    expect((await h.node.applyReplication([message])).every((r) => r.ok)).toBe(true);
    expect(h.node.machine.delays.summary("enam")).toMatchObject({ samples: 1 });
  });
});
