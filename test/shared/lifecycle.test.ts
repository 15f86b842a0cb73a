// A replica's life beyond the stream (`shared/store/lifecycle.ts`): a replica over new storage
// probes its peers, becomes ready at once when they hold nothing, and otherwise numbers its
// writes above its earlier life and bootstraps from them; meanwhile a request catches its key up
// from the peers first (so a restored region neither answers "absent" for a key a peer holds
// nor loses a counter's earlier increments), and a probe that a peer does not answer refuses.
import { describe, expect, it } from "vitest";
import { type Result } from "../../shared/errors.ts";
import { type RegionId } from "../../shared/regions.ts";
import { vvFrom } from "../../shared/version-vector.ts";
import { type PeerApi } from "../../shared/store/contract.ts";
import { GC_DEFAULTS, raiseHorizon } from "../../shared/store/gc.ts";
import { type ReplicaPorts } from "../../shared/store/ports.ts";
import { INCARNATION_SEQ_GAP, ReplicaMachine } from "../../shared/store/replica-machine.ts";
import { ReplicaNode } from "../../shared/store/replica-node.ts";
import { type ReplicationMessage } from "../../shared/store/wire.ts";
import { MemoryStorage } from "../sim/memory-storage.ts";
import { FakeClock, settle } from "./fake-clock.ts";
import { add, cloned, peerOver, put } from "./support.ts";

const REGIONS: RegionId[] = ["wnam", "enam", "weur"];
const NOW = 1_800_000_000_000;
const HEARTBEAT_MS = 1000;

function ok<T>(result: Result<T>): T {
  if (!result.ok) throw new Error(`${result.error.code}: ${result.error.message}`);
  return result.value;
}

/** Three regions over in-memory storage, wired to each other; the queue is a bag the test delivers. */
class Cluster {
  readonly clock = new FakeClock(NOW);
  readonly nodes = new Map<RegionId, ReplicaNode>();
  /** Regions whose calls never answer (as if unreachable). */
  readonly silent = new Set<RegionId>();
  private readonly bag: ReplicationMessage[] = [];

  /** A cluster created together: every replica ready, numbering from 0. */
  constructor() {
    for (const region of REGIONS) {
      const node = this.start(region);
      node.machine.identify(0, false);
    }
  }

  node(region: RegionId): ReplicaNode {
    return this.nodes.get(region) as ReplicaNode;
  }

  /** A replica of `region` over new storage: a region added, or restored empty. */
  start(region: RegionId): ReplicaNode {
    const machine = new ReplicaMachine(
      new MemoryStorage(),
      { region, regions: REGIONS, primaryPrefixes: [], silenceMsMax: 3 * HEARTBEAT_MS },
      this.clock.now(),
    );
    if (machine.phase !== "probing") throw new Error(`new storage starts probing, not ${machine.phase}`);
    const ports: ReplicaPorts = {
      now: () => this.clock.now(),
      timer: (ms) => this.clock.timer(ms),
      peer: (r) => this.api(r),
      control: { getView: () => Promise.reject(new Error("no control")), confirmPrimary: async () => 2000 },
      queue: {
        sendBatch: async (messages) => {
          this.bag.push(...messages);
        },
      },
      background: (work) => void work.catch(() => undefined),
      warn: () => undefined,
    };
    const node = new ReplicaNode(machine, ports, {
      heartbeatIntervalMs: HEARTBEAT_MS,
      sessionWaitMs: 0,
      batchMs: 0,
      delaySeconds: 0,
      directPush: false,
      antiEntropyIntervalMs: 30_000,
      gc: GC_DEFAULTS,
    });
    this.nodes.set(region, node);
    return node;
  }

  /** Region `region` as its peers reach it over RPC: answers cloned, or none at all while silent. */
  private api(region: RegionId): PeerApi {
    const rpc = <T>(call: () => T | Promise<T>): Promise<T> =>
      this.silent.has(region) ? new Promise<T>(() => undefined) : cloned(call);
    return peerOver(() => this.node(region), rpc);
  }

  /** A write at `region` through the node, and its outbox drained into the bag. */
  async write(region: RegionId, key: string, op: Parameters<ReplicaNode["write"]>[1]): Promise<number> {
    const node = this.node(region);
    const outcome = ok(await node.write(key, op));
    await node.drain.flush();
    return outcome.seq;
  }

  /** Delivers every message in the bag to its target (to the replica there now). */
  async deliverAll(): Promise<void> {
    for (let message = this.bag.shift(); message !== undefined; message = this.bag.shift())
      for (const result of await this.node(message.target).applyReplication([message])) ok(result);
  }

