// The replica's async flows over in-memory storage and hand-driven ports: a failed pull refuses
// only its own message, gaps are counted after the pulls' awaits, recovery runs once at a time
// and resumes where it stopped, and the outbox hands held rows to the queue past its bound.
import { describe, expect, it } from "vitest";
import { type Result, ok } from "../../shared/errors.ts";
import { formatHlc, hlcNow, hlcZero } from "../../shared/hlc.ts";
import { type RegionId } from "../../shared/regions.ts";
import { type ClusterView } from "../../shared/store/cluster.ts";
import { type KeySnapshot, type PeerApi } from "../../shared/store/contract.ts";
import { type KeyOp, type KeyState, applyKeyOp, encodeKeyState, keyVersion } from "../../shared/store/key-state.ts";
import { PRIMARY_LEASE_MARGIN_MS, PRIMARY_LEASE_MS } from "../../shared/store/primaries.ts";
import { HELD_ROWS_MAX } from "../../shared/store/outbox.ts";
import { PENDING_RANGES_MAX } from "../../shared/store/progress.ts";
import { type ReplicaPorts, type Timer } from "../../shared/store/ports.ts";
import { RECOVERY_PAGE_KEYS } from "../../shared/store/recovery.ts";
import { ReplicaMachine } from "../../shared/store/replica-machine.ts";
import { resendAfterMs } from "../../shared/store/drain.ts";
import { GC_DEFAULTS } from "../../shared/store/gc.ts";
import { ReplicaNode } from "../../shared/store/replica-node.ts";
import { type KeyRow } from "../../shared/store/storage.ts";
import { type EntriesMessage, type ReplicationMessage, WIRE_VERSION } from "../../shared/store/wire.ts";
import { MemoryStorage } from "../sim/memory-storage.ts";

const REGIONS: RegionId[] = ["wnam", "enam", "weur"];
const NOW = 1_800_000_000_000;

/** A promise with its resolver, to hold a peer's answer until the test releases it. */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve: ((value: T) => void) | undefined;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve: resolve as (value: T) => void };
}

/** Timers that never fire: these flows are driven by the test, not by time. */
const still: Timer = { done: new Promise(() => undefined), cancel: () => undefined };

interface Harness {
  node: ReplicaNode;
  sent: ReplicationMessage[];
  peers: Map<RegionId, Partial<PeerApi>>;
}

function harness(
  region: RegionId = "weur",
  storage = new MemoryStorage(),
  overrides: Partial<ReplicaPorts> = {},
): Harness {
  const machine = new ReplicaMachine(
    storage,
    {
      region,
      regions: REGIONS,
      primaryPrefixes: [{ prefix: "strong/", region: "enam", failover: true }],
      silenceMsMax: 3000,
    },
    NOW,
  );
  // A store created with these regions: nothing to probe or bootstrap.
  if (machine.phase === "probing") machine.identify(0, false);
  const sent: ReplicationMessage[] = [];
  const peers = new Map<RegionId, Partial<PeerApi>>();
  const ports: ReplicaPorts = {
    now: () => NOW,
    timer: () => still,
    peer: (r) => peers.get(r) as PeerApi,
    control: { getView: () => Promise.reject(new Error("no control")), confirmPrimary: async () => 2000 },
    queue: {
      sendBatch: async (messages) => {
        sent.push(...messages);
      },
    },
    background: (work) => void work.catch(() => undefined),
    warn: () => undefined,
    ...overrides,
  };
  const node = new ReplicaNode(machine, ports, {
    heartbeatIntervalMs: 1000,
    sessionWaitMs: 0,
    batchMs: 0,
    delaySeconds: 0,
    directPush: false,
    antiEntropyIntervalMs: 30_000,
    gc: GC_DEFAULTS,
  });
  return { node, sent, peers };
}

function state(value: string, at = NOW): KeyState {
  const result = applyKeyOp(
    undefined,
    { type: "register", op: { kind: "put", value: new TextEncoder().encode(value), contentType: "text/plain" } },
    "enam",
    hlcNow(hlcZero("enam"), at),
  );
  if (!result.ok) throw new Error(result.error.message);
  return result.value;
}

