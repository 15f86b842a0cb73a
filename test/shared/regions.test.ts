import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  LOCATION_HINTS,
  type LatLon,
  REGION_LOCATIONS,
  distanceKm,
  isRegionId,
  parseRegionId,
  parseRegionList,
  regionAt,
  regionIndex,
  regionsByDistance,
} from "../../shared/regions.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0x6e0;

const CITIES = {
  paris: { lat: 48.8566, lon: 2.3522 },
  tokyo: { lat: 35.6762, lon: 139.6503 },
  newYork: { lat: 40.7128, lon: -74.006 },
  losAngeles: { lat: 34.0522, lon: -118.2437 },
  saoPaulo: { lat: -23.5505, lon: -46.6333 },
  melbourne: { lat: -37.8136, lon: 144.9631 },
  capeTown: { lat: -33.9249, lon: 18.4241 },
  mumbai: { lat: 19.076, lon: 72.8777 },
  kyiv: { lat: 50.4501, lon: 30.5234 },
} satisfies Record<string, LatLon>;

function nearest(point: LatLon): string | undefined {
  return regionsByDistance(point, LOCATION_HINTS)[0];
}

describe("parseRegionList", () => {
  it("accepts a trimmed comma-separated list in the given order", () => {
    expect(parseRegionList("weur, enam ,apac")).toEqual({ ok: true, regions: ["weur", "enam", "apac"] });
    expect(parseRegionList("wnam,")).toEqual({ ok: true, regions: ["wnam"] });
  });

  it("rejects an empty list", () => {
    const results = ["", " ", ",", " , ,"].map(parseRegionList);
    expect(results).toEqual(results.map(() => ({ ok: false, message: "the region list is empty" })));
  });

  it("rejects duplicates", () => {
    expect(parseRegionList("weur,enam,weur")).toEqual({ ok: false, message: 'region "weur" is listed twice' });
    expect(parseRegionList("weur, weur ")).toEqual({ ok: false, message: 'region "weur" is listed twice' });
  });

  it("rejects unknown regions and names the valid ones", () => {
    const results = ["weur,mars", "WEUR", "us-east-1", "weur;enam"].map(parseRegionList);
    const refusal = { ok: false, message: expect.stringContaining("is not a location hint (wnam, enam") };
    expect(results).toEqual(results.map(() => refusal));
  });

  it("accepts any subset of the hints in any order and returns it unchanged", () => {
    fc.assert(
      fc.property(fc.shuffledSubarray([...LOCATION_HINTS], { minLength: 1 }), (regions) => {
        expect(parseRegionList(regions.join(","))).toEqual({ ok: true, regions });
      }),
      { seed: SEED },
    );
  });
});

describe("region ids", () => {
  it("index and lookup are inverse, in table order", () => {
    LOCATION_HINTS.forEach((region, i) => {
      expect(regionIndex(region)).toBe(i);
      expect(regionAt(i)).toBe(region);
      expect(isRegionId(region)).toBe(true);
      expect(parseRegionId(region)).toBe(region);
    });
    expect(regionAt(LOCATION_HINTS.length)).toBeUndefined();
    expect(parseRegionId("toString")).toBeUndefined();
    expect(isRegionId("constructor")).toBe(false);
  });
});

describe("geography", () => {
  it("distanceKm is symmetric, zero to itself and plausible", () => {
    expect(distanceKm(CITIES.paris, CITIES.paris)).toBe(0);
    const parisNewYork = distanceKm(CITIES.paris, CITIES.newYork);
    expect(parisNewYork).toBeCloseTo(distanceKm(CITIES.newYork, CITIES.paris), 9);
    // Paris to New York is about 5,840 km along a great circle.
    expect(parisNewYork).toBeGreaterThan(5_800);
    expect(parisNewYork).toBeLessThan(5_880);
  });

  it("picks the plausible nearest region for major cities", () => {
    expect(nearest(CITIES.paris)).toBe("weur");
    expect(nearest(CITIES.tokyo)).toBe("apac");
    expect(nearest(CITIES.newYork)).toBe("enam");
    expect(nearest(CITIES.losAngeles)).toBe("wnam");
    expect(nearest(CITIES.saoPaulo)).toBe("sam");
    expect(nearest(CITIES.melbourne)).toBe("oc");
    expect(nearest(CITIES.capeTown)).toBe("afr");
    expect(nearest(CITIES.mumbai)).toBe("me");
    expect(nearest(CITIES.kyiv)).toBe("eeur");
  });

  it("orders only the candidates given, nearest first", () => {
    expect(regionsByDistance(CITIES.paris, ["apac", "enam", "eeur"])).toEqual(["eeur", "enam", "apac"]);
    expect(regionsByDistance(CITIES.tokyo, [])).toEqual([]);
  });

  it("returns a permutation sorted by distance, each region nearest to its own city", () => {
    const pointArb = fc.record({
      lat: fc.double({ min: -90, max: 90, noNaN: true }),
      lon: fc.double({ min: -180, max: 180, noNaN: true }),
    });
    fc.assert(
      fc.property(pointArb, fc.shuffledSubarray([...LOCATION_HINTS]), (point, candidates) => {
        const ordered = regionsByDistance(point, candidates);
        expect([...ordered].sort()).toEqual([...candidates].sort());
        const km = ordered.map((region) => distanceKm(point, REGION_LOCATIONS[region]));
        for (let i = 1; i < km.length; i += 1) expect(km[i]).toBeGreaterThanOrEqual(km[i - 1] as number);
      }),
      { seed: SEED },
    );
    for (const region of LOCATION_HINTS)
      expect(regionsByDistance(REGION_LOCATIONS[region], LOCATION_HINTS)[0]).toBe(region);
  });
});
