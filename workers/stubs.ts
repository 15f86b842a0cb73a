/**
 * Stubs of the Durable Objects, in one place: a region's replica (created near it on first
 * use) and the global control object.
 */
import { type RegionId } from "../shared/regions.ts";
import type { Control } from "./control/control.ts";
import type { Replica } from "./replica/replica.ts";

/** The replica stub of a region, created with its location hint on first use. */
export function replicaOf(env: Env, region: RegionId): DurableObjectStub<Replica> {
  return env.REPLICA.getByName(region, { locationHint: region as DurableObjectLocationHint });
}

/** The control object's stub. */
export function controlOf(env: Env): DurableObjectStub<Control> {
  return env.CONTROL.getByName("control");
}
