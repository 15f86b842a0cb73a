// The change feed through the router: Server-Sent Events of the changes a region applies under
// a prefix (its own writes and replicated ones), resumable with Last-Event-ID with no gap and
// no duplicate, a reset when the position is not kept, and errors for a garbled id.
import { afterEach, describe, expect, it } from "vitest";
import { hlcNow, hlcZero } from "../../shared/hlc.ts";
import { applyKeyOp } from "../../shared/store/key-state.ts";
import { api, deliver, entries, keyInShard, replica, uniqueKey } from "./helpers.ts";

interface SseEvent {
  id?: string;
  event?: string;
  data?: unknown;
}

/** Reads events off a stream as they come. */
function events(body: ReadableStream<Uint8Array>) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  const pending: SseEvent[] = [];
  return {
    async next(): Promise<SseEvent> {
      for (;;) {
        const event = pending.shift();
        if (event !== undefined) return event;
        const { done, value } = await reader.read();
        if (done) throw new Error("the stream ended");
        buffered += decoder.decode(value, { stream: true });
        let end = buffered.indexOf("\n\n");
        while (end >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const fields: SseEvent = {};
          for (const line of block.split("\n")) {
            if (line.startsWith("id: ")) fields.id = line.slice(4);
            else if (line.startsWith("event: ")) fields.event = line.slice(7);
            else if (line.startsWith("data: ")) fields.data = JSON.parse(line.slice(6));
          }
          if (fields.data !== undefined) pending.push(fields);
          end = buffered.indexOf("\n\n");
        }
      }
    },
    cancel: () => reader.cancel(),
  };
}

const keyOf = (e: SseEvent) => (e.data as { key: string }).key;

const open: Array<{ cancel(): Promise<void> }> = [];
afterEach(async () => {
  for (const stream of open.splice(0)) await stream.cancel().catch(() => undefined);
});

async function watch(query: string, lastEventId?: string) {
  const res = await api(
    `/v1/watch?${query}`,
    lastEventId === undefined ? {} : { headers: { "Last-Event-ID": lastEventId } },
  );
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/event-stream");
  const feed = events(res.body!);
  open.push(feed);
  return feed;
}

const put = (key: string, region = "enam") =>
  api(`/v1/kv/${encodeURIComponent(key)}?region=${region}`, { method: "PUT", body: "v" });

describe("GET /v1/watch", () => {
  it("streams the region's changes under the prefix, its own and replicated ones", async () => {
    const prefix = `${uniqueKey("watch")}/`;
    const feed = await watch(`region=enam&prefix=${encodeURIComponent(prefix)}`);
    expect((await put(`${prefix}a`)).status).toBe(200);
    expect((await put(`other-${prefix}`)).status).toBe(200);
    expect((await put(`${prefix}b`)).status).toBe(200);
    const first = await feed.next();
    expect(first.data).toMatchObject({ key: `${prefix}a`, type: "register", origin: "enam" });
    expect(first.id).toMatch(/^w(\.\d+)+$/);
    expect((await feed.next()).data).toMatchObject({ key: `${prefix}b` });

    // A write of wnam's, replicated into enam.
    const state = applyKeyOp(
      undefined,
      { type: "register", op: { kind: "put", value: new TextEncoder().encode("r"), contentType: "text/plain" } },
      "wnam",
      hlcNow(hlcZero("wnam"), Date.now()),
    );
    if (!state.ok) throw new Error(state.error.message);
    const key = `${prefix}r`;
    const message = entries("wnam", "enam", 1_000_000, [
      { key, state: state.value, stamp: hlcNow(hlcZero("wnam"), Date.now()) },
    ]);
    await deliver("kv-replication", [message]);
    expect((await feed.next()).data).toMatchObject({ key, origin: "wnam" });

    expect((await api(`/v1/kv/${encodeURIComponent(`${prefix}a`)}?region=enam`, { method: "DELETE" })).status).toBe(
      200,
    );
    const deleted = await feed.next();
    expect(deleted.data).toEqual(expect.objectContaining({ key: `${prefix}a`, deleted: true }));
  });

  it("gives each of several watchers every change", async () => {
    const prefix = `${uniqueKey("many")}/`;
    const feeds = await Promise.all([1, 2, 3].map(() => watch(`region=enam&prefix=${encodeURIComponent(prefix)}`)));
    await put(`${prefix}a`);
    await put(`${prefix}b`);
    for (const feed of feeds) {
      const got = [await feed.next(), await feed.next()];
      expect(got.map(keyOf).sort()).toEqual([`${prefix}a`, `${prefix}b`]);
    }
  });

  it("resumes after Last-Event-ID with no gap and no duplicate", async () => {
    const prefix = `${uniqueKey("resume")}/`;
    const feed = await watch(`region=enam&prefix=${encodeURIComponent(prefix)}`);
    for (const name of ["1", "2", "3"]) await put(`${prefix}${name}`);
    // Keys of different shards may come in any order between shards; each shard's in order.
    const seen = [await feed.next(), await feed.next(), await feed.next()];
    expect(seen.map(keyOf).sort()).toEqual(["1", "2", "3"].map((n) => `${prefix}${n}`));
    await feed.cancel();
    // Written while nobody watched.
    await put(`${prefix}4`);
    const resumed = await watch(`region=enam&prefix=${encodeURIComponent(prefix)}`, seen[0]!.id);
    const again = [await resumed.next(), await resumed.next(), await resumed.next()];
    expect(again.map(keyOf).sort()).toEqual([keyOf(seen[1]!), keyOf(seen[2]!), `${prefix}4`].sort());
  });

  it("starts with a reset when the position is not kept, and refuses a garbled id", async () => {
    const prefix = `${uniqueKey("reset")}/`;
    const future = await watch(`region=enam&prefix=${encodeURIComponent(prefix)}`, "w.999999999.999999999");
    const reset = await future.next();
    expect(reset.event).toBe("reset");
    await put(`${prefix}x`);
    expect((await future.next()).data).toMatchObject({ key: `${prefix}x` });
    const layout = await watch(`region=enam&prefix=${encodeURIComponent(prefix)}`, "w.1");
    expect((await layout.next()).event).toBe("reset");

    const garbled = await api("/v1/watch?region=enam", { headers: { "Last-Event-ID": "not-an-id" } });
    expect(garbled.status).toBe(400);
    expect(((await garbled.json()) as { error: { code: string } }).error.code).toBe("invalid_header");
    expect((await api("/v1/watch", { token: null })).status).toBe(401);
    expect((await api(`/v1/watch?prefix=${"p".repeat(513)}`)).status).toBe(400);
  });
});

