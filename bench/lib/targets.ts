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

/** Query parameters a store call may add (a later step adds `ack` and `consistency`). */
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

/** The store's key-value routes, served by `region`, with extra `query` parameters on every call. */
export function storeTarget(baseUrl: string, token: string, region: string, query: StoreQuery = {}): KvTarget {
  const params = new URLSearchParams({ region, ...query }).toString();
  const url = (key: string): string => `${baseUrl}/v1/kv/${encodeURIComponent(key)}?${params}`;
  const auth = `Bearer ${token}`;
  return {
    name: `store@${region}`,
    async put(key, value) {
      const res = await fetch(url(key), {
        method: "PUT",
        body: value,
        headers: { authorization: auth, "content-type": "application/octet-stream" },
        signal: timeout(),
      });
      if (!res.ok) throw await failure(res, `store PUT ${key} (${params})`);
      await res.arrayBuffer();
    },
    async get(key) {
      const res = await fetch(url(key), { headers: { authorization: auth }, signal: timeout() });
      if (res.status === 404) {
        await res.arrayBuffer();
        return null;
      }
      if (!res.ok) throw await failure(res, `store GET ${key} (${params})`);
      return new Uint8Array(await res.arrayBuffer());
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
