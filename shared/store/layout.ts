/**
 * The shard layout and its online change (`SHARDS` 2 -> 4, say). Keys live in shard
 * `shardOf(key, shards)`; changing the count moves every key whose shard changes. The move is
 * driven by the control object through the cluster view, in three steps:
 *
 * 1. **Announced** (`from` set, not `routed`): routers still route by the old count. Every
 *    replica that records this view stops serving the keys moving away from it (it answers
 *    `wrong_shard`, so a write can never land in the old shard again), and every new home of a
 *    moving key pulls the key from its old shard (in the same region) before serving it.
 * 2. **Routed**, once every replica recorded the announcement: routers route by the new count.
 *    A key's first touch in its new shard merges its old state, so nothing written before the
 *    move is lost, and since no write reaches the old shard any more, that merge is complete for
 *    the region's own writes; other regions' writes come by their own new shards or by the
 *    hand-over.
 * 3. **Handed over**: once every old shard's writes from before the announcement reached every
 *    region (each old shard reports the sequence number it had then), every old shard copies
 *    its moving keys into their new shards; when all have, the layout is stable at the new count
 *    and shards past it retire.
 *
 * Pure decisions only; the control node and the replica node act on them.
 */
import { type ShardIndex, shardIndices, shardOf } from "../shards.ts";

/** The layout a cluster view publishes. */
export interface Layout {
  /** Shards per region keys belong to (the configured `SHARDS`, once a move has begun). */
  readonly shards: number;
  /** While keys move: the count they were placed by before; null when stable. */
  readonly from: number | null;
  /** Whether routers route by `shards` (true) or still by `from` (announced, not yet routed). */
  readonly routed: boolean;
}

/** A stable layout of `shards` shards. */
export function stableLayout(shards: number): Layout {
  return { shards, from: null, routed: true };
}

/** The layout of `view` (views from before layouts existed mean a stable `configured` one). */
export function layoutOf(view: { readonly layout?: Layout }, configured: number): Layout {
  return view.layout ?? stableLayout(configured);
}

/** The shard count routers place keys by. */
export function routingShards(layout: Layout): number {
  return layout.routed || layout.from === null ? layout.shards : layout.from;
}

/** The shard a router sends `key` to. */
export function routedShard(key: string, layout: Layout): ShardIndex {
  return shardOf(key, routingShards(layout));
}

/** Every shard index with a replica that takes part now (old and new shards during a move). */
export function activeShards(layout: Layout): ShardIndex[] {
  return shardIndices(Math.max(layout.shards, layout.from ?? 0));
}

/** What replica `shard` does with `key` under `layout`. */
export type KeyPlacement =
  /** It holds the key: serve it. */
  | { readonly kind: "home" }
  /** It is the key's new home during a move: pull the key from old shard `from` first. */
  | { readonly kind: "moving_in"; readonly from: ShardIndex }
  /** The key moved (or is moving) away from it: refuse, the router has an old layout. */
  | { readonly kind: "elsewhere"; readonly shard: ShardIndex };

/** Where `key` stands for replica `shard`. */
export function placement(key: string, layout: Layout, shard: ShardIndex): KeyPlacement {
  const home = shardOf(key, layout.shards);
  if (layout.from === null) return home === shard ? { kind: "home" } : { kind: "elsewhere", shard: home };
  const old = shardOf(key, layout.from);
  if (home === shard) return old === shard ? { kind: "home" } : { kind: "moving_in", from: old };
  return { kind: "elsewhere", shard: home };
}

/** Whether `key` moves away from old shard `shard` in the move `layout` describes. */
export function movesAway(key: string, layout: Layout, shard: ShardIndex): boolean {
  return layout.from !== null && shardOf(key, layout.from) === shard && shardOf(key, layout.shards) !== shard;
}

/** The move a layout describes, as text that names it (`"2>4"`), or null when stable. */
export function moveId(layout: Layout): string | null {
  return layout.from === null ? null : `${layout.from}>${layout.shards}`;
}

/**
 * Whether every write an old shard made before it recorded the move has been applied by the same
 * shard of every other region: `fenceSeqs[r][s]` is region r's shard s's sequence number when it
 * recorded the move (undefined: not reported), `applied[r][s][p]` how far region r's shard s has
 * applied region p's stream.
 */
export function oldWritesDelivered(
  regions: readonly string[],
  oldShards: number,
  fenceSeq: (region: string, shard: ShardIndex) => number | undefined,
  applied: (region: string, shard: ShardIndex, peer: string) => number | undefined,
): boolean {
  for (const shard of shardIndices(oldShards))
    for (const origin of regions) {
      const fence = fenceSeq(origin, shard);
      if (fence === undefined) return false;
      for (const peer of regions) if (peer !== origin && (applied(peer, shard, origin) ?? -1) < fence) return false;
    }
  return true;
}
