// What the simulated clients do and what goes wrong meanwhile, all drawn from the seed:
// register, counter and set writes under every ack level, strong writes, reads under every
// consistency; and faults: lost and duplicated messages, jitter, partitions, crashes and
// restarts, operators taking regions out, clock skew, and (when asked) lost storage.
import { LOCATION_HINTS, type RegionId } from "../../shared/regions.ts";
import { majority } from "../../shared/store/cluster.ts";
import { type KeyOp } from "../../shared/store/key-state.ts";
import { type Cluster } from "./cluster.ts";
import { type Consistency, type SimClient } from "./client.ts";
import { type Random } from "../../shared/random.ts";

/** Keys the clients use: few, so that writes conflict. */
export const REGISTER_KEYS = ["r/0", "r/1", "r/2"];
export const COUNTER_KEYS = ["c/0", "c/1"];
export const SET_KEYS = ["s/0", "s/1"];
export const STRONG_REGISTER_KEYS = ["strong/r0", "strong/r1"];
export const STRONG_SET_KEYS = ["strong/s0"];
/** Set elements outside strong prefixes: a small pool, so adds and removes meet. */
const ELEMENTS = ["a", "b", "c", "d"];

/** One client's loop until `untilMs` (virtual): an operation, a pause, again. */
export async function clientLoop(client: SimClient, cluster: Cluster, random: Random, untilMs: number): Promise<void> {
  const n = cluster.settings.regions.length;
  let count = 0;
  while (cluster.scheduler.now < untilMs) {
    count += 1;
    const unique = `${client.name}-${count}`;
    const acks = random.pick([1, 1, 1, majority(n), majority(n), n]);
    const roll = random.next();
    if (roll < 0.25) {
      const key = random.pick(REGISTER_KEYS);
      // Every third put carries metadata (from the count, so the seed's draws stay as they were):
      // the extras travel through every merge and repair path with the value.
      const metadata = count % 3 === 0 ? JSON.stringify({ by: unique }) : null;
      const op: KeyOp = random.chance(0.1)
        ? { type: "register", op: { kind: "delete" } }
        : {
            type: "register",
            op: { kind: "put", value: new TextEncoder().encode(unique), contentType: "text/plain", metadata },
          };
      await client.write(key, op, acks);
    } else if (roll < 0.35) {
      await client.write(random.pick(COUNTER_KEYS), { type: "counter", delta: random.int(-5, 9) }, acks);
    } else if (roll < 0.45) {
      const element = random.pick(ELEMENTS);
      const op: KeyOp = random.chance(0.6)
        ? { type: "set", add: [element], remove: [] }
        : { type: "set", add: [], remove: [element] };
      await client.write(random.pick(SET_KEYS), op, acks);
    } else if (roll < 0.55) {
      const value = new TextEncoder().encode(`strong-${unique}`);
      if (random.chance(0.7))
        await client.write(
          random.pick(STRONG_REGISTER_KEYS),
          { type: "register", op: { kind: "put", value, contentType: "text/plain" } },
          1,
        );
      else await client.write(random.pick(STRONG_SET_KEYS), { type: "set", add: [`x-${unique}`], remove: [] }, 1);
    } else if (roll < 0.65) {
      await client.read(random.pick([...STRONG_REGISTER_KEYS, ...STRONG_SET_KEYS]), "strong");
    } else {
      const consistency: Consistency = random.pick(["eventual", "session", "session", "quorum"]);
      await client.read(random.pick([...REGISTER_KEYS, ...COUNTER_KEYS, ...SET_KEYS]), consistency);
    }
    await cluster.scheduler.timer(random.int(0, 150)).done;
  }
}

/** The kinds of fault a campaign may inject. */
export interface FaultPlan {
  readonly crashes: boolean;
  readonly partitions: boolean;
  readonly takeOuts: boolean;
  readonly skewMsMax: number;
  readonly storageLoss: boolean;
  /** Isolate the strong prefix's primary once, under load from a client next to it. */
  readonly isolatePrimary: boolean;
  /** Add a region mid-run (every process restarts with the longer region list). */
  readonly addRegion: boolean;
  /** Share of queue messages lost outright (never delivered, retried or dead-lettered), to the end. */
  readonly loss: number;
}

