/**
 * The store's client, for Node 22, browsers and Workers (over the network, or over a service
 * binding's `fetch`).
 *
 * - `createClient` answers a {@link GeoKVClient}: every route of the API typed from its
 *   definition in `shared/api.ts` (the same definitions `GET /openapi.json` is generated from),
 *   session tokens carried for you, idempotent requests retried with capped, jittered backoff,
 *   and failures thrown as {@link GeoKVError} with the API's `code` and HTTP `status`.
 * - {@link GeoKVNamespace} is a drop-in Workers KV `KVNamespace` over the same client.
 *
 * Only types are imported from the rest of the project: the client's code is this file.
 */
import type { z } from "zod";
import type { Consistency, ROUTES } from "../shared/api.ts";
import type { ErrorCode } from "../shared/errors.ts";
import type { RegionId } from "../shared/regions.ts";

type Routes = typeof ROUTES;
/** A route's operation id. */
export type RouteName = keyof Routes;
type RequestOf<R extends RouteName> = Routes[R] extends { request: infer Q } ? Q : object;
type PartOf<Q, P extends string> = Q extends { [K in P]: infer S extends z.ZodType } ? z.input<S> : undefined;
type BodyOf<Q> = Q extends { body: { content: { "application/json": { schema: infer S extends z.ZodType } } } }
  ? z.input<S>
  : undefined;
/** A route's JSON answer, as its schema describes it. */
export type AnswerOf<R extends RouteName> = Routes[R]["ok"] extends { json: infer S extends z.ZodType }
  ? z.output<S>
  : never;
/** What a call of route `R` takes: its path parameters, query, JSON body and extra headers. */
export type CallInput<R extends RouteName> = (PartOf<RequestOf<R>, "params"> extends undefined
  ? { params?: undefined }
  : { params: PartOf<RequestOf<R>, "params"> }) & {
  query?: PartOf<RequestOf<R>, "query">;
  body?: BodyOf<RequestOf<R>>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
};

/** Every route's method and path, checked against the definitions: a change there fails here. */
const ROUTE_TABLE = {
  healthz: ["get", "/healthz"],
  dashboard: ["get", "/"],
  openapi: ["get", "/openapi.json"],
  docs: ["get", "/docs"],
  docsAsset: ["get", "/docs/{asset}"],
  listKeys: ["get", "/v1/kv"],
  getKey: ["get", "/v1/kv/{key}"],
  putKey: ["put", "/v1/kv/{key}"],
  deleteKey: ["delete", "/v1/kv/{key}"],
  watch: ["get", "/v1/watch"],
  addToCounter: ["post", "/v1/counters/{key}"],
  getCounter: ["get", "/v1/counters/{key}"],
  updateSet: ["post", "/v1/sets/{key}"],
  getSet: ["get", "/v1/sets/{key}"],
  regions: ["get", "/v1/regions"],
  conflicts: ["get", "/v1/conflicts"],
  metrics: ["get", "/metrics"],
  getFaults: ["get", "/v1/admin/faults"],
  setFaults: ["post", "/v1/admin/faults"],
  clearFaults: ["delete", "/v1/admin/faults"],
  movePrimary: ["post", "/v1/admin/primaries"],
  setRegionHealth: ["post", "/v1/admin/regions/{id}/health"],
  regionDigest: ["get", "/v1/admin/regions/{id}/digest"],
  antiEntropy: ["post", "/v1/admin/anti-entropy"],
  deadLetters: ["get", "/v1/admin/regions/{id}/dead-letters"],
  replayDeadLetters: ["post", "/v1/admin/regions/{id}/dead-letters/replay"],
} as const satisfies { readonly [R in RouteName]: readonly [Routes[R]["method"], Routes[R]["path"]] };

/** How many regions must apply a write before it is answered. */
export type Ack = "local" | "quorum" | "all" | number;

