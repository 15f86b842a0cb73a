import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";

describe("healthz", () => {
  it("answers ok with the configured regions", async () => {
    const res = await exports.default.fetch("http://kv.test/healthz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok", regions: ["wnam", "enam", "weur", "apac"] });
  });
});