/** A one-entry stream message from enam, inline or by reference (null state). */
function entry(seq: number, key: string, inline: boolean): EntriesMessage {
  return {
    v: WIRE_VERSION,
    kind: "entries",
    shard: 0,
    origin: "enam",
    target: "weur",
    from: seq,
    to: seq,
    firstMs: NOW - 1000,
    entries: [
      {
        seq,
        key,
        stamp: formatHlc(hlcNow(hlcZero("enam"), NOW)),
        writtenMs: NOW,
        state: inline ? encodeKeyState(state(key)) : null,
      },
    ],
  };
}

function codes(results: ReadonlyArray<Result<unknown>>): string[] {
  return results.map((r) => (r.ok ? "ok" : r.error.code));
}

describe("applying replication", () => {
  it("refuses only the message whose large state could not be pulled", async () => {
    const { node, peers } = harness();
    peers.set("enam", { snapshot: () => Promise.reject(new Error("enam is taken out")) });
    const results = await node.applyReplication([entry(2, "big", false), entry(1, "small", true)]);
    expect(codes(results)).toEqual(["region_unavailable", "ok"]);
    expect(node.machine.storage.kv.get("small")).not.toBeNull();
  });

  it("counts gaps after the pull: a message that waited is refused for later, never half-applied", async () => {
    const { node, peers } = harness();
    // Fill the gap tracker to one below its bound with isolated early ranges.
    const early = Array.from({ length: PENDING_RANGES_MAX - 1 }, (_, i) => entry(10 + 2 * i, `k${i}`, true));
    expect(codes(await node.applyReplication(early)).every((c) => c === "ok")).toBe(true);
    const pull = deferred<Result<KeySnapshot>>();
    peers.set("enam", { snapshot: () => pull.promise });
    // This message opens the last allowed gap only after its pull; meanwhile another takes it.
    const waiting = node.applyReplication([entry(100_000, "big", false)]);
    expect(codes(await node.applyReplication([entry(90_000, "other", true)]))).toEqual(["ok"]);
    pull.resolve(ok({ state: encodeKeyState(state("big")), seqs: { enam: 100_000 }, epoch: 0 }));
    expect(codes(await waiting)).toEqual(["overloaded"]);
    expect(node.machine.storage.kv.get("big")).toBeNull();
  });

  it("records every origin sequence number a pulled state holds, not only the entry's", async () => {
    const { node, peers } = harness();
    // enam's current state of the key holds its later write 9 and wnam's write 4.
    peers.set("enam", {
      snapshot: async () => ok({ state: encodeKeyState(state("big")), seqs: { wnam: 4, enam: 9 }, epoch: 0 }),
    });
    expect(codes(await node.applyReplication([entry(1, "big", false)]))).toEqual(["ok"]);
    // Collection judges the key by these (gc.ts): the entry's own number alone would understate it.
    expect(node.machine.storage.kv.get("big")?.seqs).toEqual({ wnam: 4, enam: 9 });
  });
});

/** A node that is the primary of strong/ at epoch 2, and a donor with `keys` keys of it. */
function recovering(keys: number): { h: Harness; pages: { count: number }; gate: { open: Promise<void> } } {
  const h = harness("wnam");
  const view: ClusterView = {
    atMs: NOW,
    health: {},
    primaries: { "strong/": { region: "wnam", epoch: 2, ready: false, failover: true, recoveredSeqs: [0] } },
  };
  h.node.applyView(view);
  const rows: KeyRow[] = Array.from({ length: keys }, (_, i) => {
    const key = `strong/${String(i).padStart(5, "0")}`;
    return { key, encoded: encodeKeyState(state(key)), seqs: { enam: i + 1 }, epoch: 1, digest: null };
  });
  const pages = { count: 0 };
  const gate = { open: Promise.resolve() };
  h.peers.set("weur", {
    prefixStates: async (_low, _high, after, limit) => {
      await gate.open;
      pages.count += 1;
      return ok(rows.filter((r) => after === null || r.key > after).slice(0, limit));
    },
  });
  return { h, pages, gate };
}

