// npm run sim -- --seed S           replays one seed and prints its trace and violations
// npm run sim -- --seeds A..B       runs a range and prints the failing seeds
// Options: --regions N, --clients N, --duration MS, --storage-loss (lose storage as a fault),
// --loss P (a share of queue messages lost outright, e.g. 0.3), --add-region (one added mid-run),
// --no-repair (anti-entropy and resends off, to see what they are for).
import { parseArgs } from "node:util";
import { campaign } from "./campaign.ts";
import { type SimOptions, runSeed } from "./run.ts";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    seeds: { type: "string" },
    regions: { type: "string" },
    clients: { type: "string" },
    duration: { type: "string" },
    "storage-loss": { type: "boolean" },
    loss: { type: "string" },
    "add-region": { type: "boolean" },
    "no-repair": { type: "boolean" },
  },
});
const faults = {
  ...(values["storage-loss"] === true ? { storageLoss: true } : {}),
  ...(values.loss === undefined ? {} : { loss: Number(values.loss) }),
  ...(values["add-region"] === true ? { addRegion: true } : {}),
};
const options: SimOptions = {
  ...(values.regions === undefined ? {} : { regionCount: Number(values.regions) }),
  ...(values.clients === undefined ? {} : { clients: Number(values.clients) }),
  ...(values.duration === undefined ? {} : { durationMs: Number(values.duration) }),
  ...(Object.keys(faults).length === 0 ? {} : { faults }),
  ...(values["no-repair"] === true ? { repair: false } : {}),
};
if (values.seed !== undefined) {
  const result = await runSeed(Number(values.seed), options);
  console.log(result.trace);
  console.log(`\nseed ${result.seed}: ${JSON.stringify(result.stats)}`);
  console.log(result.violations.length === 0 ? "every promise held" : result.violations.join("\n"));
  process.exitCode = result.violations.length === 0 ? 0 : 1;
} else {
  const [from, to] = (values.seeds ?? "1..100").split("..").map(Number) as [number, number];
  const started = performance.now();
  const failures = await campaign(from, to, options);
  for (const f of failures) console.log(`${f.report}\n`);
  console.log(
    `${to - from + 1 - failures.length} of ${to - from + 1} seeds passed in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  process.exitCode = failures.length === 0 ? 0 : 1;
}
