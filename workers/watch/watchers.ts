/**
 * A region's watch hub: one Durable Object per region (named by it) that holds every WebSocket
 * watcher of the region's change feed (`GET /v1/watch` with `Upgrade: websocket`) with the
 * hibernation API, so idle watchers cost nothing. While it has watchers, the region's replicas
 * push it their committed changes, one call per commit (batched while one is in flight),
 * whatever the number of watchers; the hub sends each change to each socket whose prefix it
 * matches. A watcher that resumes (`?after=<id>`) is first caught up from the replicas' change
 * journals, page by page, with the changes pushed meanwhile held back, so it gets every change
 * once; a push that skipped positions (a lost call) is filled from the journal the same way.
 */
import { DurableObject } from "cloudflare:workers";
import { assert } from "../../shared/assert.ts";
import { parseRegionId, type RegionId } from "../../shared/regions.ts";
import { activeShards, layoutOf } from "../../shared/store/layout.ts";
import {
  WATCH_REPLAY_PAGE,
  formatWatchCursor,
  parseFeedLine,
  parseWatchCursor,
  watchStart,
} from "../../shared/store/watch.ts";
import { loadConfig } from "../config.ts";
import { controlOf, replicaOf } from "../stubs.ts";

/** How long a replica keeps pushing after the hub last asked; renewed at a third of it. */
export const WATCH_SUBSCRIPTION_MS = 30_000;

/** Where the hub keeps the last position it took in from each shard. */
const RECEIVED = "received";

/** One change as pushed or read: its position, key and the event data JSON. */
interface Pushed {
  readonly pos: number;
  readonly key: string;
  readonly data: string;
}

/** What a socket keeps across hibernation: its prefix (its positions are the hub's, below). */
interface Attachment {
  readonly prefix: string;
}

interface Socket extends Attachment {
  /** Per shard, the last position given to it (or skipped, outside its prefix). */
  readonly positions: number[];
  /** While it replays the journals: pushed changes wait here. */
  held: Array<{ shard: number; changes: Pushed[] }> | null;
}

function pushedOf(line: string): Pushed | null {
  const parsed = parseFeedLine(line);
  if (!("data" in parsed)) return null;
  return { pos: parsed.pos, key: (JSON.parse(parsed.data) as { key: string }).key, data: parsed.data };
}

