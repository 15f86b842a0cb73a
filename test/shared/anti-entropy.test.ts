// Anti-entropy between two replicas (`shared/store/anti-entropy.ts`): one complete round leaves
// both with the CRDT merge of what each held, its cost follows the differing keys rather than the
// store's size, a bounded round says it stopped short and the next one finishes, and a complete
// round with a ready peer covers the gaps of that peer's stream (but not with a bootstrapping one).
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { equalBytes, utf8 } from "../../shared/bytes.ts";
import { fail } from "../../shared/errors.ts";
import { MERKLE_DIGEST_BYTES } from "../../shared/merkle.ts";
import { type RegionId } from "../../shared/regions.ts";
import { type RoundResult, antiEntropyRound } from "../../shared/store/anti-entropy.ts";
import { type PeerApi } from "../../shared/store/contract.ts";
import { GC_DEFAULTS } from "../../shared/store/gc.ts";
import {
  type KeyOp,
  type KeyState,
  decodeKeyState,
  encodeKeyState,
  mergeKeyState,
} from "../../shared/store/key-state.ts";
import { messagesFor } from "../../shared/store/outbox.ts";
import { type ReplicaPorts, type Timer } from "../../shared/store/ports.ts";
import { ReplicaMachine } from "../../shared/store/replica-machine.ts";
import { ReplicaNode } from "../../shared/store/replica-node.ts";
import { type EntriesMessage } from "../../shared/store/wire.ts";
import { putKey } from "../../shared/store/tree.ts";
import { MemoryStorage } from "../sim/memory-storage.ts";
import { keyOpArb, peerOver, put } from "./support.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0xae_0001;

const REGIONS: RegionId[] = ["wnam", "enam", "weur"];
const NOW = 1_800_000_000_000;

/** Timers that never fire: every flow here is driven by the test, not by time. */
const still: Timer = { done: new Promise(() => undefined), cancel: () => undefined };

function ok<T>(result: { ok: true; value: T } | { ok: false; error: { code: string; message: string } }): T {
  if (!result.ok) throw new Error(`${result.error.code}: ${result.error.message}`);
  return result.value;
}

/** A replica of `region` over fresh storage; `bootstrapping` leaves it new and pulling its peers' data. */
function nodeOf(region: RegionId, bootstrapping = false): ReplicaNode {
  const machine = new ReplicaMachine(
    new MemoryStorage(),
    { region, regions: REGIONS, primaryPrefixes: [], silenceMsMax: 3000 },
    NOW,
  );
  machine.identify(0, bootstrapping);
  const ports: ReplicaPorts = {
    now: () => NOW,
    timer: () => still,
    peer: () => {
      throw new Error("these tests call peers explicitly");
    },
    control: { getView: () => Promise.reject(new Error("no control")), confirmPrimary: async () => 2000 },
    queue: { sendBatch: () => Promise.reject(new Error("these tests deliver explicitly")) },
    background: (work) => void work.catch(() => undefined),
    warn: () => undefined,
  };
  return new ReplicaNode(machine, ports, {
    heartbeatIntervalMs: 1000,
    sessionWaitMs: 0,
    batchMs: 0,
    delaySeconds: 0,
    directPush: false,
    antiEntropyIntervalMs: 30_000,
    gc: GC_DEFAULTS,
  });
}

/** `node` as a peer sees it over RPC. */
function api(node: ReplicaNode): PeerApi {
  return peerOver(() => node);
}

/** One round initiated by `a` with `b`. */
async function round(a: ReplicaNode, b: ReplicaNode, keysMax?: number): Promise<RoundResult> {
  return ok(await antiEntropyRound(a.machine, b.machine.region, api(b), () => NOW, keysMax));
}

/** A local write at `node` (false when the key holds another type); its stream messages, one per peer. */
function write(node: ReplicaNode, key: string, op: KeyOp): EntriesMessage[] {
  const { machine } = node;
  const committed = machine.write(key, op, {}, undefined, NOW);
  if (!committed.ok) return [];
  const seq = committed.value.seq;
  const rows = machine.storage.log.after(seq - 1, 1, Number.MAX_SAFE_INTEGER);
  return machine.peers.flatMap((peer) =>
    messagesFor(machine.region, peer, machine.shard, rows, seq - 1, machine.firstWrittenMs).map((m) => m.message),
  );
}

async function deliver(target: ReplicaNode, messages: readonly EntriesMessage[]): Promise<void> {
  const mine = messages.filter((m) => m.target === target.machine.region);
  for (const result of await target.applyReplication(mine)) ok(result);
}

