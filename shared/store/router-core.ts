/**
 * The router's decisions, apart from HTTP: which region serves a request, which region leads a
 * strong prefix now, and the quorum read (fan out, stop at a majority, merge, find who needs
 * repair). The Hono routes parse requests and call these; the simulator's clients call them too.
 */
import { equalBytes } from "../bytes.ts";
import { type Result, fail, ok } from "../errors.ts";
import { type RegionId } from "../regions.ts";
import { EMPTY_VV, type VersionVector, vvMerge } from "../version-vector.ts";
import { type ClusterView, type PrimaryState, isHealthy } from "./cluster.ts";
import { type KeySnapshot } from "./contract.ts";
import { type TaggedState, mergeTagged } from "./epochs.ts";
import { decodeKeyState, encodeKeyState } from "./key-state.ts";
import { type PrimaryPrefix } from "./primaries.ts";
import { type Clock, bounded } from "./ports.ts";

/**
 * The serving region: the pinned one if healthy (or only bootstrapping: it then fetches each key
 * it serves from its peers first), else the most preferred healthy one.
 */
export function chooseRegion(
  preference: readonly RegionId[],
  view: ClusterView,
  pinned: RegionId | undefined,
): Result<RegionId> {
  if (pinned !== undefined) {
    const reason = view.health[pinned]?.reason ?? null;
    if (pinnable(view, pinned)) return ok(pinned);
    return fail(
      "region_unavailable",
      `region ${pinned} is ${reason === "admin" ? "taken out of service" : `unhealthy (${reason ?? "unknown"})`}; omit ?region= to be routed to a healthy one`,
      { region: pinned, reason },
    );
  }
  const region = preference.find((r) => isHealthy(view, r));
  return region === undefined ? fail("region_unavailable", "no region is healthy") : ok(region);
}

/**
 * Whether a request pinned to `region` may go there: it is healthy, or unhealthy only in a way
 * that still serves a client who chose it: bootstrapping (a pinned request catches its key up
 * from peers first) or clock_skew (its writes are held by its peers until the clocks agree,
 * never lost; its reads are its own data).
 */
function pinnable(view: ClusterView, region: RegionId): boolean {
  const reason = view.health[region]?.reason ?? null;
  return isHealthy(view, region) || reason === "bootstrapping" || reason === "clock_skew";
}

/** The regions a read tries, in order: the pinned one first (when pinnable), then the healthy ones by preference. */
export function readOrder(
  preference: readonly RegionId[],
  view: ClusterView,
  pinned: RegionId | undefined,
): RegionId[] {
  const first = pinned !== undefined && pinnable(view, pinned) ? [pinned] : [];
  return [...first, ...preference.filter((r) => r !== pinned && isHealthy(view, r))];
}

/** The primary of a strong prefix, or `primary_unavailable` when it cannot serve now. */
export function primaryFor(view: ClusterView, strong: PrimaryPrefix): Result<PrimaryState> {
  const primary = view.primaries[strong.prefix] ?? {
    region: strong.region,
    epoch: 1,
    ready: true,
    failover: strong.failover,
    recoveredSeqs: [],
  };
  const details = { prefix: strong.prefix, region: primary.region };
  if (!isHealthy(view, primary.region)) {
    const why = primary.failover
      ? "a failover is under way; retry in a few seconds"
      : "automatic failover is off for this prefix";
    return fail(
      "primary_unavailable",
      `the primary of "${strong.prefix}" (${primary.region}) is unavailable: ${why}`,
      details,
    );
  }
  if (!primary.ready)
    return fail(
      "primary_unavailable",
      `"${strong.prefix}" has a new primary (${primary.region}) still recovering; retry shortly`,
      details,
    );
  return ok(primary);
}

/** What a quorum read gathered: the merged state, who answered, and who held less than the merge. */
export interface QuorumAnswer {
  readonly merged: KeySnapshot;
  /** Regions that answered before the majority was reached, nearest first. */
  readonly answered: RegionId[];
  /** Answering regions whose state lacks something of the merge: they get a read repair. */
  readonly stale: RegionId[];
}

/**
 * Reads the key from the regions in `order` at once and answers as soon as `need` have
 * answered (a majority: every write a quorum acknowledged is among them), without waiting for
 * the rest. `region_unavailable` when fewer than `need` answer within `timeoutMs`.
 */
export function quorumRead(
  clock: Clock,
  order: readonly RegionId[],
  need: number,
  timeoutMs: number,
  read: (region: RegionId) => Promise<Result<KeySnapshot>>,
): Promise<Result<QuorumAnswer>> {
  if (order.length < need)
    return Promise.resolve(
      fail(
        "region_unavailable",
        `a quorum read needs ${need} regions; only ${order.length} ${order.length === 1 ? "is" : "are"} healthy`,
        {
          acked: [],
        },
      ),
    );
  return new Promise((resolve, reject) => {
    const replies = new Map<RegionId, KeySnapshot>();
    // A replica that says the key lives in another shard (`layout.ts`): without a majority, that
    // is the answer, so that the caller retries at the shard it names.
    let moved: Result<QuorumAnswer> | undefined;
    let settled = 0;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      if (replies.size < need && moved !== undefined) {
        resolve(moved);
        return;
      }
      if (replies.size < need) {
        resolve(
          fail("region_unavailable", `a quorum read needs ${need} regions; only ${replies.size} answered`, {
            acked: [...replies.keys()],
          }),
        );
        return;
      }
      // A state that does not decode is corruption or a bug: the read fails with it.
      try {
        resolve(ok(mergeReplies(order, replies)));
      } catch (error) {
        reject(error);
      }
    };
    for (const region of order) {
      bounded(clock, () => read(region), timeoutMs)
        .then(
          (reply) => {
            if (reply !== null && reply.ok && !done) replies.set(region, reply.value);
            if (reply !== null && !reply.ok && reply.error.code === "wrong_shard") moved = reply;
          },
          (error: unknown) => {
            // A broken invariant fails the read, or surfaces once it has been answered.
            if (done) throw error;
            done = true;
            reject(error);
          },
        )
        .finally(() => {
          settled += 1;
          if (replies.size >= need || settled === order.length) finish();
        });
    }
  });
}

function mergeReplies(order: readonly RegionId[], replies: ReadonlyMap<RegionId, KeySnapshot>): QuorumAnswer {
  const answered = order.filter((r) => replies.has(r));
  let merged: TaggedState | undefined;
  let seqs: VersionVector = EMPTY_VV;
  for (const region of answered) {
    const reply = replies.get(region) as KeySnapshot;
    seqs = vvMerge(seqs, reply.seqs);
    if (reply.state !== null)
      merged = mergeTagged(merged, { state: decodeKeyState(reply.state), epoch: reply.epoch }).merged;
  }
  if (merged === undefined) return { merged: { state: null, seqs, epoch: 0 }, answered, stale: [] };
  const encoded = encodeKeyState(merged.state);
  const stale = answered.filter((r) => {
    const reply = replies.get(r) as KeySnapshot;
    return reply.state === null || reply.epoch !== merged.epoch || !equalBytes(reply.state, encoded);
  });
  return { merged: { state: encoded, seqs, epoch: merged.epoch }, answered, stale };
}