describe("recovery of a strong prefix", () => {
  it("runs once at a time: a second call while one runs shares it", async () => {
    const { h, pages, gate } = recovering(10);
    const held = deferred<void>();
    gate.open = held.promise;
    const first = h.node.recoverPrefix("strong/", 2, ["weur"], 0);
    const second = h.node.recoverPrefix("strong/", 2, ["weur"], 0);
    held.resolve();
    const [a, b] = await Promise.all([first, second]);
    expect(a).toEqual(b);
    expect(pages.count).toBe(1);
    expect(a.ok && a.value.done).toBe(true);
  });

  it("resumes where it stopped, after a restart, and re-logs every key once", async () => {
    const keys = RECOVERY_PAGE_KEYS * 60;
    const { h, pages } = recovering(keys);
    const first = await h.node.recoverPrefix("strong/", 2, ["weur"], 0);
    // One call does a bounded amount of work.
    expect(first.ok && first.value.done).toBe(false);
    const copied = pages.count;
    // A new instance over the same storage (an eviction) continues from the stored cursor.
    const restarted = harness("wnam", h.node.machine.storage as MemoryStorage);
    restarted.peers.set("weur", h.peers.get("weur")!);
    let done = false;
    for (let call = 0; call < 10 && !done; call += 1) {
      const step = await restarted.node.recoverPrefix("strong/", 2, ["weur"], 0);
      done = step.ok && step.value.done;
    }
    expect(done).toBe(true);
    // Pages of the donor: one per page of keys plus the short last one, none read twice.
    expect(pages.count).toBe(keys / RECOVERY_PAGE_KEYS + 1);
    expect(copied).toBeLessThan(pages.count);
    expect(restarted.node.machine.seq).toBe(keys);
    expect(restarted.node.machine.storage.primaries.all().get("strong/")?.settledEpoch).toBe(2);
  });
});

describe("the outbox", () => {
  it("holds writes for a region taken out, up to its bound, then hands them to the queue", async () => {
    const { node, sent } = harness("wnam");
    node.applyView({ atMs: NOW, health: { weur: { healthy: false, reason: "admin" } }, primaries: {} });
    for (let i = 0; i < 10; i += 1) node.machine.write(`k${i}`, { type: "counter", delta: 1 }, {}, undefined, NOW);
    await node.drain.flush();
    expect(new Set(sent.map((m) => m.target))).toEqual(new Set(["enam"]));
    expect(node.machine.storage.log.count()).toBe(10);
    for (let i = 10; i <= HELD_ROWS_MAX; i += 1)
      node.machine.write(`k${i % 50}`, { type: "counter", delta: 1 }, {}, undefined, NOW);
    await node.drain.flush();
    await node.drain.flush();
    expect(sent.some((m) => m.target === "weur")).toBe(true);
    // Handed to the queue is not applied: rows stay until both peers confirm them.
    expect(node.machine.storage.log.count()).toBe(HELD_ROWS_MAX + 1);
    const seq = node.machine.seq;
    node.machine.storage.peerReports.put("enam", {
      seq: 0,
      applied: { wnam: seq },
      heardMs: NOW,
      baseSeq: 0,
      priorSeq: 0,
    });
    node.machine.storage.peerReports.put("weur", {
      seq: 0,
      applied: { wnam: seq - 5 },
      heardMs: NOW,
      baseSeq: 0,
      priorSeq: 0,
    });
    node.drain.resendUnconfirmed();
    // Released down to the bound, the rest still held for weur: kept, and not confirmed either.
    const sentWeur = node.machine.storage.peerSend.all().get("weur") ?? 0;
    expect(seq - sentWeur).toBeLessThanOrEqual(HELD_ROWS_MAX);
    expect(node.machine.storage.log.count()).toBe(seq - sentWeur);
    // Back in service, weur gets the rest; only what it has not confirmed stays.
    node.applyView({ atMs: NOW + 1, health: {}, primaries: {} });
    for (let i = 0; i < 20 && (node.machine.storage.peerSend.all().get("weur") ?? 0) < seq; i += 1)
      await node.drain.flush();
    node.drain.resendUnconfirmed();
    expect(node.machine.storage.log.count()).toBe(5);
  });

  it("sends again what a peer leaves unconfirmed too long, and keeps it until confirmed", async () => {
    let now = NOW;
    const { node, sent } = harness("wnam", new MemoryStorage(), { now: () => now });
    for (let i = 0; i < 4; i += 1) node.machine.write(`k${i}`, { type: "counter", delta: 1 }, {}, undefined, now);
    await node.drain.flush();
    expect(sent.map((m) => [m.target, m.kind === "entries" ? m.to : 0])).toEqual([
      ["enam", 4],
      ["weur", 4],
    ]);
    // enam applied everything; weur lost the message after its first write.
    const confirm = (weur: number): void => {
      node.machine.storage.peerReports.put("enam", {
        seq: 0,
        applied: { wnam: 4 },
        heardMs: now,
        baseSeq: 0,
        priorSeq: 0,
      });
      node.machine.storage.peerReports.put("weur", {
        seq: 0,
        applied: { wnam: weur },
        heardMs: now,
        baseSeq: 0,
        priorSeq: 0,
      });
    };
    confirm(1);
    node.drain.resendUnconfirmed();
    expect(node.machine.storage.log.count()).toBe(3);
    sent.length = 0;
    now += resendAfterMs({ batchMs: 0, delaySeconds: 0, directPush: false }) - 1;
    node.drain.resendUnconfirmed();
    await node.drain.flush();
    expect(sent).toEqual([]);
    now += 1;
    // Due, but weur has not been heard from lately: nothing is sent into the void.
    node.drain.resendUnconfirmed();
    await node.drain.flush();
    expect(sent).toEqual([]);
    // weur's heartbeat arrives: the unconfirmed rows go again.
    const { storage } = node.machine;
    storage.peerRecv.put("weur", { ...storage.peerRecv.get("weur"), heardMs: now });
    node.drain.resendUnconfirmed();
    await node.drain.flush();
    expect(sent.map((m) => [m.target, m.kind === "entries" ? [m.from, m.to] : []])).toEqual([["weur", [2, 4]]]);
    expect(node.machine.storage.metrics.all()).toContainEqual({
      name: "replication_resends_total",
      peer: "weur",
      value: 1,
    });
    confirm(4);
    node.drain.resendUnconfirmed();
    expect(node.machine.storage.log.count()).toBe(0);
  });
});

