// The router's cached cluster view (`workers/router/view.ts`): fresh for VIEW_CACHE_MS; after
// that a data-path request is answered from the cache while the refresh runs beside it (the
// control object may be a continent away), unless the cached view is older than
// VIEW_STALE_MAX_MS, when the request waits for the fresh one.
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type ClusterView } from "../../shared/store/cluster.ts";
import { VIEW_CACHE_MS, VIEW_STALE_MAX_MS, clusterView, rememberView } from "../../workers/router/view.ts";

/** A view no control object would answer: recognisable when it comes from the cache. */
const OLD: ClusterView = { atMs: 12_345, health: {}, primaries: {} };

afterEach(() => {
  vi.restoreAllMocks();
});

describe("the router's cluster view", () => {
  it("answers from the cache while it is fresh, without asking", async () => {
    rememberView(OLD);
    const background: Array<Promise<unknown>> = [];
    expect(await clusterView(env, undefined, (work) => background.push(work))).toBe(OLD);
    expect(background).toEqual([]);
  });

  it("answers a stale view at once and refreshes it beside the request, then serves the fresh one", async () => {
    const start = Date.now();
    rememberView(OLD);
    vi.spyOn(Date, "now").mockReturnValue(start + VIEW_CACHE_MS + 1);
    const background: Array<Promise<unknown>> = [];
    expect(await clusterView(env, undefined, (work) => background.push(work))).toBe(OLD);
    expect(background).toHaveLength(1);
    const fresh = (await background[0]) as ClusterView;
    expect(fresh.atMs).not.toBe(OLD.atMs);
    expect(await clusterView(env, undefined, (work) => background.push(work))).toEqual(fresh);
  });

  it("waits for a fresh view when the cached one is too old, or when it may not refresh beside", async () => {
    const start = Date.now();
    rememberView(OLD);
    vi.spyOn(Date, "now").mockReturnValue(start + VIEW_STALE_MAX_MS + 1);
    const background: Array<Promise<unknown>> = [];
    const waited = await clusterView(env, undefined, (work) => background.push(work));
    expect(waited.atMs).not.toBe(OLD.atMs);
    expect(background).toEqual([]);
    vi.restoreAllMocks();
    const again = Date.now();
    rememberView(OLD);
    vi.spyOn(Date, "now").mockReturnValue(again + VIEW_CACHE_MS + 1);
    // Without a way to run work beside the request (the queue consumer), it waits too.
    expect((await clusterView(env)).atMs).not.toBe(OLD.atMs);
  });
});
