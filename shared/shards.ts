/**
 * Shards: each region holds `SHARDS` replica objects, and a key lives in shard
 * `shardHash(key) mod SHARDS` of every region. Shard `s` of one region replicates only with shard
 * `s` of the others, so each shard is an independent replica group, and a region's write rate
 * and dataset grow with the number of shards instead of being capped by one object.
 *
 * The hash is part of the stored layout: every region must compute the same shard for a key, in
 * every build, so it is fixed here and documented in docs/replication.md. It is FNV-1a (32 bits) over
 * the key's UTF-8 bytes, finished with MurmurHash3's `fmix32` so that every bit of the key moves
 * the low bits the modulo keeps.
 */
import { assert } from "./assert.ts";
import { utf8 } from "./bytes.ts";
import { type RegionId, parseRegionId } from "./regions.ts";

/** The most shards per region a deployment may configure (bounds every fan-out over shards). */
export const SHARDS_MAX = 64;

/** A shard index, 0 to `shards - 1`. */
export type ShardIndex = number;

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** The stable 32-bit hash that places `key`: `fmix32(fnv1a32(utf8(key)))`, unsigned. */
export function shardHash(key: string): number {
  let h = FNV_OFFSET;
  for (const byte of utf8(key)) {
    h ^= byte;
    h = Math.imul(h, FNV_PRIME);
  }
  // MurmurHash3's finalizer: FNV-1a alone leaves its low bits poorly mixed for short keys.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Whether `shards` is a valid shard count (1 to {@link SHARDS_MAX}). */
export function validShardCount(shards: number): boolean {
  return Number.isSafeInteger(shards) && shards >= 1 && shards <= SHARDS_MAX;
}

/** The shard `key` belongs to with `shards` shards per region. */
export function shardOf(key: string, shards: number): ShardIndex {
  assert(validShardCount(shards), "a shard count is 1 to SHARDS_MAX");
  return shardHash(key) % shards;
}

/** Every shard index of a layout with `shards` shards: 0 to `shards - 1`. */
export function shardIndices(shards: number): ShardIndex[] {
  assert(validShardCount(shards), "a shard count is 1 to SHARDS_MAX");
  return Array.from({ length: shards }, (_, i) => i);
}

/**
 * The name of a region's replica object for one shard: `<region>:<shard>`, except shard 0,
 * which keeps the name the region's one object had before shards (`<region>`), so that a store
 * created then keeps its data and moves to more shards like any change of `SHARDS`.
 */
export function replicaName(region: RegionId, shard: ShardIndex): string {
  assert(Number.isSafeInteger(shard) && shard >= 0 && shard < SHARDS_MAX, "a shard index is below SHARDS_MAX");
  return shard === 0 ? region : `${region}:${shard}`;
}

/** Parses a replica object's name ({@link replicaName}); `undefined` when it is not one. */
export function parseReplicaName(name: string): { region: RegionId; shard: ShardIndex } | undefined {
  const match = /^([a-z]+)(?::([1-9][0-9]?))?$/.exec(name);
  if (match === null) return undefined;
  const region = parseRegionId(match[1] as string);
  const shard = match[2] === undefined ? 0 : Number(match[2]);
  if (region === undefined || shard >= SHARDS_MAX) return undefined;
  return { region, shard };
}
