// In a real browser (headless Chromium, Debian's package): /docs renders the whole reference with
// no request leaving the store, and the client works from a page of another origin (CORS, the
// session token readable by the page).
import { build } from "esbuild";
import { describe, expect, inject, it } from "vitest";
import { ROUTES } from "../../shared/api.ts";
import { useBrowser } from "./chromium.ts";
import { ADMIN_TOKEN, uniqueKey } from "./client.ts";

const browser = useBrowser();

describe("/docs in a browser", () => {
  it("renders every operation, and loads nothing from outside the store", async () => {
    const base = inject("baseUrl");
    const page = await browser().newPage();
    const elsewhere: string[] = [];
    await page.route("**/*", (route) => {
      const url = route.request().url();
      if (url.startsWith(base) || url.startsWith("data:")) return route.continue();
      elsewhere.push(url);
      return route.abort();
    });
    await page.goto(`${base}/docs`);
    await page.waitForSelector(".opblock", { timeout: 30_000 });
    const operations = await page.locator(".opblock").count();
    expect(operations).toBe(Object.keys(ROUTES).length);
    expect(await page.locator(".opblock-summary-path").allInnerTexts()).toEqual(
      expect.arrayContaining(["/v1/kv/{key}", "/v1/regions"]),
    );
    expect(elsewhere).toEqual([]);
    await page.close();
  });
});

describe("the client in a browser", () => {
  it("writes and reads from a page of another origin, carrying its session", async () => {
    const base = inject("baseUrl");
    // The page is on 127.0.0.1, the client calls localhost: another origin, so CORS applies.
    const api = base.replace("127.0.0.1", "localhost");
    const bundle = await build({
      entryPoints: ["client/index.ts"],
      bundle: true,
      write: false,
      format: "iife",
      globalName: "GeoKV",
      platform: "browser",
      target: "es2022",
    });
    const page = await browser().newPage();
    await page.goto(`${base}/healthz`);
    await page.addScriptTag({ content: bundle.outputFiles[0]!.text });
    const browserKey = uniqueKey("browser");
    const outcome = await page.evaluate(
      async ({ url, token, key }) => {
        const { createClient } = (globalThis as unknown as { GeoKV: typeof import("../../client/index.ts") }).GeoKV;
        const kv = createClient({ url, token });
        const written = await kv.put(key, "from a browser", { region: "wnam", metadata: { by: "chromium" } });
        const afterWrite = kv.session;
        const read = await kv.get(key, { region: "apac" });
        const missing = await kv.get(`${key}/none`);
        const refused = await kv.put(key, "x", { ifNotExists: true }).catch((e: { code: string; status: number }) => ({
          code: e.code,
          status: e.status,
        }));
        return {
          origin: (globalThis as unknown as { location: { origin: string } }).location.origin,
          version: written.version,
          session: afterWrite !== undefined,
          text: read?.text(),
          metadata: read?.metadata,
          readVersion: read?.version,
          missing,
          refused,
        };
      },
      { url: api, token: ADMIN_TOKEN, key: browserKey },
    );
    expect(outcome.origin).not.toBe(new URL(api).origin);
    expect(outcome).toMatchObject({
      session: true,
      text: "from a browser",
      metadata: { by: "chromium" },
      readVersion: outcome.version,
      missing: null,
      refused: { code: "precondition_failed", status: 412 },
    });
    await page.close();
  }, 60_000);
});
