// The Workers KV conformance suite against a real local Workers KV namespace (miniflare's), and
// against GeoKVNamespace over this Worker as a service binding would reach it.
import { env, exports } from "cloudflare:workers";
import { GeoKVNamespace } from "../../client/index.ts";
import { kvConformance } from "../kv-conformance.ts";
import { ADMIN } from "./helpers.ts";

kvConformance("miniflare's Workers KV", () => (env as unknown as { CONFORMANCE_KV: KVNamespace }).CONFORMANCE_KV);

const geo = new GeoKVNamespace({ fetch: (request) => exports.default.fetch(request), token: ADMIN });
kvConformance("GeoKVNamespace over a service binding", () => geo);
