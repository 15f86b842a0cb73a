// The shard layout and its moves: where routers send a key at each step of a move, what each
// replica does with it, and when an old shard's writes count as delivered everywhere.
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { shardOf } from "../../shared/shards.ts";
import {
  type Layout,
  activeShards,
  layoutOf,
  moveId,
  movesAway,
  oldWritesDelivered,
  placement,
  routedShard,
  routingShards,
  stableLayout,
} from "../../shared/store/layout.ts";

const SEED = 0x1a_70;

const announced: Layout = { shards: 4, from: 2, routed: false };
const routed: Layout = { shards: 4, from: 2, routed: true };
const shrinking: Layout = { shards: 2, from: 4, routed: true };

describe("layout", () => {
  it("routes by the old count until every replica recorded the move, then by the new one", () => {
    expect(routingShards(stableLayout(3))).toBe(3);
    expect(routingShards(announced)).toBe(2);
    expect(routingShards(routed)).toBe(4);
    expect(activeShards(routed)).toEqual([0, 1, 2, 3]);
    expect(activeShards(shrinking)).toEqual([0, 1, 2, 3]);
    expect(activeShards(stableLayout(2))).toEqual([0, 1]);
    expect(moveId(routed)).toBe("2>4");
    expect(moveId(stableLayout(4))).toBeNull();
    // A view from before layouts: the configured count, stable.
    expect(layoutOf({}, 3)).toEqual(stableLayout(3));
    expect(layoutOf({ layout: routed }, 3)).toBe(routed);
  });

  it("gives every key exactly one home, which the routed router sends it to, and pulls it from its old shard there", () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 20 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 8 }),
        (key, from, to) => {
          const layout: Layout = { shards: to, from, routed: true };
          const shards = activeShards(layout);
          const placements = shards.map((s) => placement(key, layout, s));
          const homes = shards.filter((_, i) => placements[i]?.kind !== "elsewhere");
          expect(homes).toEqual([routedShard(key, layout)]);
          const home = placements[homes[0] as number];
          const old = shardOf(key, from);
          expect(home).toEqual(old === homes[0] ? { kind: "home" } : { kind: "moving_in", from: old });
          // Exactly the old shard lets go of a moving key.
          expect(shards.filter((s) => movesAway(key, layout, s))).toEqual(old === homes[0] ? [] : [old]);
          // Every refusal names the key's home.
          const refusals = placements.flatMap((p) => (p.kind === "elsewhere" ? [p.shard] : []));
          expect(refusals.every((shard) => shard === homes[0])).toBe(true);
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("refuses at an old shard, from the announcement on, every key moving away", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), (key) => {
        const old = shardOf(key, 2);
        const home = shardOf(key, 4);
        // Announced: routers still send the key to its old shard, which refuses it if it moves.
        expect(placement(key, announced, old).kind).toBe(old === home ? "home" : "elsewhere");
      }),
      { seed: SEED, numRuns: 200 },
    );
  });
});

const regions = ["wnam", "enam", "weur"];
const fences: Record<string, number[]> = { wnam: [10, 20], enam: [5, 0], weur: [7, 3] };

/** Every region applied every other's old shards exactly up to their fences. */
function applied(_region: string, shard: number, peer: string): number {
  return fences[peer]?.[shard] ?? 0;
}

/** As {@link applied}, but weur's shard 1 lags wnam by one write. */
function lagging(region: string, shard: number, peer: string): number {
  return region === "weur" && shard === 1 && peer === "wnam" ? 19 : applied(region, shard, peer);
}

describe("oldWritesDelivered", () => {
  it("holds once every region applied every other's old shards up to their fences", () => {
    expect(oldWritesDelivered(regions, 2, (r, s) => fences[r]?.[s], applied)).toBe(true);
  });

  it("does not hold while one pair lags one shard, or a fence is not reported", () => {
    expect(oldWritesDelivered(regions, 2, (r, s) => fences[r]?.[s], lagging)).toBe(false);
    expect(
      oldWritesDelivered(regions, 2, (r, s) => (r === "enam" && s === 1 ? undefined : fences[r]?.[s]), applied),
    ).toBe(false);
  });
});
