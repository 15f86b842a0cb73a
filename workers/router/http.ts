/**
 * Request parsing shared by the routes: keys from the path, capped bodies, JSON bodies checked
 * by a schema, paging parameters, and replica calls whose failures become operating errors.
 * Every problem is thrown as a `StoreError` and answered by the one error handler.
 */
import { type z } from "zod";
import { JSON_BODY_BYTES_MAX } from "../../shared/api.ts";
import { DecodeError, fromBase64Url, toBase64Url, utf8 } from "../../shared/bytes.ts";
import { type Result, StoreError, unwrap } from "../../shared/errors.ts";
import { type RegionId } from "../../shared/regions.ts";
import { checkKey } from "../../shared/store/keys.ts";
import { isAssertion } from "../../shared/store/ports.ts";

/** The key after `prefix` in the request path, percent-decoded and checked (1..512 bytes of UTF-8). */
export function keyFromPath(request: Request, prefix: string): string {
  const path = new URL(request.url).pathname;
  const raw = path.startsWith(prefix) ? path.slice(prefix.length) : "";
  let key: string;
  try {
    key = decodeURIComponent(raw);
  } catch {
    throw new StoreError("invalid_key", "the key is not valid percent-encoded UTF-8");
  }
  return unwrap(checkKey(key));
}

/** The request body, refusing more than `max` bytes without reading them all. */
export async function readBodyCapped(request: Request, max: number): Promise<Uint8Array> {
  const tooLarge = (): StoreError =>
    new StoreError("value_too_large", `the body is larger than ${max} bytes`, { limitBytes: max });
  const declared = Number(request.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > max) throw tooLarge();
  if (request.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel();
      throw tooLarge();
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/** A JSON body checked against `schema`; `invalid_body` for anything else. */
export async function readJson<S extends z.ZodType>(request: Request, schema: S): Promise<z.infer<S>> {
  const bytes = await readBodyCapped(request, JSON_BODY_BYTES_MAX);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes));
  } catch {
    throw new StoreError("invalid_body", "the body is not valid JSON");
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join(".")}` : "";
    throw new StoreError(
      "invalid_body",
      `the body does not match the expected shape${where}: ${issue?.message ?? "invalid"}`,
    );
  }
  return parsed.data;
}

/** An integer query parameter within `[min, max]`, or `fallback` when absent. */
export function intParam(name: string, raw: string | undefined, min: number, max: number, fallback: number): number {
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new StoreError("invalid_query", `${name} must be an integer from ${min} to ${max}`);
  }
  return value;
}

/** An opaque paging cursor for a string position. */
export function encodeCursor(position: string): string {
  return toBase64Url(utf8(position));
}

/** Decodes {@link encodeCursor} output; `invalid_cursor` when it is not one. */
export function decodeCursor(cursor: string | undefined): string | null {
  if (cursor === undefined || cursor === "") return null;
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(fromBase64Url(cursor));
  } catch (error) {
    if (error instanceof DecodeError || error instanceof TypeError) {
      throw new StoreError(
        "invalid_cursor",
        "the cursor is not one this store issued; pass the cursor from the previous page unchanged",
      );
    }
    throw error;
  }
}

/**
 * Calls a replica. A replica's own operating errors come back as results and are thrown as
 * such; a call that fails outright (the object is overloaded, unreachable, or reset) answers
 * `region_unavailable`, so the client can retry or pick another region.
 */
export async function callReplica<T>(region: RegionId, call: () => Promise<Result<T>>): Promise<T> {
  let result: Result<T>;
  try {
    result = await call();
  } catch (error) {
    // A broken invariant is a bug to surface, not an outage to route around.
    if (isAssertion(error)) throw error;
    console.error(`replica ${region} call failed:`, error);
    throw new StoreError(
      "region_unavailable",
      `region ${region} did not answer; retry, or pin another region with ?region=`,
      { region },
    );
  }
  return unwrap(result);
}

/** Like {@link callReplica} for calls that cannot fail with an operating error. */
export async function callReplicaPlain<T>(region: RegionId, call: () => Promise<T>): Promise<T> {
  return callReplica(region, async () => ({ ok: true, value: await call() }));
}
