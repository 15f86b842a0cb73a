/**
 * The change journal: one record per write a replica applies (its own, or one replicated,
 * pulled or repaired in), at a position that only grows, kept for the last
 * {@link CHANGES_RETAINED} changes. It feeds the change feed (`GET /v1/watch`): a watcher
 * replays the journal after its last position, then hears each committed change as it lands.
 * Listeners hear only what committed, after the outermost transaction.
 */
import { type RegionId } from "../regions.ts";
import { type VersionVector, vvEntries, vvGet } from "../version-vector.ts";
import { type KeyState, keyVersion } from "./key-state.ts";

/** Changes a replica keeps for watchers to resume from. */
export const CHANGES_RETAINED = 10_000;
/** The journal is trimmed once per this many appends. */
const TRIM_EVERY = 256;

/** A change as a watcher sees it: no value, only what changed and where it came from. */
export interface ChangeRecord {
  /** The replica's journal position. */
  readonly pos: number;
  readonly key: string;
  readonly type: KeyState["type"];
  /** The key's version after the change. */
  readonly version: string;
  /** The region whose write this is (for a merge of several regions' writes, the first). */
  readonly origin: RegionId;
  /** A register's delete. */
  readonly deleted: boolean;
}

/** A change before it has a position. */
export type ChangeInput = Omit<ChangeRecord, "pos">;

/**
 * The change storing `state` over `before` makes, or null when it brings no write the key did
 * not hold (an unchanged state, or a change of epoch or form only).
 */
export function changeOf(
  key: string,
  before: { readonly encoded: Uint8Array; readonly seqs: VersionVector } | null,
  state: KeyState,
  encoded: Uint8Array,
  seqs: VersionVector,
): ChangeInput | null {
  if (before !== null && sameBytes(before.encoded, encoded)) return null;
  const advanced = vvEntries(seqs).find(([region, seq]) => seq > vvGet(before?.seqs ?? {}, region));
  if (advanced === undefined) return null;
  return {
    key,
    type: state.type,
    version: keyVersion(state),
    origin: advanced[0],
    deleted: state.type === "register" && state.register.value === null,
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return false;
  return true;
}

/** What a journal needs from its storage: rows in, rows out, the newest position. */
export interface JournalRows {
  insert(record: ChangeRecord): void;
  /** Deletes every record at or below `pos`. */
  trimThrough(pos: number): void;
  /** The newest stored position, 0 when none. */
  head(): number;
}

/** A listener of committed changes. */
export type ChangeListener = (records: readonly ChangeRecord[]) => void;

/**
 * Positions and commit notification for a storage adapter's change records: the adapter calls
 * `begin`, `commit` and `rollback` from its outermost transaction, as for `MetricBuffer`.
 */
export class ChangeJournal {
  private readonly rows: JournalRows;
  private readonly listeners = new Set<ChangeListener>();
  /** The next position, read from storage when first needed and after a rollback. */
  private next: number | undefined;
  private staged: ChangeRecord[] | undefined;

  constructor(rows: JournalRows) {
    this.rows = rows;
  }

  begin(): void {
    this.staged = [];
  }

  commit(): void {
    const committed = this.staged ?? [];
    this.staged = undefined;
    if (committed.length > 0) this.tell(committed);
  }

  rollback(): void {
    this.staged = undefined;
    this.next = undefined;
  }

  append(change: ChangeInput): void {
    this.next ??= this.rows.head() + 1;
    const record: ChangeRecord = { pos: this.next, ...change };
    this.next += 1;
    this.rows.insert(record);
    if (record.pos % TRIM_EVERY === 0) this.rows.trimThrough(record.pos - CHANGES_RETAINED);
    if (this.staged === undefined) this.tell([record]);
    else this.staged.push(record);
  }

  /** The newest position recorded (committed or staged), 0 when none. */
  head(): number {
    return (this.next ??= this.rows.head() + 1) - 1;
  }

  listen(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private tell(records: readonly ChangeRecord[]): void {
    for (const listener of this.listeners) listener(records);
  }
}