/** Options of a client; `region`, `consistency` and `ack` are defaults each call may override. */
export interface ClientOptions {
  /** The store's URL (e.g. `http://127.0.0.1:8787`); optional with `fetch` (a service binding). */
  readonly url?: string;
  /** A bearer token (read, write or admin scope). */
  readonly token: string;
  readonly region?: RegionId;
  /** Read consistency; default `session` (read-your-writes in every region). */
  readonly consistency?: Consistency;
  readonly ack?: Ack;
  /** The `fetch` to call: a service binding's `binding.fetch.bind(binding)`, or a test double. */
  readonly fetch?: (request: Request) => Promise<Response>;
  /** Retries of an idempotent request after a 503 or a network error; default 3. */
  readonly retries?: number;
  /** First backoff bound, doubled per retry up to `retryCapMs`; defaults 100 and 2000 ms. */
  readonly retryBaseMs?: number;
  readonly retryCapMs?: number;
  /** A session to continue: the `session` of another client (e.g. handed from a browser). */
  readonly session?: string;
  /** Randomness for the backoff's jitter (a seeded source in tests); default `Math.random`. */
  readonly random?: () => number;
}

/** Per call: where to read or write, and how consistently. */
export interface CallOptions {
  readonly region?: RegionId;
  readonly consistency?: Consistency;
  /** The bound of `consistency: "bounded"`. */
  readonly maxStalenessMs?: number;
  readonly ack?: Ack;
  /** How long a write waits for its acks. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** A failure: the API's error `code` and HTTP `status` (0 and `network_error` when no answer came). */
export class GeoKVError extends Error {
  override readonly name = "GeoKVError";
  readonly code: ErrorCode | "network_error";
  readonly status: number;
  /** The error's other fields (for example `acked` of an `ack_timeout`). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode | "network_error",
    status: number,
    message: string,
    details: Readonly<Record<string, unknown>> = {},
  ) {
    super(message);
    this.code = code;
    this.status = status;
    this.details = details;
  }
}

/** A value read. */
export interface KvEntry {
  readonly bytes: Uint8Array;
  readonly contentType: string;
  /** The key's version (its ETag without quotes): `ifMatch` of a conditional write. */
  readonly version: string;
  readonly metadata: unknown;
  /** When the key expires, in Unix seconds, or null. */
  readonly expiration: number | null;
  /** The region that served the read, and how far behind its peers it may be (null: unknown). */
  readonly region: string;
  readonly lagMs: number | null;
  text(): string;
  json<T = unknown>(): T;
}

/** A value to write: what Workers KV's `put` takes. */
export type KvValue = string | ArrayBuffer | ArrayBufferView | ReadableStream<Uint8Array>;

/** Options of `put`. */
export interface PutOptions extends CallOptions {
  readonly contentType?: string;
  /** JSON-serializable metadata kept with the value (at most 1024 bytes serialized). */
  readonly metadata?: unknown;
  /** Unix seconds when the key expires; or `expirationTtl` seconds from now. */
  readonly expiration?: number;
  readonly expirationTtl?: number;
  /** Write only if the key's version is this one (compare-and-set). */
  readonly ifMatch?: string;
  /** Write only if the key does not exist. */
  readonly ifNotExists?: boolean;
}

/** Largest value the store holds (`VALUE_BYTES_MAX`). */
const VALUE_BYTES_MAX = 1024 * 1024;
/** Most session tokens one request carries (the server's `SESSION_TOKENS_MAX`). */
const SESSION_TOKENS_MAX = 16;
const SESSION_HEADER = "X-Session-Token";

/** The bytes of a value; a stream is read, refusing more than the store holds. */
async function bytesOf(value: KvValue): Promise<Uint8Array> {
  if (typeof value === "string") return new TextEncoder().encode(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = value.getReader();
  for (;;) {
    const { done, value: chunk } = await reader.read();
    if (done) break;
    total += chunk.byteLength;
    if (total > VALUE_BYTES_MAX) {
      await reader.cancel();
      throw new GeoKVError("value_too_large", 413, `the value is larger than ${VALUE_BYTES_MAX} bytes`, {
        limitBytes: VALUE_BYTES_MAX,
      });
    }
    chunks.push(chunk);
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/** A path with its `{name}` parameters filled in, each percent-encoded as one segment. */
function fillPath(path: string, params: Readonly<Record<string, string>> | undefined): string {
  return path.replaceAll(/\{(\w+)\}/g, (_, name: string) => {
    const value = params?.[name];
    if (value === undefined) throw new TypeError(`the path parameter "${name}" is missing`);
    return encodeURIComponent(value);
  });
}

/** The error an answer carries; an answer that is not the store's (a proxy's page) gets a code by its status. */
async function errorOf(res: Response): Promise<GeoKVError> {
  const text = await res.text();
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string } & Record<string, unknown> };
    if (typeof body.error?.code === "string" && typeof body.error.message === "string") {
      const { code, message, ...details } = body.error;
      return new GeoKVError(code as ErrorCode, res.status, message, details);
    }
  } catch {
    // Not JSON: an answer from something in front of the store.
  }
  const code: ErrorCode = res.status >= 500 ? (res.status === 504 ? "ack_timeout" : "region_unavailable") : "internal";
  return new GeoKVError(code, res.status, `HTTP ${res.status}: ${text.slice(0, 200)}`);
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });

/** The client: typed routes, sessions, retries. Made by {@link createClient}. */
export class GeoKVClient {
  readonly #options: ClientOptions;
  readonly #base: string;
  readonly #fetch: (request: Request) => Promise<Response>;
  /** Session tokens of answers not yet folded into one (answers that crossed in flight). */
  #tokens: string[];

