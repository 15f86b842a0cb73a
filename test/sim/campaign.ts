// Runs a range of seeds and reports each failing one with its replay command and trace.
import { type SimOptions, runSeed } from "./run.ts";

/** A failing seed, ready to print. */
export interface Failure {
  readonly seed: number;
  readonly report: string;
}

/** Runs seeds `from..to` (inclusive); the failures, each with its violations and trace. */
export async function campaign(from: number, to: number, options: SimOptions = {}): Promise<Failure[]> {
  const failures: Failure[] = [];
  for (let seed = from; seed <= to; seed += 1) {
    const result = await runSeed(seed, options);
    if (result.violations.length === 0) continue;
    failures.push({
      seed,
      report: [
        `seed ${seed} failed (replay: npm run sim -- --seed ${seed}):`,
        ...result.violations.slice(0, 10).map((v) => `  ${v}`),
        "trace (last notes):",
        result.trace.split("\n").slice(-40).join("\n"),
      ].join("\n"),
    });
  }
  return failures;
}
