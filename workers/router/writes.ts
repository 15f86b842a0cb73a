/**
 * What every write answers besides its body: the version as ETag, the serving region, and a
 * session token that now includes this write.
 */
import { type Context } from "hono";
import { StoreError } from "../../shared/errors.ts";
import { vvFrom, vvMerge } from "../../shared/version-vector.ts";
import { type WriteOutcome } from "../replica/replica.ts";
import { type AppEnv } from "./app.ts";
import { signSession, verifySession } from "./session.ts";

/** How many regions must have applied a write before it is acknowledged. */
export type WriteAck = { readonly kind: "local" };

/** Parses `?ack=`; `invalid_ack` for anything unknown. */
export function parseWriteAck(raw: string | undefined): WriteAck {
  if (raw === undefined || raw === "" || raw === "local") return { kind: "local" };
  throw new StoreError("invalid_ack", `ack must be "local"; got "${raw}"`);
}

/** Sets ETag, X-Served-By and X-Session-Token for a committed write. */
export async function writeAnswerHeaders(c: Context<AppEnv>, outcome: WriteOutcome, _ack: WriteAck): Promise<void> {
  const seen = await verifySession(c.env.SESSION_SECRET, c.req.header("x-session-token"));
  const token = await signSession(c.env.SESSION_SECRET, vvMerge(seen, vvFrom([[outcome.region, outcome.seq]])));
  c.header("ETag", `"${outcome.view.version}"`);
  c.header("X-Served-By", outcome.region);
  c.header("X-Session-Token", token);
}
