/**
 * The HTTP API as data: every route the router serves, with its parameters, headers, bodies,
 * answers and error codes as zod schemas. The router mounts its handlers from these
 * definitions (`workers/router/mount.ts`), `GET /openapi.json` is generated from them
 * ({@link openApiDocument}), and the typed client (`client/`) takes its types from them: one
 * description of the API, never a second one kept by hand.
 */
import {
  OpenAPIRegistry,
  OpenApiGeneratorV31,
  type ResponseConfig,
  type RouteConfig,
  extendZodWithOpenApi,
} from "@asteasolutions/zod-to-openapi";
import { z } from "zod";
import { ERROR_STATUS, type ErrorCode } from "./errors.ts";
import { faultsBodySchema } from "./faults.ts";
import { METADATA_BYTES_MAX } from "./kv-extras.ts";
import { LOCATION_HINTS } from "./regions.ts";
import { KEY_BYTES_MAX } from "./store/keys.ts";
import { counterBodySchema, setBodySchema } from "./store/wire.ts";

extendZodWithOpenApi(z);

/** Largest value a register holds: 1 MiB. */
export const VALUE_BYTES_MAX = 1024 * 1024;
/** Largest JSON body of a counter, set or admin request. */
export const JSON_BODY_BYTES_MAX = 1024 * 1024;
/** The longest URL (path and query, in characters) the router reads: longer answers 414 `uri_too_long`. */
export const URL_LENGTH_MAX = 8192;
/** Longest stored Content-Type. */
export const CONTENT_TYPE_CHARS_MAX = 256;
/** Largest page of a key listing, as in Workers KV. */
export const LIST_LIMIT_MAX = 1000;
/** Largest page of a log (conflicts, dead letters). */
export const LOG_PAGE_MAX = 1000;
/** A log page's size when `limit` is absent. */
export const LOG_PAGE_DEFAULT = 100;
/** Longest `timeout_ms` a client may ask a write to wait for its acks. */
export const ACK_TIMEOUT_MS_MAX = 60_000;
/** Read consistency levels. */
export const CONSISTENCIES = ["eventual", "session", "quorum", "bounded", "strong"] as const;
/** A read consistency level. */
export type Consistency = (typeof CONSISTENCIES)[number];

/** The scope a route needs, or `null` when it is open to anyone. */
export type RouteAuth = "read" | "write" | "admin" | null;

/** A route: its OpenAPI description, the error codes it answers, and its success answer. */
export interface ApiRoute {
  readonly operationId: string;
  readonly method: "get" | "put" | "post" | "delete";
  /** The OpenAPI path; `{key}` is a key, which may contain `/` (percent-encoded or not). */
  readonly path: string;
  readonly summary: string;
  readonly description?: string;
  readonly tag: "Keys" | "Counters" | "Sets" | "Observe" | "Admin" | "Meta";
  readonly auth: RouteAuth;
  readonly request?: RouteConfig["request"];
  readonly ok: {
    readonly description: string;
    /** The JSON answer's schema; absent for answers that are not JSON. */
    readonly json?: z.ZodType;
    /** A non-JSON answer's media type. */
    readonly mediaType?: string;
    readonly headers?: z.ZodObject;
  };
  /** The operating errors this route answers, beyond those every route of its scope answers. */
  readonly errors: readonly ErrorCode[];
}

// Parameters and headers shared by routes.

const key = z
  .string()
  .min(1)
  .openapi({
    param: { name: "key", in: "path" },
    description: `1 to ${KEY_BYTES_MAX} bytes of UTF-8, percent-encoded; may contain "/" (encoded as %2F or not). The keys "." and ".." cannot be addressed: URLs resolve them, as in Workers KV, which refuses them.`,
    example: "users/42",
  });
const regionId = z.enum(LOCATION_HINTS).openapi({ description: "A region: a Durable Object location hint." });
const regionParam = z.object({ id: regionId.openapi({ param: { name: "id", in: "path" } }) });
const region = regionId.optional().openapi({
  description: "Serve from this region (it must be configured and healthy) instead of the closest one.",
});
const limit = (max: number, fallback: number) =>
  z.coerce
    .number()
    .int()
    .min(1)
    .max(max)
    .optional()
    .openapi({ description: `Page size, 1 to ${max} (default ${fallback}).` });
