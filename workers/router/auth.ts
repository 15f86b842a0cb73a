/**
 * Bearer-token authorization. Tokens come from the `AUTH_TOKENS` secret as comma-separated
 * `token:scope` pairs; scopes are ordered read < write < admin (a write token can read). Tokens
 * are looked up by their SHA-256, so the lookup's timing does not depend on how much of a
 * guessed token matches.
 */
import { toBase64Url, utf8 } from "../../shared/bytes.ts";
import { StoreError } from "../../shared/errors.ts";

/** What a token may do. */
export type Scope = "read" | "write" | "admin";

const RANK: Readonly<Record<Scope, number>> = { read: 0, write: 1, admin: 2 };

async function digest(token: string): Promise<string> {
  return toBase64Url(new Uint8Array(await crypto.subtle.digest("SHA-256", utf8(token))));
}

/**
 * The parsed table, once built. The table itself is kept, not the promise that builds it:
 * Workers settle a promise only in the request that created it, so a promise shared with later
 * requests would never settle if its request ended first.
 */
let cached: { source: string; table: Map<string, Scope> } | undefined;

/** Tokens already looked up, so a client's every request does not hash its token again. */
const seen = new Map<string, Scope>();
/** Bound on remembered tokens; unknown tokens (guesses) are not remembered at all. */
const SEEN_TOKENS_MAX = 1024;

/** Parses `AUTH_TOKENS` once per distinct value into digest -> scope. */
async function tokenTable(source: string): Promise<Map<string, Scope>> {
  if (cached?.source === source) return cached.table;
  const table = new Map<string, Scope>();
  for (const pair of source.split(",")) {
    const trimmed = pair.trim();
    if (trimmed === "") continue;
    const at = trimmed.lastIndexOf(":");
    const token = trimmed.slice(0, at);
    const scope = trimmed.slice(at + 1);
    if (at <= 0 || !(scope === "read" || scope === "write" || scope === "admin")) {
      console.error(`AUTH_TOKENS: ignoring an entry that is not token:read|write|admin`);
      continue;
    }
    table.set(await digest(token), scope);
  }
  cached = { source, table };
  return table;
}

/**
 * The scope of the request's bearer token, or `unauthorized` when it carries none or an
 * unknown one; `forbidden` when the token's scope is below `needed`.
 */
export async function authorize(header: string | undefined, tokens: string | undefined, needed: Scope): Promise<Scope> {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  if (match === null) throw new StoreError("unauthorized", "send Authorization: Bearer <token>");
  const token = match[1] as string;
  const source = tokens ?? "";
  if (cached?.source !== source) seen.clear();
  let scope = seen.get(token);
  if (scope === undefined) {
    scope = (await tokenTable(source)).get(await digest(token));
    if (scope !== undefined && seen.size < SEEN_TOKENS_MAX) seen.set(token, scope);
  }
  if (scope === undefined) throw new StoreError("unauthorized", "the bearer token is not known to this store");
  if (RANK[scope] < RANK[needed])
    throw new StoreError("forbidden", `this operation needs a ${needed} token; yours has ${scope} scope`);
  return scope;
}