  constructor(options: ClientOptions) {
    if (options.url === undefined && options.fetch === undefined)
      throw new TypeError("createClient needs a url, a fetch (a service binding), or both");
    this.#options = options;
    this.#base = (options.url ?? "https://geo-kv.internal").replace(/\/+$/, "");
    this.#fetch = options.fetch ?? ((request) => fetch(request));
    this.#tokens = options.session === undefined || options.session === "" ? [] : options.session.split(",");
  }

  /**
   * The session so far: what this client's answers have seen, as a header value. Hand it to
   * another client's `session` option to carry read-your-writes across them.
   */
  get session(): string | undefined {
    return this.#tokens.length === 0 ? undefined : this.#tokens.join(",");
  }

  /**
   * Calls route `route` and answers the response, retrying an idempotent request on 503 and
   * network errors. A non-2xx answer is thrown as a {@link GeoKVError}.
   */
  async fetchRoute<R extends RouteName>(
    route: R,
    input: CallInput<R>,
    body?: Uint8Array,
    contentType?: string,
  ): Promise<Response> {
    const [method, path] = ROUTE_TABLE[route];
    const url = new URL(this.#base + fillPath(path, input.params as Record<string, string> | undefined));
    for (const [name, value] of Object.entries((input.query ?? {}) as Record<string, unknown>)) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
    }
    const headers = new Headers(input.headers);
    headers.set("Authorization", `Bearer ${this.#options.token}`);
    let payload: Uint8Array | undefined = body;
    if (input.body !== undefined) {
      payload = new TextEncoder().encode(JSON.stringify(input.body));
      headers.set("Content-Type", "application/json");
    } else if (contentType !== undefined) headers.set("Content-Type", contentType);
    // A POST may have been applied when its answer was lost; a conditional write that was
    // applied would fail its own condition on a retry. Neither is retried.
    const conditional = headers.has("If-Match") || headers.has("If-None-Match");
    const idempotent = (method === "get" || method === "put" || method === "delete") && !conditional;
    const retries = idempotent ? (this.#options.retries ?? 3) : 0;
    const random = this.#options.random ?? Math.random;
    for (let attempt = 0; ; attempt += 1) {
      const sent = this.#tokens.slice(0, SESSION_TOKENS_MAX);
      if (sent.length > 0) headers.set(SESSION_HEADER, sent.join(","));
      else headers.delete(SESSION_HEADER);
      let res: Response;
      try {
        res = await this.#fetch(
          new Request(url, {
            method: method.toUpperCase(),
            headers,
            ...(payload === undefined ? {} : { body: payload }),
            ...(input.signal === undefined ? {} : { signal: input.signal }),
          }),
        );
      } catch (error) {
        if (input.signal?.aborted === true || attempt >= retries) {
          throw new GeoKVError("network_error", 0, `the store did not answer: ${String(error)}`);
        }
        await this.#backoff(attempt, random, null, input.signal);
        continue;
      }
      this.#remember(sent, res.headers.get(SESSION_HEADER));
      if (res.ok) return res;
      if (res.status === 503 && attempt < retries) {
        await res.body?.cancel();
        await this.#backoff(attempt, random, res.headers.get("Retry-After"), input.signal);
        continue;
      }
      throw await errorOf(res);
    }
  }