/** `?prefix=`: keys that start with it; `more` adds to its description. */
const prefixParam = (more: string) =>
  z
    .string()
    .optional()
    .openapi({ description: `Only keys that start with this (≤ ${KEY_BYTES_MAX} bytes${more}).` });
const cursor = z.string().optional().openapi({
  description: "The `cursor` of the previous page, sent back unchanged.",
});
const readQuery = z.object({
  region,
  consistency: z.enum(CONSISTENCIES).optional().openapi({
    description:
      "eventual (default): the serving region's copy. session: at least what this session's token has seen. quorum: a majority of regions, with read repair. bounded: no staler than max_staleness_ms. strong: linearizable, only under a strong prefix.",
  }),
  max_staleness_ms: z.coerce.number().int().min(0).optional().openapi({
    description: "The staleness bound of consistency=bounded, in milliseconds.",
  }),
});
const writeQuery = z.object({
  region,
  ack: z
    .string()
    .regex(/^(local|quorum|all|[1-9][0-9]*)$/)
    .optional()
    .openapi({
      description:
        "How many regions must have applied the write before it is answered: local (default), quorum, all, or a number of regions.",
    }),
  timeout_ms: z.coerce
    .number()
    .int()
    .min(1)
    .max(ACK_TIMEOUT_MS_MAX)
    .optional()
    .openapi({
      description: `How long to wait for the acks, 1 to ${ACK_TIMEOUT_MS_MAX} ms. A write that times out is committed and answers 504 ack_timeout.`,
    }),
});
const sessionToken = z.string().optional().openapi({
  description:
    "The X-Session-Token of the previous answer (or of several answers that crossed in flight, comma-separated, at most 16): reads at consistency=session see at least what they have seen, in any region.",
});
const clientLocation = z.string().optional().openapi({
  description: "`<lat>,<lon>`: the client's position, honoured only when WAN emulation is on (local runs).",
});
const readHeaders = z.object({ "x-session-token": sessionToken, "x-client-location": clientLocation });
const writeHeaders = z.object({
  "x-session-token": sessionToken,
  "x-client-location": clientLocation,
  "if-match": z.string().optional().openapi({
    description:
      'Write only if the key exists (`*`) or is at one of these versions (its ETag, `"<version>"`; a list is comma-separated). Compared strongly: a weak tag (`W/"…"`) never matches.',
  }),
  "if-none-match": z.literal("*").optional().openapi({ description: "Write only if the key does not exist." }),
});

const servedBy = z.string().openapi({ description: "The region that served the request." });
const sessionAnswer = z.string().openapi({ description: "The causal context this answer leaves the session in." });
const etag = z.string().openapi({ description: 'The key\'s version, quoted: `"<version>"`.' });
/** What an answer from one region's state says of it: who served it and how stale it may be. */
const lagAnswerHeaders = z.object({
  "X-Served-By": servedBy,
  "X-Replication-Lag-Ms": z.string().optional().openapi({
    description: "How far behind its peers the serving region may be, in milliseconds.",
  }),
  "X-Replication-Lag-Unknown": z.string().optional().openapi({
    description: "Why the lag cannot be told (instead of X-Replication-Lag-Ms).",
  }),
});
const readAnswerHeaders = lagAnswerHeaders.extend({ ETag: etag, "X-Session-Token": sessionAnswer });
/** `consistency=` where one region's state as it stands is the answer: eventual, or refused. */
const eventualQuery = z.literal("eventual").optional().openapi({
  description: "Only eventual (the default): this is one region's state as it stands. Anything else is refused.",
});
const writeAnswerHeaders = z.object({ ETag: etag, "X-Served-By": servedBy, "X-Session-Token": sessionAnswer });

// Answers.