  /** Forgets the messages in the bag: lost on the way, or sent before a replica lost its storage. */
  drop(): void {
    this.bag.length = 0;
  }

  /** Runs `region`'s lifecycle ticks until it is ready (at most `ticksMax`). */
  async bootstrap(region: RegionId, ticksMax = 5): Promise<void> {
    const node = this.node(region);
    for (let tick = 0; tick < ticksMax && node.machine.phase !== "ready"; tick += 1) await node.lifecycle.tick();
  }

  /** A key's stored state at `region`, as hex, or null. */
  stateAt(region: RegionId, key: string): string | null {
    const row = this.node(region).machine.storage.kv.get(key);
    return row === null ? null : Buffer.from(row.encoded).toString("hex");
  }
}

/** A counter's value at `region`, read through the node. */
async function counterAt(cluster: Cluster, region: RegionId, key: string): Promise<number | null> {
  const view = ok(await cluster.node(region).read(key)).view;
  if (view === null) return null;
  if (view.type !== "counter") throw new Error(`${key} is a ${view.type}`);
  return view.value;
}

/** A counter's value in every region, in configured order. */
async function countersAt(cluster: Cluster, key: string): Promise<Array<number | null>> {
  const values: Array<number | null> = [];
  for (const region of REGIONS) values.push(await counterAt(cluster, region, key));
  return values;
}

describe("a replica over new storage", () => {
  it("becomes ready at once, numbering from 0, when every peer holds nothing", async () => {
    const cluster = new Cluster();
    const weur = cluster.start("weur");
    ok(await weur.lifecycle.established());
    expect(weur.machine.phase).toBe("ready");
    expect(weur.machine.baseSeq).toBe(0);
    expect(await cluster.write("weur", "k", put("v"))).toBe(1);
  });

  it("adopts its peers' collection horizons before it takes anything in", async () => {
    const cluster = new Cluster();
    const wnam = cluster.node("wnam").machine;
    wnam.storage.transaction(() =>
      raiseHorizon(
        wnam,
        vvFrom([
          ["wnam", 4],
          ["enam", 2],
        ]),
      ),
    );
    const weur = cluster.start("weur");
    ok(await weur.lifecycle.established());
    expect(weur.machine.gcHorizon).toEqual(
      vvFrom([
        ["wnam", 4],
        ["enam", 2],
      ]),
    );
  });

  it("bootstraps from peers holding data it never received, numbering above its earlier life", async () => {
    const cluster = new Cluster();
    // weur's earlier life wrote three keys, which reached its peers.
    for (let i = 0; i < 3; i += 1) await cluster.write("weur", `old-${i}`, put(`old${i}`));
    await cluster.deliverAll();
    // Its peers wrote more that never reached it, and pruned their outboxes.
    await cluster.write("wnam", "a1", put("a1"));
    await cluster.write("wnam", "a2", put("a2"));
    await cluster.write("enam", "b1", put("b1"));
    cluster.drop();
    for (const region of ["wnam", "enam"] as const) {
      const { storage, seq } = cluster.node(region).machine;
      storage.transaction(() => storage.log.prune(seq));
    }
    expect(cluster.node("wnam").machine.storage.peerRecv.get("weur").knownSeq).toBe(3);
    // weur loses its storage and starts again.
    const weur = cluster.start("weur");
    ok(await weur.lifecycle.established());
    expect(weur.machine.phase).toBe("bootstrapping");
    expect(weur.machine.baseSeq).toBe(3 + INCARNATION_SEQ_GAP);
    expect(await cluster.write("weur", "new", put("new"))).toBe(3 + INCARNATION_SEQ_GAP + 1);
    await cluster.bootstrap("weur");
    expect(weur.machine.phase).toBe("ready");
    const keys = ["old-0", "old-1", "old-2", "a1", "a2", "b1"];
    const held = (region: RegionId): Array<string | null> => keys.map((key) => cluster.stateAt(region, key));
    expect(held("weur").every((state) => state !== null)).toBe(true);
    expect(held("weur").slice(0, 5)).toEqual(held("wnam").slice(0, 5));
    expect(held("weur")[5]).toBe(cluster.stateAt("enam", "b1"));
  });
});

