/**
 * Picks the region that serves a request: the one pinned with `?region=`, else the configured
 * region nearest (great circle) to the client's coordinates from `request.cf`, else
 * `DEFAULT_REGION` (local development has no coordinates). Under local WAN emulation a client
 * may say where it is with `X-Client-Location: <lat>,<lon>`; the router then also counts as
 * running at the edge nearest that point (`edgeRegion`), as it would on Cloudflare's network.
 */
import { StoreError } from "../../shared/errors.ts";
import { LOCATION_HINTS, type LatLon, type RegionId, parseRegionId, regionsByDistance } from "../../shared/regions.ts";
import { type ClusterView } from "../../shared/store/cluster.ts";
import { type Config, loadConfig } from "../config.ts";
import { clusterView } from "./view.ts";

/** Header a client names its coordinates with, honoured only under WAN emulation. */
export const CLIENT_LOCATION_HEADER = "x-client-location";

/** Parses `<lat>,<lon>` in degrees, or `invalid_header`. */
function parseLocation(raw: string): LatLon {
  const parts = raw.split(",").map((p) => p.trim());
  const [lat, lon] = parts.map(Number) as [number, number];
  if (parts.length !== 2 || parts.some((p) => p === "") || !(Math.abs(lat) <= 90) || !(Math.abs(lon) <= 180))
    throw new StoreError(
      "invalid_header",
      `X-Client-Location must be "<latitude>,<longitude>" in degrees (latitude -90..90, longitude -180..180), got "${raw}"`,
    );
  return { lat, lon };
}

/**
 * The client's coordinates: under WAN emulation, from `X-Client-Location` when sent (it stands
 * for where the client is; miniflare's own `request.cf` names a fixed place); else from
 * `request.cf` when present and numeric.
 */
export function clientLocation(config: Config, request: Request): LatLon | undefined {
  const header = request.headers.get(CLIENT_LOCATION_HEADER);
  if (config.wan.on && header !== null) return parseLocation(header);
  const cf = (request as Request & { cf?: { latitude?: unknown; longitude?: unknown } }).cf;
  const lat = Number(cf?.latitude);
  const lon = Number(cf?.longitude);
  if (cf?.latitude === undefined || cf.longitude === undefined || !Number.isFinite(lat) || !Number.isFinite(lon))
    return undefined;
  return { lat, lon };
}

/**
 * Where the router runs for this request, for WAN emulation: the location hint nearest the
 * client, else `DEFAULT_REGION`.
 */
export function edgeRegion(config: Config, request: Request): RegionId {
  const location = clientLocation(config, request);
  return location === undefined ? config.defaultRegion : (regionsByDistance(location, LOCATION_HINTS)[0] as RegionId);
}

/** Configured regions ordered by preference for this client: nearest first. */
export function regionPreference(config: Config, request: Request): RegionId[] {
  const location = clientLocation(config, request);
  if (location === undefined)
    return [config.defaultRegion, ...config.regions.filter((r) => r !== config.defaultRegion)];
  return regionsByDistance(location, config.regions);
}

/** Parses a `?region=` value: a configured region, or `unknown_region`. */
export function parsePinnedRegion(config: Config, value: string): RegionId {
  const region = parseRegionId(value);
  if (region === undefined || !config.regions.includes(region)) {
    throw new StoreError(
      "unknown_region",
      `region "${value}" is not one of this store's regions (${config.regions.join(", ")})`,
    );
  }
  return region;
}

/** The serving region: pinned, else the client's nearest. */
export function servingRegion(config: Config, request: Request, pinned: string | undefined): RegionId {
  if (pinned !== undefined && pinned !== "") return parsePinnedRegion(config, pinned);
  return regionPreference(config, request)[0] as RegionId;
}

/** {@link edgeRegion} of a request in a handler's context. */
export function edgeOf(c: { env: Env; req: { raw: Request } }): RegionId {
  return edgeRegion(loadConfig(c.env), c.req.raw);
}

/**
 * The cluster view for a data-path request: as seen from its edge, and without waiting for the
 * control object when a recent view is at hand (`view.ts`).
 */
export function viewAtEdge(c: {
  env: Env;
  req: { raw: Request };
  executionCtx: { waitUntil(work: Promise<unknown>): void };
}): Promise<ClusterView> {
  return clusterView(c.env, edgeOf(c), (work) => c.executionCtx.waitUntil(work));
}
