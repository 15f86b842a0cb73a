/**
 * The replica's ports (`shared/store/ports.ts`) on the platform: other replicas and the control
 * object over RPC (through `stubs.ts`, so over emulated WAN when it is on), the replication
 * queue binding (and the emulated crossing a write waits before it leaves), `ctx.waitUntil` for
 * background work. The
 * bindings are read at each call, so a test may swap `env` on a live instance.
 */
import { type RegionId } from "../../shared/regions.ts";
import { type ShardIndex } from "../../shared/shards.ts";
import { type PeerApi, type SiblingApi } from "../../shared/store/contract.ts";
import { type ReplicaPorts } from "../../shared/store/ports.ts";
import { platformClock } from "../clock.ts";
import { controlOf, hopMs, replicaOf } from "../stubs.ts";
import { skewOf } from "../../shared/faults.ts";
import { faultsNow, lossyPushes } from "../faults.ts";

/**
 * Ports for the replica of `self`'s shard `shard` whose current bindings `env()` returns: its
 * peers are the same shard of the other regions.
 */
export function replicaPorts(ctx: DurableObjectState, env: () => Env, self: RegionId, shard: ShardIndex): ReplicaPorts {
  return {
    ...platformClock,
    // An injected clock skew (`FAULTS = "on"`) moves this replica's clock: everything the core
    // stamps or times goes through here.
    now: () => platformClock.now() + skewOf(faultsNow(env()), self),
    // An injected drop loses direct pushes too, as it loses queue deliveries (and a refusal fails them).
    peer: (region: RegionId): PeerApi => lossyPushes(env(), replicaOf(env(), region, shard, self), self, region),
    // Shards of one region share its location: no WAN hop between them.
    sibling: (other: ShardIndex): SiblingApi => replicaOf(env(), self, other),
    control: {
      getView: () => controlOf(env(), self).getView(),
      confirmPrimary: (prefix, region, epoch) => controlOf(env(), self).confirmPrimary(prefix, region, epoch),
    },
    queue: {
      async sendBatch(messages, delaySeconds) {
        await env().REPLICATION_QUEUE.sendBatch(
          messages.map((body) => ({ body, contentType: "v8" as const })),
          delaySeconds > 0 ? { delaySeconds } : undefined,
        );
      },
      // Under WAN emulation (and injected delay) a write is in flight this long before it leaves.
      crossingMs: (target: RegionId) => hopMs(env(), self, target),
    },
    background: (work) => ctx.waitUntil(work),
    warn: (message, error) => (error === undefined ? console.warn(message) : console.warn(`${message}:`, error)),
  };
}
