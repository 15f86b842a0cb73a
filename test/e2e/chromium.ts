// Headless Chromium for the browser tests: Debian's package (`.ci/run` installs it), driven by
// playwright-core (browser downloads do not work on these machines).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll } from "vitest";

/** Chromium: CHROMIUM_PATH, else the one on the PATH. */
function chromiumPath(): string {
  const named = process.env.CHROMIUM_PATH;
  if (named !== undefined && existsSync(named)) return named;
  try {
    return execFileSync("sh", ["-c", "command -v chromium || command -v chromium-browser"], {
      encoding: "utf8",
    }).trim();
  } catch {
    throw new Error("these tests need Chromium: apt-get install chromium, or set CHROMIUM_PATH");
  }
}

/** A browser for the file's tests, launched before them and closed after. */
export function useBrowser(): () => Browser {
  let browser: Browser | undefined;
  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: chromiumPath(), args: ["--no-sandbox"] });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });
  return () => {
    if (browser === undefined) throw new Error("the browser is not launched yet");
    return browser;
  };
}
