/**
 * How a request's consistency choice becomes replica calls. Writes: `ack=local|quorum|all|k`
 * and `timeout_ms`, compare-and-set headers, and forwarding to the primary on strong prefixes.
 * Reads: `consistency=eventual|session|quorum|bounded|strong`. Every answer carries a session
 * token with the causal context the client has now seen. The decisions are the shared router
 * core's (`shared/store/router-core.ts`); this module parses and answers.
 */
import { type Context } from "hono";
import { ACK_TIMEOUT_MS_MAX, CONSISTENCIES } from "../../shared/api.ts";
import { ifMatchVersions, parseValidators } from "../../shared/preconditions.ts";
import { StoreError, unwrap } from "../../shared/errors.ts";
import { type RegionId } from "../../shared/regions.ts";
import { type ClusterView, majority } from "../../shared/store/cluster.ts";
import { type ReadOutcome, type WriteOptions } from "../../shared/store/contract.ts";
import { keyView, type KeyView } from "../../shared/store/replica-core.ts";
import { decodeKeyState } from "../../shared/store/key-state.ts";
import { type KeyOp } from "../../shared/store/key-state.ts";
import { prefixOf } from "../../shared/store/primaries.ts";
import { type Staleness } from "../../shared/store/replica-machine.ts";
import { chooseRegion, primaryFor, quorumRead, readOrder } from "../../shared/store/router-core.ts";
import { type ShardIndex, shardOf } from "../../shared/shards.ts";
import { layoutOf, routedShard } from "../../shared/store/layout.ts";
import { forgetView } from "./view.ts";
import { seeAlso, seenIn } from "../../shared/store/session.ts";
import { type VersionVector, vvFrom } from "../../shared/version-vector.ts";
import { platformClock } from "../clock.ts";
import { type Config, loadConfig } from "../config.ts";
import { replicaOf } from "../stubs.ts";
import { type AppEnv } from "./env.ts";
import { callReplica, intParam } from "./http.ts";
import { edgeOf, parsePinnedRegion, regionPreference, viewAtEdge } from "./routing.ts";
import { sessionSecrets, signSession, verifySession } from "./session.ts";

/** How long a quorum read waits for each region. */
const QUORUM_READ_TIMEOUT_MS = 2000;

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

/** The `?region=` pin, parsed (an unknown region is `unknown_region`), or undefined. */
function pinOf(config: Config, c: Context<AppEnv>): RegionId | undefined {
  const pinned = c.req.query("region");
  return pinned === undefined || pinned === "" ? undefined : parsePinnedRegion(config, pinned);
}

/** The serving region for a request: pinned (and healthy), else the nearest healthy one. */
export function servingRegionOf(c: Context<AppEnv>, view: ClusterView): RegionId {
  const config = loadConfig(c.env);
  return unwrap(chooseRegion(regionPreference(config, c.req.raw), view, pinOf(config, c)));
}

/** A committed write, as the routes answer it. */
export interface WriteAnswer {
  readonly region: RegionId;
  readonly view: KeyView;
  readonly acked: RegionId[];
  /** False when nothing was written (a delete of a key the region did not hold): no version to name. */
  readonly written: boolean;
}

/**
 * Runs `work` once more when a replica says the key lives in another shard (`wrong_shard`):
 * this router's view predates a move of keys between shards. The retry goes to the shard the
 * replica named (an old shard that refuses a key never takes another write of it, and the new
 * one pulls it from there first), and the next request fetches a fresh view. Nothing was done
 * by the refused call, so the retry is safe for writes too.
 */
async function withCurrentLayout<T>(work: (shard?: ShardIndex) => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (!(error instanceof StoreError) || error.code !== "wrong_shard") throw error;
    forgetView();
    const named = error.details.shard;
    return work(typeof named === "number" && Number.isSafeInteger(named) && named >= 0 ? named : undefined);
  }
}

/** Performs a write under the request's ack, CAS and strong-prefix rules, and sets its headers. */
export function performWrite(c: Context<AppEnv>, key: string, op: KeyOp): Promise<WriteAnswer> {
  return withCurrentLayout((shard) => writeOnce(c, key, op, shard));
}

