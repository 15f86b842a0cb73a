/**
 * Turns outbox rows into replication messages: one message per target region covering a
 * contiguous range of sequence numbers, split so each stays under the Queue's per-message
 * limit, and grouped into `sendBatch` calls under its per-call limits. Also the bounds on how
 * much of the outbox one drain round holds in memory and how much it keeps for peers that are
 * out of service.
 */
import { assert } from "../assert.ts";
import { type RegionId } from "../regions.ts";
import { type LogRow } from "./storage.ts";
import { type EntriesMessage, WIRE_VERSION } from "./wire.ts";

/** Outbox rows one drain round reads at most. */
export const DRAIN_ROWS_MAX = 1000;
/**
 * State bytes one drain round reads at most: a round holds its rows and their messages in
 * memory at once, and an isolate has 128 MB for everything.
 */
export const DRAIN_BYTES_MAX = 4 * 1024 * 1024;
/**
 * Rows the outbox keeps for peers taken out of service before it hands them to the queue
 * anyway (the consumer then parks them until the peer is back): the outbox stays bounded
 * however long a region is out, and nothing is dropped.
 */
export const HELD_ROWS_MAX = 10_000;

/** Queue messages are limited to 128 KB; keep a margin for the envelope and serialisation. */
export const MESSAGE_BYTES_MAX = 110 * 1024;
/** `sendBatch` takes at most 100 messages and 256 KB in all. */
export const SEND_BATCH_MESSAGES_MAX = 100;
export const SEND_BATCH_BYTES_MAX = 240 * 1024;
/** Per-entry envelope estimate (field names, numbers, stamp) on top of key and state bytes. */
const ENTRY_OVERHEAD_BYTES = 96;

/** A message with its estimated size. */
export interface SizedMessage {
  readonly message: EntriesMessage;
  readonly bytes: number;
}

function entryBytes(row: LogRow): number {
  return ENTRY_OVERHEAD_BYTES + row.key.length * 3 + (row.state?.length ?? 0);
}

/** Splits the rows after `sentSeq` into messages for `target`, each a contiguous range. */
export function messagesFor(
  origin: RegionId,
  target: RegionId,
  shard: number,
  rows: readonly LogRow[],
  sentSeq: number,
  firstMs: number,
): SizedMessage[] {
  const out: SizedMessage[] = [];
  let current: LogRow[] = [];
  let size = 0;
  const close = (): void => {
    const first = current[0];
    const last = current.at(-1);
    if (first === undefined || last === undefined) return;
    out.push({
      message: {
        v: WIRE_VERSION,
        kind: "entries",
        origin,
        target,
        shard,
        from: first.seq,
        to: last.seq,
        firstMs,
        entries: current.map((r) => ({
          seq: r.seq,
          key: r.key,
          stamp: r.stamp,
          writtenMs: r.writtenMs,
          state: r.state,
          ...(r.epoch === null ? {} : { epoch: r.epoch }),
        })),
      },
      bytes: size,
    });
    current = [];
    size = 0;
  };
  for (const row of rows) {
    if (row.seq <= sentSeq) continue;
    const bytes = entryBytes(row);
    assert(bytes <= MESSAGE_BYTES_MAX, "an inlined state must fit one message");
    if (size + bytes > MESSAGE_BYTES_MAX) close();
    current.push(row);
    size += bytes;
  }
  close();
  return out;
}

/** Groups messages into `sendBatch` calls within the Queue's count and byte limits. */
export function sendBatches<T extends { readonly bytes: number }>(messages: readonly T[]): T[][] {
  const batches: T[][] = [];
  let batch: T[] = [];
  let bytes = 0;
  for (const m of messages) {
    if (batch.length === SEND_BATCH_MESSAGES_MAX || (batch.length > 0 && bytes + m.bytes > SEND_BATCH_BYTES_MAX)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(m);
    bytes += m.bytes;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}
