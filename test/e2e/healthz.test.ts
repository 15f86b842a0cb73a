import { describe, expect, inject, it } from "vitest";

describe("npm start", () => {
  it("serves /healthz with the configured regions", async () => {
    const res = await fetch(`${inject("baseUrl")}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok", regions: ["wnam", "enam", "weur", "apac"] });
  });
});
