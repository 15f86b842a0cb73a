/**
 * The router Worker's HTTP app (Hono): authorization, the routes, request metrics, and the one
 * place where errors become HTTP answers.
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import { routePath } from "hono/route";
import { type ErrorBody, StoreError } from "../../shared/errors.ts";
import { loadConfig } from "../config.ts";
import { type ApiRoute, ROUTES, URL_LENGTH_MAX } from "../../shared/api.ts";
import { mountAdmin } from "./admin.ts";
import { mountDashboard } from "./dashboard.ts";
import { mountDocs } from "./docs.ts";
import { honoPath, mount } from "./mount.ts";
import { type AppEnv } from "./env.ts";
import { mountKv } from "./kv.ts";
import { observeRequest } from "./metrics.ts";
import { mountObserve } from "./observe.ts";
import { mountTypes } from "./types.ts";
import { mountWatch } from "./watch.ts";

/**
 * Headers a route set before it failed that the error answer keeps (a deleted key's 404 names
 * its version; a browser may read the error only with its CORS headers).
 */
const KEPT_HEADERS = [
  "Access-Control-Allow-Origin",
  "Access-Control-Expose-Headers",
  "Vary",
  "Allow",
  "ETag",
  "X-Served-By",
  "X-Replication-Lag-Ms",
  "X-Replication-Lag-Unknown",
  "X-Session-Token",
];

function errorAnswer(error: StoreError, kept?: Headers): Response {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  for (const name of KEPT_HEADERS) {
    const value = kept?.get(name);
    if (value !== null && value !== undefined) headers[name] = value;
  }
  if (error.code === "unauthorized") headers["WWW-Authenticate"] = 'Bearer realm="kv"';
  const body: ErrorBody = error.toBody();
  return new Response(JSON.stringify(body), { status: error.status, headers });
}

/** Every path the API serves (as a Hono pattern) with the methods it takes; HEAD wherever GET. */
function allowedMethods(): Map<string, string[]> {
  const byPath = new Map<string, string[]>();
  for (const route of Object.values(ROUTES) as ApiRoute[]) {
    const pattern = honoPath(route.path);
    const method = route.method.toUpperCase();
    byPath.set(pattern, [...(byPath.get(pattern) ?? []), ...(method === "GET" ? ["GET", "HEAD"] : [method])]);
  }
  return byPath;
}

/** Builds the app. */
export function createApp(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.use("*", async (c, next) => {
    const started = performance.now();
    await next();
    observeRequest(c.req.method, routePath(c), c.res.status, (performance.now() - started) / 1000);
  });

  // HEAD is served by the GET route (Hono drops the body); the answer keeps the length the GET
  // body would have. A stream (the change feed) has no length and is closed at once.
  app.use("*", async (c, next) => {
    await next();
    if (c.req.method !== "HEAD" || c.res.body === null || c.res.headers.has("Content-Length")) return;
    if (c.res.headers.get("Content-Type")?.startsWith("text/event-stream") === true) {
      await c.res.body.cancel();
      return;
    }
    const bytes = await c.res.arrayBuffer();
    const headers = new Headers(c.res.headers);
    headers.set("Content-Length", String(bytes.byteLength));
    c.res = new Response(null, { status: c.res.status, headers });
  });

  // Browsers on the origins CORS_ORIGINS lists may call the API, and read the headers a client
  // needs (the session token above all); preflights are answered here, before auth.
  app.use(
    "*",
    cors({
      origin: (origin, c) => {
        const allowed = loadConfig(c.env).corsOrigins;
        return allowed.includes("*") || allowed.includes(origin) ? origin : null;
      },
      allowMethods: ["GET", "HEAD", "PUT", "POST", "DELETE"],
      allowHeaders: [
        "Authorization",
        "Content-Type",
        "If-Match",
        "If-None-Match",
        "X-Session-Token",
        "X-KV-Metadata",
        "X-Client-Location",
      ],
      exposeHeaders: [
        "ETag",
        "X-Served-By",
        "X-Session-Token",
        "X-Replication-Lag-Ms",
        "X-Replication-Lag-Unknown",
        "X-KV-Metadata",
        "X-KV-Expiration",
        "Retry-After",
      ],
      maxAge: 600,
    }),
  );

  // Longer URLs are refused here, as JSON; past the runtime's own limit (64 KiB locally, 16 KB
  // on Cloudflare's edge) the platform answers 414 before any code of the store runs.
  app.use("*", async (c, next) => {
    if (c.req.url.length > URL_LENGTH_MAX)
      throw new StoreError("uri_too_long", `the URL is longer than ${URL_LENGTH_MAX} characters`, {
        limitChars: URL_LENGTH_MAX,
      });
    await next();
  });

  mount(app, ROUTES.healthz, (c) => c.json({ status: "ok", regions: loadConfig(c.env).regions }));
  mountDocs(app);
  mountDashboard(app);

  mountKv(app);
  mountWatch(app);
  mountTypes(app);
  mountObserve(app);
  mountAdmin(app);

  // A known path with a method it does not take answers 405 with the methods it takes, not 404.
  for (const [pattern, methods] of allowedMethods()) {
    const allowed = methods.join(", ");
    app.all(pattern, (c) => {
      c.header("Allow", allowed);
      throw new StoreError("method_not_allowed", `${c.req.method} is not supported here; use ${allowed}`);
    });
  }

  app.notFound(() =>
    errorAnswer(new StoreError("not_found", "no such route; the API is described at /openapi.json and /docs")),
  );

  // The one mapping from errors to HTTP. Operating errors answer their own status; anything
  // else is a bug, logged and answered as JSON without internals.
  app.onError((error, c) => {
    if (error instanceof StoreError) return errorAnswer(error, c.res.headers);
    console.error("unexpected error:", error);
    return errorAnswer(new StoreError("internal", "the store hit an unexpected error; it has been logged"));
  });

  return app;
}