describe("the periodic tick", () => {
  it("does not hang on a control object that never answers, and still heartbeats", async () => {
    const beats: RegionId[] = [];
    const h = harness("weur", new MemoryStorage(), {
      // Timers that fire at once: every bounded wait gives up immediately.
      timer: () => ({ done: Promise.resolve(), cancel: () => undefined }),
      control: { getView: () => new Promise(() => undefined), confirmPrimary: async () => 2000 },
    });
    for (const region of ["wnam", "enam"] as const)
      h.peers.set(region, {
        applyReplication: async () => {
          beats.push(region);
          return [ok({ fenced: 0 })];
        },
      });
    await h.node.tick();
    expect(beats.sort()).toEqual(["enam", "wnam"]);
  });
});

describe("session reads of a strong key while its prefix is unsettled here", () => {
  it("fetch what the token covers from the prefix's current primary, not from stream progress", async () => {
    const h = harness("weur");
    const written = state("acked");
    // enam's write 1 of epoch 1 was acknowledged by a quorum (the client's token covers it);
    // weur learned of epoch 2 (led by wnam) before enam's stream entry arrived.
    h.node.applyView({
      atMs: NOW,
      health: {},
      primaries: { "strong/": { region: "wnam", epoch: 2, ready: true, failover: true, recoveredSeqs: [9] } },
    });
    const late: EntriesMessage = {
      ...entry(1, "strong/k", true),
      entries: [{ ...entry(1, "strong/k", true).entries[0]!, epoch: 1, state: encodeKeyState(written) }],
    };
    expect(codes(await h.node.applyReplication([late]))).toEqual(["ok"]);
    // The entry was kept aside, though the stream counts it applied.
    expect(h.node.machine.storage.kv.get("strong/k")).toBeNull();
    h.peers.set("wnam", { snapshot: async () => ok({ state: encodeKeyState(written), seqs: { enam: 1 }, epoch: 2 }) });
    const read = await h.node.read("strong/k", { session: { enam: 1 } });
    expect(read.ok && read.value.view?.version).toBe(keyVersion(written));
  });
});

