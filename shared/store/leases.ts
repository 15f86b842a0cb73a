/**
 * What lets a primary serve a strong operation with no extra round trip: its lease from the
 * control object, and the key states it knows a majority of regions holds.
 *
 * The lease. The control object confirms a primary and grants it a lease (`PRIMARY_LEASE_MS` by default); it
 * starts no other primary for the prefix until that time has passed on its own clock
 * (`control-machine.ts`). The primary counts the lease from before it asked, less
 * {@link PRIMARY_LEASE_MARGIN_MS}, so its lease ends before the control object's does whatever
 * the two clocks read: only durations are compared. While the lease runs, no other region can
 * take a strong write of the prefix, so the primary's local fencing check (the epoch it knows,
 * checked again at commit) is enough. The lease is renewed beside the requests once half of it
 * is gone, so a busy primary never waits for the control object.
 *
 * The held states. A strong read answers only a state a majority holds (a failover's recovery
 * finds every such state). A strong write that a majority acknowledged, or a read that checked
 * its peers, shows the key's state held; while the key stays at that state and epoch, later
 * strong reads answer it without asking the peers again.
 */
import { type RegionId } from "../regions.ts";
import { PRIMARY_LEASE_MARGIN_MS } from "./primaries.ts";
import { type StrongScope } from "./contract.ts";
import { type ReplicaPorts } from "./ports.ts";

/** Keys whose majority-held state a primary remembers (the least recently confirmed go first). */
export const HELD_KEYS_MAX = 4096;

/** What the control object answered when asked to confirm a primary. */
export type LeaseAnswer = "leased" | "refused" | "unreachable";

/** A primary's leases on its strong prefixes, by prefix. */
export class PrimaryLeases {
  private readonly region: RegionId;
  private readonly ports: Pick<ReplicaPorts, "control" | "now" | "background" | "warn">;
  private readonly leases = new Map<
    string,
    { readonly epoch: number; readonly untilMs: number; readonly renewMs: number }
  >();
  private readonly asking = new Map<string, Promise<LeaseAnswer>>();

  constructor(region: RegionId, ports: Pick<ReplicaPorts, "control" | "now" | "background" | "warn">) {
    this.region = region;
    this.ports = ports;
  }

  /**
   * Whether this replica may act as the primary of `scope` now: at once while its lease runs
   * (renewing it beside the caller once half is gone), else after asking the control object.
   * The caller has checked the epoch it knows itself.
   */
  async confirm(scope: StrongScope): Promise<LeaseAnswer> {
    const lease = this.leases.get(scope.prefix);
    const nowMs = this.ports.now();
    if (lease !== undefined && lease.epoch === scope.epoch && nowMs < lease.untilMs) {
      if (nowMs >= lease.renewMs) this.ports.background(this.ask(scope));
      return "leased";
    }
    return this.ask(scope);
  }

  /** Asks the control object once at a time per prefix and epoch; callers meanwhile share the answer. */
  private ask(scope: StrongScope): Promise<LeaseAnswer> {
    const id = `${scope.prefix}@${scope.epoch}`;
    let asking = this.asking.get(id);
    if (asking === undefined) {
      asking = this.askOnce(scope).finally(() => this.asking.delete(id));
      this.asking.set(id, asking);
    }
    return asking;
  }

  private async askOnce(scope: StrongScope): Promise<LeaseAnswer> {
    // Counted from before the question: the control object's lease starts later than this.
    const sentMs = this.ports.now();
    let grantedMs: number;
    try {
      grantedMs = await this.ports.control.confirmPrimary(scope.prefix, this.region, scope.epoch);
    } catch (error) {
      this.ports.warn(`replica ${this.region}: the control object did not confirm "${scope.prefix}"`, error);
      return "unreachable";
    }
    if (grantedMs <= 0) {
      this.leases.delete(scope.prefix);
      return "refused";
    }
    const untilMs = sentMs + grantedMs - Math.min(PRIMARY_LEASE_MARGIN_MS, grantedMs / 4);
    const known = this.leases.get(scope.prefix);
    // An answer that arrives after a newer one keeps the newer lease.
    if (known === undefined || known.epoch !== scope.epoch || known.untilMs < untilMs)
      this.leases.set(scope.prefix, { epoch: scope.epoch, untilMs, renewMs: sentMs + grantedMs / 2 });
    return "leased";
  }
}

/** Key states (by epoch and version) a majority of regions was seen to hold, bounded by {@link HELD_KEYS_MAX}. */
export class HeldStates {
  private readonly held = new Map<string, string>();

  /** Records that a majority holds `key` at `version` under `epoch`. */
  record(key: string, epoch: number, version: string): void {
    this.held.delete(key);
    this.held.set(key, `${epoch}|${version}`);
    if (this.held.size > HELD_KEYS_MAX) {
      const oldest = this.held.keys().next();
      if (oldest.done !== true) this.held.delete(oldest.value);
    }
  }

  /** Whether a majority was seen to hold `key` at exactly `version` under `epoch`. */
  holds(key: string, epoch: number, version: string): boolean {
    return this.held.get(key) === `${epoch}|${version}`;
  }
}
