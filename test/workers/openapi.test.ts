// The API's description as served: /openapi.json and /docs need no token and work offline;
// every route the app serves is in the document, and each answers the auth it documents.
import { describe, expect, it } from "vitest";
import { type ApiRoute, ROUTES, openApiDocument } from "../../shared/api.ts";
import { createApp } from "../../workers/router/app.ts";
import { api, READER } from "./helpers.ts";

const routes = Object.values(ROUTES) as ApiRoute[];

/** The OpenAPI path of a Hono pattern: the inverse of `honoPath`. */
function openApiPath(pattern: string): string {
  return pattern.replace(/\/\*$/, "/{key}").replaceAll(/:(\w+)/g, "{$1}");
}

/** A concrete request path for a route. */
function concrete(route: ApiRoute): string {
  return route.path.replace("{key}", "some/key").replace("{id}", "wnam").replace("{asset}", "swagger-ui.css");
}

describe("GET /openapi.json", () => {
  it("answers without a token, the document generated from the route definitions", async () => {
    const res = await api("/openapi.json", { token: null });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(await res.json()).toEqual(JSON.parse(JSON.stringify(openApiDocument())));
  });

  it("has every route the app serves", async () => {
    const document = (await (await api("/openapi.json", { token: null })).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const served = createApp()
      .routes.filter((r) => r.method !== "ALL")
      .map((r) => `${r.method.toLowerCase()} ${openApiPath(r.path)}`);
    expect(served.length).toBeGreaterThanOrEqual(routes.length);
    const documented = Object.entries(document.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((method) => `${method} ${path}`),
    );
    expect(new Set(served)).toEqual(new Set(documented));
  });
});

describe("GET /docs", () => {
  it("serves Swagger UI over the document, with every file from the Worker itself", async () => {
    const page = await api("/docs", { token: null });
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    const html = await page.text();
    expect(html).toContain("/openapi.json");
    const sources = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] ?? "");
    expect(sources.length).toBeGreaterThanOrEqual(2);
    for (const source of sources) {
      expect(source.startsWith("/")).toBe(true);
      const asset = await api(source, { token: null });
      expect(asset.status).toBe(200);
      expect((await asset.text()).length).toBeGreaterThan(10_000);
    }
    expect((await api("/docs/nothing.js", { token: null })).status).toBe(404);
  });
});

describe("each route's documented auth", () => {
  it("is what the route enforces", async () => {
    const seen: string[] = [];
    const expected: string[] = [];
    for (const route of routes) {
      const path = concrete(route);
      const method = route.method.toUpperCase();
      const anonymous = await api(path, { method, token: null });
      const reader = await api(path, { method, token: READER });
      // Open: answered to anyone. Read: a reader passes. Write and admin: a reader is forbidden.
      seen.push(
        `${method} ${path}: ${anonymous.status === 200 ? "open" : anonymous.status} ${reader.status === 403 ? "forbidden" : "allowed"}`,
      );
      const want = route.auth === null ? "open allowed" : route.auth === "read" ? "401 allowed" : "401 forbidden";
      expected.push(`${method} ${path}: ${want}`);
    }
    expect(seen).toEqual(expected);
  });
});
