/**
 * Replication delay as a reader sees it: per origin, how long its recent writes took from their
 * commit there to the moment they became visible here (merged by the stream, a push or a direct
 * push; a copy that changed nothing is not counted). Measured by the two regions' clocks, so it
 * includes any skew between them (exact when they share one, as every region does locally).
 * Kept in memory over the last {@link DELAY_WINDOW} writes of each origin: an observation
 * window, not state (a restarted replica starts it afresh).
 */

/** Writes per origin the window keeps. */
export const DELAY_WINDOW = 512;

/** An origin's recent delays: quantiles over the window, and totals since this replica started. */
export interface DelaySummary {
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Writes in the window. */
  readonly samples: number;
  /** Writes counted since the replica started, and the sum of their delays. */
  readonly count: number;
  readonly sumMs: number;
}

interface Window {
  readonly ring: number[];
  next: number;
  count: number;
  sumMs: number;
}

/** Nearest-rank quantile of sorted values. */
function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0;
}

/** The delay windows of one replica, by origin. */
export class DelayWindows {
  private readonly windows = new Map<string, Window>();

  /** Records that a write of `origin` became visible `ms` after its commit (a negative skew counts as 0). */
  record(origin: string, ms: number): void {
    let window = this.windows.get(origin);
    if (window === undefined) {
      window = { ring: [], next: 0, count: 0, sumMs: 0 };
      this.windows.set(origin, window);
    }
    const delay = Math.max(0, ms);
    if (window.ring.length < DELAY_WINDOW) window.ring.push(delay);
    else window.ring[window.next] = delay;
    window.next = (window.next + 1) % DELAY_WINDOW;
    window.count += 1;
    window.sumMs += delay;
  }

  /** The summary of `origin`'s window; undefined before its first write. */
  summary(origin: string): DelaySummary | undefined {
    const window = this.windows.get(origin);
    if (window === undefined) return undefined;
    const sorted = [...window.ring].sort((a, b) => a - b);
    return {
      p50Ms: quantile(sorted, 0.5),
      p99Ms: quantile(sorted, 0.99),
      samples: sorted.length,
      count: window.count,
      sumMs: window.sumMs,
    };
  }
}
