/**
 * Buffered metric increments that follow transactions: increments made inside a transaction
 * are staged and join the buffer only if it commits, so a rolled-back write never shows up in
 * `/metrics`. The buffer is written out by `flush` (at most one heartbeat later).
 */

type Delta = { name: string; peer: string; delta: number };

function add(into: Map<string, Delta>, name: string, peer: string, delta: number): void {
  const key = `${name}\u0000${peer}`;
  const m = into.get(key);
  if (m === undefined) into.set(key, { name, peer, delta });
  else m.delta += delta;
}

/** Metric increments waiting to be written by `write`. */
export class MetricBuffer {
  private readonly pending = new Map<string, Delta>();
  private staged: Map<string, Delta> | undefined;
  private readonly write: (name: string, peer: string, delta: number) => void;

  /** `write` persists one accumulated increment. */
  constructor(write: (name: string, peer: string, delta: number) => void) {
    this.write = write;
  }

  /** Starts staging (an outermost transaction began). */
  begin(): void {
    this.staged = new Map();
  }

  /** Keeps what was staged (the transaction committed). */
  commit(): void {
    for (const m of this.staged?.values() ?? []) add(this.pending, m.name, m.peer, m.delta);
    this.staged = undefined;
  }

  /** Forgets what was staged (the transaction rolled back). */
  rollback(): void {
    this.staged = undefined;
  }

  add(name: string, peer: string, delta: number): void {
    add(this.staged ?? this.pending, name, peer, delta);
  }

  /** Writes the buffered increments. */
  flush(): void {
    for (const m of this.pending.values()) this.write(m.name, m.peer, m.delta);
    this.pending.clear();
  }
}
