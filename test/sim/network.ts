// The simulated WAN: per-pair one-way latency from the measured table (shared/wan-rtt.ts) plus
// seeded jitter, lost requests and lost replies, and partitions. Calls between objects are
// RPCs that either deliver (possibly with the reply lost, after the callee acted) or fail.
import { type RegionId } from "../../shared/regions.ts";
import { oneWayMs } from "../../shared/wan-rtt.ts";
import { type Random } from "../../shared/random.ts";
import { type Scheduler } from "./scheduler.ts";

/** The faults in force; the simulation changes them over time. */
export interface Faults {
  /** Probability that a request, or a reply, is lost. */
  drop: number;
  /** Probability that a queue delivery happens twice. */
  duplicate: number;
  /** Extra one-way delay, uniform in [0, jitterMs]: reorders messages. */
  jitterMs: number;
  /** Pairs of regions that cannot reach each other ("a|b", both orders). */
  readonly partitions: Set<string>;
  /**
   * Regions whose replica cannot reach, or be reached by, any other replica (directly or
   * through the queue), while the control object still reaches it: a replica heard by no peer
   * that still answers the control object.
   */
  readonly severed: Set<string>;
}

/** Faults of a calm network. */
export function calm(): Faults {
  return { drop: 0, duplicate: 0, jitterMs: 0, partitions: new Set(), severed: new Set() };
}

function pair(a: RegionId, b: RegionId): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

/** The error a failed call rejects with, as a lost connection does on the platform. */
export class NetworkError extends Error {
  override readonly name = "NetworkError";
}

/** The network between the regions (the control object lives in one of them). */
export class Network {
  readonly faults: Faults = calm();
  private readonly scheduler: Scheduler;
  private readonly random: Random;

  constructor(scheduler: Scheduler, random: Random) {
    this.scheduler = scheduler;
    this.random = random;
  }

  /** Cuts (or heals) the link between two regions. */
  partition(a: RegionId, b: RegionId, cut: boolean): void {
    if (cut) this.faults.partitions.add(pair(a, b));
    else this.faults.partitions.delete(pair(a, b));
  }

  /** Whether `a` can reach `b` now. */
  reachable(a: RegionId, b: RegionId): boolean {
    return a === b || !this.faults.partitions.has(pair(a, b));
  }

  /** Whether the replicas of `a` and `b` can reach each other now (see {@link Faults.severed}). */
  replicasLinked(a: RegionId, b: RegionId): boolean {
    return a === b || (this.reachable(a, b) && !this.faults.severed.has(a) && !this.faults.severed.has(b));
  }

  /** One hop's delay from `a` to `b`, jitter included. */
  delay(a: RegionId, b: RegionId): number {
    const jitter = this.faults.jitterMs > 0 ? this.random.next() * this.faults.jitterMs : 0;
    return oneWayMs(a, b) + jitter;
  }

  /** Whether this hop loses its message. */
  lost(a: RegionId, b: RegionId): boolean {
    return !this.reachable(a, b) || (a !== b && this.faults.drop > 0 && this.random.chance(this.faults.drop));
  }

  /**
   * An RPC from `from` to `to`: after one hop `invoke` runs at the callee (unless the request
   * is lost), and its answer comes back after another hop (unless the reply is lost). A lost
   * message rejects with {@link NetworkError}; so does a callee that is down (`invoke` is then
   * undefined).
   */
  call<T>(from: RegionId, to: RegionId, invoke: () => Promise<T> | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const out = this.delay(from, to);
      if (this.lost(from, to)) {
        this.scheduler.at(out, () => reject(new NetworkError(`request ${from} -> ${to} lost`)));
        return;
      }
      this.scheduler.at(out, () => {
        const running = invoke();
        if (running === undefined) {
          this.scheduler.at(this.delay(to, from), () => reject(new NetworkError(`${to} is down`)));
          return;
        }
        running.then(
          (value) => {
            const back = this.delay(to, from);
            if (this.lost(to, from))
              this.scheduler.at(back, () => reject(new NetworkError(`reply ${to} -> ${from} lost`)));
            else this.scheduler.at(back, () => resolve(value));
          },
          (error: unknown) => this.scheduler.at(this.delay(to, from), () => reject(error)),
        );
      });
    });
  }
}