describe("a region restored empty that never wrote", () => {
  it("bootstraps: its peers dropped from their outboxes what its earlier life confirmed", async () => {
    const cluster = new Cluster();
    await cluster.write("wnam", "a1", put("a1"));
    await cluster.deliverAll();
    // Heartbeats confirm the write everywhere, and wnam's outbox lets it go.
    await cluster.node("enam").tick();
    await cluster.node("weur").tick();
    await cluster.node("wnam").tick();
    expect(cluster.node("wnam").machine.storage.log.count()).toBe(0);
    const weur = cluster.start("weur");
    ok(await weur.lifecycle.established());
    expect(weur.machine.phase).toBe("bootstrapping");
    const read = ok(await weur.read("a1"));
    expect(read.view).toMatchObject({ type: "register", live: true });
  });
});

/** A cluster where weur held `counter` at 5 (all its own increments) and a1 is wnam's, then lost its storage. */
async function restored(): Promise<Cluster> {
  const cluster = new Cluster();
  for (let i = 0; i < 5; i += 1) await cluster.write("weur", "counter", add(1));
  await cluster.write("wnam", "a1", put("a1"));
  await cluster.deliverAll();
  expect(await countersAt(cluster, "counter")).toEqual([5, 5, 5]);
  cluster.start("weur");
  return cluster;
}

describe("requests while bootstrapping", () => {
  it("never answers absent for a key a peer holds", async () => {
    const cluster = await restored();
    const read = ok(await cluster.node("weur").read("a1"));
    expect(cluster.node("weur").machine.phase).toBe("bootstrapping");
    expect(read.view?.type === "register" && new TextDecoder().decode(read.view.value ?? undefined)).toBe("a1");
    // Its staleness is not known yet, and it says so.
    expect(read.lagMs).toBeNull();
    // A key no region holds is absent, as anywhere.
    expect(ok(await cluster.node("weur").read("nowhere")).view).toBeNull();
  });

  it("counts an increment on top of the restored counter: 5, restored empty, +1 gives 6 everywhere", async () => {
    const cluster = await restored();
    const weur = cluster.node("weur");
    const outcome = ok(await weur.write("counter", add(1)));
    expect(weur.machine.phase).toBe("bootstrapping");
    expect(outcome.view).toMatchObject({ type: "counter", value: 6 });
    await weur.drain.flush();
    await cluster.deliverAll();
    expect(await countersAt(cluster, "counter")).toEqual([6, 6, 6]);
    await cluster.bootstrap("weur");
    expect(weur.machine.phase).toBe("ready");
    expect(await countersAt(cluster, "counter")).toEqual([6, 6, 6]);
  });
});

describe("a counter across two lives of a region", () => {
  it("counts both a lost life's increment it never saw and its own next one", async () => {
    const cluster = new Cluster();
    for (let i = 0; i < 5; i += 1) await cluster.write("weur", "counter", add(1));
    await cluster.deliverAll();
    // +2 acknowledged locally and handed to the queue; then weur's storage is lost.
    await cluster.write("weur", "counter", add(2));
    const weur = cluster.start("weur");
    // The new life catches the counter up (5: no peer has the +2 yet) and adds 1.
    expect(ok(await weur.write("counter", add(1))).view).toMatchObject({ type: "counter", value: 6 });
    expect(weur.machine.baseSeq).toBeGreaterThan(0);
    await weur.drain.flush();
    // The queue delivers the lost life's +2 (its peers have not heard of the new life yet), then
    // the new life's +1. The peers count both; so does weur once it bootstraps.
    await cluster.deliverAll();
    await cluster.bootstrap("weur");
    expect(weur.machine.phase).toBe("ready");
    expect(await countersAt(cluster, "counter")).toEqual([8, 8, 8]);
  });
});

describe("probing", () => {
  it("refuses with region_unavailable (bootstrapping) while a peer does not answer, then retries", async () => {
    const cluster = new Cluster();
    await cluster.write("wnam", "a1", put("a1"));
    cluster.silent.add("enam");
    const weur = cluster.start("weur");
    const read = weur.read("a1");
    const write = weur.write("w", put("w"));
    await settle();
    await cluster.clock.advance(2 * HEARTBEAT_MS);
    for (const answer of [await read, await write])
      expect(answer).toMatchObject({
        ok: false,
        error: { code: "region_unavailable", details: { region: "weur", reason: "bootstrapping" } },
      });
    expect(weur.machine.phase).toBe("probing");
    expect(weur.machine.storage.kv.get("w")).toBeNull();
    // Once the peer answers again, the next request probes again and is served.
    cluster.silent.delete("enam");
    const again = ok(await weur.read("a1"));
    expect(again.view).not.toBeNull();
    expect(weur.machine.phase).toBe("bootstrapping");
  });
});
