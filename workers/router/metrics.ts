/**
 * Prometheus text exposition. Request latency histograms are kept in this isolate's memory
 * (each router isolate reports its own requests; under `npm start` there is one isolate).
 * Replication figures come from the replicas themselves, which persist their counters.
 */
import { type RegionId } from "../../shared/regions.ts";
import { clockOffsets } from "../../shared/store/cluster.ts";
import { DELAY_WINDOW } from "../../shared/store/delays.ts";
import { type ReplicaStatus } from "../../shared/store/contract.ts";

/** Latency bucket bounds in seconds. */
const BUCKETS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
/** Bound on distinct label sets, so odd paths cannot grow memory without limit. */
const SERIES_MAX = 512;

interface Histogram {
  readonly counts: number[];
  sum: number;
  count: number;
}

const histograms = new Map<string, Histogram>();

/** Records one request's latency under its route pattern, method and status. */
export function observeRequest(method: string, route: string, status: number, seconds: number): void {
  const key = `method="${method}",route="${route}",status="${status}"`;
  let h = histograms.get(key);
  if (h === undefined) {
    if (histograms.size >= SERIES_MAX) return;
    h = { counts: BUCKETS_SECONDS.map(() => 0), sum: 0, count: 0 };
    histograms.set(key, h);
  }
  BUCKETS_SECONDS.forEach((bound, i) => {
    if (seconds <= bound) h.counts[i] = (h.counts[i] ?? 0) + 1;
  });
  h.sum += seconds;
  h.count += 1;
}

/** Every region's replica statuses per shard (index = shard), null for one that did not answer. */
export type ShardStatuses = ReadonlyMap<RegionId, ReadonlyArray<ReplicaStatus | null>>;

/** Each answering region's clock reading (its first answering shard's). */
export function readingsOf(statuses: ShardStatuses): Map<RegionId, number> {
  const readings = new Map<RegionId, number>();
  for (const [region, shards] of statuses) {
    const first = shards.find((s) => s !== null);
    if (first !== undefined && first !== null) readings.set(region, first.nowMs);
  }
  return readings;
}

/** One replica's status with its labels: `region="…",shard="…"`. */
interface Labelled {
  readonly region: RegionId;
  readonly labels: string;
  readonly status: ReplicaStatus | null;
}

/** Every replica's status, labelled by region and shard (at most regions × SHARDS_MAX series each). */
function labelled(statuses: ShardStatuses): Labelled[] {
  return [...statuses].flatMap(([region, shards]) =>
    shards.map((status, shard) => ({ region, labels: `region="${region}",shard="${shard}"`, status })),
  );
}

