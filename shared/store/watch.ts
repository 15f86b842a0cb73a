/**
 * The change feed at a replica: watchers of a key prefix, each replaying the change journal
 * (`changes.ts`) after its last position and then hearing committed changes as they land, with
 * no gap and no duplicate. A watcher that does not keep up is cut off, never buffered without
 * bound. The replica adapter supplies sinks (the streams it returns); the router merges the
 * shards' feeds into one Server-Sent Events stream (`workers/router/watch.ts`).
 */
import { type ChangeRecord } from "./changes.ts";

/** Lines a watcher may have queued and unread before it is cut off. */
export const WATCH_QUEUE_MAX = 1024;
/** Watchers one replica serves at once. */
export const WATCHERS_MAX = 1000;
/** Journal records read per replay step. */
export const WATCH_REPLAY_PAGE = 256;

/** One line of a replica's feed (NDJSON between replica and router). */
export type WatchLine =
  /**
   * First: the position the feed goes on from, and whether that is not the one asked for (it
   * is no longer, or not yet, in the journal: changes in between are not in the feed).
   */
  | { readonly start: { readonly from: number; readonly reset: boolean } }
  | { readonly change: ChangeRecord }
  /** The watcher fell too far behind and was cut off; resume from its last position. */
  | { readonly cutoff: { readonly pos: number } };

/** Where a watch that asks for changes after `after` (null: only new ones) starts. */
export function watchStart(
  after: number | null,
  bounds: { readonly oldest: number; readonly head: number },
): { readonly from: number; readonly reset: boolean } {
  if (after === null) return { from: bounds.head, reset: false };
  // Resumable when every change after `after` is still kept; a position beyond the head is
  // from another life of the replica (its storage was lost and restored).
  if (after >= bounds.oldest - 1 && after <= bounds.head) return { from: after, reset: false };
  return { from: bounds.head, reset: true };
}

/** Where a watcher's lines go: a stream's controller, in the adapter. */
export interface WatchSink {
  /** Room left before the sink's high-water mark (<= 0: the reader is behind). */
  readonly desiredSize: number | null;
  push(line: WatchLine): void;
  close(): void;
}

/** What a hub reads the journal with. */
export interface JournalReader {
  after(pos: number, limit: number): ChangeRecord[];
  bounds(): { readonly oldest: number; readonly head: number };
}

interface Watcher {
  readonly prefix: string;
  readonly sink: WatchSink;
  /** The last position this watcher has been given (or skipped, outside its prefix). */
  pos: number;
  /** False while it still replays the journal; true once it hears changes as they commit. */
  live: boolean;
}

/** Every watcher of one replica. */
export class WatchHub {
  private readonly journal: JournalReader;
  private readonly watchers = new Set<Watcher>();

  constructor(journal: JournalReader) {
    this.journal = journal;
  }

  get size(): number {
    return this.watchers.size;
  }

  /**
   * Adds a watcher of `prefix` after position `after` (null: from now). Answers a handle whose
   * `pull` the adapter calls when the sink wants more (replay), and `cancel` when the reader
   * went away; or null when the replica serves {@link WATCHERS_MAX} watchers already.
   */
  open(prefix: string, after: number | null, sink: WatchSink): { pull(): void; cancel(): void } | null {
    if (this.watchers.size >= WATCHERS_MAX) return null;
    const start = watchStart(after, this.journal.bounds());
    const watcher: Watcher = { prefix, sink, pos: start.from, live: false };
    sink.push({ start });
    this.watchers.add(watcher);
    return {
      pull: () => this.replay(watcher),
      cancel: () => {
        this.watchers.delete(watcher);
      },
    };
  }

  /** Replays one page of the journal to a watcher that is not live yet; live once caught up. */
  private replay(watcher: Watcher): void {
    if (watcher.live || !this.watchers.has(watcher)) return;
    if (watcher.pos < this.journal.bounds().oldest - 1) {
      // The journal moved past it while it replayed slowly: resuming from here finds a reset.
      this.cutOff(watcher);
      return;
    }
    const page = this.journal.after(watcher.pos, WATCH_REPLAY_PAGE);
    for (const record of page) {
      // A replay waits for the reader (the next pull goes on); only a live watcher is cut off.
      if ((watcher.sink.desiredSize ?? 0) <= 0) return;
      this.give(watcher, record);
    }
    // Reading the journal and hearing commits happen on one thread: once a page comes back
    // short, every later change reaches this watcher through `committed`.
    if (page.length < WATCH_REPLAY_PAGE) watcher.live = true;
  }

  /** Hands committed changes to every live watcher (the storage's change listener). */
  committed(records: readonly ChangeRecord[]): void {
    for (const watcher of this.watchers) {
      if (!watcher.live) continue;
      for (const record of records) {
        if (!this.watchers.has(watcher)) break;
        this.give(watcher, record);
      }
    }
  }

  /** Ends every watch (the replica is going away or was taken out). */
  closeAll(): void {
    for (const watcher of this.watchers) watcher.sink.close();
    this.watchers.clear();
  }

  /** Closes a watcher that fell behind, saying where to resume from. */
  private cutOff(watcher: Watcher): void {
    watcher.sink.push({ cutoff: { pos: watcher.pos } });
    watcher.sink.close();
    this.watchers.delete(watcher);
  }

  private give(watcher: Watcher, record: ChangeRecord): void {
    if (record.pos <= watcher.pos) return;
    if (record.key.startsWith(watcher.prefix)) {
      if ((watcher.sink.desiredSize ?? 0) <= 0) {
        this.cutOff(watcher);
        return;
      }
      watcher.sink.push({ change: record });
    }
    watcher.pos = record.pos;
  }
}

/**
 * A change as the feed carries it between replica and router: `C<pos> <event data JSON>`, the
 * data already as the SSE event's (`{"key","type","version","origin","deleted"?}`), so the
 * router forwards it without parsing it. Other lines are JSON {@link WatchLine}s.
 */
export function changeLine(change: ChangeRecord): string {
  const data = {
    key: change.key,
    type: change.type,
    version: change.version,
    origin: change.origin,
    ...(change.deleted ? { deleted: true } : {}),
  };
  return `C${change.pos} ${JSON.stringify(data)}`;
}

/** A feed line: a change's position and event data, or another {@link WatchLine}. */
export function parseFeedLine(line: string): { readonly pos: number; readonly data: string } | WatchLine {
  if (line.startsWith("C")) {
    const space = line.indexOf(" ");
    return { pos: Number(line.slice(1, space)), data: line.slice(space + 1) };
  }
  return JSON.parse(line) as WatchLine;
}

/** The router's cursor over every shard's position: `w.<p0>.<p1>...`, the SSE event id. */
export function formatWatchCursor(positions: readonly number[]): string {
  return `w.${positions.join(".")}`;
}

/**
 * The positions a `Last-Event-ID` names, one per shard; null when absent; "other-layout" for a
 * cursor of another number of shards (the watcher starts over with a reset); "garbled" for
 * anything else.
 */
export function parseWatchCursor(
  raw: string | undefined,
  shards: number,
): number[] | null | "garbled" | "other-layout" {
  if (raw === undefined || raw.trim() === "") return null;
  const parts = raw.trim().split(".");
  const positions = parts.slice(1).map((p) => (/^\d{1,15}$/.test(p) ? Number(p) : Number.NaN));
  if (parts[0] !== "w" || positions.length === 0 || !positions.every((p) => Number.isSafeInteger(p))) return "garbled";
  return positions.length === shards ? positions : "other-layout";
}