  /** Calls a route that answers JSON and answers it, typed by the route's definition. */
  async call<R extends RouteName>(route: R, input: CallInput<R>): Promise<AnswerOf<R>> {
    return (await (await this.fetchRoute(route, input)).json()) as AnswerOf<R>;
  }

  /** The answer's token replaces the tokens the request sent: it has seen all they had. */
  #remember(sent: readonly string[], token: string | null): void {
    if (token === null || token === "") return;
    this.#tokens = [...this.#tokens.filter((t) => !sent.includes(t)), token];
  }

  #backoff(attempt: number, random: () => number, retryAfter: string | null, signal?: AbortSignal): Promise<void> {
    const cap = this.#options.retryCapMs ?? 2000;
    const bound = Math.min(cap, (this.#options.retryBaseMs ?? 100) * 2 ** attempt);
    const asked = retryAfter !== null && /^\d+$/.test(retryAfter) ? Math.min(cap, Number(retryAfter) * 1000) : 0;
    // Full jitter: clients that failed together do not retry together.
    return sleep(Math.max(asked, random() * bound), signal);
  }

  #readQuery(options: CallOptions) {
    const consistency = options.consistency ?? this.#options.consistency ?? "session";
    return {
      region: options.region ?? this.#options.region,
      consistency,
      max_staleness_ms: options.maxStalenessMs,
    };
  }