function escape(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

/** Counters a region keeps of itself, not per peer: their `peer` label is the region's own. */
const OWN_COUNTERS: ReadonlySet<string> = new Set([
  "gc_tombstones_collected_total",
  "gc_expired_collected_total",
  "conflicts_dropped_total",
  "replication_send_errors_total",
  "bootstraps_total",
  "bootstrap_seconds_total",
]);

/** Help text and type of each replica counter, by name. */
const COUNTERS: Readonly<Record<string, string>> = {
  replication_messages_total: "Replication messages applied, by receiving region and origin peer.",
  replication_entries_total: "Replicated writes applied, by receiving region and origin peer.",
  replication_bytes_total:
    'Bytes of replication applied, by receiving region, origin peer and kind ("stream": queue messages; "anti_entropy": digests, entries and states a region exchanged in the rounds it ran with the peer).',
  anti_entropy_rounds_total: "Anti-entropy rounds a region completed with a peer (it initiated them).",
  anti_entropy_skew_held_total:
    "Register states an anti-entropy merge held back because their stamps were further ahead of the region's clock than the HLC allows, by region and peer.",
  anti_entropy_keys_repaired_total:
    "Keys an anti-entropy round changed, by region and peer (counted where the merge changed the key).",
  replication_resends_total: "Times a region sent again the writes a peer left unconfirmed, by region and peer.",
  replication_lost_life_dropped_total:
    "Writes of a restored region's lost life that no region held when it was restored, dropped alike everywhere, by origin peer.",
  bootstraps_total: "Bootstraps a region completed: it was new or restored empty and pulled its peers' data.",
  bootstrap_seconds_total:
    "Time a region spent bootstrapping, from its probe until it held what its peers did, summed over its bootstraps.",
  gc_tombstones_collected_total: "Tombstones a region collected once every region had merged them.",
  gc_expired_collected_total: "Expired values a region collected once every region had merged them.",
  gc_late_copies_dropped_total:
    "Late or duplicated copies of collected keys a region dropped instead of resurrecting them, by origin peer.",
  conflicts_dropped_total: "Conflict log rows dropped past CONFLICT_LOG_RETENTION_MS or CONFLICT_LOG_MAX_ROWS.",
  replication_errors_total: "Replication messages refused (to be retried), by receiving region and origin peer.",
  replication_heartbeats_total: "Heartbeats received, by receiving region and origin peer.",
  replication_send_errors_total: "Failed sends to the replication queue, by sending region.",
  replication_heartbeat_failures_total: "Heartbeats a region could not deliver, by sending region and peer.",
  replication_dead_letters_total: "Messages that exhausted their retries, by target region and origin peer.",
  replication_pushes_total: "Writes pushed for a synchronous ack and merged, by receiving region and origin peer.",
  replication_push_failures_total:
    "Synchronous-ack pushes that failed (the queue still delivers), by sending region and peer.",
  conflicts_total:
    "Entries written to the conflict log, of every kind it shows (register: LWW losers; type: writes of another type; fenced), by region and the peer whose write arrived.",
  replication_fenced_total:
    "Writes of a deposed primary refused or dropped (and logged), by region and the region they came from.",
};

/**
 * Renders the exposition text from replica statuses (null for a region that did not answer),
 * gathered at about `nowMs` by this router's clock.
 */
export function renderMetrics(
  statuses: ShardStatuses,
  nowMs: number,
  health: ReadonlyMap<RegionId, { readonly healthy: boolean; readonly takenOut: boolean }> = new Map(),
): string {
  const lines: string[] = [];
  const replicas = labelled(statuses);
  lines.push(
    "# HELP replication_lag_seconds How stale a region may be with respect to a peer (0 when caught up; absent while unknown, see replication_lag_unknown).",
  );
  lines.push("# TYPE replication_lag_seconds gauge");
  for (const { labels: at, status } of replicas) {
    if (status === null) continue;
    for (const [peer, lag] of Object.entries(status.lag))
      if (lag.ms !== null) lines.push(`replication_lag_seconds{${at},peer="${peer}"} ${lag.ms / 1000}`);
  }
  lines.push(
    `# HELP replication_delay_seconds How long a peer's recent writes took from their commit there to becoming visible in a region (quantiles over the last ${DELAY_WINDOW} writes; count and sum since the replica started).`,
  );
  lines.push("# TYPE replication_delay_seconds summary");
  for (const { labels: at, status } of replicas) {
    if (status === null) continue;
    for (const [peer, d] of Object.entries(status.delays)) {
      const labels = `${at},peer="${peer}"`;
      lines.push(`replication_delay_seconds{${labels},quantile="0.5"} ${d.p50Ms / 1000}`);
      lines.push(`replication_delay_seconds{${labels},quantile="0.99"} ${d.p99Ms / 1000}`);
      lines.push(`replication_delay_seconds_sum{${labels}} ${d.sumMs / 1000}`);
      lines.push(`replication_delay_seconds_count{${labels}} ${d.count}`);
    }
  }
  lines.push(
    "# HELP replication_lag_unknown 1 while a region has no honest lag figure for a peer (never heard from it, or the region is bootstrapping).",
  );
  lines.push("# TYPE replication_lag_unknown gauge");
  for (const { labels: at, status } of replicas) {
    if (status === null) continue;
    for (const [peer, lag] of Object.entries(status.lag))
      lines.push(`replication_lag_unknown{${at},peer="${peer}"} ${lag.ms === null || status.bootstrapping ? 1 : 0}`);
  }
  lines.push("# HELP replication_lag_entries Writes a region knows a peer made but has not applied yet.");
  lines.push("# TYPE replication_lag_entries gauge");
  for (const { labels: at, status } of replicas) {
    if (status === null) continue;
    for (const [peer, lag] of Object.entries(status.lag))
      lines.push(`replication_lag_entries{${at},peer="${peer}"} ${lag.entries}`);
  }
  lines.push(
    "# HELP replication_outbox_pending Writes committed in a region and not yet confirmed applied by every peer.",
  );
  lines.push("# TYPE replication_outbox_pending gauge");
  for (const { labels: at, status } of replicas)
    if (status !== null) lines.push(`replication_outbox_pending{${at}} ${status.outboxPending}`);
  lines.push("# HELP replication_dead_letters Dead letters recorded in a region and not yet replayed.");
  lines.push("# TYPE replication_dead_letters gauge");
  for (const { labels: at, status } of replicas)
    if (status !== null) lines.push(`replication_dead_letters{${at}} ${status.deadLetters}`);
  lines.push(
    "# HELP region_healthy Whether a region serves: every shard answered, none is bootstrapping, and the control object has it in service.",
  );
  lines.push("# TYPE region_healthy gauge");
  for (const [region, { healthy }] of health) lines.push(`region_healthy{region="${region}"} ${healthy ? 1 : 0}`);
  lines.push("# HELP region_taken_out 1 while an admin has taken the region out (until it is put back).");
  lines.push("# TYPE region_taken_out gauge");
  for (const [region, { takenOut }] of health) lines.push(`region_taken_out{region="${region}"} ${takenOut ? 1 : 0}`);
  lines.push(
    "# HELP region_up Whether a replica of the region answered this scrape and is in service (0 while taken out).",
  );
  lines.push("# TYPE region_up gauge");
  for (const { region, labels: at, status } of replicas) {
    const out = status === null || status.takenOut || health.get(region)?.takenOut === true;
    lines.push(`region_up{${at}} ${out ? 0 : 1}`);
  }
  lines.push(
    "# HELP replica_writes_applied_total Writes a replica object applied: its own, and those it merged from its peers (the object's share of the store's write load).",
  );
  lines.push("# TYPE replica_writes_applied_total counter");
  for (const { labels: at, status } of replicas) {
    if (status === null) continue;
    const applied = status.metrics.filter((m) => m.name === "writes_applied_total").reduce((n, m) => n + m.value, 0);
    lines.push(`replica_writes_applied_total{${at}} ${applied}`);
  }
  lines.push("# HELP store_keys Keys a region stores: live ones, and tombstones not yet collected.");
  lines.push("# TYPE store_keys gauge");
  for (const { labels: at, status } of replicas) {
    if (status === null) continue;
    lines.push(`store_keys{${at},state="live"} ${status.keys.live}`);
    lines.push(`store_keys{${at},state="tombstone"} ${status.keys.tombstones}`);
  }
  lines.push(
    "# HELP region_clock_offset_seconds How far a region's clock is from the median of all regions' clocks (and the router's); beyond the HLC's 60 s bound the region is unhealthy with reason clock_skew.",
  );
  lines.push("# TYPE region_clock_offset_seconds gauge");
  for (const [region, offset] of clockOffsets(readingsOf(statuses), nowMs))
    lines.push(`region_clock_offset_seconds{region="${region}"} ${offset / 1000}`);
  lines.push("# HELP region_bootstrapping 1 while a region is new and still pulling its peers' data.");
  lines.push("# TYPE region_bootstrapping gauge");
  for (const { labels: at, status } of replicas)
    if (status !== null) lines.push(`region_bootstrapping{${at}} ${status.bootstrapping ? 1 : 0}`);
  for (const [name, help] of Object.entries(COUNTERS)) {
    lines.push(`# HELP ${name} ${help}`);
    lines.push(`# TYPE ${name} counter`);
    // Replicas count anti-entropy bytes apart; they are exposed as a kind of replication bytes.
    // Replicas count bootstrap time in milliseconds; it is exposed in seconds.
    const sources: ReadonlyArray<[string, string]> =
      name === "replication_bytes_total"
        ? [
            ["replication_bytes_total", ',kind="stream"'],
            ["anti_entropy_bytes_total", ',kind="anti_entropy"'],
          ]
        : name === "bootstrap_seconds_total"
          ? [["bootstrap_ms_total", ""]]
          : [[name, ""]];
    const scale = name === "bootstrap_seconds_total" ? 1 / 1000 : 1;
    let any = false;
    for (const { labels: at, status } of replicas) {
      for (const m of status?.metrics ?? []) {
        const source = sources.find(([stored]) => stored === m.name);
        if (source === undefined) continue;
        lines.push(`${name}{${at},peer="${escape(m.peer)}"${source[1]}} ${m.value * scale}`);
        any = true;
      }
    }
    // Always expose the series so dashboards and alerts can rely on its presence: at zero for
    // every peer (the region itself for the counters it keeps of itself).
    if (!any)
      for (const { region, labels: at } of replicas)
        for (const peer of OWN_COUNTERS.has(name) ? [region] : [...statuses.keys()].filter((r) => r !== region))
          lines.push(`${name}{${at},peer="${peer}"${sources[0]?.[1] ?? ""}} 0`);
  }
  lines.push("# HELP http_request_duration_seconds Router request latency, by method, route pattern and status.");
  lines.push("# TYPE http_request_duration_seconds histogram");
  for (const [labels, h] of histograms) {
    BUCKETS_SECONDS.forEach((bound, i) =>
      lines.push(`http_request_duration_seconds_bucket{${labels},le="${bound}"} ${h.counts[i]}`),
    );
    lines.push(`http_request_duration_seconds_bucket{${labels},le="+Inf"} ${h.count}`);
    lines.push(`http_request_duration_seconds_sum{${labels}} ${h.sum}`);
    lines.push(`http_request_duration_seconds_count{${labels}} ${h.count}`);
  }
  return `${lines.join("\n")}\n`;
}