const acked = z.array(regionId).openapi({ description: "The regions that have applied the write." });
const writeAnswer = z.object({ key: z.string(), region: regionId, version: z.string(), acked });
const keyListing = z.object({
  keys: z.array(
    z.object({
      name: z.string(),
      version: z.string(),
      expiration: z.number().int().optional().openapi({ description: "Unix seconds." }),
      metadata: z.unknown().optional(),
    }),
  ),
  cursor: z.string().nullable(),
});
const counterAnswer = z.object({ key: z.string(), value: z.number().int() });
const counterWriteAnswer = counterAnswer.extend({ region: regionId, acked });
const setAnswer = z.object({ key: z.string(), members: z.array(z.string()) });
const setWriteAnswer = setAnswer.extend({ region: regionId, acked });
const pairLag = z.object({
  entries: z.number().int(),
  ms: z.number().nullable(),
  reason: z.string().optional(),
  delay: z.object({ p50Ms: z.number(), p99Ms: z.number(), samples: z.number().int() }).optional(),
});
const regionsAnswer = z.object({
  regions: z.array(
    z.object({
      id: regionId,
      location: z.object({ lat: z.number(), lon: z.number() }),
      healthy: z.boolean(),
      reason: z.string().nullable().optional(),
      bootstrapping: z.boolean(),
      clockOffsetMs: z.number().nullable(),
      lag: z.record(z.string(), pairLag).openapi({ description: "Per peer region." }),
      shards: z
        .array(
          z.object({
            shard: z.number().int(),
            answered: z.boolean(),
            bootstrapping: z.boolean(),
            keys: z.number().int().nullable(),
            outboxPending: z.number().int().nullable(),
            lag: z.record(z.string(), pairLag),
          }),
        )
        .optional()
        .openapi({ description: "With ?detail=shards." }),
    }),
  ),
  closest: regionId,
  primaries: z.record(
    z.string(),
    z.object({ region: regionId, epoch: z.number().int(), ready: z.boolean(), failover: z.boolean() }),
  ),
  shards: z.object({
    count: z.number().int(),
    moving: z.object({ from: z.number().int(), routed: z.boolean() }).nullable(),
  }),
});
const conflictsAnswer = z.object({
  region: regionId,
  conflicts: z.array(
    z.object({
      id: z.number().int(),
      shard: z.number().int(),
      key: z.string(),
      kind: z.string(),
      rule: z.string(),
      detectedAt: z.string(),
      winner: z.unknown(),
      loser: z.unknown(),
    }),
  ),
  cursor: z.string().nullable(),
});
const faultsAnswer = z.object({
  faults: z.object({
    drop: z.number(),
    duplicate: z.number(),
    delayMs: z.number().int(),
    partitions: z.array(z.array(regionId)),
    skewMs: z.record(z.string(), z.number().int()),
    seed: z.number().int(),
  }),
});
const digest = z.object({
  region: regionId,
  keys: z.number().int(),
  tombstones: z.number().int(),
  root: z.string(),
  bootstrapping: z.boolean(),
});
/** What a read of one key may answer besides its value. */
const READ_ERRORS: readonly ErrorCode[] = [
  "invalid_key",
  "invalid_query",
  "unknown_region",
  "invalid_header",
  "invalid_consistency",
  "invalid_session_token",
  "not_found",
  "type_mismatch",
  "fenced",
  "clock_skew",
  "region_unavailable",
  "primary_unavailable",
  "staleness_exceeded",
  "wrong_shard",
];
/** What a write of one key may answer besides its acknowledgement. */
const WRITE_ERRORS: readonly ErrorCode[] = [
  "invalid_key",
  "invalid_precondition",
  "invalid_body",
  "invalid_query",
  "invalid_ack",
  "unknown_region",
  "invalid_header",
  "invalid_session_token",
  "type_mismatch",
  "fenced",
  "precondition_failed",
  "clock_skew",
  "region_unavailable",
  "primary_unavailable",
  "wrong_shard",
  "ack_timeout",
];
/** The body of a primary's move. */
export const movePrimaryBody = z.strictObject({
  prefix: z.string().min(1).openapi({ description: "A strong prefix, as PRIMARY_PREFIXES names it." }),
  region: regionId,
});
const json = (schema: z.ZodType) => ({ content: { "application/json": { schema } }, required: true });