async function writeOnce(c: Context<AppEnv>, key: string, op: KeyOp, named?: ShardIndex): Promise<WriteAnswer> {
  const config = loadConfig(c.env);
  const secrets = sessionSecrets(c.env);
  const seen = await verifySession(secrets, c.req.header("x-session-token"));
  const acks = parseAcks(c.req.query("ack"), config.regions.length);
  const timeoutMs = intParam("timeout_ms", c.req.query("timeout_ms"), 1, ACK_TIMEOUT_MS_MAX, config.ackTimeoutMs);
  const ifMatch = c.req.header("if-match");
  const ifNoneMatch = c.req.header("if-none-match");
  if (ifNoneMatch !== undefined && unwrap(parseValidators("If-None-Match", ifNoneMatch)) !== "*") {
    throw new StoreError("invalid_precondition", "a write takes If-None-Match: * only (create only)");
  }
  const view = await viewAtEdge(c);
  const strong = prefixOf(key, config.primaryPrefixes);
  const pinned = pinOf(config, c);
  const options: { -readonly [K in keyof WriteOptions]: WriteOptions[K] } = { acks, timeoutMs };
  if (ifMatch !== undefined) options.ifMatch = ifMatchVersions(unwrap(parseValidators("If-Match", ifMatch)));
  if (ifNoneMatch !== undefined) options.ifNoneMatch = true;
  let region: RegionId;
  if (strong !== undefined) {
    // Strong prefixes have one leader: every write goes to it (a pin is checked, then overridden).
    const primary = unwrap(primaryFor(view, strong));
    region = primary.region;
    options.strong = { prefix: strong.prefix, epoch: primary.epoch };
  } else {
    region = unwrap(chooseRegion(regionPreference(config, c.req.raw), view, pinned));
  }
  const shard = named ?? routedShard(key, layoutOf(view, config.shards));
  if (seen.has(shard)) options.session = seenIn(seen, shard);
  const outcome = await callReplica(region, () => replicaOf(c.env, region, shard, edgeOf(c)).write(key, op, options));
  const token = await signSession(secrets, seeAlso(seen, shard, vvFrom([[outcome.region, outcome.seq]])));
  if (!outcome.complete) {
    // On a strong prefix a write no quorum holds is not yet safe: a failover before it
    // replicates discards it (the new primary never had it), and the answer must say so.
    const committed =
      strong === undefined
        ? `the write is committed in ${outcome.acked.join(", ")}, is not rolled back, and keeps replicating`
        : `the write is committed in ${outcome.acked.join(", ")} and keeps replicating, but until a quorum holds it a failover of "${strong.prefix}" discards it; read it back with consistency=strong to know`;
    // This region and its peers not known to be out: all a write can reach now.
    const reachable = config.regions.length - outcome.unavailable.length;
    const message =
      reachable < outcome.needed
        ? `${outcome.needed} regions must apply this write but ${outcome.unavailable.join(", ")} ${outcome.unavailable.length === 1 ? "is" : "are"} out of service, so the count cannot be reached now; ${committed}`
        : `${outcome.needed} regions must apply this write but only ${outcome.acked.length} did within ${timeoutMs} ms; ${committed}`;
    throw new StoreError("ack_timeout", message, {
      acked: outcome.acked,
      unavailable: outcome.unavailable,
      version: outcome.view.version,
      sessionToken: token,
    });
  }
  if (outcome.written) c.header("ETag", `"${outcome.view.version}"`);
  c.header("X-Served-By", outcome.region);
  c.header("X-Session-Token", token);
  return { region: outcome.region, view: outcome.view, acked: outcome.acked, written: outcome.written };
}

/** A read's result as the routes answer it. */
export interface ReadAnswer {
  readonly region: RegionId;
  readonly view: KeyView | null;
}

/** Reports how stale an answer may be: a figure only when there is an honest one; otherwise why there is none. */
export function lagHeaders(c: Context<AppEnv>, staleness: Staleness): void {
  if (staleness.ms === null) c.header("X-Replication-Lag-Unknown", staleness.unknown);
  else c.header("X-Replication-Lag-Ms", String(Math.round(staleness.ms)));
}

/**
 * Refuses a `consistency=` other than eventual on a route that answers one region's state as it
 * stands (a listing, the conflict log): it is never ignored silently.
 */
export function eventualOnly(c: Context<AppEnv>, what: string): void {
  const asked = c.req.query("consistency");
  if (asked === undefined || asked === "eventual") return;
  throw new StoreError(
    "invalid_consistency",
    `${what} is served by one region as it stands: only consistency=eventual is supported here; got "${asked}". ` +
      "Read single keys for session, quorum, bounded or strong reads",
  );
}

/** Performs a read under the request's consistency and sets X-Served-By, lag and session headers. */
export function performRead(c: Context<AppEnv>, key: string): Promise<ReadAnswer> {
  return withCurrentLayout((shard) => readOnce(c, key, shard));
}

