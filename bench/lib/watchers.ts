/**
 * Open change-feed watchers for a benchmark phase: `count` Server-Sent Events streams of
 * `GET /v1/watch` on the store, each read as it arrives (as a client would), closed after the
 * phase. What the write path pays for them is the phase's CPU against the same writes without.
 */

/** Events the watchers of the last phase received, for the log. */
export interface WatcherTally {
  events: number;
}

/** A scenario's `around`: runs the phase with `count` watchers of `prefix` open in `region`. */
export function withWatchers(
  baseUrl: string,
  token: string,
  region: string,
  prefix: string,
  count: number,
  tally: WatcherTally,
): (phase: () => Promise<void>) => Promise<void> {
  return async (phase) => {
    const aborts = await Promise.all(
      Array.from({ length: count }, async () => {
        const abort = new AbortController();
        const res = await fetch(`${baseUrl}/v1/watch?region=${region}&prefix=${encodeURIComponent(prefix)}`, {
          headers: { Authorization: `Bearer ${token}` },
          signal: abort.signal,
        });
        if (res.status !== 200 || res.body === null) throw new Error(`watch: HTTP ${res.status}: ${await res.text()}`);
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        void (async () => {
          try {
            for (;;) {
              const { done, value } = await reader.read();
              if (done) return;
              tally.events += decoder.decode(value, { stream: true }).split("\ndata: ").length - 1;
            }
          } catch {
            // Aborted at the end of the phase.
          }
        })();
        return abort;
      }),
    );
    try {
      await phase();
    } finally {
      for (const abort of aborts) abort.abort();
    }
  };
}
