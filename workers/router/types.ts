/**
 * Routes of the typed values: PN-counters and add-wins sets.
 */
import { type Hono } from "hono";
import { ROUTES } from "../../shared/api.ts";
import { mount } from "./mount.ts";
import { StoreError } from "../../shared/errors.ts";
import { type KeyView } from "../../shared/store/replica-core.ts";
import { counterBodySchema, setBodySchema } from "../../shared/store/wire.ts";
import { type AppEnv } from "./env.ts";
import { performRead, performWrite } from "./consistency.ts";
import { keyFromPath, readJson } from "./http.ts";

const COUNTERS = "/v1/counters/";
const SETS = "/v1/sets/";

function expectType<T extends KeyView["type"]>(view: KeyView, type: T, key: string): Extract<KeyView, { type: T }> {
  if (view.type !== type) {
    throw new StoreError("type_mismatch", `key "${key}" holds a ${view.type}, not a ${type}`, { type: view.type });
  }
  return view as Extract<KeyView, { type: T }>;
}

/** Mounts the counter and set routes. */
export function mountTypes(app: Hono<AppEnv>): void {
  mount(app, ROUTES.addToCounter, async (c) => {
    const key = keyFromPath(c.req.raw, COUNTERS);
    const body = await readJson(c.req.raw, counterBodySchema);
    const written = await performWrite(c, key, { type: "counter", delta: body.delta });
    return c.json({
      key,
      value: expectType(written.view, "counter", key).value,
      region: written.region,
      acked: written.acked,
    });
  });

  mount(app, ROUTES.getCounter, async (c) => {
    const key = keyFromPath(c.req.raw, COUNTERS);
    const read = await performRead(c, key);
    if (read.view === null)
      throw new StoreError("not_found", `counter "${key}" does not exist in region ${read.region}`);
    const view = expectType(read.view, "counter", key);
    c.header("ETag", `"${view.version}"`);
    return c.json({ key, value: view.value });
  });

  mount(app, ROUTES.updateSet, async (c) => {
    const key = keyFromPath(c.req.raw, SETS);
    const body = await readJson(c.req.raw, setBodySchema);
    const written = await performWrite(c, key, { type: "set", add: body.add, remove: body.remove });
    return c.json({
      key,
      members: expectType(written.view, "set", key).members,
      region: written.region,
      acked: written.acked,
    });
  });

  mount(app, ROUTES.getSet, async (c) => {
    const key = keyFromPath(c.req.raw, SETS);
    const read = await performRead(c, key);
    if (read.view === null) throw new StoreError("not_found", `set "${key}" does not exist in region ${read.region}`);
    const view = expectType(read.view, "set", key);
    c.header("ETag", `"${view.version}"`);
    return c.json({ key, members: view.members });
  });
}
