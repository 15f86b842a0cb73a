// The Prometheus exposition passes promtool's lint (Debian's `prometheus` package; .ci/run
// installs it when missing), and carries the repair path's series with HELP text.
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { READ_TOKEN, call, json, uniqueKey } from "./client.ts";

describe("metrics", () => {
  it("pass promtool's lint and expose anti-entropy, key and bootstrap series", async () => {
    await json(`/v1/kv/${encodeURIComponent(uniqueKey("metrics"))}?ack=all`, { method: "PUT", body: "x" });
    await json("/v1/admin/anti-entropy", { method: "POST" });
    const res = await call("/metrics", { token: READ_TOKEN });
    expect(res.status).toBe(200);
    const text = await res.text();
    const lint = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    expect(lint.error, "promtool must be installed (Debian package prometheus)").toBeUndefined();
    expect(`${lint.stdout}${lint.stderr}`).toBe("");
    expect(lint.status).toBe(0);
    for (const name of [
      "anti_entropy_rounds_total",
      "anti_entropy_keys_repaired_total",
      "replication_bytes_total",
      "store_keys",
      "region_bootstrapping",
      "replication_lag_unknown",
    ])
      expect(text).toContain(`# HELP ${name} `);
    expect(text).toMatch(/replication_bytes_total\{region="\w+",shard="\d+",peer="\w+",kind="anti_entropy"\} \d+/);
    expect(text).toMatch(/store_keys\{region="enam",shard="\d+",state="live"\} [1-9]\d*/);
    expect(text).toMatch(/store_keys\{region="enam",shard="\d+",state="tombstone"\} \d+/);
    expect(text).toMatch(/anti_entropy_rounds_total\{region="wnam",shard="\d+",peer="enam"\} [1-9]/);
    // Every configured region's health, as /v1/regions judges it (all serve here).
    for (const region of ["wnam", "enam", "weur", "apac"])
      expect(text).toContain(`region_healthy{region="${region}"} 1`);
  });
});
