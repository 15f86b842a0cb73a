/**
 * How a request's consistency choice becomes replica calls. Writes: `ack=local|quorum|all|k`
 * and `timeout_ms`, compare-and-set headers, and forwarding to the primary on strong prefixes.
 * Reads: `consistency=eventual|session|quorum|bounded|strong`. Every answer carries a session
 * token with the causal context the client has now seen.
 */
import { type Context } from "hono";
import { equalBytes } from "../../shared/bytes.ts";
import { StoreError } from "../../shared/errors.ts";
import { type RegionId } from "../../shared/regions.ts";
import { type ClusterView, type PrimaryState, isHealthy, majority } from "../../shared/store/cluster.ts";
import {
  type KeyOp,
  decodeKeyState,
  encodeKeyState,
  mergeKeyState,
  type KeyState,
} from "../../shared/store/key-state.ts";
import { type PrimaryPrefix, prefixOf } from "../../shared/store/primaries.ts";
import { type KeyView, keyView } from "../../shared/store/replica-core.ts";
import { type VersionVector, vvFrom, vvMerge } from "../../shared/version-vector.ts";
import { type Config, loadConfig } from "../config.ts";
import { type ReadOptions, type WriteOptions } from "../replica/replica.ts";
import { type AppEnv } from "./app.ts";
import { callReplica, callReplicaPlain, intParam } from "./http.ts";
import { parsePinnedRegion, regionPreference, replicaOf } from "./routing.ts";
import { signSession, verifySession } from "./session.ts";
import { clusterView } from "./view.ts";

/** Longest `timeout_ms` a client may ask for. */
export const ACK_TIMEOUT_MS_MAX = 60_000;

/** Parses `?ack=` into the number of regions that must apply a write. */
export function parseAcks(raw: string | undefined, regionCount: number): number {
  if (raw === undefined || raw === "" || raw === "local") return 1;
  if (raw === "quorum") return majority(regionCount);
  if (raw === "all") return regionCount;
  if (/^\d+$/.test(raw)) {
    const k = Number(raw);
    if (k >= 1 && k <= regionCount) return k;
  }
  throw new StoreError(
    "invalid_ack",
    `ack must be local, quorum, all, or an integer from 1 to ${regionCount}; got "${raw}"`,
  );
}