/** The strong prefix the harness configures, at its first epoch. */
const SCOPE = { prefix: "strong/", epoch: 1 };
/** A register write of `value`. */
const put = (value: string): KeyOp => ({
  type: "register",
  op: { kind: "put", value: new TextEncoder().encode(value), contentType: "text/plain" },
});

/** enam, the primary of strong/, with a clock the test moves, counted calls, and a control object's answer. */
function primary(answer: () => Promise<number>) {
  const clock = { nowMs: NOW };
  const calls = { confirm: 0, push: 0, covers: 0 };
  const h = harness("enam", new MemoryStorage(), {
    now: () => clock.nowMs,
    control: {
      getView: () => Promise.reject(new Error("no control")),
      confirmPrimary: () => {
        calls.confirm += 1;
        return answer();
      },
    },
  });
  for (const region of ["wnam", "weur"] as const)
    h.peers.set(region, {
      pushWrite: async () => {
        calls.push += 1;
        return ok({ fenced: 0 });
      },
      covers: async () => {
        calls.covers += 1;
        return ok(true);
      },
    });
  return { h, clock, calls };
}

describe("a strong prefix's primary under its lease", () => {
  it("asks the control object once per lease, and not again while it runs", async () => {
    const { h, clock, calls } = primary(async () => PRIMARY_LEASE_MS);
    expect((await h.node.write("strong/k", put("a"), { acks: 1, timeoutMs: 1000, strong: SCOPE })).ok).toBe(true);
    clock.nowMs += PRIMARY_LEASE_MS / 2 - 1;
    expect((await h.node.read("strong/k", { strong: SCOPE })).ok).toBe(true);
    expect(calls.confirm).toBe(1);
    // Past half the lease: served at once, renewed beside the request.
    clock.nowMs += 2;
    expect((await h.node.read("strong/k", { strong: SCOPE })).ok).toBe(true);
    expect(calls.confirm).toBe(2);
  });

  it("reads a state a majority acknowledged without asking the peers again", async () => {
    const { h, calls } = primary(async () => PRIMARY_LEASE_MS);
    await h.node.write("strong/k", put("a"), { acks: 1, timeoutMs: 1000, strong: SCOPE });
    const read = await h.node.read("strong/k", { strong: SCOPE });
    const view = read.ok ? read.value.view : null;
    expect(view?.type === "register" && view.value !== null && new TextDecoder().decode(view.value)).toBe("a");
    expect(calls.covers).toBe(0);
  });

  it("asks the peers before answering a state no majority acknowledged", async () => {
    const { h, calls } = primary(async () => PRIMARY_LEASE_MS);
    for (const region of ["wnam", "weur"] as const)
      h.peers.set(region, { pushWrite: () => Promise.reject(new Error("unreachable")), covers: async () => ok(true) });
    const write = await h.node.write("strong/k", put("a"), { acks: 1, timeoutMs: 1000, strong: SCOPE });
    expect(write.ok && write.value.complete).toBe(false);
    for (const region of ["wnam", "weur"] as const)
      h.peers.set(region, {
        covers: async () => {
          calls.covers += 1;
          return ok(true);
        },
      });
    expect((await h.node.read("strong/k", { strong: SCOPE })).ok).toBe(true);
    expect(calls.covers).toBeGreaterThan(0);
  });

  it("counts the lease from before it asked: a slow answer buys a shorter lease", async () => {
    const pending: Array<(ms: number) => void> = [];
    const { h, clock, calls } = primary(() => new Promise<number>((resolve) => pending.push(resolve)));
    /** Lets the read run until it waits for the control object (bounded: it must get there). */
    const asked = async (): Promise<(ms: number) => void> => {
      for (let i = 0; i < 100 && pending.length === 0; i += 1) await Promise.resolve();
      const answer = pending.shift();
      if (answer === undefined) throw new Error("the control object was not asked");
      return answer;
    };
    const sentMs = clock.nowMs;
    const first = h.node.read("strong/k", { strong: SCOPE });
    const answerFirst = await asked();
    clock.nowMs += 1500;
    answerFirst(PRIMARY_LEASE_MS);
    expect((await first).ok).toBe(true);
    // The control object's lease ends PRIMARY_LEASE_MS after it answered, later than sentMs +
    // PRIMARY_LEASE_MS: the primary's own must end before that, whenever the answer came.
    clock.nowMs = sentMs + PRIMARY_LEASE_MS - PRIMARY_LEASE_MARGIN_MS;
    let answered = false;
    const second = h.node.read("strong/k", { strong: SCOPE }).finally(() => {
      answered = true;
    });
    const answerSecond = await asked();
    for (let i = 0; i < 100; i += 1) await Promise.resolve();
    // The lease is out: the read waits for the control object rather than serving on it.
    expect(answered).toBe(false);
    answerSecond(PRIMARY_LEASE_MS);
    expect((await second).ok).toBe(true);
    expect(calls.confirm).toBe(2);
  });

  it("stops serving once the lease ran out and the control object refuses it", async () => {
    let granted = PRIMARY_LEASE_MS;
    const { h, clock } = primary(async () => granted);
    expect((await h.node.read("strong/k", { strong: SCOPE })).ok).toBe(true);
    granted = 0;
    clock.nowMs += PRIMARY_LEASE_MS;
    const refused = await h.node.read("strong/k", { strong: SCOPE });
    expect(refused.ok ? "ok" : refused.error.code).toBe("fenced");
    const write = await h.node.write("strong/k", put("b"), { acks: 1, timeoutMs: 1000, strong: SCOPE });
    expect(write.ok ? "ok" : write.error.code).toBe("fenced");
  });
});