/** Every route of the API, by operation id. */
export const ROUTES = {
  healthz: {
    operationId: "healthz",
    method: "get",
    path: "/healthz",
    tag: "Meta",
    auth: null,
    summary: "Liveness: the router answers, and the regions it is configured with.",
    ok: { description: "The router is up.", json: z.object({ status: z.literal("ok"), regions: z.array(regionId) }) },
    errors: [],
  },
  openapi: {
    operationId: "openapi",
    method: "get",
    path: "/openapi.json",
    tag: "Meta",
    auth: null,
    summary: "This document.",
    ok: { description: "The OpenAPI 3.1 document of the API.", json: z.record(z.string(), z.unknown()) },
    errors: [],
  },
  docs: {
    operationId: "docs",
    method: "get",
    path: "/docs",
    tag: "Meta",
    auth: null,
    summary: "An interactive reference of this API (Swagger UI), served by the Worker itself.",
    ok: { description: "An HTML page.", mediaType: "text/html" },
    errors: [],
  },
  dashboard: {
    operationId: "dashboard",
    method: "get",
    path: "/",
    tag: "Meta",
    auth: null,
    summary:
      "The live dashboard: regions on a map, health, lag per pair, traffic, conflicts, dead letters, primaries, and admin actions. The page asks for a token; its data comes from the routes below.",
    ok: { description: "An HTML page.", mediaType: "text/html" },
    errors: [],
  },
  docsAsset: {
    operationId: "docsAsset",
    method: "get",
    path: "/docs/{asset}",
    tag: "Meta",
    auth: null,
    summary: "The files the reference page loads.",
    request: {
      params: z.object({
        asset: z.enum(["swagger-ui-bundle.js", "swagger-ui.css"]).openapi({ param: { name: "asset", in: "path" } }),
      }),
    },
    ok: { description: "Swagger UI's script or stylesheet.", mediaType: "text/javascript" },
    errors: ["not_found"],
  },
  listKeys: {
    operationId: "listKeys",
    method: "get",
    path: "/v1/kv",
    tag: "Keys",
    auth: "read",
    summary: "Lists keys by prefix, in key order, a page at a time.",
    description:
      "Every live key: registers (deleted and expired ones are left out; metadata is its JSON value), and counter and set keys, by name and version only (a listing does not tell a key's type: reading a counter or set at /v1/kv/{key} answers 409 type_mismatch naming it).",
    request: {
      query: z.object({
        region,
        prefix: prefixParam(""),
        limit: limit(LIST_LIMIT_MAX, LIST_LIMIT_MAX),
        cursor,
        consistency: eventualQuery,
      }),
      headers: z.object({ "x-client-location": clientLocation }),
    },
    ok: {
      description: "A page of keys; `cursor` is null on the last page.",
      json: keyListing,
      headers: lagAnswerHeaders,
    },
    errors: [
      "invalid_query",
      "invalid_cursor",
      "unknown_region",
      "invalid_header",
      "invalid_consistency",
      "region_unavailable",
    ],
  },
  getKey: {
    operationId: "getKey",
    method: "get",
    path: "/v1/kv/{key}",
    tag: "Keys",
    auth: "read",
    summary: "Reads a key's value, at the consistency asked for.",
    request: {
      params: z.object({ key }),
      query: readQuery,
      headers: readHeaders.extend({
        "if-none-match": z.string().optional().openapi({
          description: "Answer 304 Not Modified, with no body, when the key's ETag is one of these (or `*`: any).",
        }),
      }),
    },
    ok: {
      description:
        "The value, as stored, with the Content-Type it was written with (or 304 Not Modified when If-None-Match holds it already).",
      mediaType: "application/octet-stream",
      headers: readAnswerHeaders.extend({
        "X-KV-Metadata": z.string().optional().openapi({ description: "The key's metadata (JSON, ASCII)." }),
        "X-KV-Expiration": z.string().optional().openapi({ description: "When the key expires, in Unix seconds." }),
      }),
    },
    errors: [...READ_ERRORS, "invalid_precondition"],
  },
  putKey: {
    operationId: "putKey",
    method: "put",
    path: "/v1/kv/{key}",
    tag: "Keys",
    auth: "write",
    summary: "Writes a key's value (a last-writer-wins register on a hybrid logical clock).",
    description:
      "Concurrent writes are resolved by the later HLC stamp, and each one so resolved is logged in /v1/conflicts.",
    request: {
      params: z.object({ key }),
      query: writeQuery.extend({
        expiration: z.coerce.number().int().optional().openapi({
          description: "When the key expires, in Unix seconds (in the future). Not with expiration_ttl.",
        }),
        expiration_ttl: z.coerce.number().int().min(1).optional().openapi({
          description: "Seconds from now until the key expires. Not with expiration.",
        }),
      }),
      headers: writeHeaders.extend({
        "x-kv-metadata": z
          .string()
          .optional()
          .openapi({
            description: `JSON metadata kept with the value, at most ${METADATA_BYTES_MAX} bytes serialized.`,
          }),
      }),
      body: {
        content: { "*/*": { schema: z.string().openapi({ format: "binary" }) } },
        description: `The value: any bytes, at most ${VALUE_BYTES_MAX}. Its Content-Type is stored and answered on reads.`,
      },
    },
    ok: { description: "The write is committed (and acked as asked).", json: writeAnswer, headers: writeAnswerHeaders },
    errors: [...WRITE_ERRORS, "value_too_large"],
  },
  deleteKey: {
    operationId: "deleteKey",
    method: "delete",
    path: "/v1/kv/{key}",
    tag: "Keys",
    auth: "write",
    summary: "Deletes a key (a tombstone that replicates like a write).",
    description:
      "A key the serving region holds no state of is left alone, so no type is fixed there: the answer's `version` is null, with no ETag, and nothing replicates.",
    request: { params: z.object({ key }), query: writeQuery, headers: writeHeaders },
    ok: {
      description: "The delete is committed (or there was nothing to delete).",
      json: writeAnswer.extend({
        version: z
          .string()
          .nullable()
          .openapi({ description: "The tombstone's version; null when nothing was written." }),
      }),
      headers: writeAnswerHeaders.partial({ ETag: true }),
    },
    errors: WRITE_ERRORS,
  },
  watch: {
    operationId: "watch",
    method: "get",
    path: "/v1/watch",
    tag: "Keys",
    auth: "read",
    summary: "A change feed: Server-Sent Events, one per change applied in the region to a key under the prefix.",
    description:
      'Each event\'s `id` is the region\'s stream position (send it back as `Last-Event-ID` to resume with no gap and no duplicate while the region still keeps it: the last 10,000 changes of each shard) and its `data` is `{"key","type","version","origin","deleted"?}` (no values). A position no longer kept gets one `event: reset` first. A reader that falls 1,024 changes behind gets `event: cutoff` and the stream ends (reconnect with the last id). Comment lines keep an idle stream open. With `Upgrade: websocket` the same feed comes over a WebSocket held by the region\'s watch hub (idle sockets hibernate): one text message per change, `{"id","key","type","version","origin","deleted"?}`, a `{"event":"reset"}` message first when the position is not kept, and `?after=<id>` to resume.',
    request: {
      query: z.object({
        region,
        prefix: prefixParam("; default all"),
        after: z
          .string()
          .optional()
          .openapi({ description: "WebSocket only: the `id` of the last change received, to resume after it." }),
      }),
      headers: z.object({
        upgrade: z
          .literal("websocket")
          .optional()
          .openapi({ description: "Watch over a WebSocket (answered 101) instead of Server-Sent Events." }),
        "last-event-id": z.string().optional().openapi({ description: "The `id` of the last event received." }),
        "x-client-location": clientLocation,
      }),
    },
    ok: { description: "An event stream (`text/event-stream`).", mediaType: "text/event-stream" },
    errors: ["invalid_query", "invalid_header", "unknown_region", "overloaded", "region_unavailable"],
  },
  addToCounter: {
    operationId: "addToCounter",
    method: "post",
    path: "/v1/counters/{key}",
    tag: "Counters",
    auth: "write",
    summary: "Adds to a PN-counter (negative deltas subtract). Not idempotent: do not retry blindly.",
    request: { params: z.object({ key }), query: writeQuery, headers: writeHeaders, body: json(counterBodySchema) },
    ok: { description: "The counter's value after the add.", json: counterWriteAnswer, headers: writeAnswerHeaders },
    errors: [...WRITE_ERRORS, "counter_overflow", "value_too_large"],
  },
  getCounter: {
    operationId: "getCounter",
    method: "get",
    path: "/v1/counters/{key}",
    tag: "Counters",
    auth: "read",
    summary: "Reads a counter.",
    request: { params: z.object({ key }), query: readQuery, headers: readHeaders },
    ok: { description: "The counter's value.", json: counterAnswer, headers: readAnswerHeaders },
    errors: READ_ERRORS,
  },
  updateSet: {
    operationId: "updateSet",
    method: "post",
    path: "/v1/sets/{key}",
    tag: "Sets",
    auth: "write",
    summary: "Adds and removes members of an add-wins set (an add wins over a concurrent remove).",
    request: { params: z.object({ key }), query: writeQuery, headers: writeHeaders, body: json(setBodySchema) },
    ok: { description: "The set's members after the update.", json: setWriteAnswer, headers: writeAnswerHeaders },
    errors: [...WRITE_ERRORS, "value_too_large"],
  },
  getSet: {
    operationId: "getSet",
    method: "get",
    path: "/v1/sets/{key}",
    tag: "Sets",
    auth: "read",
    summary: "Reads a set's members.",
    request: { params: z.object({ key }), query: readQuery, headers: readHeaders },
    ok: { description: "The set's members.", json: setAnswer, headers: readAnswerHeaders },
    errors: READ_ERRORS,
  },
  regions: {
    operationId: "regions",
    method: "get",
    path: "/v1/regions",
    tag: "Observe",
    auth: "read",
    summary: "Every region's health, clock offset and replication lag per peer, the primaries, and the shard layout.",
    request: {
      query: z.object({
        detail: z.literal("shards").optional().openapi({ description: "Add each shard's figures." }),
      }),
    },
    ok: { description: "The regions as the router sees them now.", json: regionsAnswer },
    errors: ["invalid_query"],
  },
  conflicts: {
    operationId: "conflicts",
    method: "get",
    path: "/v1/conflicts",
    tag: "Observe",
    auth: "read",
    summary: "The log of conflicts a region resolved (never silently dropped), oldest first.",
    request: {
      query: z.object({ region, limit: limit(LOG_PAGE_MAX, LOG_PAGE_DEFAULT), cursor, consistency: eventualQuery }),
    },
    ok: {
      description: "A page of the conflict log; `cursor` is null on the last page.",
      json: conflictsAnswer,
      headers: lagAnswerHeaders,
    },
    errors: ["invalid_query", "unknown_region", "invalid_consistency", "region_unavailable"],
  },
  metrics: {
    operationId: "metrics",
    method: "get",
    path: "/metrics",
    tag: "Observe",
    auth: "read",
    summary: "Prometheus metrics: requests, replication lag and delay per region pair, outbox, repair, collection.",
    ok: { description: "Prometheus text exposition format 0.0.4.", mediaType: "text/plain" },
    errors: [],
  },
  getFaults: {
    operationId: "getFaults",
    method: "get",
    path: "/v1/admin/faults",
    tag: "Admin",
    auth: "admin",
    summary: 'The faults injected now (only when FAULTS = "on"; otherwise 404).',
    ok: { description: "The faults in force.", json: faultsAnswer },
    errors: ["not_found"],
  },
  setFaults: {
    operationId: "setFaults",
    method: "post",
    path: "/v1/admin/faults",
    tag: "Admin",
    auth: "admin",
    summary: "Injects faults into replication (drop, duplicate, delay, partitions, clock skew); replaces what was.",
    request: { body: json(faultsBodySchema) },
    ok: { description: "The faults now in force.", json: faultsAnswer },
    errors: ["not_found", "invalid_body", "value_too_large"],
  },
  clearFaults: {
    operationId: "clearFaults",
    method: "delete",
    path: "/v1/admin/faults",
    tag: "Admin",
    auth: "admin",
    summary: "Removes every injected fault.",
    ok: { description: "No faults are in force.", json: faultsAnswer },
    errors: ["not_found"],
  },
  setRegionHealth: {
    operationId: "setRegionHealth",
    method: "post",
    path: "/v1/admin/regions/{id}/health",
    tag: "Admin",
    auth: "admin",
    summary: "Takes a region out of service (or puts it back); strong prefixes it leads fail over.",
    request: { params: regionParam, body: json(z.strictObject({ healthy: z.boolean() })) },
    ok: {
      description: "Every healthy region recorded the change.",
      json: z.object({
        region: regionId,
        healthy: z.boolean(),
        health: z.record(z.string(), z.unknown()),
        primaries: z.record(z.string(), z.unknown()),
      }),
    },
    errors: ["unknown_region", "invalid_body", "value_too_large", "region_unavailable"],
  },
  movePrimary: {
    operationId: "movePrimary",
    method: "post",
    path: "/v1/admin/primaries",
    tag: "Admin",
    auth: "admin",
    summary: "Moves a strong prefix's primary to a chosen healthy region (a failback, or a planned move).",
    description:
      "The old primary's lease is no longer renewed; once it runs out the region is promoted under the next epoch, with the fencing and recovery of a failover. Strong reads and writes of the prefix answer 503 primary_unavailable meanwhile. Answers once the new primary serves, or with `ready` false if its recovery takes longer than the wait.",
    request: {
      body: json(movePrimaryBody),
    },
    ok: {
      description: "The prefix is led by the region (under a new epoch when it moved).",
      json: z.object({
        prefix: z.string(),
        from: regionId,
        region: regionId,
        epoch: z.number().int(),
        ready: z.boolean().openapi({ description: "Whether the new primary has recovered and serves." }),
      }),
    },
    errors: [
      "not_found",
      "unknown_region",
      "invalid_body",
      "value_too_large",
      "region_unavailable",
      "primary_unavailable",
    ],
  },
  regionDigest: {
    operationId: "regionDigest",
    method: "get",
    path: "/v1/admin/regions/{id}/digest",
    tag: "Admin",
    auth: "admin",
    summary: "A region's key counts and Merkle root (equal roots: identical regions), per shard too.",
    request: { params: regionParam },
    ok: { description: "The region's digest.", json: digest.extend({ shards: z.array(digest) }) },
    errors: ["unknown_region", "region_unavailable"],
  },
  antiEntropy: {
    operationId: "antiEntropy",
    method: "post",
    path: "/v1/admin/anti-entropy",
    tag: "Admin",
    auth: "admin",
    summary: "Runs one Merkle anti-entropy round between every pair of healthy regions now.",
    ok: {
      description: "What each pair repaired.",
      json: z.object({
        pairs: z.array(
          z.object({
            a: regionId,
            b: regionId,
            keysRepaired: z.number().int(),
            bytes: z.number().int(),
            complete: z.boolean(),
            error: z.string().optional(),
          }),
        ),
        skipped: z.array(regionId),
      }),
    },
    errors: ["region_unavailable"],
  },
  deadLetters: {
    operationId: "deadLetters",
    method: "get",
    path: "/v1/admin/regions/{id}/dead-letters",
    tag: "Admin",
    auth: "admin",
    summary: "Replication messages a region could not apply after every retry, oldest first.",
    request: { params: regionParam, query: z.object({ limit: limit(LOG_PAGE_MAX, 100), cursor }) },
    ok: {
      description: "A page of dead letters; `cursor` is null on the last page.",
      json: z.object({
        region: regionId,
        deadLetters: z.array(
          z.object({
            id: z.number().int(),
            shard: z.number().int(),
            origin: z.string(),
            receivedAt: z.string(),
            attempts: z.number().int(),
            reason: z.string(),
            message: z.unknown(),
          }),
        ),
        cursor: z.string().nullable(),
      }),
    },
    errors: ["unknown_region", "invalid_query", "region_unavailable"],
  },
  replayDeadLetters: {
    operationId: "replayDeadLetters",
    method: "post",
    path: "/v1/admin/regions/{id}/dead-letters/replay",
    tag: "Admin",
    auth: "admin",
    summary: "Applies a region's dead letters again (idempotent); those that still fail stay.",
    request: { params: regionParam },
    ok: {
      description: "How many were applied and how many remain.",
      json: z.object({ region: regionId, replayed: z.number().int(), remaining: z.number().int() }),
    },
    errors: ["unknown_region", "region_unavailable"],
  },
} as const satisfies Record<string, ApiRoute>;

