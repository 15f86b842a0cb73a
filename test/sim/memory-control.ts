// The control object's storage in memory, for the simulator. Its writes are few and never
// refused midway, so a transaction is just the function (no rollback is ever needed).
import { type RegionId } from "../../shared/regions.ts";
import { type Layout } from "../../shared/store/layout.ts";
import { type ControlPrimaryRow, type ControlStorage, type FailoverRow } from "../../shared/store/control-machine.ts";

/** A control object's storage held in maps. */
export class MemoryControlStorage implements ControlStorage {
  private readonly overrides = new Map<RegionId, { healthy: boolean; changedMs: number }>();
  private readonly rows = new Map<string, ControlPrimaryRow>();
  private readonly heard = new Map<RegionId, number>();
  /** Every failover so far, for traces. */
  readonly failoverLog: FailoverRow[] = [];

  transaction<T>(fn: () => T): T {
    return fn();
  }

  readonly health = {
    all: () => new Map(this.overrides),
    set: (region: RegionId, healthy: boolean, changedMs: number) => {
      this.overrides.set(region, { healthy, changedMs });
    },
  };

  readonly primaries = {
    all: () => [...this.rows.values()].sort((a, b) => (a.prefix < b.prefix ? -1 : 1)),
    seed: (row: ControlPrimaryRow) => {
      if (!this.rows.has(row.prefix)) this.rows.set(row.prefix, row);
    },
    put: (row: ControlPrimaryRow) => {
      this.rows.set(row.prefix, row);
    },
  };

  readonly failovers = {
    insert: (row: FailoverRow) => {
      this.failoverLog.push(row);
    },
  };

  private stored: Layout | null = null;

  readonly layout = {
    get: () => this.stored,
    put: (layout: Layout) => {
      this.stored = layout;
    },
  };

  readonly evidence = {
    all: () => new Map(this.heard),
    put: (region: RegionId, heardMs: number) => {
      this.heard.set(region, Math.max(this.heard.get(region) ?? 0, heardMs));
    },
  };
}
