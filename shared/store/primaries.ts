/**
 * Key prefixes with a primary region (single-leader, linearizable "strong" mode). The setting
 * `PRIMARY_PREFIXES` lists `prefix=region` or `prefix=region:failover` entries, comma-separated.
 * Prefixes must not overlap, so every key has at most one primary.
 */
import { type RegionId, parseRegionId } from "../regions.ts";

/**
 * How long a primary may serve its prefix on one confirmation by the control object (its
 * lease). The control object starts no other primary for the prefix until the last lease it
 * granted has run out (counted on its own clock from when it granted it), and the primary
 * counts the lease from before it asked, less {@link PRIMARY_LEASE_MARGIN_MS}: only durations
 * are compared, never two clocks' readings, so clock skew cannot make two primaries overlap.
 */
export const PRIMARY_LEASE_MS = 2000;
/** What a primary takes off its lease (at most a quarter of it), for clock-rate drift and a clock read late. */
export const PRIMARY_LEASE_MARGIN_MS = 250;

/** One configured strong prefix. */
export interface PrimaryPrefix {
  readonly prefix: string;
  /** The configured primary; after a failover the current one is kept by the control object. */
  readonly region: RegionId;
  /** Whether an unhealthy primary is replaced automatically. */
  readonly failover: boolean;
}

/** Parses `PRIMARY_PREFIXES` against the configured regions. */
export function parsePrimaryPrefixes(
  value: string,
  regions: readonly RegionId[],
): { ok: true; prefixes: PrimaryPrefix[] } | { ok: false; message: string } {
  const prefixes: PrimaryPrefix[] = [];
  for (const raw of value.split(",")) {
    const entry = raw.trim();
    if (entry === "") continue;
    const at = entry.lastIndexOf("=");
    if (at <= 0) return { ok: false, message: `"${entry}" is not prefix=region[:failover]` };
    const prefix = entry.slice(0, at);
    const [regionText = "", option, ...extra] = entry.slice(at + 1).split(":");
    const region = parseRegionId(regionText);
    if (region === undefined || !regions.includes(region))
      return { ok: false, message: `"${regionText}" in "${entry}" is not a configured region` };
    if ((option !== undefined && option !== "failover") || extra.length > 0)
      return { ok: false, message: `"${entry}": the only option is :failover` };
    const clash = prefixes.find((p) => p.prefix.startsWith(prefix) || prefix.startsWith(p.prefix));
    if (clash !== undefined) return { ok: false, message: `prefixes "${clash.prefix}" and "${prefix}" overlap` };
    prefixes.push({ prefix, region, failover: option === "failover" });
  }
  return { ok: true, prefixes };
}

/** The strong prefix a key falls under, if any. */
export function prefixOf(key: string, prefixes: readonly PrimaryPrefix[]): PrimaryPrefix | undefined {
  return prefixes.find((p) => key.startsWith(p.prefix));
}
