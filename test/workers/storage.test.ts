// The SQLite adapter (workers/replica/store.ts) against the storage contract that the
// simulator's in-memory storage also runs (test/shared/memory-storage.test.ts). Each test gets
// a fresh, empty storage inside a replica's real database: one `transactionSync` empties every
// table, runs the test, and rolls everything back, so the replica's own rows (and the other
// tests of this file, which share the database) never see the test's writes.
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { replicaStore } from "../../workers/replica/store.ts";
import { type WithStorage, storageContract } from "../shared/storage-contract.ts";
import { replica } from "./helpers.ts";

/** Every table of the replica's schema that the storage interface reads or writes. */
const TABLES = [
  "changes",
  "conflicts",
  "dead_letters",
  "deferred",
  "kv",
  "log",
  "merkle",
  "meta",
  "metrics",
  "peer_recv",
  "peer_report",
  "peer_send",
  "primaries",
];

/** Thrown to roll the test's transaction back; private, so no test body can throw it. */
class RollBack extends Error {}

/** The replica's tables outside SQLite's and the platform's own, and the migrations record. */
function schemaTables(storage: DurableObjectStorage): string[] {
  return storage.sql
    .exec<{ name: string }>(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 7) <> 'sqlite_' AND substr(name, 1, 4) <> '_cf_' AND name <> '_migrations' ORDER BY name",
    )
    .toArray()
    .map((r) => r.name);
}

/**
 * Runs `body` over a fresh, empty `replicaStore` inside the wnam replica, then rolls back. The
 * adapter's own transactions nest inside this one as savepoints (checked below), so they commit
 * and roll back as they would at top level.
 */
const withSqliteStorage: WithStorage = async (body) => {
  await runInDurableObject(replica("wnam"), (_instance, state) => {
    // A table added to the schema must be emptied here too, or tests would not start empty.
    expect(schemaTables(state.storage)).toEqual(TABLES);
    try {
      state.storage.transactionSync(() => {
        for (const table of TABLES) state.storage.sql.exec(`DELETE FROM ${table}`);
        body(replicaStore(state.storage), () => replicaStore(state.storage));
        throw new RollBack();
      });
    } catch (error) {
      if (!(error instanceof RollBack)) throw error;
    }
  });
};

storageContract("replicaStore (Durable Object SQLite)", withSqliteStorage);

describe("the SQLite contract harness", () => {
  it("nests transactionSync as a savepoint: an inner throw undoes only the inner writes", async () => {
    await runInDurableObject(replica("wnam"), (_instance, state) => {
      const { storage } = state;
      const probes = () =>
        storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM meta WHERE name LIKE 'probe-%'").one().n;
      expect(() =>
        storage.transactionSync(() => {
          storage.sql.exec("INSERT INTO meta (name, value) VALUES ('probe-outer', '')");
          expect(() =>
            storage.transactionSync(() => {
              storage.sql.exec("INSERT INTO meta (name, value) VALUES ('probe-inner', '')");
              expect(probes()).toBe(2);
              throw new Error("inner");
            }),
          ).toThrow("inner");
          expect(probes()).toBe(1);
          throw new Error("outer");
        }),
      ).toThrow("outer");
      expect(probes()).toBe(0);
    });
  });

  it("leaves the replica's own rows as they were", async () => {
    const rows = () =>
      runInDurableObject(replica("wnam"), (_instance, state) =>
        TABLES.map((table) => state.storage.sql.exec<{ n: number }>(`SELECT count(*) AS n FROM ${table}`).one().n),
      );
    const before = await rows();
    // The replica's constructor writes meta rows, so a harness that emptied the tables for good would show.
    expect(before[TABLES.indexOf("meta")]).toBeGreaterThan(0);
    await withSqliteStorage((storage) => {
      storage.meta.set("contract-probe", "x");
      storage.kv.delete("anything");
      expect(storage.meta.get("clock")).toBeUndefined();
    });
    expect(await rows()).toEqual(before);
  });
});
