// Browsers on the origins CORS_ORIGINS lists may call the API: preflights are answered before
// auth, answers (errors too) name the origin and expose the headers the client reads, and other
// origins get no CORS headers at all.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../workers/router/app.ts";
import { ADMIN } from "./helpers.ts";

const app = createApp();
const withCors = { ...env, CORS_ORIGINS: "https://app.example.com, https://other.example.com" };

function call(path: string, init: RequestInit, bindings: Env): Promise<Response> {
  return Promise.resolve(app.request(path, init, bindings));
}

describe("CORS", () => {
  it("answers a preflight from a listed origin, before auth", async () => {
    const res = await call(
      "/v1/kv/some/key",
      {
        method: "OPTIONS",
        headers: {
          Origin: "https://app.example.com",
          "Access-Control-Request-Method": "PUT",
          "Access-Control-Request-Headers": "authorization,x-session-token",
        },
      },
      withCors,
    );
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    expect(res.headers.get("access-control-allow-methods")).toContain("PUT");
    expect(res.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("x-session-token");
  });

  it("lets the page read the session token, the version and errors", async () => {
    const origin = { Origin: "https://other.example.com", Authorization: `Bearer ${ADMIN}` };
    const put = await call("/v1/kv/cors-key?region=enam", { method: "PUT", body: "v", headers: origin }, withCors);
    expect(put.status).toBe(200);
    expect(put.headers.get("access-control-allow-origin")).toBe("https://other.example.com");
    const exposed = put.headers.get("access-control-expose-headers")?.toLowerCase() ?? "";
    for (const name of ["x-session-token", "etag", "x-kv-metadata", "x-replication-lag-ms"])
      expect(exposed).toContain(name);
    const missing = await call("/v1/kv/cors-missing?region=enam", { headers: origin }, withCors);
    expect(missing.status).toBe(404);
    expect(missing.headers.get("access-control-allow-origin")).toBe("https://other.example.com");
    const unauthorized = await call("/v1/kv/x", { headers: { Origin: "https://app.example.com" } }, withCors);
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
  });

  it("gives no CORS headers to an origin not listed, nor to anyone when none is", async () => {
    const stranger = await call("/healthz", { headers: { Origin: "https://evil.example.com" } }, withCors);
    expect(stranger.headers.get("access-control-allow-origin")).toBeNull();
    const off = await call("/healthz", { headers: { Origin: "https://app.example.com" } }, env);
    expect(off.headers.get("access-control-allow-origin")).toBeNull();
    const any = await call(
      "/healthz",
      { headers: { Origin: "https://app.example.com" } },
      { ...env, CORS_ORIGINS: "*" },
    );
    expect(any.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
  });
});
