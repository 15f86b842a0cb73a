/**
 * HTTP clients for what the benchmark drives: the store's REST API and the storage floor. Both
 * use Node's fetch, which keeps connections alive; every answer's body is read to the end so its
 * connection goes back to the pool. A failed call throws, so the load generator counts it.
 */

/**
 * No single call may take longer than this: a hung server must fail the phase, not stall the
 * run. Far above any latency worth measuring here.
 */
export const REQUEST_TIMEOUT_MS = 30_000;

function timeout(): AbortSignal {
  return AbortSignal.timeout(REQUEST_TIMEOUT_MS);
}

/** Query parameters a store call adds after `region`, such as `ack` and `consistency`. */
export type StoreQuery = Readonly<Record<string, string>>;

/** The smallest key-value surface both targets share, so one scenario drives either. */
export interface KvTarget {
  readonly name: string;
  put(key: string, value: Uint8Array): Promise<void>;
  /** The value, or null when the key is not there (404). */
  get(key: string): Promise<Uint8Array | null>;
}

async function failure(res: Response, what: string): Promise<Error> {
  const body = (await res.text()).slice(0, 300);
  return new Error(`${what} answered ${res.status}: ${body}`);
}

/** The storage floor (bench/floor): `PUT /kv/{key}`, `GET /kv/{key}`. */
export function floorTarget(baseUrl: string): KvTarget {
  return {
    name: "floor",
    async put(key, value) {
      const res = await fetch(`${baseUrl}/kv/${encodeURIComponent(key)}`, {
        method: "PUT",
        body: value,
        signal: timeout(),
      });
      if (!res.ok) throw await failure(res, `floor PUT ${key}`);
      await res.arrayBuffer();
    },
    async get(key) {
      const res = await fetch(`${baseUrl}/kv/${encodeURIComponent(key)}`, { signal: timeout() });
      if (res.status === 404) {
        await res.arrayBuffer();
        return null;
      }
      if (!res.ok) throw await failure(res, `floor GET ${key}`);
      return new Uint8Array(await res.arrayBuffer());
    },
  };
}

/**
 * The store's key-value routes as a session client uses them: every call may send the
 * `X-Session-Token` of an earlier answer, and every answer's token is handed back.
 */
export interface SessionTarget {
  readonly name: string;
  /** Writes `value`; answers the write's session token. */
  put(key: string, value: Uint8Array, session?: string): Promise<string>;
  /**
   * The value and the answer's session token; null and whatever token the 404 carried (if any)
   * when the key is not there.
   */
  get(key: string, session?: string): Promise<{ value: Uint8Array | null; session: string | null }>;
}

function sessionOf(res: Response, what: string): string {
  const session = res.headers.get("x-session-token");
  if (session === null || session === "") throw new Error(`${what} answered without an X-Session-Token`);
  return session;
}

/** The store's key-value routes, served by `region`, with extra `query` parameters on every call. */
export function storeSessionTarget(
  baseUrl: string,
  token: string,
  region: string,
  query: StoreQuery = {},
): SessionTarget {
  const params = new URLSearchParams({ region, ...query }).toString();
  const url = (key: string): string => `${baseUrl}/v1/kv/${encodeURIComponent(key)}?${params}`;
  const headers = (session: string | undefined): Record<string, string> => ({
    authorization: `Bearer ${token}`,
    ...(session === undefined ? {} : { "x-session-token": session }),
  });
  return {
    name: `store@${region}`,
    async put(key, value, session) {
      const what = `store PUT ${key} (${params})`;
      const res = await fetch(url(key), {
        method: "PUT",
        body: value,
        headers: { ...headers(session), "content-type": "application/octet-stream" },
        signal: timeout(),
      });
      if (!res.ok) throw await failure(res, what);
      await res.arrayBuffer();
      return sessionOf(res, what);
    },
    async get(key, session) {
      const what = `store GET ${key} (${params})`;
      const res = await fetch(url(key), { headers: headers(session), signal: timeout() });
      if (res.status === 404) {
        await res.arrayBuffer();
        return { value: null, session: res.headers.get("x-session-token") };
      }
      if (!res.ok) throw await failure(res, what);
      return { value: new Uint8Array(await res.arrayBuffer()), session: sessionOf(res, what) };
    },
  };
}

/** The store's key-value routes, served by `region`, with extra `query` parameters on every call. */
export function storeTarget(baseUrl: string, token: string, region: string, query: StoreQuery = {}): KvTarget {
  const client = storeSessionTarget(baseUrl, token, region, query);
  return {
    name: client.name,
    async put(key, value) {
      await client.put(key, value);
    },
    async get(key) {
      return (await client.get(key)).value;
    },
  };
}

/** GETs a JSON document from the store (e.g. /v1/regions). */
export async function storeJson(baseUrl: string, token: string, path: string): Promise<unknown> {
  const res = await fetch(`${baseUrl}${path}`, {
    headers: { authorization: `Bearer ${token}` },
    signal: timeout(),
  });
  if (!res.ok) throw await failure(res, `GET ${path}`);
  return res.json();
}

/** GETs a text document from the store (e.g. /metrics). */
export async function storeText(baseUrl: string, token: string, path: string): Promise<string> {
  const res = await fetch(`${baseUrl}${path}`, {
    headers: { authorization: `Bearer ${token}` },
    signal: timeout(),
  });
  if (!res.ok) throw await failure(res, `GET ${path}`);
  return res.text();
}

/** The regions the store serves, as its `/healthz` (no authentication) lists them. */
export async function storeHealthRegions(baseUrl: string): Promise<string[]> {
  const res = await fetch(`${baseUrl}/healthz`, { signal: timeout() });
  if (!res.ok) throw await failure(res, "GET /healthz");
  const body = (await res.json()) as { regions?: unknown };
  const regions = body.regions;
  if (!Array.isArray(regions) || !regions.every((r): r is string => typeof r === "string"))
    throw new Error(`/healthz did not list the regions: ${JSON.stringify(body)}`);
  return regions;
}
