#!/usr/bin/env node
// Runs the whole store locally, every region in one workerd process, as `npm start` promises:
// `wrangler dev` (miniflare) on 127.0.0.1:$PORT (default 8787) with local development secrets.
// Environment: PORT, KV_PERSIST_DIR (where local state lives; default .wrangler/state),
// AUTH_TOKENS and SESSION_SECRET (override the development defaults below), KV_VARS
// (semicolon-separated NAME:value overrides of wrangler.toml vars, e.g.
// "DIRECT_PUSH:on;REGIONS:wnam,enam"), CORS_ORIGINS (* here by default), KV_LOG_LEVEL (wrangler's
// log level), WRANGLER_REGISTRY_PATH and KV_INSPECTOR_PORT (to run
// several stores side by side without them sharing wrangler's registry or inspector port).
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const port = process.env.PORT ?? "8787";
const env = {
  ...process.env,
  // Local development tokens, documented in README.md. Never use these in production:
  // there, set AUTH_TOKENS and SESSION_SECRET with `wrangler secret put`.
  AUTH_TOKENS: process.env.AUTH_TOKENS ?? "dev-token:admin,dev-read-token:read",
  SESSION_SECRET: process.env.SESSION_SECRET ?? "dev-session-secret-change-me",
  // Offline machines cannot download the cf object; skip the attempt and its warning.
  CLOUDFLARE_CF_FETCH_ENABLED: process.env.CLOUDFLARE_CF_FETCH_ENABLED ?? "false",
  WRANGLER_SEND_METRICS: "false",
};
const args = ["dev", "--ip", "127.0.0.1", "--port", port, "--show-interactive-dev-session=false"];
if (process.env.KV_PERSIST_DIR) args.push("--persist-to", process.env.KV_PERSIST_DIR);
const vars = (process.env.KV_VARS ?? "")
  .split(";")
  .map((p) => p.trim())
  .filter((p) => p !== "");
// Locally, a page from any origin may call the store (CORS) unless CORS_ORIGINS (or KV_VARS)
// says otherwise; wrangler.toml's default is none.
if (!vars.some((pair) => pair.startsWith("CORS_ORIGINS:")))
  vars.push(`CORS_ORIGINS:${process.env.CORS_ORIGINS ?? "*"}`);
for (const pair of vars) args.push("--var", pair);
if (process.env.KV_INSPECTOR_PORT) args.push("--inspector-port", process.env.KV_INSPECTOR_PORT);
if (process.env.KV_LOG_LEVEL) args.push("--log-level", process.env.KV_LOG_LEVEL);

const wrangler = path.join(root, "node_modules", ".bin", "wrangler");
const child = spawn(wrangler, args, { cwd: root, env, stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
