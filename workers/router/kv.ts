/**
 * Routes of the key-value API: PUT, GET and DELETE one key, and listing by prefix.
 */
import { type Hono } from "hono";
import { CONTENT_TYPE_CHARS_MAX, LIST_LIMIT_MAX, ROUTES, VALUE_BYTES_MAX } from "../../shared/api.ts";
import { mount } from "./mount.ts";
import { StoreError, unwrap } from "../../shared/errors.ts";
import { headerJson, parseExpiration, parseMetadata } from "../../shared/kv-extras.ts";
import { noneMatch, parseValidators } from "../../shared/preconditions.ts";
import { type KeyListing } from "../../shared/store/storage.ts";
import { platformClock } from "../clock.ts";
import { prefixEnd } from "../../shared/store/keys.ts";
import { type KeyView } from "../../shared/store/replica-core.ts";
import { type AppEnv } from "./env.ts";
import { eventualOnly, lagHeaders, performRead, performWrite, servingRegionOf } from "./consistency.ts";
import { worstStaleness } from "../../shared/store/replica-machine.ts";
import { callReplica, decodeCursor, encodeCursor, intParam, keyFromPath, readBodyCapped } from "./http.ts";
import { replicaOf } from "../stubs.ts";
import { loadConfig } from "../config.ts";
import { shardOf } from "../../shared/shards.ts";
import { activeShards, layoutOf } from "../../shared/store/layout.ts";
import { mergeKeyPages } from "../../shared/store/listing.ts";
import { edgeOf, viewAtEdge } from "./routing.ts";

const KV_PREFIX = "/v1/kv/";

/** Narrows a view to a register, or answers `type_mismatch`. */
export function registerOnly(view: KeyView, key: string): Extract<KeyView, { type: "register" }> {
  if (view.type !== "register") {
    throw new StoreError("type_mismatch", `key "${key}" holds a ${view.type}; use /v1/${view.type}s/`, {
      type: view.type,
    });
  }
  return view;
}

/** A listed key as answered: its metadata as the JSON value it is. */
function listed(key: KeyListing): { name: string; version: string; expiration?: number; metadata?: unknown } {
  const { metadata, ...rest } = key;
  return metadata === undefined ? rest : { ...rest, metadata: JSON.parse(metadata) as unknown };
}

/** Mounts the key-value routes. */
export function mountKv(app: Hono<AppEnv>): void {
  // Listing first: Hono's `/v1/kv/*` would also match `/v1/kv`.
  mount(app, ROUTES.listKeys, async (c) => {
    eventualOnly(c, "a listing");
    const view = await viewAtEdge(c);
    const region = servingRegionOf(c, view);
    const prefix = c.req.query("prefix") ?? "";
    if (new TextEncoder().encode(prefix).length > 512) {
      throw new StoreError("invalid_query", "prefix is longer than the longest key (512 bytes)");
    }
    const limit = intParam("limit", c.req.query("limit"), 1, LIST_LIMIT_MAX, LIST_LIMIT_MAX);
    const after = decodeCursor(c.req.query("cursor"));
    // Every shard lists its first `limit` keys after the cursor; the merge keeps the first
    // `limit` of them in key order, so the cursor stays a key (`shared/store/listing.ts`). While
    // keys move between shards, old and new shards are both asked, a key's new shard's entry
    // wins, and once the move is done only the shard a key lives in counts.
    const layout = layoutOf(view, loadConfig(c.env).shards);
    const pages = await Promise.all(
      activeShards(layout).map(async (shard) => ({
        shard,
        ...(await callReplica(region, () =>
          replicaOf(c.env, region, shard, edgeOf(c)).list(prefix, prefixEnd(prefix), after, limit),
        )),
      })),
    );
    const page = mergeKeyPages(pages, limit, (name, shard) => {
      const home = shardOf(name, layout.shards) === shard;
      return home ? 0 : layout.from === null ? null : 1;
    });
    c.header("X-Served-By", region);
    lagHeaders(c, worstStaleness(pages.map((p) => p.staleness)));
    return c.json({ keys: page.keys.map(listed), cursor: page.cursor === null ? null : encodeCursor(page.cursor) });
  });

  mount(app, ROUTES.putKey, async (c) => {
    const key = keyFromPath(c.req.raw, KV_PREFIX);
    const contentType = c.req.header("content-type") ?? "application/octet-stream";
    if (contentType.length > CONTENT_TYPE_CHARS_MAX) {
      throw new StoreError("invalid_body", `Content-Type is longer than ${CONTENT_TYPE_CHARS_MAX} characters`);
    }
    // Judged before the body is read: a bad expiration or metadata stores nothing.
    const expirationSeconds = unwrap(
      parseExpiration(c.req.query("expiration"), c.req.query("expiration_ttl"), platformClock.now()),
    );
    const metadata = unwrap(parseMetadata(c.req.header("x-kv-metadata")));
    const value = await readBodyCapped(c.req.raw, VALUE_BYTES_MAX);
    const written = await performWrite(c, key, {
      type: "register",
      op: { kind: "put", value, contentType, metadata, expirationSeconds },
    });
    return c.json({ key, region: written.region, version: written.view.version, acked: written.acked });
  });

  mount(app, ROUTES.deleteKey, async (c) => {
    const key = keyFromPath(c.req.raw, KV_PREFIX);
    const written = await performWrite(c, key, { type: "register", op: { kind: "delete" } });
    // A key the region held no state of is left alone (a tombstone would fix its type): there
    // is no version to name.
    const version = written.written ? written.view.version : null;
    return c.json({ key, region: written.region, version, acked: written.acked });
  });

  mount(app, ROUTES.getKey, async (c) => {
    const key = keyFromPath(c.req.raw, KV_PREFIX);
    const ifNoneMatch = c.req.header("if-none-match");
    const validators = ifNoneMatch === undefined ? undefined : unwrap(parseValidators("If-None-Match", ifNoneMatch));
    const read = await performRead(c, key);
    const view = read.view === null ? null : registerOnly(read.view, key);
    if (view === null || view.value === null) {
      // A deleted key's 404 still names the delete's version, so a client can tell which
      // delete it sees (and that it includes the writes before it).
      if (view !== null) c.header("ETag", `"${view.version}"`);
      throw new StoreError("not_found", `key "${key}" does not exist in region ${read.region}`);
    }
    c.header("ETag", `"${view.version}"`);
    // The client's copy is current: 304, no body (RFC 9110, 13.1.2: weak comparison).
    if (validators !== undefined && !noneMatch(validators, view.version)) return c.body(null, 304);
    c.header("Content-Type", view.contentType);
    if (view.metadata !== null) c.header("X-KV-Metadata", headerJson(view.metadata));
    if (view.expirationSeconds !== null) c.header("X-KV-Expiration", String(view.expirationSeconds));
    return c.body(view.value.slice().buffer);
  });
}