/** The version an `If-Match` header names (quotes and a weak prefix removed). */
function etagValue(raw: string): string {
  return raw
    .trim()
    .replace(/^W\//, "")
    .replace(/^"(.*)"$/, "$1");
}

/** The serving region: pinned (and healthy), else the nearest healthy one. */
export function chooseRegion(
  config: Config,
  view: ClusterView,
  request: Request,
  pinned: string | undefined,
): RegionId {
  if (pinned !== undefined && pinned !== "") {
    const region = parsePinnedRegion(config, pinned);
    if (!isHealthy(view, region)) {
      throw new StoreError(
        "region_unavailable",
        `region ${region} is unhealthy or taken out; omit ?region= to be routed to a healthy one`,
        { region },
      );
    }
    return region;
  }
  const region = regionPreference(config, request).find((r) => isHealthy(view, r));
  if (region === undefined) throw new StoreError("region_unavailable", "no region is healthy");
  return region;
}

/** The primary of a strong prefix, or `primary_unavailable` when it cannot serve now. */
function primaryOf(view: ClusterView, strong: PrimaryPrefix): PrimaryState {
  const primary = view.primaries[strong.prefix] ?? {
    region: strong.region,
    epoch: 1,
    ready: true,
    failover: strong.failover,
  };
  if (!isHealthy(view, primary.region)) {
    const why = primary.failover
      ? "a failover is under way; retry in a few seconds"
      : "automatic failover is off for this prefix";
    throw new StoreError(
      "primary_unavailable",
      `the primary of "${strong.prefix}" (${primary.region}) is unavailable: ${why}`,
      {
        prefix: strong.prefix,
        region: primary.region,
      },
    );
  }
  if (!primary.ready) {
    throw new StoreError(
      "primary_unavailable",
      `"${strong.prefix}" has a new primary (${primary.region}) still recovering; retry shortly`,
      {
        prefix: strong.prefix,
        region: primary.region,
      },
    );
  }
  return primary;
}

/** Signs the session token for what the client has now seen and sets it on the answer. */
async function answerToken(c: Context<AppEnv>, seen: VersionVector): Promise<void> {
  c.header("X-Session-Token", await signSession(c.env.SESSION_SECRET, seen));
}

/** A committed write, as the routes answer it. */
export interface WriteAnswer {
  readonly region: RegionId;
  readonly view: KeyView;
  readonly acked: RegionId[];
}

/** Performs a write under the request's ack, CAS and strong-prefix rules, and sets its headers. */
export async function performWrite(c: Context<AppEnv>, key: string, op: KeyOp): Promise<WriteAnswer> {
  const config = loadConfig(c.env);
  const seen = await verifySession(c.env.SESSION_SECRET, c.req.header("x-session-token"));
  const acks = parseAcks(c.req.query("ack"), config.regions.length);
  const timeoutMs = intParam("timeout_ms", c.req.query("timeout_ms"), 1, ACK_TIMEOUT_MS_MAX, config.ackTimeoutMs);
  const ifMatch = c.req.header("if-match");
  const ifNoneMatch = c.req.header("if-none-match");
  if (ifNoneMatch !== undefined && ifNoneMatch.trim() !== "*") {
    throw new StoreError("invalid_body", 'If-None-Match supports only "*" (create only)');
  }
  const view = await clusterView(c.env);
  const strong = prefixOf(key, config.primaryPrefixes);
  let region: RegionId;
  const options: { -readonly [K in keyof WriteOptions]: WriteOptions[K] } = { acks, timeoutMs };
  if (ifMatch !== undefined) options.ifMatch = etagValue(ifMatch);
  if (ifNoneMatch !== undefined) options.ifNoneMatch = true;
  if (strong !== undefined) {
    // Strong prefixes have one leader: every write goes to it (a pin is checked, then
    // overridden) and waits for a quorum.
    const pinned = c.req.query("region");
    if (pinned !== undefined && pinned !== "") parsePinnedRegion(config, pinned);
    const primary = primaryOf(view, strong);
    region = primary.region;
    options.strong = { prefix: strong.prefix, epoch: primary.epoch };
    options.acks = Math.max(acks, majority(config.regions.length));
  } else {
    region = chooseRegion(config, view, c.req.raw, c.req.query("region"));
  }
  const outcome = await callReplica(region, () => replicaOf(c.env, region).write(key, op, options));
  const token = await signSession(c.env.SESSION_SECRET, vvMerge(seen, vvFrom([[outcome.region, outcome.seq]])));
  if (!outcome.complete) {
    throw new StoreError(
      "ack_timeout",
      `the write is committed in ${outcome.acked.join(", ")} but ${options.acks} regions did not apply it within ${timeoutMs} ms; it is not rolled back and keeps replicating`,
      { acked: outcome.acked, version: outcome.view.version, sessionToken: token },
    );
  }
  c.header("ETag", `"${outcome.view.version}"`);
  c.header("X-Served-By", outcome.region);
  c.header("X-Session-Token", token);
  return { region: outcome.region, view: outcome.view, acked: outcome.acked };
}

/** Read consistency levels. */
export type Consistency = "eventual" | "session" | "quorum" | "bounded" | "strong";

const CONSISTENCIES: readonly Consistency[] = ["eventual", "session", "quorum", "bounded", "strong"];

/** A read's result as the routes answer it. */
export interface ReadAnswer {
  readonly region: RegionId;
  readonly view: KeyView | null;
}

/** Performs a read under the request's consistency and sets X-Served-By, lag and session headers. */
export async function performRead(c: Context<AppEnv>, key: string): Promise<ReadAnswer> {
  const config = loadConfig(c.env);
  const raw = c.req.query("consistency") ?? "eventual";
  const consistency = CONSISTENCIES.find((level) => level === raw);
  if (consistency === undefined) {
    throw new StoreError("invalid_consistency", `consistency must be one of ${CONSISTENCIES.join(", ")}; got "${raw}"`);
  }
  const seen = await verifySession(c.env.SESSION_SECRET, c.req.header("x-session-token"));
  const view = await clusterView(c.env);
  const pinned = c.req.query("region");
  let answer: { region: RegionId; view: KeyView | null; lagMs: number; seqs: VersionVector };
  switch (consistency) {
    case "eventual":
    case "session": {
      const region = chooseRegion(config, view, c.req.raw, pinned);
      const options: ReadOptions = consistency === "session" ? { session: seen } : {};
      answer = await callReplica(region, () => replicaOf(c.env, region).read(key, options));
      break;
    }
    case "bounded":
      answer = await boundedRead(c, config, view, key, pinned);
      break;
    case "strong": {
      const strong = prefixOf(key, config.primaryPrefixes);
      if (strong === undefined) {
        const prefixes = config.primaryPrefixes.map((p) => `"${p.prefix}"`).join(", ") || "none are configured";
        throw new StoreError("invalid_consistency", `strong reads need a key under a strong prefix (${prefixes})`);
      }
      const primary = primaryOf(view, strong);
      answer = await callReplica(primary.region, () =>
        replicaOf(c.env, primary.region).read(key, { strong: { prefix: strong.prefix, epoch: primary.epoch } }),
      );
      break;
    }
    case "quorum":
      answer = await quorumRead(c, config, view, key, pinned);
      break;
  }
  c.header("X-Served-By", answer.region);
  c.header("X-Replication-Lag-Ms", String(Math.round(answer.lagMs)));
  // The client has now seen the answered state: future session reads must not go below it.
  await answerToken(c, vvMerge(seen, answer.seqs));
  return { region: answer.region, view: answer.view };
}

/** Serves from the nearest healthy region whose staleness is within `max_staleness_ms`. */
async function boundedRead(
  c: Context<AppEnv>,
  config: Config,
  view: ClusterView,
  key: string,
  pinned: string | undefined,
) {
  const raw = c.req.query("max_staleness_ms");
  if (raw === undefined)
    throw new StoreError("invalid_consistency", "consistency=bounded needs max_staleness_ms=<milliseconds>");
  const maxStalenessMs = intParam("max_staleness_ms", raw, 0, 86_400_000, 0);
  const first = pinned !== undefined && pinned !== "" ? [parsePinnedRegion(config, pinned)] : [];
  const order = [...first, ...regionPreference(config, c.req.raw).filter((r) => !first.includes(r))].filter((r) =>
    isHealthy(view, r),
  );
  for (const region of order) {
    try {
      return await callReplica(region, () => replicaOf(c.env, region).read(key, { maxStalenessMs }));
    } catch (error) {
      if (
        !(error instanceof StoreError) ||
        (error.code !== "staleness_exceeded" && error.code !== "region_unavailable")
      )
        throw error;
    }
  }
  throw new StoreError(
    "staleness_exceeded",
    `no healthy region is within ${maxStalenessMs} ms of its peers; retry, or allow more staleness`,
    {
      maxStalenessMs,
    },
  );
}

/**
 * Reads the key from every healthy region (at least a majority must answer), merges the
 * states, answers the merge, and repairs in the background each region that was behind.
 */
async function quorumRead(
  c: Context<AppEnv>,
  config: Config,
  view: ClusterView,
  key: string,
  pinned: string | undefined,
) {
  const need = majority(config.regions.length);
  const first = pinned !== undefined && pinned !== "" ? [chooseRegion(config, view, c.req.raw, pinned)] : [];
  const order = [...first, ...regionPreference(config, c.req.raw).filter((r) => !first.includes(r))].filter((r) =>
    isHealthy(view, r),
  );
  const replies = await Promise.all(
    order.map(async (region) => {
      try {
        return { region, reply: await callReplicaPlain(region, () => replicaOf(c.env, region).snapshot(key)) };
      } catch {
        return { region, reply: null };
      }
    }),
  );
  const answered = replies.filter((r) => r.reply !== null);
  if (answered.length < need) {
    throw new StoreError(
      "region_unavailable",
      `a quorum read needs ${need} regions; only ${answered.length} answered`,
      {
        acked: answered.map((r) => r.region),
      },
    );
  }
  let merged: KeyState | undefined;
  let seqs: VersionVector = {};
  for (const { reply } of answered) {
    if (reply === null) continue;
    seqs = vvMerge(seqs, reply.seqs);
    if (reply.state !== null) merged = mergeKeyState(merged, decodeKeyState(reply.state)).state;
  }
  const closest = answered[0] as (typeof answered)[number];
  if (merged === undefined) return { region: closest.region, view: null, lagMs: 0, seqs };
  const encoded = encodeKeyState(merged);
  for (const { region, reply } of answered) {
    if (reply !== null && (reply.state === null || !equalBytes(reply.state, encoded))) {
      c.executionCtx.waitUntil(
        replicaOf(c.env, region)
          .repair(key, encoded, seqs)
          .catch((error: unknown) => console.warn(`read repair of ${region} failed:`, error)),
      );
    }
  }
  const result = keyView(merged);
  if (!result.ok) throw new StoreError(result.error.code, result.error.message);
  // Lag does not apply: the answer includes every write any answering region had.
  return { region: closest.region, view: result.value, lagMs: 0, seqs };
}