async function readOnce(c: Context<AppEnv>, key: string, named?: ShardIndex): Promise<ReadAnswer> {
  const config = loadConfig(c.env);
  const raw = c.req.query("consistency") ?? "eventual";
  const consistency = CONSISTENCIES.find((level) => level === raw);
  if (consistency === undefined) {
    throw new StoreError("invalid_consistency", `consistency must be one of ${CONSISTENCIES.join(", ")}; got "${raw}"`);
  }
  const secrets = sessionSecrets(c.env);
  const seen = await verifySession(secrets, c.req.header("x-session-token"));
  const view = await viewAtEdge(c);
  const pinned = pinOf(config, c);
  const preference = regionPreference(config, c.req.raw);
  const layout = layoutOf(view, config.shards);
  const shard = named ?? routedShard(key, layout);
  // While the key moves into its shard, what the session saw in the old one: the pull from
  // there catches up with it (`layout.ts`).
  const old = layout.from !== null ? shardOf(key, layout.from) : shard;
  const moved = old === shard ? {} : { movedSession: seenIn(seen, old) };
  let answer: ReadOutcome;
  switch (consistency) {
    case "eventual":
    case "session": {
      const region = unwrap(chooseRegion(preference, view, pinned));
      answer = await callReplica(region, () =>
        replicaOf(c.env, region, shard, edgeOf(c)).read(
          key,
          consistency === "session" ? { session: seenIn(seen, shard), ...moved } : {},
        ),
      );
      break;
    }
    case "bounded":
      answer = await boundedRead(c, readOrder(preference, view, pinned), key, shard);
      break;
    case "strong": {
      const strong = prefixOf(key, config.primaryPrefixes);
      if (strong === undefined) {
        const prefixes = config.primaryPrefixes.map((p) => `"${p.prefix}"`).join(", ") || "none are configured";
        throw new StoreError("invalid_consistency", `strong reads need a key under a strong prefix (${prefixes})`);
      }
      const primary = unwrap(primaryFor(view, strong));
      answer = await callReplica(primary.region, () =>
        replicaOf(c.env, primary.region, shard, edgeOf(c)).read(key, {
          strong: { prefix: strong.prefix, epoch: primary.epoch },
        }),
      );
      break;
    }
    case "quorum":
      if (pinned !== undefined) unwrap(chooseRegion(preference, view, pinned));
      answer = await quorum(c, config, readOrder(preference, view, pinned), key, shard);
      break;
  }
  c.header("X-Served-By", answer.region);
  lagHeaders(c, answer.lagMs === null ? { ms: null, unknown: answer.lagUnknown ?? "unknown" } : { ms: answer.lagMs });
  // The client has now seen the answered state: future session reads must not go below it.
  c.header("X-Session-Token", await signSession(secrets, seeAlso(seen, shard, answer.seqs)));
  return { region: answer.region, view: answer.view };
}

/** Serves from the first region in `order` whose staleness is within `max_staleness_ms`. */
async function boundedRead(
  c: Context<AppEnv>,
  order: readonly RegionId[],
  key: string,
  shard: ShardIndex,
): Promise<ReadOutcome> {
  const raw = c.req.query("max_staleness_ms");
  if (raw === undefined)
    throw new StoreError("invalid_consistency", "consistency=bounded needs max_staleness_ms=<milliseconds>");
  const maxStalenessMs = intParam("max_staleness_ms", raw, 0, 86_400_000, 0);
  for (const region of order) {
    try {
      return await callReplica(region, () => replicaOf(c.env, region, shard, edgeOf(c)).read(key, { maxStalenessMs }));
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
 * Reads the key from every healthy region, answers the merge of the first majority to answer,
 * and repairs in the background each of them that held less.
 */
async function quorum(
  c: Context<AppEnv>,
  config: Config,
  order: readonly RegionId[],
  key: string,
  shard: ShardIndex,
): Promise<ReadOutcome> {
  const answer = unwrap(
    await quorumRead(platformClock, order, majority(config.regions.length), QUORUM_READ_TIMEOUT_MS, (region) =>
      replicaOf(c.env, region, shard, edgeOf(c)).snapshot(key, true),
    ),
  );
  const { merged, answered, stale } = answer;
  for (const region of stale) {
    c.executionCtx.waitUntil(
      replicaOf(c.env, region, shard, edgeOf(c))
        .repair(key, merged)
        .catch((error: unknown) => console.warn(`read repair of ${region} failed:`, error)),
    );
  }
  const closest = answered[0] as RegionId;
  const seqs: VersionVector = merged.seqs;
  if (merged.state === null) return { region: closest, view: null, lagMs: 0, seqs };
  // Lag does not apply: the answer includes every write any answering region had. The merged
  // state is judged for expiry by this router's clock: no one replica's answer is the read.
  return { region: closest, view: unwrap(keyView(decodeKeyState(merged.state), platformClock.now())), lagMs: 0, seqs };
}
