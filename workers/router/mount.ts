/**
 * Mounts a handler for a route of the API's description (`shared/api.ts`), so that every route
 * the router serves is one `GET /openapi.json` documents.
 */
import { type Handler, type Hono, type MiddlewareHandler } from "hono";
import { type ApiRoute } from "../../shared/api.ts";
import { authorize } from "./auth.ts";
import { type AppEnv } from "./env.ts";

/**
 * The Hono pattern of an OpenAPI path: `{key}` (a key, which may hold `/`) is the rest of the
 * path, read by `keyFromPath`; any other `{name}` is one segment.
 */
export function honoPath(path: string): string {
  return path.replace(/\{key\}$/, "*").replaceAll(/\{(\w+)\}/g, ":$1");
}

/** Serves `route` with `handler`, behind the scope the route names (as the document says). */
export function mount(app: Hono<AppEnv>, route: ApiRoute, handler: Handler<AppEnv>): void {
  const scope = route.auth;
  const guard: MiddlewareHandler<AppEnv> = async (c, next) => {
    if (scope !== null) await authorize(c.req.header("authorization"), c.env.AUTH_TOKENS, scope);
    await next();
  };
  app.on(route.method.toUpperCase(), honoPath(route.path), guard, handler);
}
