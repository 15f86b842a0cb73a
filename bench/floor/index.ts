/**
 * The storage floor for `npm run bench`: the least a Worker can do to keep a value in a SQLite
 * Durable Object. `PUT /kv/{key}` and `GET /kv/{key}` go through one RPC to one object, which
 * runs one statement. The store does the same hop plus its own work (auth, routing, the replica
 * state machine, the outbox, replication), so store/floor ratios show what that work costs.
 */
import { DurableObject } from "cloudflare:workers";

/**
 * The floor's bindings. Written by hand on purpose: `wrangler types` output for this config
 * declares the global `Cloudflare.Env` and `GlobalProps`, which would collide with the store's
 * generated declarations, since the root tsconfig type-checks `bench/` in the same program.
 */
interface FloorEnv {
  readonly FLOOR: DurableObjectNamespace<Floor>;
}

const KV_PREFIX = "/kv/";

/** One table, one statement per request: the floor under any key-value design on this platform. */
export class Floor extends DurableObject<FloorEnv> {
  constructor(ctx: DurableObjectState, env: FloorEnv) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)");
  }

  /** Stores `value` under `key`. */
  async put(key: string, value: ArrayBuffer): Promise<void> {
    this.ctx.storage.sql.exec("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", key, value);
  }

  /** The value under `key`, or null. */
  async get(key: string): Promise<ArrayBuffer | null> {
    const row = this.ctx.storage.sql
      .exec<{ value: ArrayBuffer }>("SELECT value FROM kv WHERE key = ?", key)
      .toArray()[0];
    return row === undefined ? null : row.value;
  }
}

export default {
  async fetch(request, env): Promise<Response> {
    const path = new URL(request.url).pathname;
    if (path === "/healthz") return new Response("ok");
    if (!path.startsWith(KV_PREFIX) || path.length === KV_PREFIX.length)
      return new Response("no route", { status: 404 });
    const key = decodeURIComponent(path.slice(KV_PREFIX.length));
    // The same location hint the store gives its enam replica; local dev ignores it.
    const floor = env.FLOOR.getByName("floor", { locationHint: "enam" });
    if (request.method === "PUT") {
      await floor.put(key, await request.arrayBuffer());
      return new Response(null, { status: 204 });
    }
    if (request.method === "GET") {
      const value = await floor.get(key);
      return value === null ? new Response("not found", { status: 404 }) : new Response(value);
    }
    return new Response("method not allowed", { status: 405 });
  },
} satisfies ExportedHandler<FloorEnv>;
