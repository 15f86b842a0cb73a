// A region's status and digest from its shards': as current as its least current shard, counts
// summed, unknown lag never hidden behind a figure, and no answer when a shard gave none.
import { describe, expect, it } from "vitest";
import { type PeerLag, type ReplicaDigest, type ReplicaStatus } from "../../shared/store/contract.ts";
import { regionDigest, regionStatus } from "../../shared/store/region-status.ts";

function lag(ms: number | null, entries: number, silentMs: number | null = 10): PeerLag {
  const heard = { heardMs: 5, silentMs, appliedSeq: entries * 10 };
  return ms === null
    ? { ...heard, entries, ms: null, unknown: "never heard from the peer" }
    : { ...heard, entries, ms };
}

function shard(overrides: Partial<ReplicaStatus>): ReplicaStatus {
  return {
    region: "weur",
    seq: 3,
    clock: "a",
    nowMs: 1000,
    takenOut: false,
    bootstrapping: false,
    incarnation: "1",
    outboxPending: 1,
    deadLetters: 0,
    keys: { live: 10, tombstones: 1 },
    lag: {},
    delays: {},
    metrics: [],
    ...overrides,
  };
}

describe("regionStatus", () => {
  it("takes each peer's worst lag, sums writes behind and every count", () => {
    const a = shard({
      lag: { wnam: lag(20, 1), apac: lag(5, 0) },
      delays: { wnam: { p50Ms: 30, p99Ms: 90, samples: 4, count: 4, sumMs: 150 } },
      metrics: [{ name: "conflicts_total", peer: "wnam", value: 2 }],
    });
    const b = shard({
      seq: 4,
      clock: "b",
      bootstrapping: true,
      lag: { wnam: lag(7, 2, 40), apac: lag(null, 3) },
      delays: { wnam: { p50Ms: 35, p99Ms: 60, samples: 6, count: 6, sumMs: 200 } },
      metrics: [
        { name: "conflicts_total", peer: "wnam", value: 1 },
        { name: "conflicts_total", peer: "enam", value: 5 },
      ],
    });
    const region = regionStatus([a, b]);
    expect(region).toMatchObject({
      seq: 7,
      clock: "b",
      bootstrapping: true,
      outboxPending: 2,
      keys: { live: 20, tombstones: 2 },
    });
    expect(region?.lag.wnam).toMatchObject({ ms: 20, entries: 3, silentMs: 40 });
    // An unknown figure in any shard makes the region's unknown: never a number that hides it.
    expect(region?.lag.apac).toMatchObject({ ms: null, entries: 3, unknown: "never heard from the peer" });
    expect(region?.delays.wnam).toEqual({ p50Ms: 35, p99Ms: 90, samples: 10, count: 10, sumMs: 350 });
    expect(region?.metrics).toEqual([
      { name: "conflicts_total", peer: "wnam", value: 3 },
      { name: "conflicts_total", peer: "enam", value: 5 },
    ]);
  });

  it("is none when a shard did not answer, and the shard's own with one shard", () => {
    const a = shard({});
    expect(regionStatus([a, null])).toBeNull();
    expect(regionStatus([])).toBeNull();
    expect(regionStatus([a])).toBe(a);
  });
});

function digest(root: string, keys: number): ReplicaDigest {
  return { region: "weur", keys, tombstones: 1, root, bootstrapping: false };
}

describe("regionDigest", () => {
  it("sums counts, and has equal roots exactly when every shard's root is equal", () => {
    const one = regionDigest([digest("aa", 3), digest("bb", 4)]);
    expect(one).toMatchObject({ keys: 7, tombstones: 2 });
    expect(one.root).toMatch(/^[0-9a-f]{64}$/);
    expect(regionDigest([digest("aa", 3), digest("bb", 4)]).root).toBe(one.root);
    expect(regionDigest([digest("aa", 3), digest("bc", 4)]).root).not.toBe(one.root);
    expect(regionDigest([digest("bb", 3), digest("aa", 4)]).root).not.toBe(one.root);
    expect(regionDigest([digest("aa", 3)]).root).toBe("aa");
  });
});
