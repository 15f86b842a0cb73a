/**
 * The router's cached copy of the control object's cluster view. It is refreshed when older
 * than {@link VIEW_CACHE_MS}, so every isolate sees a health change or failover within that
 * time; the isolate that made an admin change sees it at once.
 */
import { type ClusterView, EMPTY_VIEW } from "../../shared/store/cluster.ts";
import { type RegionId } from "../../shared/regions.ts";
import { controlOf } from "../stubs.ts";

/** Longest a router isolate serves from a cached view. */
export const VIEW_CACHE_MS = 500;

let cached: { view: ClusterView; fetchedMs: number } | undefined;

/**
 * The current cluster view, from cache when fresh, else from the control object as called from
 * region `from` (the router's edge: over emulated WAN when it is on). If the control object
 * cannot be reached, the last view (or an all-healthy one) is used.
 */
export async function clusterView(env: Env, from?: RegionId): Promise<ClusterView> {
  const now = Date.now();
  if (cached !== undefined && now - cached.fetchedMs < VIEW_CACHE_MS) return cached.view;
  try {
    const view = await controlOf(env, from).getView();
    cached = { view, fetchedMs: now };
    return view;
  } catch (error) {
    console.error("control object unreachable; using the last known view:", error);
    return cached?.view ?? EMPTY_VIEW;
  }
}

/** Replaces the cached view (after an admin change made through this isolate). */
export function rememberView(view: ClusterView): void {
  cached = { view, fetchedMs: Date.now() };
}