/** Every stored key's state, decoded. */
function states(node: ReplicaNode): Map<string, KeyState> {
  const out = new Map<string, KeyState>();
  for (const row of node.machine.storage.kv.rows("", null, null, 100_000))
    out.set(row.key, decodeKeyState(row.encoded));
  return out;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

const rootOf = (node: ReplicaNode): string => hex(node.machine.storage.merkle.root());

/** Makes `to` hold exactly what `from` holds (state, origin numbers and tree), as a finished sync would. */
function copyAll(from: ReplicaNode, to: ReplicaNode): void {
  const storage = to.machine.storage;
  storage.transaction(() => {
    for (const row of from.machine.storage.kv.rows("", null, null, 1_000_000))
      putKey(storage, row.key, storage.kv.get(row.key), decodeKeyState(row.encoded), row.encoded, row.seqs, row.epoch);
  });
}

/** The keys the property draws from: few, so both sides often write the same key. */
const KEYS = Array.from({ length: 12 }, (_, i) => `key-${i}`);
const writeArb = fc.record({ key: fc.constantFrom(...KEYS), op: keyOpArb });

describe("one anti-entropy round (property)", () => {
  it("leaves both replicas with the CRDT merge of what each held, and reports what it repaired", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(writeArb, { maxLength: 10 }),
        fc.array(writeArb, { maxLength: 15 }),
        fc.array(writeArb, { maxLength: 15 }),
        async (shared, onlyA, onlyB) => {
          const a = nodeOf("wnam");
          const b = nodeOf("enam");
          // Some history both hold through the stream, then writes each holds alone.
          for (const w of shared) await deliver(b, write(a, w.key, w.op));
          for (const w of onlyA) write(a, w.key, w.op);
          for (const w of onlyB) write(b, w.key, w.op);
          const before = { a: states(a), b: states(b) };
          const keys = new Set([...before.a.keys(), ...before.b.keys()]);
          const expected = new Map<string, Uint8Array>();
          let changes = 0;
          for (const key of keys) {
            const mine = before.a.get(key);
            const theirs = before.b.get(key);
            const merged = encodeKeyState(
              theirs === undefined ? (mine as KeyState) : mergeKeyState(mine, theirs).state,
            );
            expected.set(key, merged);
            for (const side of [mine, theirs])
              if (side === undefined || !equalBytes(encodeKeyState(side), merged)) changes += 1;
          }
          const result = await round(a, b);
          expect(result.complete).toBe(true);
          expect(rootOf(a)).toBe(rootOf(b));
          for (const node of [a, b]) {
            const after = states(node);
            expect([...after.keys()].sort()).toEqual([...keys].sort());
            for (const [key, state] of after) expect(hex(encodeKeyState(state))).toBe(hex(expected.get(key)!));
          }
          expect(result.keysRepaired).toBe(changes);
          // A round over equal trees is one root digest; one over differing trees costs more.
          expect(result.bytes === MERKLE_DIGEST_BYTES).toBe(changes === 0);
          expect(result.bytes).toBeGreaterThanOrEqual(MERKLE_DIGEST_BYTES);
          const again = await round(b, a);
          expect({ keysRepaired: again.keysRepaired, bytes: again.bytes, complete: again.complete }).toEqual({
            keysRepaired: 0,
            bytes: MERKLE_DIGEST_BYTES,
            complete: true,
          });
        },
      ),
      { seed: SEED, numRuns: 150 },
    );
  });
});

/** A value large enough that shipping every state costs clearly more than the tree walk. */
const VALUE = "x".repeat(200);

/** Two replicas holding the same `n` keys, then `d` of them changed on the first one: the round's cost. */
async function costOf(n: number, d: number): Promise<{ bytes: number; statesBytes: number; repaired: number }> {
  const a = nodeOf("wnam");
  const b = nodeOf("enam");
  for (let i = 0; i < n; i += 1) write(a, `key-${i}`, put(`${VALUE}${i}`));
  copyAll(a, b);
  expect(rootOf(a)).toBe(rootOf(b));
  // Spread the changes over the key space.
  for (let i = 0; i < d; i += 1) write(a, `key-${Math.floor((i * n) / d)}`, put(`${VALUE}changed`));
  const statesBytes = a.machine.storage.kv
    .rows("", null, null, n)
    .reduce((sum, row) => sum + row.encoded.length + utf8(row.key).length, 0);
  const result = await round(b, a);
  expect(result.complete).toBe(true);
  expect(rootOf(a)).toBe(rootOf(b));
  return { bytes: result.bytes, statesBytes, repaired: result.keysRepaired };
}

describe("the cost of a round", () => {
  it("follows the number of differing keys, not the number of keys", async () => {
    const few = await costOf(2000, 5);
    expect(few.repaired).toBe(5);
    // Far less than shipping every state.
    expect(few.bytes * 20).toBeLessThan(few.statesBytes);
    // The same five differences among ten times fewer keys cost about the same.
    const small = await costOf(200, 5);
    expect(small.repaired).toBe(5);
    expect(few.bytes).toBeLessThan(small.bytes * 1.25);
    expect(small.bytes).toBeLessThan(few.bytes * 1.25);
    // Ten times the differences cost several times more.
    const many = await costOf(2000, 50);
    expect(many.repaired).toBe(50);
    expect(many.bytes).toBeGreaterThan(few.bytes * 4);
  });
});

