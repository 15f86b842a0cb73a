/**
 * Listings that span shards (`shared/shards.ts`). Keys: every shard answers its first `limit`
 * live keys after the cursor key, and the merge keeps the first `limit` of their union in key
 * order, so the cursor (the last key answered) stays a plain key and valid across pages and
 * writes. Logs (conflicts, dead letters): each shard numbers its own rows, so the cursor holds
 * one position per shard, and a page takes a prefix of each shard's rows in a merged order.
 */
import { assert } from "../assert.ts";
import { SHARDS_MAX } from "../shards.ts";
import { type KeyListing } from "./storage.ts";

/**
 * Orders keys as SQLite's `ORDER BY key` does within a shard: by UTF-8 bytes, which is code
 * point order (JavaScript's `<` compares UTF-16 units, which differs past U+FFFF).
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n;) {
    const x = a.codePointAt(i) as number;
    const y = b.codePointAt(i) as number;
    if (x !== y) return x - y;
    i += x > 0xffff ? 2 : 1;
  }
  return a.length - b.length;
}

/**
 * One shard's page of keys: at most the `limit` asked for, sorted, whether it has more, and the
 * shard that answered it.
 */
export interface KeyPage {
  readonly shard: number;
  readonly keys: readonly KeyListing[];
  readonly more: boolean;
}

/**
 * Merges every shard's page (each asked for `limit` keys after the same cursor) into one page
 * of at most `limit` keys. `rank(name, shard)` says whether a shard's entry counts (null: it is
 * dropped) and, where several shards list a key (while keys move between shards, its old one
 * and its new one), which wins: the lowest. `cursor` is where the next page starts, null after
 * the last.
 */
export function mergeKeyPages(
  pages: readonly KeyPage[],
  limit: number,
  rank: (name: string, shard: number) => number | null = () => 0,
): { keys: KeyListing[]; cursor: string | null } {
  assert(Number.isSafeInteger(limit) && limit >= 1, "a page holds at least one key");
  // A shard with more may hold unlisted keys after its last one: nothing past the earliest such
  // last key is known complete, so the page ends there.
  let cutoff: string | null = null;
  for (const p of pages) {
    const last = p.keys.at(-1);
    if (p.more && last !== undefined && (cutoff === null || compareKeys(last.name, cutoff) < 0)) cutoff = last.name;
  }
  const best = new Map<string, { key: KeyListing; rank: number }>();
  for (const p of pages)
    for (const k of p.keys) {
      const r = rank(k.name, p.shard);
      if (r === null || (cutoff !== null && compareKeys(k.name, cutoff) > 0)) continue;
      const known = best.get(k.name);
      if (known === undefined || r < known.rank) best.set(k.name, { key: k, rank: r });
    }
  const kept = [...best.values()].map((b) => b.key).sort((a, b) => compareKeys(a.name, b.name));
  const page = kept.slice(0, limit);
  const more = kept.length > limit || cutoff !== null;
  if (!more) return { keys: page, cursor: null };
  // Resume after the last key answered, or after the cutoff when every key up to it was dropped.
  return { keys: page, cursor: page.at(-1)?.name ?? cutoff };
}

/** Row ids per shard after which a log page starts (index = shard; 0: from the start). */
export type LogCursor = readonly number[];

/**
 * Parses a log cursor of `shards` shards: the row id after which each shard's page starts,
 * joined by `.` (a single shard's cursor is a plain number, as before shards). `undefined`
 * when malformed or of another shard count.
 */
export function parseLogCursor(raw: string | undefined, shards: number): LogCursor | undefined {
  assert(shards >= 1 && shards <= SHARDS_MAX, "a shard count is 1 to SHARDS_MAX");
  if (raw === undefined || raw === "") return Array.from({ length: shards }, () => 0);
  const parts = raw.split(".");
  if (parts.length !== shards || !parts.every((p) => /^(0|[1-9][0-9]{0,15})$/.test(p))) return undefined;
  const ids = parts.map(Number);
  return ids.every((id) => Number.isSafeInteger(id)) ? ids : undefined;
}

/** The text of a log cursor ({@link parseLogCursor}). */
export function formatLogCursor(cursor: LogCursor): string {
  return cursor.join(".");
}

/**
 * Merges one page of a per-shard log. `rows[s]` are shard `s`'s rows after `cursor[s]`, in id
 * order, at most `limit + 1` of them (one more than a page, to know whether it has more).
 * Takes the `limit` first by `before` (ties: lower shard first), always a prefix of each
 * shard's rows, so the next cursor (null when nothing is left) resumes exactly after them.
 */
export function mergeLogPages<T extends { readonly id: number }>(
  rows: readonly (readonly T[])[],
  cursor: LogCursor,
  limit: number,
  before: (a: T, b: T) => number,
): { page: Array<{ shard: number; row: T }>; cursor: LogCursor | null } {
  assert(rows.length === cursor.length, "one row list per shard");
  const next = [...cursor];
  const heads = rows.map(() => 0);
  const page: Array<{ shard: number; row: T }> = [];
  while (page.length < limit) {
    let best: number | undefined;
    for (let s = 0; s < rows.length; s += 1) {
      const row = rows[s]?.[heads[s] as number];
      if (row === undefined) continue;
      const bestRow = best === undefined ? undefined : rows[best]?.[heads[best] as number];
      if (bestRow === undefined || before(row, bestRow) < 0) best = s;
    }
    if (best === undefined) break;
    const row = rows[best]?.[heads[best] as number] as T;
    page.push({ shard: best, row });
    heads[best] = (heads[best] as number) + 1;
    next[best] = row.id;
  }
  const more = rows.some((r, s) => r.length > (heads[s] as number));
  return { page, cursor: more ? next : null };
}
