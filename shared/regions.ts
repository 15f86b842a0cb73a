/**
 * Region identities and geography. A region is a Durable Object location hint; the table of
 * coordinates lets the router pick the region nearest to a client. The table's order is also the region's index in the binary encodings, so it is
 * append-only: reordering it would change the meaning of stored version vectors.
 */
import { assert } from "./assert.ts";

/** Every Durable Object location hint, in encoding order (append-only). */
export const LOCATION_HINTS = ["wnam", "enam", "sam", "weur", "eeur", "apac", "oc", "afr", "me"] as const;

/**
 * A region id: one of {@link LOCATION_HINTS}. The closed literal union is the brand; untrusted
 * text becomes one only through {@link parseRegionId}.
 */
export type RegionId = (typeof LOCATION_HINTS)[number];

/** A point on the globe in degrees. */
export interface LatLon {
  readonly lat: number;
  readonly lon: number;
}

/**
 * A representative city per location hint: the same cities as the measured round-trip times in
 * `wan-rtt.ts`, so distances here and latencies in the simulator agree.
 */
export const REGION_LOCATIONS: Readonly<Record<RegionId, LatLon>> = {
  wnam: { lat: 37.3382, lon: -121.8863 }, // San Jose
  enam: { lat: 39.0438, lon: -77.4874 }, // Ashburn
  sam: { lat: -23.5505, lon: -46.6333 }, // São Paulo
  weur: { lat: 52.3676, lon: 4.9041 }, // Amsterdam
  eeur: { lat: 52.2297, lon: 21.0122 }, // Warsaw
  apac: { lat: 1.3521, lon: 103.8198 }, // Singapore
  oc: { lat: -33.8688, lon: 151.2093 }, // Sydney
  afr: { lat: -26.2041, lon: 28.0473 }, // Johannesburg
  me: { lat: 25.2048, lon: 55.2708 }, // Dubai
};

const REGION_INDEX: ReadonlyMap<string, number> = new Map(LOCATION_HINTS.map((id, i) => [id, i]));

/** Whether `value` names a location hint. */
export function isRegionId(value: string): value is RegionId {
  return REGION_INDEX.has(value);
}

/** Parses a region id; `undefined` when `value` is not a location hint. */
export function parseRegionId(value: string): RegionId | undefined {
  return isRegionId(value) ? value : undefined;
}

/** The region's position in {@link LOCATION_HINTS}, used by binary encodings. */
export function regionIndex(region: RegionId): number {
  const index = REGION_INDEX.get(region);
  assert(index !== undefined, `region ${region} is not a location hint`);
  return index;
}

/** The region at `index` in {@link LOCATION_HINTS}, or `undefined` for an unknown index. */
export function regionAt(index: number): RegionId | undefined {
  return LOCATION_HINTS[index];
}

/**
 * Parses a comma-separated region list (the `REGIONS` setting): trimmed, non-empty, no
 * duplicates, every entry a location hint. Returns the error text for a bad list.
 */
export function parseRegionList(value: string): { ok: true; regions: RegionId[] } | { ok: false; message: string } {
  const parts = value
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part.length > 0);
  if (parts.length === 0) return { ok: false, message: "the region list is empty" };
  const regions: RegionId[] = [];
  for (const part of parts) {
    const region = parseRegionId(part);
    if (region === undefined)
      return { ok: false, message: `"${part}" is not a location hint (${LOCATION_HINTS.join(", ")})` };
    if (regions.includes(region)) return { ok: false, message: `region "${part}" is listed twice` };
    regions.push(region);
  }
  return { ok: true, regions };
}

const EARTH_RADIUS_KM = 6371.0088;

function toRad(deg: number): number {
  return (deg * Math.PI) / 180;
}

/** Great-circle distance in kilometres (haversine). */
export function distanceKm(a: LatLon, b: LatLon): number {
  const dLat = toRad(b.lat - a.lat);
  const dLon = toRad(b.lon - a.lon);
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(toRad(a.lat)) * Math.cos(toRad(b.lat)) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)));
}

/**
 * The candidates ordered by great-circle distance from `point`, nearest first; ties keep the
 * candidates' order, so the result is deterministic.
 */
export function regionsByDistance(point: LatLon, candidates: readonly RegionId[]): RegionId[] {
  return candidates
    .map((region, order) => ({ region, order, km: distanceKm(point, REGION_LOCATIONS[region]) }))
    .sort((x, y) => x.km - y.km || x.order - y.order)
    .map((entry) => entry.region);
}
