// The client against a scripted fetch: which requests are retried (idempotent ones on 503 and
// network errors, with capped jittered backoff) and which never are (POSTs, conditional writes,
// 504 ack_timeout); how session tokens of answers that crossed in flight are folded; and the
// typed errors it throws.
import { describe, expect, it, vi } from "vitest";
import { GeoKVError, createClient } from "../../client/index.ts";

type Step = Response | Error;

/** A fetch that answers `steps` in order and records each request. */
function scripted(steps: Step[]) {
  const requests: Request[] = [];
  const fetch = async (request: Request): Promise<Response> => {
    requests.push(request);
    const step = steps.shift();
    if (step === undefined) throw new Error("no more scripted answers");
    if (step instanceof Error) throw step;
    return step;
  };
  return { fetch, requests };
}

const error = (status: number, code: string, extra: Record<string, unknown> = {}, headers: HeadersInit = {}) =>
  new Response(JSON.stringify({ error: { code, message: `${code}!`, ...extra } }), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
const written = (token?: string) =>
  Response.json(
    { key: "k", region: "wnam", version: "1", acked: ["wnam"] },
    token === undefined ? {} : { headers: { "X-Session-Token": token } },
  );

/** Options that make backoff instant. */
const fastRetry = { retryBaseMs: 1, retryCapMs: 4, random: () => 0 };

describe("retries", () => {
  it("retries an idempotent request on 503 and network errors, up to the limit", async () => {
    const { fetch, requests } = scripted([
      error(503, "region_unavailable"),
      new TypeError("connection reset"),
      written(),
    ]);
    const client = createClient({ url: "http://kv", token: "t", fetch, ...fastRetry });
    await expect(client.put("k", "v")).resolves.toMatchObject({ version: "1" });
    expect(requests.map((r) => r.method)).toEqual(["PUT", "PUT", "PUT"]);
    // Every attempt carries the whole value.
    expect(await Promise.all(requests.map((r) => r.text()))).toEqual(["v", "v", "v"]);

    const failing = scripted([0, 1, 2, 3].map(() => error(503, "region_unavailable")));
    const limited = createClient({ url: "http://kv", token: "t", fetch: failing.fetch, retries: 3, ...fastRetry });
    await expect(limited.get("k")).rejects.toMatchObject({ code: "region_unavailable", status: 503 });
    expect(failing.requests).toHaveLength(4);
  });

  it("never retries a POST, a conditional write, or a 504 ack_timeout (the write is committed)", async () => {
    for (const attempt of [
      (c: ReturnType<typeof createClient>) => c.addToCounter("k", 1),
      (c: ReturnType<typeof createClient>) => c.updateSet("k", { add: ["a"] }),
      (c: ReturnType<typeof createClient>) => c.put("k", "v", { ifMatch: "3" }),
      (c: ReturnType<typeof createClient>) => c.put("k", "v", { ifNotExists: true }),
    ]) {
      const { fetch, requests } = scripted([error(503, "region_unavailable"), written()]);
      const client = createClient({ url: "http://kv", token: "t", fetch, ...fastRetry });
      await expect(attempt(client)).rejects.toMatchObject({ code: "region_unavailable" });
      expect(requests).toHaveLength(1);
    }
    const lost = scripted([new TypeError("reset"), written()]);
    const counting = createClient({ url: "http://kv", token: "t", fetch: lost.fetch, ...fastRetry });
    await expect(counting.addToCounter("k", 1)).rejects.toMatchObject({ code: "network_error", status: 0 });
    expect(lost.requests).toHaveLength(1);

    const timeout = scripted([error(504, "ack_timeout", { acked: ["wnam"] }), written()]);
    const acking = createClient({ url: "http://kv", token: "t", fetch: timeout.fetch, ack: "all" });
    const thrown = await acking.put("k", "v").catch((e: unknown) => e);
    expect(thrown).toBeInstanceOf(GeoKVError);
    expect(thrown).toMatchObject({ code: "ack_timeout", status: 504, details: { acked: ["wnam"] } });
    expect(timeout.requests).toHaveLength(1);
    expect(new URL(timeout.requests[0]!.url).searchParams.get("ack")).toBe("all");
  });

  it("waits a jittered, capped, growing bound between attempts", async () => {
    vi.useFakeTimers();
    try {
      const { fetch } = scripted([...[0, 1, 2, 3, 4].map(() => error(503, "overloaded")), written()]);
      const draws: number[] = [];
      const client = createClient({
        url: "http://kv",
        token: "t",
        fetch,
        retries: 5,
        retryBaseMs: 2,
        retryCapMs: 10,
        random: () => {
          draws.push(draws.length);
          return 0.5;
        },
      });
      const started = Date.now();
      const put = client.put("k", "v");
      await vi.runAllTimersAsync();
      await put;
      // Bounds 2, 4, 8, 10 (capped), 10 ms, each drawn at half: 17 ms of (fake) time.
      expect(draws).toHaveLength(5);
      expect(Date.now() - started).toBe(17);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("sessions", () => {
  it("sends the last answer's token, and folds the tokens of answers that crossed", async () => {
    const { fetch, requests } = scripted([written("t1"), written("t2"), written("t3"), written("t4"), written("t5")]);
    const client = createClient({ url: "http://kv", token: "t", fetch });
    await client.put("a", "1");
    await client.put("b", "2");
    expect(requests.map((r) => r.headers.get("x-session-token"))).toEqual([null, "t1"]);
    // Two writes in flight together, both sent with t2: their answers crossed, so the next
    // request carries both, and its answer replaces them.
    await Promise.all([client.put("c", "3"), client.put("d", "4")]);
    expect(client.session).toBe("t3,t4");
    await client.get("c").catch(() => null);
    expect(requests[4]!.headers.get("x-session-token")).toBe("t3,t4");
    expect(client.session).toBe("t5");
    // A session handed to another client continues there.
    const next = scripted([written("t6")]);
    await createClient({ url: "http://kv", token: "t", fetch: next.fetch, session: client.session! }).delete("a");
    expect(next.requests[0]!.headers.get("x-session-token")).toBe("t5");
  });
});

describe("requests", () => {
  it("encodes keys as one path segment and sends the bearer token and defaults", async () => {
    const { fetch, requests } = scripted([new Response("x", { headers: { ETag: '"7"', "X-Served-By": "apac" } })]);
    const client = createClient({ url: "http://kv/", token: "secret", fetch, region: "apac" });
    const entry = await client.get("a/b c?d");
    const url = new URL(requests[0]!.url);
    expect(url.pathname).toBe("/v1/kv/a%2Fb%20c%3Fd");
    expect(url.searchParams.get("consistency")).toBe("session");
    expect(url.searchParams.get("region")).toBe("apac");
    expect(requests[0]!.headers.get("authorization")).toBe("Bearer secret");
    expect(entry).toMatchObject({ version: "7", region: "apac", metadata: null, expiration: null });
    expect(entry?.text()).toBe("x");
  });

  it("answers null for a missing key and throws typed errors otherwise", async () => {
    const { fetch } = scripted([
      error(404, "not_found"),
      error(400, "invalid_key"),
      new Response("bad gateway", { status: 502 }),
    ]);
    const client = createClient({ url: "http://kv", token: "t", fetch, retries: 0 });
    expect(await client.get("k")).toBeNull();
    await expect(client.get("k")).rejects.toMatchObject({ name: "GeoKVError", code: "invalid_key", status: 400 });
    await expect(client.get("k")).rejects.toMatchObject({ status: 502 });
  });

  it("sends metadata as ASCII JSON and the expiration as asked", async () => {
    const { fetch, requests } = scripted([written()]);
    const client = createClient({ url: "http://kv", token: "t", fetch });
    await client.put("k", new Uint8Array([1, 2]), { metadata: { who: "Zoë" }, expirationTtl: 90 });
    const request = requests[0]!;
    expect(request.headers.get("x-kv-metadata")).toBe('{"who":"Zo\\u00eb"}');
    expect(JSON.parse(request.headers.get("x-kv-metadata")!)).toEqual({ who: "Zoë" });
    expect(new URL(request.url).searchParams.get("expiration_ttl")).toBe("90");
    expect(new Uint8Array(await request.arrayBuffer())).toEqual(new Uint8Array([1, 2]));
  });
});