/** A WebSocket watcher through the router; its messages as they come. */
async function socket(query: string) {
  const res = await api(`/v1/watch?${query}`, { headers: { Upgrade: "websocket" } });
  expect(res.status).toBe(101);
  const ws = res.webSocket!;
  const queue: Array<Record<string, unknown>> = [];
  const waiting: Array<(m: Record<string, unknown>) => void> = [];
  ws.addEventListener("message", (event) => {
    const message = JSON.parse(event.data as string) as Record<string, unknown>;
    const waiter = waiting.shift();
    if (waiter === undefined) queue.push(message);
    else waiter(message);
  });
  ws.accept();
  open.push({ cancel: async () => ws.close() });
  return {
    next: (): Promise<Record<string, unknown>> =>
      new Promise((resolve) => {
        const queued = queue.shift();
        if (queued === undefined) waiting.push(resolve);
        else resolve(queued);
      }),
    close: () => ws.close(),
  };
}

describe("GET /v1/watch over a WebSocket", () => {
  it("sends each change of the prefix, its own and replicated ones, with resumable ids", async () => {
    const prefix = `${uniqueKey("ws")}/`;
    const feed = await socket(`region=enam&prefix=${encodeURIComponent(prefix)}`);
    // The hub has subscribed once the socket is up; give the replay a moment to finish.
    await put(`${prefix}a`);
    await put(`other-${prefix}`);
    await put(`${prefix}b`);
    const got = [await feed.next(), await feed.next()];
    expect(got.map((m) => m.key).sort()).toEqual([`${prefix}a`, `${prefix}b`]);
    expect(got[0]).toMatchObject({ type: "register", origin: "enam" });
    expect(got[0]?.id).toMatch(/^w(\.\d+)+$/);
    feed.close();
    await put(`${prefix}c`);
    // Resumes after the first: the second and the one written while nobody watched.
    const resumed = await socket(`region=enam&prefix=${encodeURIComponent(prefix)}&after=${String(got[0]?.id)}`);
    const again = [await resumed.next(), await resumed.next()];
    expect(again.map((m) => m.key).sort()).toEqual([String(got[1]?.key), `${prefix}c`].sort());
  });

  it("fills a push that never came from the replica's journal", async () => {
    const prefix = `${uniqueKey("gap")}/`;
    const feed = await socket(`region=enam&prefix=${encodeURIComponent(prefix)}`);
    const first = keyInShard(`${prefix}first`, 0);
    await put(first);
    expect((await feed.next()).key).toBe(first);
    // The replica stops pushing (as if its calls failed), takes a write, then pushes again.
    const lost = keyInShard(`${prefix}lost`, 0);
    const after = keyInShard(`${prefix}after`, 0);
    await replica("enam", 0).subscribeWatchers(0);
    await put(lost);
    await replica("enam", 0).subscribeWatchers(30_000);
    await put(after);
    expect([(await feed.next()).key, (await feed.next()).key]).toEqual([lost, after]);
  });

  it("starts with a reset for a position not kept, and refuses a garbled one", async () => {
    const feed = await socket(`region=enam&prefix=none/&after=w.999999999.999999999`);
    expect(await feed.next()).toMatchObject({ event: "reset" });
    const garbled = await api("/v1/watch?region=enam&after=nope", { headers: { Upgrade: "websocket" } });
    expect(garbled.status).toBe(400);
  });
});
