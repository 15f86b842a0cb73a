/**
 * Wire schemas for what crosses a trust or process boundary: replication messages on the
 * Queue (bodies arrive untyped and possibly from an older or newer build) and the JSON bodies
 * of the REST API. One schema per shape, parsed once at the edge.
 */
import { z } from "zod";
import { fromBase64Url, toBase64Url, utf8 } from "../bytes.ts";
import { LOCATION_HINTS } from "../regions.ts";
import { SHARDS_MAX } from "../shards.ts";
import { KEY_BYTES_MAX, wellFormedKey } from "./keys.ts";

/** Version of the replication message format; a consumer refuses versions it does not know. */
export const WIRE_VERSION = 1;

const region = z.enum(LOCATION_HINTS);
const seq = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const ms = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** The shard of origin and target (`shared/shards.ts`); absent from builds before shards: 0. */
const shard = z
  .number()
  .int()
  .min(0)
  .max(SHARDS_MAX - 1)
  .default(0);

/** One replicated write: the key's state right after the write, or null to pull it (too large to inline). */
export const replicationEntrySchema = z.object({
  seq,
  key: z
    .string()
    .min(1)
    .refine(wellFormedKey, { message: "keys are well-formed text (no lone surrogates)" })
    .refine((k) => utf8(k).length <= KEY_BYTES_MAX, { message: `keys are at most ${KEY_BYTES_MAX} bytes of UTF-8` }),
  /** HLC stamp text of the write. */
  stamp: z.string(),
  /** Origin wall time of the write. */
  writtenMs: ms,
  state: z.custom<Uint8Array>((v) => v instanceof Uint8Array, "state must be bytes").nullable(),
  /** The fencing epoch a strong write was accepted under; absent outside strong prefixes. */
  epoch: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
});

/** A contiguous range `from..to` of one origin's writes, for one target region: exactly one entry per number, in order. */
export const entriesMessageSchema = z
  .object({
    v: z.literal(WIRE_VERSION),
    kind: z.literal("entries"),
    origin: region,
    target: region,
    shard,
    from: seq,
    to: seq,
    /** Origin wall time of its first write ever, so a target that has applied none of them knows how stale it is. */
    firstMs: ms,
    entries: z.array(replicationEntrySchema).min(1),
  })
  .refine((m) => m.to - m.from + 1 === m.entries.length && m.entries.every((e, i) => e.seq === m.from + i), {
    message: "entries must number from..to, one per sequence number, in order",
  });

/** "At `atMs` I had issued `seq` writes": lets an idle target measure lag and health. */
export const heartbeatMessageSchema = z.object({
  v: z.literal(WIRE_VERSION),
  kind: z.literal("heartbeat"),
  origin: region,
  target: region,
  shard,
  seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  atMs: ms,
  /** Origin wall time of its first write ever (0: none yet). */
  firstMs: ms,
  /** Where the origin's current incarnation starts numbering (0 for its first life). */
  baseSeq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
  /** The highest number of the origin's earlier life that any region knew when it was restored (0: none). */
  priorSeq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
  /**
   * How far the origin had applied every peer's stream when it sent this, in one snapshot with
   * `seq`: confirmations for the target's outbox, and stability for collection (`gc.ts`).
   * Absent from older builds.
   */
  applied: z.partialRecord(region, z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)).optional(),
  /** The origin's collection horizon (`gc.ts`). */
  horizon: z.partialRecord(region, seq).default({}),
});

/** Any message on the replication queue. */
export const replicationMessageSchema = z.union([entriesMessageSchema, heartbeatMessageSchema]);

export type ReplicationEntry = z.infer<typeof replicationEntrySchema>;
export type EntriesMessage = z.infer<typeof entriesMessageSchema>;
export type HeartbeatMessage = z.infer<typeof heartbeatMessageSchema>;
export type ReplicationMessage = z.infer<typeof replicationMessageSchema>;

/** Body of `POST /v1/counters/{key}`. */
export const counterBodySchema = z.strictObject({
  delta: z.number().int().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER),
});

/** Longest set element, in UTF-8 bytes (the same bound as keys). */
export const SET_ELEMENT_BYTES_MAX = 512;
/** Most elements one set request may add plus remove. */
export const SET_OP_ELEMENTS_MAX = 1000;

const element = z
  .string()
  .min(1)
  .refine((s) => new TextEncoder().encode(s).length <= SET_ELEMENT_BYTES_MAX, {
    message: `set elements are at most ${SET_ELEMENT_BYTES_MAX} bytes of UTF-8`,
  });

/** Body of `POST /v1/sets/{key}`. */
export const setBodySchema = z
  .strictObject({
    add: z.array(element).default([]),
    remove: z.array(element).default([]),
  })
  .refine((b) => b.add.length + b.remove.length <= SET_OP_ELEMENTS_MAX, {
    message: `at most ${SET_OP_ELEMENTS_MAX} elements per request`,
  });

/**
 * JSON text of a message with byte arrays as `{"$bytes": base64url}`: the form dead letters
 * are kept in, so a recorded message can be read by people and replayed byte for byte.
 */
export function toJsonText(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (v instanceof Uint8Array ? { $bytes: toBase64Url(v) } : v));
}

/** Parses {@link toJsonText} output back into the original value. */
export function fromJsonText(text: string): unknown {
  return JSON.parse(text, (_key, v: unknown) =>
    typeof v === "object" && v !== null && "$bytes" in v && typeof v.$bytes === "string" && Object.keys(v).length === 1
      ? fromBase64Url(v.$bytes)
      : v,
  );
}