describe("a bounded round", () => {
  it("reports itself incomplete when capped by keysMax, and the next round finishes", async () => {
    const a = nodeOf("wnam");
    const b = nodeOf("enam");
    for (let i = 0; i < 6; i += 1) write(b, `only-b-${i}`, put(`v${i}`));
    const first = await round(a, b, 4);
    expect(first.complete).toBe(false);
    expect(first.keysRepaired).toBe(4);
    expect(a.machine.storage.kv.counts().live).toBe(4);
    expect(rootOf(a)).not.toBe(rootOf(b));
    const second = await round(a, b, 4);
    expect(second.complete).toBe(true);
    expect(second.keysRepaired).toBe(2);
    expect(rootOf(a)).toBe(rootOf(b));
  });

  it("ends with region_unavailable when the peer stops answering, keeping what it merged", async () => {
    const a = nodeOf("wnam");
    const b = nodeOf("enam");
    write(b, "k", put("v"));
    write(a, "mine", put("v"));
    const peer: PeerApi = {
      ...api(b),
      repairStates: async () => fail("region_unavailable", "enam is taken out"),
    };
    const result = await antiEntropyRound(a.machine, "enam", peer, () => NOW);
    expect(result.ok ? "ok" : result.error.code).toBe("region_unavailable");
    expect(a.machine.storage.kv.get("k")).not.toBeNull();
    // An unfinished round covers nothing of the peer's stream.
    expect(a.machine.storage.peerRecv.get("enam").appliedSeq).toBe(0);
  });
});

/** `b` writes five keys; `a` receives all of its stream but the third message. */
async function lostMessage(b: ReplicaNode): Promise<ReplicaNode> {
  const a = nodeOf("wnam");
  const streams = Array.from({ length: 5 }, (_, i) => write(b, `k${i + 1}`, put(`v${i + 1}`)));
  for (const [i, messages] of streams.entries()) if (i !== 2) await deliver(a, messages);
  expect(a.machine.storage.peerRecv.get("enam").appliedSeq).toBe(2);
  expect(a.machine.lags(NOW).enam?.entries).toBe(1);
  return a;
}

describe("progress from a complete round", () => {
  it("covers the gap a lost message left, so it no longer shows as lag", async () => {
    const b = nodeOf("enam");
    const a = await lostMessage(b);
    const result = await round(a, b);
    expect(result.complete).toBe(true);
    expect(result.keysRepaired).toBe(1);
    expect(a.machine.storage.kv.get("k3")).not.toBeNull();
    const progress = a.machine.storage.peerRecv.get("enam");
    expect(progress.appliedSeq).toBe(5);
    expect(progress.pending).toEqual([]);
    expect(a.machine.lags(NOW).enam).toMatchObject({ entries: 0, ms: 0 });
  });

  it("covers nothing when the peer is itself bootstrapping", async () => {
    const b = nodeOf("enam", true);
    expect(b.machine.phase).toBe("bootstrapping");
    const a = await lostMessage(b);
    const result = await round(a, b);
    expect(result.complete).toBe(true);
    expect(result.begin.bootstrapping).toBe(true);
    // The key itself is repaired, but a bootstrapping peer's state is no reference for its stream.
    expect(a.machine.storage.kv.get("k3")).not.toBeNull();
    expect(a.machine.storage.peerRecv.get("enam").appliedSeq).toBe(2);
    expect(a.machine.lags(NOW).enam?.entries).toBe(1);
  });
});

describe("a peer whose clock runs ahead", () => {
  it("has its registers held while their stamps are beyond the HLC bound, and merged once the clocks agree", async () => {
    const a = nodeOf("wnam");
    const b = nodeOf("enam");
    // enam's clock ran 90 s ahead when it wrote k; a counter carries no stamp and passes.
    ok(b.machine.write("k", put("ahead"), {}, undefined, NOW + 90_000));
    ok(b.machine.write("c", { type: "counter", delta: 1 }, {}, undefined, NOW + 90_000));
    const first = ok(await antiEntropyRound(a.machine, "enam", api(b), () => NOW));
    expect(a.machine.storage.kv.get("k")).toBeNull();
    expect(a.machine.storage.kv.get("c")).not.toBeNull();
    // Held, so the round does not claim to hold what the peer held.
    expect(first.complete).toBe(false);
    expect(a.machine.storage.metrics.all()).toContainEqual({
      name: "anti_entropy_skew_held_total",
      peer: "enam",
      value: 1,
    });
    // Within the bound of wnam's clock: taken, and the round completes.
    const later = ok(await antiEntropyRound(a.machine, "enam", api(b), () => NOW + 31_000));
    expect(later.complete).toBe(true);
    expect(hex(a.machine.storage.kv.get("k")!.encoded)).toBe(hex(b.machine.storage.kv.get("k")!.encoded));
  });
});
