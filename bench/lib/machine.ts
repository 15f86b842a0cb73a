/** The machine and tool versions a run records, so its figures can be read against its host. */
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/** What a results file says about the host. */
export interface Machine {
  readonly nproc: number;
  readonly cpu: string;
  readonly memoryGiB: number;
  readonly loadAverage: number[];
  readonly node: string;
  readonly wrangler: string;
  readonly workerd: string;
  readonly platform: string;
}

function versionOf(projectRoot: string, packageJson: string): string {
  try {
    return (JSON.parse(readFileSync(path.join(projectRoot, packageJson), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

/** The machine now, with the tool versions installed under `projectRoot`. */
export function machine(projectRoot: string): Machine {
  return {
    nproc: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    loadAverage: os.loadavg(),
    node: process.version,
    wrangler: versionOf(projectRoot, "node_modules/wrangler/package.json"),
    // The workerd wrangler runs is its own dependency, which may differ from a top-level one.
    workerd:
      [
        versionOf(projectRoot, "node_modules/wrangler/node_modules/workerd/package.json"),
        versionOf(projectRoot, "node_modules/workerd/package.json"),
      ].find((v) => v !== "unknown") ?? "unknown",
    platform: `${os.platform()} ${os.release()}`,
  };
}
