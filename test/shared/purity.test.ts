// The core in shared/ is pure: time, ids and randomness come in as parameters, and it imports
// nothing from Cloudflare or Node, so the same code runs in a Durable Object and a simulator.
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const SHARED = path.resolve(import.meta.dirname, "..", "..", "shared");

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(full);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [full] : [];
  });
}

const FORBIDDEN: ReadonlyArray<[RegExp, string]> = [
  [/\bDate\.now\s*\(/, "Date.now()"],
  [/\bnew Date\s*\(/, "new Date()"],
  [/\bMath\.random\s*\(/, "Math.random()"],
  [/\bperformance\.now\s*\(/, "performance.now()"],
  [/\bcrypto\./, "crypto"],
  [/from\s+["']cloudflare:/, "a cloudflare: import"],
  [/from\s+["']node:/, "a node: import"],
  [/\b(setTimeout|setInterval|fetch)\s*\(/, "timers or fetch"],
];

describe("shared/ purity", () => {
  const files = sources(SHARED);

  it("finds the core's sources", () => {
    expect(files.length).toBeGreaterThan(10);
  });

  it("uses no clock, randomness, I/O or platform module", () => {
    const found: string[] = [];
    for (const file of files) {
      const text = readFileSync(file, "utf8");
      for (const [pattern, what] of FORBIDDEN)
        if (pattern.test(text)) found.push(`${path.relative(SHARED, file)}: ${what}`);
    }
    expect(found).toEqual([]);
  });
});
