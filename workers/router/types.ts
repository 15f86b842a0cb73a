/**
 * Routes of the typed values: PN-counters and add-wins sets.
 */
import { type Hono } from "hono";
import { StoreError } from "../../shared/errors.ts";
import { type KeyView } from "../../shared/store/replica-core.ts";
import { counterBodySchema, setBodySchema } from "../../shared/store/wire.ts";
import { loadConfig } from "../config.ts";
import { type AppEnv } from "./app.ts";
import { callReplica, keyFromPath, readJson } from "./http.ts";
import { replicaOf, servingRegion } from "./routing.ts";
import { parseWriteAck, writeAnswerHeaders } from "./writes.ts";

const COUNTERS = "/v1/counters/";
const SETS = "/v1/sets/";

function expect<T extends KeyView["type"]>(view: KeyView, type: T, key: string): Extract<KeyView, { type: T }> {
  if (view.type !== type)
    throw new StoreError("type_mismatch", `key "${key}" holds a ${view.type}, not a ${type}`, { type: view.type });
  return view as Extract<KeyView, { type: T }>;
}

/** Mounts the counter and set routes. */
export function mountTypes(app: Hono<AppEnv>): void {
  app.post(`${COUNTERS}*`, async (c) => {
    const config = loadConfig(c.env);
    const key = keyFromPath(c.req.raw, COUNTERS);
    const region = servingRegion(config, c.req.raw, c.req.query("region"));
    const ack = parseWriteAck(c.req.query("ack"));
    const body = await readJson(c.req.raw, counterBodySchema);
    const outcome = await callReplica(region, () =>
      replicaOf(c.env, region).write(key, { type: "counter", delta: body.delta }),
    );
    await writeAnswerHeaders(c, outcome, ack);
    return c.json({
      key,
      value: expect(outcome.view, "counter", key).value,
      region: outcome.region,
      acked: [outcome.region],
    });
  });

  app.get(`${COUNTERS}*`, async (c) => {
    const config = loadConfig(c.env);
    const key = keyFromPath(c.req.raw, COUNTERS);
    const region = servingRegion(config, c.req.raw, c.req.query("region"));
    const outcome = await callReplica(region, () => replicaOf(c.env, region).read(key));
    c.header("X-Served-By", outcome.region);
    c.header("X-Replication-Lag-Ms", String(Math.round(outcome.lagMs)));
    if (outcome.view === null)
      throw new StoreError("not_found", `counter "${key}" does not exist in region ${outcome.region}`);
    const view = expect(outcome.view, "counter", key);
    c.header("ETag", `"${view.version}"`);
    return c.json({ key, value: view.value });
  });

  app.post(`${SETS}*`, async (c) => {
    const config = loadConfig(c.env);
    const key = keyFromPath(c.req.raw, SETS);
    const region = servingRegion(config, c.req.raw, c.req.query("region"));
    const ack = parseWriteAck(c.req.query("ack"));
    const body = await readJson(c.req.raw, setBodySchema);
    const outcome = await callReplica(region, () =>
      replicaOf(c.env, region).write(key, { type: "set", add: body.add, remove: body.remove }),
    );
    await writeAnswerHeaders(c, outcome, ack);
    return c.json({
      key,
      members: expect(outcome.view, "set", key).members,
      region: outcome.region,
      acked: [outcome.region],
    });
  });

  app.get(`${SETS}*`, async (c) => {
    const config = loadConfig(c.env);
    const key = keyFromPath(c.req.raw, SETS);
    const region = servingRegion(config, c.req.raw, c.req.query("region"));
    const outcome = await callReplica(region, () => replicaOf(c.env, region).read(key));
    c.header("X-Served-By", outcome.region);
    c.header("X-Replication-Lag-Ms", String(Math.round(outcome.lagMs)));
    if (outcome.view === null)
      throw new StoreError("not_found", `set "${key}" does not exist in region ${outcome.region}`);
    const view = expect(outcome.view, "set", key);
    c.header("ETag", `"${view.version}"`);
    return c.json({ key, members: view.members });
  });
}
