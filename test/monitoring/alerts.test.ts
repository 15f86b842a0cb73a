// The shipped alerting rules: valid for Prometheus (`promtool check rules`), passing their own
// unit tests (`promtool test rules`, Debian's `prometheus` package; .ci/run installs it), and
// written against series the store really exposes.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

function promtool(...args: string[]): { status: number | null; output: string } {
  const run = spawnSync("promtool", args, { encoding: "utf8", cwd: "monitoring" });
  expect(run.error, "promtool must be installed (Debian package prometheus)").toBeUndefined();
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe("alerting rules", () => {
  it("are valid rules, and the example Prometheus configuration is valid", () => {
    const rules = promtool("check", "rules", "alerts.yml");
    expect(rules.output).toContain("SUCCESS: 10 rules found");
    expect(rules.status).toBe(0);
    const config = promtool("check", "config", "--syntax-only", "prometheus.example.yml");
    expect(config).toMatchObject({ status: 0 });
  });

  it("pass their unit tests: each fires on its series after its window, and not below its threshold", () => {
    const tests = promtool("test", "rules", "alerts.test.yml");
    expect(tests).toMatchObject({ status: 0 });
    expect(tests.output).toContain("SUCCESS");
  });

  it("use only series /metrics exposes, and each rule has a unit test", () => {
    const rules = readFileSync("monitoring/alerts.yml", "utf8");
    const exposition = readFileSync("workers/router/metrics.ts", "utf8");
    const series = new Set(
      [...rules.matchAll(/\b((?:replication|region|conflicts|store|gc|anti_entropy)_[a-z_]+)\b/g)].map((m) => m[1]!),
    );
    expect(series.size).toBeGreaterThan(5);
    for (const name of series) expect(exposition, `${name} is not exposed`).toContain(name);
    const tested = readFileSync("monitoring/alerts.test.yml", "utf8");
    for (const [, alert] of rules.matchAll(/- alert: (\w+)/g)) expect(tested).toContain(`alertname: ${alert}`);
  });
});
