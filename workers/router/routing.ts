/**
 * Picks the region that serves a request: the one pinned with `?region=`, else the configured
 * region nearest (great circle) to the client's coordinates from `request.cf`, else
 * `DEFAULT_REGION` (local development has no coordinates).
 */
import { StoreError } from "../../shared/errors.ts";
import { type LatLon, type RegionId, parseRegionId, regionsByDistance } from "../../shared/regions.ts";
import { type Config } from "../config.ts";

/** The client's coordinates from `request.cf`, when present and numeric. */
export function clientLocation(request: Request): LatLon | undefined {
  const cf = (request as Request & { cf?: { latitude?: unknown; longitude?: unknown } }).cf;
  const lat = Number(cf?.latitude);
  const lon = Number(cf?.longitude);
  if (cf?.latitude === undefined || cf.longitude === undefined || !Number.isFinite(lat) || !Number.isFinite(lon))
    return undefined;
  return { lat, lon };
}

/** Configured regions ordered by preference for this client: nearest first. */
export function regionPreference(config: Config, request: Request): RegionId[] {
  const location = clientLocation(request);
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
