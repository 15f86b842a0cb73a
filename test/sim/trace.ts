// What happened in one simulation, kept short: the last notes (faults injected, failovers,
// refusals), printed with the seed when a check fails.

/** Notes kept at most; older ones are dropped (a failing seed replays the rest). */
const NOTES_MAX = 400;

/** A bounded log of notes stamped with virtual time. */
export class Trace {
  private readonly notes: string[] = [];
  private dropped = 0;
  private readonly now: () => number;
  private readonly startMs: number;

  constructor(now: () => number, startMs: number) {
    this.now = now;
    this.startMs = startMs;
  }

  note(text: string): void {
    if (this.notes.length >= NOTES_MAX) {
      this.notes.shift();
      this.dropped += 1;
    }
    this.notes.push(`${String(this.now() - this.startMs).padStart(7)} ms  ${text}`);
  }

  /** The kept notes, oldest first, with a count of those dropped. */
  text(last = NOTES_MAX): string {
    const kept = this.notes.slice(-last);
    const skipped = this.dropped + (this.notes.length - kept.length);
    return [skipped > 0 ? `  (${skipped} earlier notes left out)` : "", ...kept].filter((l) => l !== "").join("\n");
  }
}