/** A route's operation id. */
export type RouteName = keyof typeof ROUTES;

/** Errors every route may answer: auth (unless open), a method the path does not take, a URL too long. */
function commonErrors(route: ApiRoute): ErrorCode[] {
  const auth: ErrorCode[] = route.auth === null ? [] : ["unauthorized", "forbidden"];
  return [...auth, "method_not_allowed", "uri_too_long", "internal"];
}

/** The error codes a route answers, in the order of `ERROR_STATUS`. */
export function errorsOf(route: ApiRoute): ErrorCode[] {
  const codes = new Set([...route.errors, ...commonErrors(route)]);
  return (Object.keys(ERROR_STATUS) as ErrorCode[]).filter((code) => codes.has(code));
}

const errorBody = (codes: readonly ErrorCode[]) =>
  z.object({
    error: z
      .object({
        code: z.enum(codes as [ErrorCode, ...ErrorCode[]]),
        message: z.string().openapi({ description: "What went wrong and how to fix it." }),
      })
      .catchall(z.unknown())
      .openapi({ description: "Details beyond code and message depend on the code (for example `acked`)." }),
  });

function responsesOf(route: ApiRoute): Record<string, ResponseConfig> {
  const ok: ResponseConfig = {
    description: route.ok.description,
    ...(route.ok.headers === undefined ? {} : { headers: route.ok.headers }),
    ...(route.ok.json !== undefined
      ? { content: { "application/json": { schema: route.ok.json } } }
      : route.ok.mediaType !== undefined
        ? { content: { [route.ok.mediaType]: { schema: z.string() } } }
        : {}),
  };
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of errorsOf(route))
    byStatus.set(ERROR_STATUS[code], [...(byStatus.get(ERROR_STATUS[code]) ?? []), code]);
  const responses: Record<string, ResponseConfig> = { "200": ok };
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    responses[String(status)] = {
      description: codes.join(", "),
      content: { "application/json": { schema: errorBody(codes) } },
    };
  }
  return responses;
}