/** enam's set "s" holding "a" (enam's write 1). */
function enamSet(): KeyState {
  const result = applyKeyOp(undefined, { type: "set", add: ["a"], remove: [] }, "enam", hlcNow(hlcZero("enam"), NOW));
  if (!result.ok) throw new Error(result.error.message);
  return result.value;
}
const removeA: KeyOp = { type: "set", add: [], remove: ["a"] };
const viewOf = (h: Harness, key: string) => {
  const read = h.node.machine.readLocal(key, NOW);
  return read.ok ? read.value.view : read.error.code;
};

describe("a session's write", () => {
  it("first catches the key up with what the session saw, so a remove covers the add it follows", async () => {
    const h = harness("weur");
    const added = enamSet();
    let asked = 0;
    h.peers.set("enam", {
      snapshot: async () => {
        asked += 1;
        return ok({ state: encodeKeyState(added), seqs: { enam: 1 }, epoch: 0 });
      },
    });
    const written = await h.node.write("s", removeA, { acks: 1, timeoutMs: 0, session: { enam: 1 } });
    expect(asked).toBe(1);
    expect(written.ok && written.value.view).toMatchObject({ type: "set", members: [] });
    // The add arriving later by replication changes nothing: the remove observed it.
    h.node.repair("s", { state: encodeKeyState(added), seqs: { enam: 1 }, epoch: 0 });
    expect(viewOf(h, "s")).toMatchObject({ members: [] });
  });

  it("without a session, does not wait: a remove of an add it never saw leaves the add", async () => {
    const h = harness("weur");
    h.peers.set("enam", { snapshot: () => Promise.reject(new Error("not asked")) });
    const written = await h.node.write("s", removeA, { acks: 1, timeoutMs: 0 });
    expect(written.ok).toBe(true);
    h.node.repair("s", { state: encodeKeyState(enamSet()), seqs: { enam: 1 }, epoch: 0 });
    expect(viewOf(h, "s")).toMatchObject({ members: ["a"] });
  });

  it("is refused, with nothing written, when the region it lags does not answer", async () => {
    const h = harness("weur");
    h.peers.set("enam", { snapshot: () => Promise.reject(new Error("enam is down")) });
    const written = await h.node.write("s", removeA, { acks: 1, timeoutMs: 0, session: { enam: 1 } });
    expect(codes([written])).toEqual(["region_unavailable"]);
    expect(h.node.machine.storage.kv.get("s")).toBeNull();
  });
});