/** Schedules the faults of one run between `fromMs` and `untilMs` (virtual, relative to now). */
export function scheduleFaults(cluster: Cluster, random: Random, plan: FaultPlan, untilMs: number): void {
  const { network, scheduler, trace } = cluster;
  const regions = cluster.settings.regions;
  network.faults.drop = random.pick([0, 0, 0.01, 0.05, 0.15]);
  network.faults.duplicate = random.pick([0, 0.05, 0.3]);
  network.faults.jitterMs = random.pick([0, 20, 150]);
  trace.note(
    `network: drop ${network.faults.drop}, duplicate ${network.faults.duplicate}, jitter ${network.faults.jitterMs} ms`,
  );
  for (const region of regions) {
    const host = cluster.host(region);
    host.skewMs = plan.skewMsMax === 0 ? 0 : random.int(-plan.skewMsMax, plan.skewMsMax);
    if (host.skewMs !== 0) trace.note(`${region} clock skew ${host.skewMs} ms`);
  }
  if (plan.isolatePrimary) {
    const at = random.int(2000, Math.max(2000, untilMs - 6000));
    const length = random.int(5000, 9000);
    scheduler.at(at, () => {
      const view = cluster.control.node?.machine.view;
      const primary = view === undefined ? undefined : Object.values(view.primaries)[0]?.region;
      if (primary === undefined) return;
      const others = regions.filter((r) => r !== primary);
      if (random.chance(0.5)) {
        // Cut from the other replicas only: still confirmed by the control object until it
        // notices that no peer hears the primary.
        trace.note(`sever the primary ${primary} from its peers for ${length} ms`);
        network.faults.severed.add(primary);
        scheduler.at(length, () => {
          trace.note(`rejoin ${primary}`);
          network.faults.severed.delete(primary);
        });
        return;
      }
      trace.note(`isolate the primary ${primary} for ${length} ms`);
      for (const other of others) network.partition(primary, other, true);
      scheduler.at(length, () => {
        trace.note(`reconnect ${primary}`);
        for (const other of others) network.partition(primary, other, false);
      });
    });
  }
  if (plan.loss > 0) {
    cluster.queue.loss = plan.loss;
    trace.note(`queue: ${plan.loss * 100}% of messages lost`);
  }
  if (plan.addRegion) {
    const at = random.int(2000, Math.max(2000, untilMs - 3000));
    const added = random.pick(LOCATION_HINTS.filter((r) => !regions.includes(r)));
    scheduler.at(at, () => cluster.addRegion(added));
  }
  const events = random.int(1, 4);
  for (let i = 0; i < events; i += 1) {
    const at = random.int(0, untilMs - 1000);
    const length = random.int(500, 8000);
    const kinds = [
      ...(plan.crashes ? ["crash", "crash", "control"] : []),
      ...(plan.partitions ? ["partition", "partition", "isolate"] : []),
      ...(plan.takeOuts ? ["takeout", "move"] : []),
      ...(plan.storageLoss ? ["storage"] : []),
    ];
    if (kinds.length === 0) return;
    const kind = random.pick(kinds);
    const region = random.pick(regions);
    scheduler.at(at, () => {
      switch (kind) {
        case "crash":
          if (!cluster.host(region).up) return;
          trace.note(`crash ${region} for ${length} ms`);
          cluster.host(region).crash();
          scheduler.at(length, () => restart(cluster, region));
          return;
        case "storage":
          if (!cluster.host(region).up) return;
          trace.note(`${region} loses its storage; back in ${length} ms`);
          cluster.host(region).loseStorage();
          scheduler.at(length, () => restart(cluster, region));
          return;
        case "control":
          if (cluster.control.node === undefined) return;
          trace.note(`crash the control object for ${length} ms`);
          cluster.control.crash();
          scheduler.at(length, () => {
            if (cluster.control.node === undefined) {
              trace.note("restart the control object");
              cluster.control.start();
            }
          });
          return;
        case "partition": {
          const other = random.pick(regions.filter((r) => r !== region));
          trace.note(`partition ${region} | ${other} for ${length} ms`);
          network.partition(region, other, true);
          scheduler.at(length, () => {
            trace.note(`heal ${region} | ${other}`);
            network.partition(region, other, false);
          });
          return;
        }
        case "isolate": {
          // Cut from every other region (and so from the control object unless it lives here),
          // while clients near it still reach it: the classic deposed-primary setting.
          const others = regions.filter((r) => r !== region);
          trace.note(`isolate ${region} for ${length} ms`);
          for (const other of others) network.partition(region, other, true);
          scheduler.at(length, () => {
            trace.note(`reconnect ${region}`);
            for (const other of others) network.partition(region, other, false);
          });
          return;
        }
        case "takeout":
          trace.note(`operator takes ${region} out for ${length} ms`);
          void setHealth(cluster, region, false);
          scheduler.at(length, () => void setHealth(cluster, region, true));
          return;
        case "move":
          void movePrimary(cluster, region);
          return;
      }
    });
  }
}

function restart(cluster: Cluster, region: RegionId): void {
  if (cluster.host(region).up) return;
  cluster.trace.note(`restart ${region}`);
  cluster.host(region).start();
}

/** An operator's move of the strong prefix's primary to `region` (a failback, or a planned move). */
async function movePrimary(cluster: Cluster, region: RegionId): Promise<void> {
  const prefix = Object.keys(cluster.control.node?.machine.view.primaries ?? {})[0];
  if (prefix === undefined) return;
  cluster.trace.note(`operator moves the primary of "${prefix}" to ${region}`);
  const done = cluster.control.serve((c) => c.movePrimary(prefix, region, cluster.settings.leaseMs + MOVE_WAIT_MS));
  const moved = await done?.catch(() => undefined);
  if (moved !== undefined && !moved.ok) cluster.trace.note(`the move to ${region} was refused: ${moved.error.message}`);
}

/** How long an operator's move waits for the new primary to recover (as the Worker does). */
const MOVE_WAIT_MS = 10_000;

/** An operator's health change, through the control object (lost if it is down). */
export async function setHealth(cluster: Cluster, region: RegionId, healthy: boolean): Promise<void> {
  const done = cluster.control.serve((c) => c.setHealth(region, healthy));
  if (done === undefined) {
    cluster.trace.note(`could not ${healthy ? "put back" : "take out"} ${region}: the control object is down`);
    return;
  }
  await done.catch(() => undefined);
}