  #writeQuery(options: CallOptions) {
    const ack = options.ack ?? this.#options.ack;
    return {
      region: options.region ?? this.#options.region,
      ack: ack === undefined ? undefined : String(ack),
      timeout_ms: options.timeoutMs,
    };
  }

  #signal(options: CallOptions) {
    return options.signal === undefined ? {} : { signal: options.signal };
  }

  /** Reads a key: its value and what comes with it, or null when it does not exist. */
  async get(key: string, options: CallOptions = {}): Promise<KvEntry | null> {
    let res: Response;
    try {
      res = await this.fetchRoute("getKey", {
        params: { key },
        query: this.#readQuery(options),
        ...this.#signal(options),
      });
    } catch (error) {
      if (error instanceof GeoKVError && error.code === "not_found") return null;
      throw error;
    }
    const bytes = new Uint8Array(await res.arrayBuffer());
    const metadata = res.headers.get("X-KV-Metadata");
    const expiration = res.headers.get("X-KV-Expiration");
    const lag = res.headers.get("X-Replication-Lag-Ms");
    return {
      bytes,
      contentType: res.headers.get("Content-Type") ?? "application/octet-stream",
      version: (res.headers.get("ETag") ?? "").replace(/^"(.*)"$/, "$1"),
      metadata: metadata === null ? null : (JSON.parse(metadata) as unknown),
      expiration: expiration === null ? null : Number(expiration),
      region: res.headers.get("X-Served-By") ?? "",
      lagMs: lag === null ? null : Number(lag),
      text: () => new TextDecoder().decode(bytes),
      json: <T>() => JSON.parse(new TextDecoder().decode(bytes)) as T,
    };
  }

  /** Writes a key. */
  async put(key: string, value: KvValue, options: PutOptions = {}): Promise<AnswerOf<"putKey">> {
    const headers: Record<string, string> = {};
    if (options.metadata !== undefined && options.metadata !== null)
      headers["X-KV-Metadata"] = asciiJson(options.metadata);
    if (options.ifMatch !== undefined) headers["If-Match"] = `"${options.ifMatch}"`;
    if (options.ifNotExists === true) headers["If-None-Match"] = "*";
    const res = await this.fetchRoute(
      "putKey",
      {
        params: { key },
        query: {
          ...this.#writeQuery(options),
          expiration: options.expiration,
          expiration_ttl: options.expirationTtl,
        },
        headers,
        ...this.#signal(options),
      },
      await bytesOf(value),
      options.contentType ?? (typeof value === "string" ? "text/plain;charset=UTF-8" : "application/octet-stream"),
    );
    return (await res.json()) as AnswerOf<"putKey">;
  }

  /** Deletes a key (deleting a missing key succeeds). */
  delete(key: string, options: CallOptions & { readonly ifMatch?: string } = {}): Promise<AnswerOf<"deleteKey">> {
    return this.call("deleteKey", {
      params: { key },
      query: this.#writeQuery(options),
      headers: options.ifMatch === undefined ? {} : { "If-Match": `"${options.ifMatch}"` },
      ...this.#signal(options),
    });
  }

  /** A page of keys under `prefix`, in key order. */
  list(
    options: { readonly prefix?: string; readonly limit?: number; readonly cursor?: string | null } & CallOptions = {},
  ): Promise<AnswerOf<"listKeys">> {
    return this.call("listKeys", {
      query: {
        region: options.region ?? this.#options.region,
        prefix: options.prefix,
        limit: options.limit,
        cursor: options.cursor ?? undefined,
      },
      ...this.#signal(options),
    });
  }

  /** Adds `delta` to a counter (never retried: an add whose answer was lost may have counted). */
  addToCounter(key: string, delta: number, options: CallOptions = {}): Promise<AnswerOf<"addToCounter">> {
    return this.call("addToCounter", {
      params: { key },
      query: this.#writeQuery(options),
      body: { delta },
      ...this.#signal(options),
    });
  }

  /** A counter's value, or null when it does not exist. */
  async getCounter(key: string, options: CallOptions = {}): Promise<number | null> {
    return orNull(async () => (await this.call("getCounter", this.#readInput(key, options))).value);
  }

  /** Adds and removes members of a set. */
  updateSet(
    key: string,
    change: { readonly add?: string[]; readonly remove?: string[] },
    options: CallOptions = {},
  ): Promise<AnswerOf<"updateSet">> {
    return this.call("updateSet", {
      params: { key },
      query: this.#writeQuery(options),
      body: change,
      ...this.#signal(options),
    });
  }

  /** A set's members, or null when it does not exist. */
  async getSet(key: string, options: CallOptions = {}): Promise<string[] | null> {
    return orNull(async () => (await this.call("getSet", this.#readInput(key, options))).members);
  }

  #readInput(key: string, options: CallOptions) {
    return { params: { key }, query: this.#readQuery(options), ...this.#signal(options) };
  }
}

async function orNull<T>(read: () => Promise<T>): Promise<T | null> {
  try {
    return await read();
  } catch (error) {
    if (error instanceof GeoKVError && error.code === "not_found") return null;
    throw error;
  }
}

/** JSON text with every character beyond ASCII escaped (header values must be ASCII). */
function asciiJson(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError("metadata must be JSON-serializable");
  return text.replaceAll(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** A client of the store at `url` (or behind `fetch`), with `token`. */
export function createClient(options: ClientOptions): GeoKVClient {
  return new GeoKVClient(options);
}

// Workers KV's `KVNamespace` over the client.

/** Workers KV's bounds, which `GeoKVNamespace` checks as Workers KV does. */
const KV_KEY_BYTES_MAX = 512;
const KV_EXPIRATION_TTL_MIN = 60;
const KV_METADATA_BYTES_MAX = 1024;
const KV_LIST_LIMIT_MAX = 1000;
const KV_BULK_KEYS_MAX = 100;
const KV_CACHE_TTL_MIN = 30;

type KvType = "text" | "json" | "arrayBuffer" | "stream";
type GetArg = KvType | { type?: KvType | undefined; cacheTtl?: number | undefined } | undefined;

/** A failure in Workers KV's own words (`KV PUT failed: 413 ...`), keeping the store's code. */
function kvFailure(op: string, error: GeoKVError): GeoKVError {
  return new GeoKVError(error.code, error.status, `KV ${op} failed: ${error.status} ${error.message}`, error.details);
}

function kvRefusal(op: string, status: number, message: string): GeoKVError {
  const code: ErrorCode = status === 413 ? "value_too_large" : status === 414 ? "invalid_key" : "invalid_query";
  return new GeoKVError(code, status, `KV ${op} failed: ${status} ${message}`);
}

/** Workers KV's checks of a key name: a TypeError for empty, "." and ".."; 414 when too long. */
function checkKvKey(op: string, key: string): void {
  if (key === "") throw new TypeError("Key name cannot be empty.");
  if (key === "." || key === "..") throw new TypeError(`"${key}" is not allowed as a key name.`);
  const length = new TextEncoder().encode(key).length;
  if (length > KV_KEY_BYTES_MAX)
    throw kvRefusal(op, 414, `UTF-8 encoded length of ${length} exceeds key length limit of ${KV_KEY_BYTES_MAX}.`);
}

function typeOf(arg: GetArg): KvType {
  const type = (typeof arg === "string" ? arg : arg?.type) ?? "text";
  if (typeof arg === "object" && arg !== null && arg.cacheTtl !== undefined && !(arg.cacheTtl >= KV_CACHE_TTL_MIN))
    throw kvRefusal(
      "GET",
      400,
      `Invalid cache_ttl of ${arg.cacheTtl}. Cache TTL must be at least ${KV_CACHE_TTL_MIN}.`,
    );
  return type;
}

function decoded(entry: KvEntry, type: KvType): unknown {
  switch (type) {
    case "text":
      return entry.text();
    case "json":
      return entry.json();
    case "arrayBuffer":
      return entry.bytes.slice().buffer;
    case "stream":
      return new Response(entry.bytes.slice()).body;
    default:
      // As Workers KV: only a value that exists is decoded, so a missing key reads null.
      throw new TypeError('Unknown response type. Possible types are "text", "arrayBuffer", "json", and "stream".');
  }
}

/**
 * Workers KV's `KVNamespace`, served by the store: moving a Worker onto it is one changed line.
 * Reads are read-your-writes by default (`consistency: "session"`), where Workers KV may answer
 * a stale value for up to a minute. `cacheTtl` is checked and otherwise ignored.
 */
export class GeoKVNamespace implements KVNamespace {
  /** The client underneath, for what Workers KV has no word for (counters, regions, ...). */
  readonly client: GeoKVClient;

  constructor(options: ClientOptions) {
    this.client = createClient({ consistency: "session", ...options });
  }

  readonly get: KVNamespace["get"] = ((key: string | string[], arg?: GetArg) =>
    this.#get(key, arg, false)) as KVNamespace["get"];

  readonly getWithMetadata: KVNamespace["getWithMetadata"] = ((key: string | string[], arg?: GetArg) =>
    this.#get(key, arg, true)) as KVNamespace["getWithMetadata"];

  async #get(key: string | string[], arg: GetArg, withMetadata: boolean): Promise<unknown> {
    const type = typeOf(arg);
    if (!Array.isArray(key)) return this.#getOne(key, type, withMetadata);
    if (type !== "text" && type !== "json")
      throw kvRefusal("GET_BULK", 400, `"${type}" is not a valid type. Use "json" or "text"`);
    if (key.length > KV_BULK_KEYS_MAX)
      throw kvRefusal("GET_BULK", 400, `You can request a maximum of ${KV_BULK_KEYS_MAX} keys`);
    for (const k of key) checkKvKey("GET_BULK", k);
    let values: unknown[];
    try {
      values = await Promise.all(key.map((k) => this.#getOfMany(k, type, withMetadata)));
    } catch (error) {
      if (!(error instanceof SyntaxError)) throw error;
      throw kvRefusal("GET_BULK", 400, "At least one of the requested keys corresponds to a non-json value");
    }
    return new Map(key.map((k, i) => [k, values[i]]));
  }

  async #getOne(key: string, type: KvType, withMetadata: boolean): Promise<unknown> {
    checkKvKey("GET", key);
    let entry: KvEntry | null;
    try {
      entry = await this.client.get(key);
    } catch (error) {
      throw error instanceof GeoKVError ? kvFailure("GET", error) : error;
    }
    const value = entry === null ? null : decoded(entry, type);
    if (!withMetadata) return value;
    return { value, metadata: entry?.metadata ?? null, cacheStatus: null };
  }

  /** One key of a bulk read: with metadata, a missing key is null and a present one has no cacheStatus. */
  async #getOfMany(key: string, type: KvType, withMetadata: boolean): Promise<unknown> {
    const one = await this.#getOne(key, type, withMetadata);
    if (!withMetadata) return one;
    const { value, metadata } = one as { value: unknown; metadata: unknown };
    return value === null ? null : { value, metadata };
  }

  async put(
    key: string,
    value: string | ArrayBuffer | ArrayBufferView | ReadableStream,
    options: KVNamespacePutOptions = {},
  ): Promise<void> {
    checkKvKey("PUT", key);
    const nowSeconds = Math.floor(Date.now() / 1000);
    const { expiration, expirationTtl, metadata } = options;
    if (expirationTtl !== undefined) {
      const ttl = Math.trunc(Number(expirationTtl));
      if (!(ttl > 0))
        throw kvRefusal("PUT", 400, `Invalid expiration_ttl of ${ttl}. Please specify integer greater than 0.`);
      if (ttl < KV_EXPIRATION_TTL_MIN)
        throw kvRefusal(
          "PUT",
          400,
          `Invalid expiration_ttl of ${ttl}. Expiration TTL must be at least ${KV_EXPIRATION_TTL_MIN}.`,
        );
    }
    if (expiration !== undefined) {
      const at = Number.isFinite(Number(expiration)) ? Math.trunc(Number(expiration)) : 0;
      if (!(at > nowSeconds))
        throw kvRefusal(
          "PUT",
          400,
          `Invalid expiration of ${at}. Please specify integer greater than the current number of seconds since the UNIX epoch.`,
        );
      if (at < nowSeconds + KV_EXPIRATION_TTL_MIN)
        throw kvRefusal(
          "PUT",
          400,
          `Invalid expiration of ${at}. Expiration times must be at least 60 seconds in the future.`,
        );
    }
    if (metadata !== undefined && metadata !== null) {
      const length = new TextEncoder().encode(JSON.stringify(metadata)).length;
      if (length > KV_METADATA_BYTES_MAX)
        throw kvRefusal("PUT", 413, `Metadata length of ${length} exceeds limit of ${KV_METADATA_BYTES_MAX}.`);
    }
    try {
      await this.client.put(key, value as KvValue, {
        metadata,
        ...(expirationTtl === undefined ? {} : { expirationTtl: Math.trunc(Number(expirationTtl)) }),
        ...(expiration === undefined ? {} : { expiration: Math.trunc(Number(expiration)) }),
      });
    } catch (error) {
      throw error instanceof GeoKVError ? kvFailure("PUT", error) : error;
    }
  }

  async delete(key: string): Promise<void> {
    checkKvKey("DELETE", key);
    try {
      await this.client.delete(key);
    } catch (error) {
      throw error instanceof GeoKVError ? kvFailure("DELETE", error) : error;
    }
  }

  async list<Metadata = unknown>(options: KVNamespaceListOptions = {}): Promise<KVNamespaceListResult<Metadata>> {
    const limit = options.limit ?? KV_LIST_LIMIT_MAX;
    if (limit > KV_LIST_LIMIT_MAX)
      throw kvRefusal(
        "GET",
        400,
        `Invalid key_count_limit of ${limit}. Please specify an integer less than ${KV_LIST_LIMIT_MAX}.`,
      );
    let page: AnswerOf<"listKeys">;
    try {
      page = await this.client.list({
        prefix: options.prefix ?? "",
        // Workers KV takes a limit of 0 (or less) as its default.
        limit: limit >= 1 ? Math.trunc(limit) : KV_LIST_LIMIT_MAX,
        cursor: options.cursor ?? null,
      });
    } catch (error) {
      throw error instanceof GeoKVError ? kvFailure("GET", error) : error;
    }
    const keys = page.keys.map((k) => ({
      name: k.name,
      ...(k.expiration === undefined ? {} : { expiration: k.expiration }),
      ...(k.metadata === undefined ? {} : { metadata: k.metadata as Metadata }),
    }));
    return page.cursor === null
      ? { keys, list_complete: true, cacheStatus: null }
      : { keys, list_complete: false, cursor: page.cursor, cacheStatus: null };
  }
}
