/**
 * The router's cached copy of the control object's cluster view. It is refreshed when older
 * than {@link VIEW_CACHE_MS}, so every busy isolate sees a health change or failover within
 * about that time plus a round trip to the control object; the isolate that made an admin change
 * sees it at once. A request on the data path does not wait for that round trip (the control
 * object lives in one region, up to a few hundred milliseconds away from an edge): it is served
 * with the view it has while the refresh runs in the background, unless that view is older than
 * {@link VIEW_STALE_MAX_MS} or there is none. Safety never rests on this view: the replicas fence
 * writes by epoch, and a region taken out refuses what reaches it.
 */
import { type ClusterView, EMPTY_VIEW } from "../../shared/store/cluster.ts";
import { type RegionId } from "../../shared/regions.ts";
import { controlOf } from "../stubs.ts";

/** Longest a router isolate serves from a cached view without asking for a fresh one. */
export const VIEW_CACHE_MS = 500;
/** Longest a data-path request is served a cached view while a fresh one is fetched. */
export const VIEW_STALE_MAX_MS = 5000;

let cached: { view: ClusterView; fetchedMs: number } | undefined;
/**
 * When this isolate last started a background refresh. A request awaits only a fetch it started
 * itself: Workers settle a promise only in the request that created it, so one shared across
 * requests never settles once its request ends, and every later await of it fails.
 */
let backgroundMs = 0;

async function fetchView(env: Env, from: RegionId | undefined): Promise<ClusterView> {
  try {
    const view = await controlOf(env, from).getView();
    cached = { view, fetchedMs: Date.now() };
    return view;
  } catch (error) {
    console.error("control object unreachable; using the last known view:", error);
    return cached?.view ?? EMPTY_VIEW;
  }
}

/**
 * The current cluster view, from cache when fresh, else from the control object as called from
 * region `from` (the router's edge: over emulated WAN when it is on). With `background` (the
 * request's `waitUntil`), a cached view younger than {@link VIEW_STALE_MAX_MS} is answered at
 * once and the refresh runs beside the request. If the control object cannot be reached, the
 * last view (or an all-healthy one) is used.
 */
export async function clusterView(
  env: Env,
  from?: RegionId,
  background?: (work: Promise<unknown>) => void,
): Promise<ClusterView> {
  const now = Date.now();
  const ageMs = cached === undefined ? Number.POSITIVE_INFINITY : now - cached.fetchedMs;
  if (cached !== undefined && ageMs < VIEW_CACHE_MS) return cached.view;
  if (cached !== undefined && background !== undefined && ageMs < VIEW_STALE_MAX_MS) {
    // One background refresh per VIEW_CACHE_MS, kept alive by its own request.
    if (now - backgroundMs >= VIEW_CACHE_MS) {
      backgroundMs = now;
      background(fetchView(env, from));
    }
    return cached.view;
  }
  return fetchView(env, from);
}

/** Drops the cached view: the next request fetches a fresh one (a replica said it is out of date). */
export function forgetView(): void {
  cached = undefined;
  backgroundMs = 0;
}

/** Replaces the cached view (after an admin change made through this isolate). */
export function rememberView(view: ClusterView): void {
  cached = { view, fetchedMs: Date.now() };
}
