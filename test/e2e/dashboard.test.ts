// The dashboard in a real browser (headless Chromium) against the store as `npm start` runs it:
// after a token, every region and every pair's lag appear, on the map and in the tables; taking
// a region out from the page turns it unhealthy there (and putting it back heals it); nothing
// is loaded from outside the store. A screenshot is saved to test/artifacts/ (git-ignored).
import { mkdirSync } from "node:fs";
import { afterAll, describe, expect, inject, it } from "vitest";
import { useBrowser } from "./chromium.ts";
import { ADMIN_TOKEN, REGIONS, json } from "./client.ts";

const browser = useBrowser();
afterAll(async () => {
  // Whatever happened, the shared store ends with every region in service.
  await json("/v1/admin/regions/weur/health", { method: "POST", body: '{"healthy":true}' }).catch(() => undefined);
});

describe("the dashboard", () => {
  it("shows every region and pair, and takes a region out and back from the page", async () => {
    const base = inject("baseUrl");
    const page = await browser().newPage({ viewport: { width: 1400, height: 1100 } });
    const elsewhere: string[] = [];
    await page.route("**/*", (route) => {
      const url = route.request().url();
      if (url.startsWith(base)) return route.continue();
      elsewhere.push(url);
      return route.abort();
    });
    page.on("dialog", (dialog) => void dialog.accept());
    await page.goto(`${base}/`);
    await page.fill("#token", ADMIN_TOKEN);
    await page.click("#login button[type=submit]");

    // Every region on the map and in the table; every ordered pair's lag, and every pair's line.
    for (const region of REGIONS) {
      await page.waitForSelector(`#dots g.region[data-region="${region}"]`, { timeout: 20_000 });
      await page.waitForSelector(`#regions tr[data-region="${region}"]`);
    }
    for (const a of REGIONS)
      for (const b of REGIONS) if (a !== b) await page.waitForSelector(`#lag td.lag[data-pair="${a}>${b}"]`);
    expect(await page.locator("#links line.link").count()).toBe((REGIONS.length * (REGIONS.length - 1)) / 2);
    // A fresh store's regions serve once they have heard each other.
    for (const region of REGIONS)
      await page.waitForSelector(`#dots g.region.ok[data-region="${region}"]`, { timeout: 30_000 });
    // The lag cells hold figures once heartbeats have gone round.
    await page.waitForFunction('document.querySelectorAll("#lag td.lag.ok").length >= 12', undefined, {
      timeout: 20_000,
    });
    // Traffic appears after a second refresh.
    await page.waitForFunction('document.getElementById("writes").textContent !== "\\u2013"', undefined, {
      timeout: 10_000,
    });

    await page.click('#regions button[data-health="weur"][data-to="false"]');
    await page.waitForSelector('#dots g.region.bad[data-region="weur"]', { timeout: 20_000 });
    expect(await page.locator('#regions tr[data-region="weur"] td.health').innerText()).toContain(
      "taken out by an admin",
    );
    expect((await page.locator("#status").innerText()).toLowerCase()).toContain("1 out of service");
    mkdirSync("test/artifacts", { recursive: true });
    await page.screenshot({ path: "test/artifacts/dashboard.png", fullPage: true });

    await page.click('#regions button[data-health="weur"][data-to="true"]');
    await page.waitForSelector('#dots g.region.ok[data-region="weur"]', { timeout: 20_000 });
    expect(elsewhere).toEqual([]);
    await page.close();
  }, 90_000);

  it("asks again for a token the store does not accept", async () => {
    const page = await browser().newPage();
    await page.goto(`${inject("baseUrl")}/`);
    await page.fill("#token", "not-a-token");
    await page.click("#login button[type=submit]");
    await page.waitForFunction('document.getElementById("status").textContent.includes("not accepted")', undefined, {
      timeout: 10_000,
    });
    expect(await page.locator("#login.shown").count()).toBe(1);
    await page.close();
  });
});
