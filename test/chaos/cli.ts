/**
 * `npm run chaos -- --seeds N [--seed-base S] [--seed S] [--wan on|off] [--duration MS] [--events K] [--shards N]`:
 * the seeded fault campaign (`campaign.ts`), one fresh store per seed. Prints one line per seed
 * and a summary per fault kind, ends with `N passed, M failed`, writes each seed's history and
 * verdict to bench/results/chaos-<time>/, and exits non-zero on any violation (with the seed
 * and a shortened trace). `--seed S` replays one seed.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { FAULT_KINDS, type SeedResult, runSeed } from "./campaign.ts";

const { values } = parseArgs({
  options: {
    seeds: { type: "string", default: "1" },
    "seed-base": { type: "string", default: "1" },
    seed: { type: "string" },
    wan: { type: "string", default: "off" },
    duration: { type: "string", default: "20000" },
    events: { type: "string", default: "4" },
    shards: { type: "string" },
  },
});

function int(name: string, raw: string | undefined, min: number): number {
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min) {
    console.error(`--${name} must be an integer >= ${min}, got "${raw}"`);
    process.exit(2);
  }
  return value;
}

if (values.wan !== "on" && values.wan !== "off") {
  console.error(`--wan must be "on" or "off", got "${values.wan}"`);
  process.exit(2);
}
const seeds =
  values.seed === undefined
    ? Array.from({ length: int("seeds", values.seeds, 1) }, (_, i) => int("seed-base", values["seed-base"], 0) + i)
    : [int("seed", values.seed, 0)];
const options = {
  wan: values.wan === "on",
  durationMs: int("duration", values.duration, 1000),
  events: int("events", values.events, 0),
  ...(values.shards === undefined ? {} : { shards: int("shards", values.shards, 1) }),
};

const out = path.join(
  import.meta.dirname,
  "..",
  "..",
  "bench",
  "results",
  `chaos-${new Date().toISOString().replaceAll(":", "-")}`,
);
mkdirSync(out, { recursive: true });
const results: SeedResult[] = [];
for (const seed of seeds) {
  const result = await runSeed({ seed, ...options });
  results.push(result);
  writeFileSync(path.join(out, `seed-${seed}.json`), `${JSON.stringify(result, null, 1)}\n`);
  const verdict = result.violations.length === 0 ? "ok" : `FAILED (${result.violations.length} violations)`;
  console.log(
    `seed ${seed}: ${verdict}; faults ${result.faults.join(", ") || "none"}; ${result.ops} operations; ` +
      `${result.lostInWindow} lost in the documented window; ${result.undecided} undecided; ${(result.ms / 1000).toFixed(0)} s`,
  );
  if (result.violations.length > 0) {
    for (const v of result.violations.slice(0, 10)) console.log(`  violation: ${v}`);
    console.log(
      `  trace (last 20 of ${result.trace.length}; all of it in ${path.relative(process.cwd(), out)}/seed-${seed}.json):`,
    );
    for (const line of result.trace.slice(-20)) console.log(`    ${line}`);
    console.log(
      `  replay: npm run chaos -- --seed ${seed} --wan ${values.wan} --duration ${options.durationMs} --events ${options.events}`,
    );
  }
}

console.log("\nper fault kind: seeds that injected it, and of those, failed");
for (const kind of FAULT_KINDS) {
  const withIt = results.filter((r) => r.faults.includes(kind));
  const failed = withIt.filter((r) => r.violations.length > 0);
  console.log(`  ${kind.padEnd(10)} ${String(withIt.length).padStart(4)} ${String(failed.length).padStart(4)}`);
}
const failed = results.filter((r) => r.violations.length > 0).length;
console.log(`results: ${path.relative(process.cwd(), out)}`);
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