/** The OpenAPI 3.1 document of the API, generated from {@link ROUTES}. */
export function openApiDocument(serverUrl?: string): ReturnType<OpenApiGeneratorV31["generateDocument"]> {
  const registry = new OpenAPIRegistry();
  const bearer = registry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    description: "A token from AUTH_TOKENS, with read, write or admin scope.",
  });
  // Every code, with its status: the routes' answers name the codes each one gives.
  const codes = Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]];
  registry.register(
    "ErrorCode",
    z.enum(codes).openapi({
      description: `Every operating error code and its HTTP status: ${codes.map((c) => `${c} (${ERROR_STATUS[c]})`).join(", ")}.`,
    }),
  );
  for (const route of Object.values(ROUTES) as ApiRoute[]) {
    registry.registerPath({
      method: route.method,
      path: route.path,
      operationId: route.operationId,
      summary: route.summary,
      ...(route.description === undefined ? {} : { description: route.description }),
      tags: [route.tag],
      security: route.auth === null ? [] : [{ [bearer.name]: [] }],
      ...(route.request === undefined ? {} : { request: route.request }),
      responses: responsesOf(route),
    });
  }
  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: "3.1.0",
    info: {
      title: "Geo-replicated key-value store",
      version: "1",
      description:
        'Multi-leader regional replicas on Durable Objects, CRDT merges, and consistency chosen per request. Errors are JSON: `{"error":{"code","message"}}`.',
    },
    ...(serverUrl === undefined ? {} : { servers: [{ url: serverUrl }] }),
    security: [{ [bearer.name]: [] }],
  });
}
