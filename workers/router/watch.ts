/**
 * `GET /v1/watch`: the change feed as Server-Sent Events. Each shard's replica in the serving
 * region streams its changes (`shared/store/watch.ts`); this merges them into one stream whose
 * event ids carry every shard's position, so `Last-Event-ID` resumes each shard where it was.
 */
import { type Hono } from "hono";
import { ROUTES } from "../../shared/api.ts";
import { StoreError } from "../../shared/errors.ts";
import { formatWatchCursor, parseFeedLine, parseWatchCursor } from "../../shared/store/watch.ts";
import { servingRegionOf } from "./consistency.ts";
import { type AppEnv } from "./env.ts";
import { callReplica } from "./http.ts";
import { mount } from "./mount.ts";
import { shardsNow } from "./observe.ts";
import { edgeOf, viewAtEdge } from "./routing.ts";
import { replicaOf, watchersOf } from "../stubs.ts";

/** How often an idle stream carries a comment, so proxies keep it open. */
export const WATCH_HEARTBEAT_MS = 15_000;

const encoder = new TextEncoder();

/** One SSE event. */
function sse(fields: { id?: string; event?: string; data: unknown }): Uint8Array {
  const lines = [
    ...(fields.id === undefined ? [] : [`id: ${fields.id}`]),
    ...(fields.event === undefined ? [] : [`event: ${fields.event}`]),
    `data: ${JSON.stringify(fields.data)}`,
  ];
  return encoder.encode(`${lines.join("\n")}\n\n`);
}

/** A replica's feed, as the lines of each chunk that arrives (a chunk's lines go out together). */
async function* chunksOf(reader: ReadableStreamDefaultReader<Uint8Array>): AsyncGenerator<string[]> {
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffered += decoder.decode(value, { stream: true });
    const end = buffered.lastIndexOf("\n");
    if (end < 0) continue;
    const lines = buffered.slice(0, end).split("\n");
    buffered = buffered.slice(end + 1);
    yield lines.filter((line) => line !== "");
  }
}

/** Mounts the change feed. */
export function mountWatch(app: Hono<AppEnv>): void {
  mount(app, ROUTES.watch, async (c) => {
    const view = await viewAtEdge(c);
    const region = servingRegionOf(c, view);
    const prefix = c.req.query("prefix") ?? "";
    if (encoder.encode(prefix).length > 512)
      throw new StoreError("invalid_query", "prefix is longer than the longest key (512 bytes)");
    const shards = await shardsNow(c.env);
    if (c.req.header("upgrade")?.toLowerCase() === "websocket") {
      // WebSocket watchers are held by the region's watch hub (`workers/watch/watchers.ts`).
      const after = c.req.query("after");
      if (parseWatchCursor(after, shards.length) === "garbled")
        throw new StoreError("invalid_query", "after must be the id of a change this feed sent, unchanged");
      const url = new URL("https://watch-hub/");
      url.searchParams.set("prefix", prefix);
      if (after !== undefined) url.searchParams.set("after", after);
      try {
        return await watchersOf(c.env, region).fetch(new Request(url, { headers: c.req.raw.headers }));
      } catch (error) {
        console.error(`watch hub of ${region} failed:`, error);
        throw new StoreError("region_unavailable", `region ${region}'s watch hub did not answer; retry`, { region });
      }
    }
    const cursor = parseWatchCursor(c.req.header("last-event-id"), shards.length);
    if (cursor === "garbled")
      throw new StoreError("invalid_header", "Last-Event-ID must be the id of an event this feed sent, unchanged");
    const asked = Array.isArray(cursor) ? cursor : shards.map(() => null);
    const opened = await Promise.allSettled(
      shards.map((shard, i) =>
        callReplica(region, () => replicaOf(c.env, region, shard, edgeOf(c)).watch(prefix, asked[i] ?? null)),
      ),
    );
    const streams = opened.flatMap((o) => (o.status === "fulfilled" ? [o.value.getReader()] : []));
    // Cancelling a stream's reader ends its watcher at the replica at once, idle or not.
    const cancelAll = (): void => {
      for (const stream of streams) void stream.cancel().catch(() => undefined);
    };
    const failed = opened.find((o) => o.status === "rejected");
    if (failed !== undefined) {
      cancelAll();
      throw failed.reason;
    }
    const readers = streams.map((stream) => chunksOf(stream));
    // Every feed opens with where it starts: the first id, and whether anything was skipped.
    const positions: number[] = [];
    const early: string[][] = [];
    let reset = cursor === "other-layout";
    for (const reader of readers) {
      const lines = (await reader.next()).value ?? [];
      const first = lines[0] === undefined ? undefined : parseFeedLine(lines[0]);
      if (first === undefined || !("start" in first)) {
        cancelAll();
        throw new Error("a replica's feed opens with its start");
      }
      positions.push(first.start.from);
      reset ||= first.start.reset;
      early.push(lines.slice(1));
    }

    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    const writer = writable.getWriter();
    // Writes from every shard go one at a time, each waiting for the reader (backpressure).
    let queue: Promise<void> = Promise.resolve();
    let open = true;
    const write = (bytes: Uint8Array): Promise<void> => {
      queue = queue.then(async () => {
        if (!open) return;
        await writer.ready;
        await writer.write(bytes);
      });
      return queue;
    };
    const stop = (): void => {
      if (!open) return;
      open = false;
      clearInterval(heartbeat);
      cancelAll();
      void writer.close().catch(() => undefined);
    };
    const heartbeat = setInterval(() => void write(encoder.encode(": keep-alive\n\n")).catch(stop), WATCH_HEARTBEAT_MS);

    void write(encoder.encode(`retry: 1000\n: watching ${region}\n\n`)).catch(stop);
    if (reset) {
      void write(
        sse({
          id: formatWatchCursor(positions),
          event: "reset",
          data: {
            reason:
              cursor === "other-layout"
                ? "the store's shards changed since that position; changes in between are not in this feed"
                : "that position is no longer kept (or is from before the region's storage was restored); changes in between are not in this feed",
          },
        }),
      ).catch(stop);
    }
    /** The SSE text of a chunk's lines from shard `i`, and whether the feed was cut off there. */
    const eventsOf = (i: number, lines: readonly string[]): { text: string; cutoff: boolean } => {
      let text = "";
      for (const line of lines) {
        const parsed = parseFeedLine(line);
        if ("data" in parsed) {
          positions[i] = parsed.pos;
          text += `id: ${formatWatchCursor(positions)}\ndata: ${parsed.data}\n\n`;
        } else if ("cutoff" in parsed) {
          return { text, cutoff: true };
        }
      }
      return { text, cutoff: false };
    };
    const cutoffEvent = sse({
      event: "cutoff",
      data: { reason: "the reader fell too far behind and was cut off; reconnect with Last-Event-ID to resume" },
    });
    readers.forEach((reader, i) => {
      void (async () => {
        for (let lines = early[i] ?? []; ;) {
          const { text, cutoff } = eventsOf(i, lines);
          if (text !== "") await write(encoder.encode(text));
          if (cutoff) {
            await write(cutoffEvent);
            stop();
            return;
          }
          if (!open) return;
          const next = await reader.next();
          if (next.done === true) break;
          lines = next.value;
        }
        // A replica ended its feed (it went away or was taken out): the client reconnects.
        stop();
      })().catch(stop);
    });

    c.header("X-Served-By", region);
    return c.body(readable, 200, {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-cache, no-transform",
      "X-Accel-Buffering": "no",
    });
  });
}
