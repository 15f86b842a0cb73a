import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Three projects: the pure core in Node, Worker code inside workerd, and black-box HTTP
// against the store started as `npm start` starts it.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: [
            "test/shared/**/*.test.ts",
            "test/sim/**/*.test.ts",
            "test/client/**/*.test.ts",
            "test/monitoring/**/*.test.ts",
          ],
          environment: "node",
        },
      },
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              // A real local Workers KV namespace: the conformance suite's reference.
              kvNamespaces: ["CONFORMANCE_KV"],
              bindings: {
                AUTH_TOKENS: "test-admin:admin,test-write:write,test-read:read",
                SESSION_SECRET: "test-session-secret",
                // Tests drive heartbeats and outbox re-drains explicitly with runDurableObjectAlarm.
                HEARTBEAT_INTERVAL_MS: "3600000",
                // A failover waits for the old primary's lease; heartbeats, driven by hand here,
                // would otherwise stop within it and every region would fall silent.
                PRIMARY_LEASE_MS: "300",
                // These tests take replication through the queue by hand (the path that carries
                // whatever a direct push did not deliver). Pushes are covered by the unit tests of
                // the outbox, the simulator (half its seeds), the end-to-end suite and the campaign,
                // which run with the default (on).
                DIRECT_PUSH: "off",
                // One prefix with automatic failover, one without.
                PRIMARY_PREFIXES: "strong/=enam:failover,manual/=wnam",
              },
            },
          }),
        ],
        test: {
          name: "workers",
          include: ["test/workers/**/*.test.ts"],
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          environment: "node",
          globalSetup: ["test/e2e/global-setup.ts"],
          // One store serves every file; the failover test takes a region out, so files run one at a time.
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
