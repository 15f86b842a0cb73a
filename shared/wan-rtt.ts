/**
 * Measured median round-trip times between the regions, for the simulator (and WAN emulation):
 * one representative city per location hint (the cities of `REGION_LOCATIONS` in
 * `regions.ts`), all 36 pairs measured, made symmetric.
 *
 * Source: Microsoft Learn, "Azure network round-trip latency statistics"
 * (https://learn.microsoft.com/en-us/azure/networking/azure-network-latency), the monthly P50
 * inter-region round-trip times over the 30 days ending 2026-07-30, each location hint mapped to
 * the Azure region in or nearest its city. Copied from the team's measured table.
 */
import { type RegionId } from "./regions.ts";

/** Median round-trip milliseconds between two different regions. */
export const WAN_RTT_MS: Readonly<Record<RegionId, Readonly<Partial<Record<RegionId, number>>>>> = {
  wnam: { enam: 68, sam: 169, weur: 146, eeur: 161, apac: 170, oc: 140, afr: 273, me: 235 },
  enam: { wnam: 68, sam: 118, weur: 84, eeur: 101, apac: 224, oc: 202, afr: 220, me: 175 },
  sam: { wnam: 169, enam: 118, weur: 185, eeur: 203, apac: 331, oc: 295, afr: 321, me: 276 },
  weur: { wnam: 146, enam: 84, sam: 185, eeur: 23, apac: 169, oc: 265, afr: 166, me: 111 },
  eeur: { wnam: 161, enam: 101, sam: 203, weur: 23, apac: 184, oc: 278, afr: 186, me: 118 },
  apac: { wnam: 170, enam: 224, sam: 331, weur: 169, eeur: 184, oc: 95, afr: 177, me: 83 },
  oc: { wnam: 140, enam: 202, sam: 295, weur: 265, eeur: 278, apac: 95, afr: 328, me: 173 },
  afr: { wnam: 273, enam: 220, sam: 321, weur: 166, eeur: 186, apac: 177, oc: 328, me: 103 },
  me: { wnam: 235, enam: 175, sam: 276, weur: 111, eeur: 118, apac: 83, oc: 173, afr: 103 },
};

/** A region's round trip to itself: the same data centre. */
export const LOCAL_RTT_MS = 2;

/** Median one-way latency between two regions: half the round trip. */
export function oneWayMs(from: RegionId, to: RegionId): number {
  return (from === to ? LOCAL_RTT_MS : (WAN_RTT_MS[from][to] ?? LOCAL_RTT_MS)) / 2;
}

/**
 * One hop's delay under WAN emulation: 0 within a region, else the one-way latency plus a jitter
 * drawn uniformly from ±`jitterMs` with `random` (never below half the one-way latency, so
 * jitter cannot make a distant hop look local).
 */
export function hopDelayMs(from: RegionId, to: RegionId, jitterMs = 0, random?: { next(): number }): number {
  if (from === to) return 0;
  const base = oneWayMs(from, to);
  if (jitterMs <= 0 || random === undefined) return base;
  return Math.max(base / 2, base + (random.next() * 2 - 1) * jitterMs);
}
