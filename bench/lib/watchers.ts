/**
 * Open change-feed watchers for a benchmark phase: `count` Server-Sent Events streams of
 * `GET /v1/watch` on the store, each read as it arrives (as a client would), closed after the
 * phase. What the write path pays for them is the phase's CPU against the same writes without.
 */

/** Events the watchers of the last phase received, for the log. */
export interface WatcherTally {
  events: number;
}

/** One WebSocket watcher (the region's watch hub), open once it is; closing it ends it. */
async function socketWatcher(url: string, token: string, tally: WatcherTally): Promise<{ abort(): void }> {
  const ws = new WebSocket(url.replace(/^http/, "ws"), {
    headers: { Authorization: `Bearer ${token}` },
  } as unknown as string[]);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    ws.addEventListener("error", () => reject(new Error("watch: the WebSocket did not open")), { once: true });
  });
  ws.addEventListener("message", () => {
    tally.events += 1;
  });
  return { abort: () => ws.close() };
}

/**
 * A scenario's `around`: runs the phase with `count` watchers of `prefix` open in `region`, as
 * Server-Sent Events streams (`sse`) or WebSockets held by the region's watch hub (`ws`).
 */
export function withWatchers(
  baseUrl: string,
  token: string,
  region: string,
  prefix: string,
  count: number,
  tally: WatcherTally,
  transport: "sse" | "ws" = "sse",
): (phase: () => Promise<void>) => Promise<void> {
  return async (phase) => {
    if (transport === "ws") {
      const url = `${baseUrl}/v1/watch?region=${region}&prefix=${encodeURIComponent(prefix)}`;
      const sockets = await Promise.all(Array.from({ length: count }, () => socketWatcher(url, token, tally)));
      try {
        await phase();
      } finally {
        for (const s of sockets) s.abort();
      }
      return;
    }
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