export class Watchers extends DurableObject<Env> {
  private readonly region: RegionId;
  private readonly sockets = new Map<WebSocket, Socket>();
  /** Per shard, the last position pushed or read (gaps after it are read from the journal). */
  private readonly received = new Map<number, number>();
  /** Pushes of one shard are taken one at a time, in order. */
  private readonly lanes = new Map<number, Promise<void>>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const region = parseRegionId(ctx.id.name ?? "");
    assert(region !== undefined, "a watch hub is named by its region");
    this.region = region;
    // Woken from hibernation: the sockets, each where every live one was: at the last position
    // the hub took in from each shard (kept in storage on every push; one write per push, not per socket).
    const received = ctx.storage.kv.get<number[]>(RECEIVED) ?? [];
    received.forEach((pos, shard) => this.received.set(shard, pos));
    for (const ws of ctx.getWebSockets()) {
      const attached = ws.deserializeAttachment() as Attachment | null;
      if (attached !== null) this.sockets.set(ws, { prefix: attached.prefix, positions: [...received], held: null });
    }
  }

  private async shards(): Promise<number[]> {
    return activeShards(layoutOf(await controlOf(this.env).getView(), loadConfig(this.env).shards));
  }

  /** Accepts a watcher: `?prefix=` and, to resume, `?after=<event id>`. */
  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const prefix = url.searchParams.get("prefix") ?? "";
    const shards = await this.shards();
    const cursor = parseWatchCursor(url.searchParams.get("after") ?? undefined, shards.length);
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    this.ctx.acceptWebSocket(server);
    server.serializeAttachment({ prefix } satisfies Attachment);
    const socket: Socket = { prefix, positions: shards.map(() => 0), held: [] };
    this.sockets.set(server, socket);
    // Subscribed first, then the start read: every change after the start is pushed here.
    let reset: boolean;
    try {
      await this.subscribe(shards);
      reset = await this.start(socket, shards, cursor === "garbled" ? null : cursor);
    } catch (error) {
      this.sockets.delete(server);
      server.close(1011, "the region's replicas did not answer");
      throw error;
    }
    if (reset) server.send(JSON.stringify({ event: "reset", id: formatWatchCursor(socket.positions) }));
    this.ctx.waitUntil(this.catchUp(server, socket, shards));
    return new Response(null, { status: 101, webSocket: client });
  }

  /** Asks every shard's replica to push its changes here, and to keep doing so a while. */
  private async subscribe(shards: readonly number[]): Promise<void> {
    await Promise.all(
      shards.map((shard) => replicaOf(this.env, this.region, shard).subscribeWatchers(WATCH_SUBSCRIPTION_MS)),
    );
    if ((await this.ctx.storage.getAlarm()) === null)
      await this.ctx.storage.setAlarm(Date.now() + WATCH_SUBSCRIPTION_MS / 3);
  }

  /** Renews the subscription while there are watchers; lets it lapse once there are none. */
  override async alarm(): Promise<void> {
    if (this.ctx.getWebSockets().length === 0) return;
    await this.subscribe(await this.shards());
  }

  /** Sets where the socket starts in each shard; true when that is not where it asked to resume. */
  private async start(
    socket: Socket,
    shards: readonly number[],
    cursor: number[] | null | "other-layout",
  ): Promise<boolean> {
    let reset = cursor === "other-layout";
    for (const [i, shard] of shards.entries()) {
      const bounds = await replicaOf(this.env, this.region, shard).changesAfter(Number.MAX_SAFE_INTEGER, 1);
      // A replica that cannot say where its journal stands: no watch starts (the router answers 503).
      if (!bounds.ok) throw new Error(`shard ${shard} of ${this.region}: ${bounds.error.message}`);
      const start = watchStart(Array.isArray(cursor) ? (cursor[i] ?? null) : null, bounds.value);
      reset ||= start.reset;
      socket.positions[i] = start.from;
    }
    return reset;
  }

  /** Replays each shard's journal after the socket's position, then lets pushes through. */
  private async catchUp(ws: WebSocket, socket: Socket, shards: readonly number[]): Promise<void> {
    try {
      await this.replay(ws, socket, shards);
    } catch {
      this.drop(ws, "the region's replicas did not answer; reconnect with ?after=<last id>");
    }
  }

  private async replay(ws: WebSocket, socket: Socket, shards: readonly number[]): Promise<void> {
    for (const [i, shard] of shards.entries()) {
      for (;;) {
        const page = await replicaOf(this.env, this.region, shard).changesAfter(
          socket.positions[i] ?? 0,
          WATCH_REPLAY_PAGE,
        );
        // Never a silent gap: a replay that cannot go on ends the socket, which resumes from its last id.
        if (!page.ok) throw new Error(page.error.message);
        this.deliver(
          ws,
          socket,
          i,
          page.value.records.map((line) => pushedOf(line)).filter((p) => p !== null),
        );
        if (page.value.records.length < WATCH_REPLAY_PAGE) break;
      }
    }
    const held = socket.held ?? [];
    socket.held = null;
    for (const { shard, changes } of held) this.deliver(ws, socket, shard, changes);
  }

  /** A replica's committed changes (feed lines), in order; `shardIndex` is its place in the layout. */
  async changes(shardIndex: number, lines: readonly string[]): Promise<void> {
    const lane = (this.lanes.get(shardIndex) ?? Promise.resolve()).then(() => this.take(shardIndex, lines));
    this.lanes.set(
      shardIndex,
      lane.catch(() => undefined),
    );
    await lane;
  }

  private async take(shardIndex: number, lines: readonly string[]): Promise<void> {
    let changes = lines.map((line) => pushedOf(line)).filter((p) => p !== null);
    const last = this.received.get(shardIndex);
    const first = changes[0];
    if (first === undefined) return;
    if (last !== undefined && first.pos > last + 1) {
      // A push went missing (a failed call): read what it carried from the journal.
      const shards = await this.shards();
      const shard = shards[shardIndex];
      const gap =
        shard === undefined
          ? null
          : await replicaOf(this.env, this.region, shard).changesAfter(last, first.pos - last - 1);
      const missing = gap?.ok === true ? gap.value.records.map((line) => pushedOf(line)).filter((p) => p !== null) : [];
      if (missing.length !== first.pos - last - 1) {
        // The gap cannot be filled here (too long, or the replica did not answer): every socket
        // ends, and resumes from its last id through the journal, rather than miss changes.
        for (const ws of this.sockets.keys()) this.drop(ws, "changes were missed; reconnect with ?after=<last id>");
      }
      changes = [...missing, ...changes];
    }
    this.received.set(shardIndex, changes[changes.length - 1]?.pos ?? first.pos);
    this.ctx.storage.kv.put(
      RECEIVED,
      Array.from({ length: Math.max(...this.received.keys()) + 1 }, (_, shard) => this.received.get(shard) ?? 0),
    );
    for (const [ws, socket] of this.sockets) {
      if (socket.held !== null) socket.held.push({ shard: shardIndex, changes });
      else this.deliver(ws, socket, shardIndex, changes);
    }
  }

  /** Sends a socket the changes of its prefix it has not had, each as one message. */
  private deliver(ws: WebSocket, socket: Socket, shardIndex: number, changes: readonly Pushed[]): void {
    for (const change of changes) {
      if (change.pos <= (socket.positions[shardIndex] ?? 0)) continue;
      socket.positions[shardIndex] = change.pos;
      if (!change.key.startsWith(socket.prefix)) continue;
      try {
        ws.send(`{"id":"${formatWatchCursor(socket.positions)}",${change.data.slice(1)}`);
      } catch {
        this.sockets.delete(ws);
        return;
      }
    }
  }

  /** Ends a socket that cannot be served without a gap (code 1011: reconnect). */
  private drop(ws: WebSocket, reason: string): void {
    this.sockets.delete(ws);
    try {
      ws.close(1011, reason);
    } catch {
      // Already closed.
    }
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    // Clients may ping; nothing else is expected.
    if (message === "ping") ws.send('{"event":"pong"}');
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    this.sockets.delete(ws);
    ws.close(code === 1005 ? 1000 : code, "closing");
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    this.sockets.delete(ws);
  }
}
