// Listings across shards, property-tested against one sorted model: paging through the merge of
// every shard's page gives every live key once, in SQLite's key order, whatever the page size,
// shard count and writes between pages; log pages give every row once, each shard's in order.
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { shardOf } from "../../shared/shards.ts";
import {
  compareKeys,
  formatLogCursor,
  mergeKeyPages,
  mergeLogPages,
  parseLogCursor,
} from "../../shared/store/listing.ts";
import { type KeyListing } from "../../shared/store/storage.ts";

const SEED = 0x1157;

/** Byte order of UTF-8: what `ORDER BY key` gives in SQLite. */
function utf8Order(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

const keyArb = fc.string({
  unit: fc.constantFrom("a", "b", "é", "z", "/", "😀", "\uffff", "0"),
  minLength: 1,
  maxLength: 5,
});

/** A shard's `list(after, limit)` over its sorted keys, as the replica answers it. */
function shardList(keys: readonly string[], after: string | null, limit: number) {
  const sorted = [...keys].sort(utf8Order).filter((k) => after === null || utf8Order(k, after) > 0);
  const page = sorted.slice(0, limit).map((name): KeyListing => ({ name, version: "v" }));
  return { keys: page, more: sorted.length > limit };
}

describe("compareKeys", () => {
  it("orders keys as their UTF-8 bytes do", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), fc.string({ unit: "grapheme" }), (a, b) => {
        expect(Math.sign(compareKeys(a, b))).toBe(Math.sign(utf8Order(a, b)));
      }),
      { seed: SEED, numRuns: 1000 },
    );
  });
});

describe("mergeKeyPages", () => {
  it("pages through every key of every shard once, in order", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(keyArb, { maxLength: 60 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 7 }),
        (keys, shards, limit) => {
          const byShard = Array.from({ length: shards }, (_, s) => keys.filter((k) => shardOf(k, shards) === s));
          const listed: string[] = [];
          let after: string | null = null;
          for (let page = 0; page <= keys.length + 1; page += 1) {
            const merged = mergeKeyPages(
              byShard.map((shardKeys, shard) => ({ shard, ...shardList(shardKeys, after, limit) })),
              limit,
            );
            expect(merged.keys.length).toBeLessThanOrEqual(limit);
            listed.push(...merged.keys.map((k) => k.name));
            if (merged.cursor === null) break;
            after = merged.cursor;
          }
          expect(listed).toEqual([...keys].sort(utf8Order));
        },
      ),
      { seed: SEED, numRuns: 400 },
    );
  });

  it("keeps its cursor valid while keys are written and deleted between pages", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(keyArb, { minLength: 1, maxLength: 40 }),
        fc.array(fc.tuple(keyArb, fc.boolean()), { maxLength: 20 }),
        fc.integer({ min: 1, max: 5 }),
        (initial, changes, limit) => {
          const shards = 3;
          const live = new Set(initial);
          const listed: string[] = [];
          let after: string | null = null;
          for (let page = 0; page < 200; page += 1) {
            const byShard = Array.from({ length: shards }, (_, s) => [...live].filter((k) => shardOf(k, shards) === s));
            const merged = mergeKeyPages(
              byShard.map((shardKeys, shard) => ({ shard, ...shardList(shardKeys, after, limit) })),
              limit,
            );
            listed.push(...merged.keys.map((k) => k.name));
            if (merged.cursor === null) break;
            after = merged.cursor;
            // A write or delete lands between two pages.
            const change = changes[page];
            if (change !== undefined) {
              if (change[1]) live.add(change[0]);
              else live.delete(change[0]);
            }
          }
          // Strictly ascending (no key twice, none out of order), and every key live from the
          // first page to the last, untouched by the changes, is listed.
          for (let i = 1; i < listed.length; i += 1) expect(utf8Order(listed[i - 1]!, listed[i]!)).toBeLessThan(0);
          const touched = new Set(changes.map(([k]) => k));
          const untouched = initial.filter((key) => !touched.has(key));
          expect(untouched.filter((key) => !listed.includes(key))).toEqual([]);
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
  });
});

describe("mergeKeyPages while keys move between shards", () => {
  it("lists every key once from the shard it is kept in, even when most entries are dropped", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(keyArb, { maxLength: 60 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 7 }),
        (keys, from, to, limit) => {
          // Every key is in its old shard, and about half of the moving ones in the new one too;
          // only the new shard's entry counts where both hold it, and only the new shard's
          // once the move is done.
          const shards = Math.max(from, to);
          const held = Array.from({ length: shards }, (_, s) =>
            keys.filter((k) => shardOf(k, from) === s || (shardOf(k, to) === s && shardHalf(k))),
          );
          for (const done of [false, true]) {
            const rank = (name: string, shard: number): number | null =>
              shardOf(name, to) === shard ? 0 : done ? null : 1;
            const expected = done ? keys.filter((k) => shardOf(k, to) === shardOf(k, from) || shardHalf(k)) : keys;
            const listed: string[] = [];
            let after: string | null = null;
            for (let page = 0; page <= keys.length * 2 + 2; page += 1) {
              const merged = mergeKeyPages(
                held.map((shardKeys, shard) => ({ shard, ...shardList(shardKeys, after, limit) })),
                limit,
                rank,
              );
              listed.push(...merged.keys.map((k) => k.name));
              if (merged.cursor === null) break;
              after = merged.cursor;
            }
            expect(listed).toEqual([...expected].sort(utf8Order));
          }
        },
      ),
      { seed: SEED, numRuns: 400 },
    );
  });
});

/** A stable half of all keys: those a move has already brought to their new shard in the test above. */
function shardHalf(key: string): boolean {
  return shardOf(`${key}#`, 2) === 0;
}

describe("log pages", () => {
  interface Row {
    readonly id: number;
    readonly atMs: number;
  }

  it("give every row of every shard once, each shard's in id order", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 15 }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 6 }),
        (times, limit) => {
          const logs: Row[][] = times.map((ts) => ts.map((atMs, i) => ({ id: i + 1, atMs })));
          let cursor = parseLogCursor(undefined, logs.length)!;
          const seen: Array<{ shard: number; id: number }> = [];
          for (let page = 0; page < 100; page += 1) {
            const rows = logs.map((log, s) => log.filter((r) => r.id > (cursor[s] ?? 0)).slice(0, limit + 1));
            const merged = mergeLogPages(rows, cursor, limit, (a, b) => a.atMs - b.atMs);
            expect(merged.page.length).toBeLessThanOrEqual(limit);
            seen.push(...merged.page.map(({ shard, row }) => ({ shard, id: row.id })));
            if (merged.cursor === null) break;
            // The cursor survives its text form.
            cursor = parseLogCursor(formatLogCursor(merged.cursor), logs.length)!;
          }
          for (const [s, log] of logs.entries())
            expect(seen.filter((x) => x.shard === s).map((x) => x.id)).toEqual(log.map((r) => r.id));
        },
      ),
      { seed: SEED, numRuns: 400 },
    );
  });

  it("refuse a malformed cursor or one of another shard count", () => {
    expect(parseLogCursor("3", 1)).toEqual([3]);
    expect(parseLogCursor("3.0", 2)).toEqual([3, 0]);
    for (const bad of ["3", "3.0.1", "a.b", "-1.2", "1..2", "01.2", "1.2."])
      expect(parseLogCursor(bad, 2)).toBeUndefined();
  });
});
