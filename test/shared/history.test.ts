// The history checker must flag each kind of broken promise and accept correct histories.
import { describe, expect, it } from "vitest";
import { type HistoryOp, checkHistory } from "../../shared/check/history.ts";
import { formatVv, vvFrom } from "../../shared/version-vector.ts";

const v = (wnam: number, enam = 0): string =>
  formatVv(
    vvFrom([
      ["wnam", wnam],
      ["enam", enam],
    ]),
  );

function op(partial: Partial<HistoryOp> & Pick<HistoryOp, "kind" | "startMs" | "endMs">): HistoryOp {
  return { client: "c1", key: "k", region: "wnam", mode: "session", ok: true, version: null, ...partial };
}

describe("history checker", () => {
  it("accepts a history that keeps every promise", () => {
    const history = [
      op({ kind: "write", startMs: 0, endMs: 1, version: v(1) }),
      op({ kind: "read", region: "enam", startMs: 2, endMs: 3, version: v(1) }),
      op({ kind: "read", region: "weur", startMs: 4, endMs: 5, version: v(1, 1) }),
      op({ client: "q", kind: "write", mode: "quorum", startMs: 6, endMs: 7, version: v(2, 1) }),
      op({ client: "r", kind: "read", mode: "quorum", startMs: 8, endMs: 9, version: v(2, 1) }),
      // Overlapping operations promise nothing.
      op({ client: "r", kind: "read", mode: "quorum", startMs: 6.5, endMs: 9, version: v(1, 1) }),
    ];
    expect(checkHistory(history)).toEqual([]);
  });

  it("flags a session read that misses the client's own earlier write", () => {
    const violations = checkHistory([
      op({ kind: "write", startMs: 0, endMs: 1, version: v(2) }),
      op({ kind: "read", region: "apac", startMs: 2, endMs: 3, version: v(1) }),
    ]);
    expect(violations.map((x) => x.rule)).toEqual(["read_your_writes"]);
  });

  it("flags a session read that finds nothing after the client's write", () => {
    const violations = checkHistory([
      op({ kind: "write", startMs: 0, endMs: 1, version: v(1) }),
      op({ kind: "read", startMs: 2, endMs: 3, version: null }),
    ]);
    expect(violations.map((x) => x.rule)).toEqual(["read_your_writes"]);
  });

  it("flags reads that go back in time, and concurrent versions as not covering", () => {
    const back = checkHistory([
      op({ kind: "read", startMs: 0, endMs: 1, version: v(2) }),
      op({ kind: "read", startMs: 2, endMs: 3, version: v(1) }),
    ]);
    expect(back.map((x) => x.rule)).toEqual(["monotonic_reads"]);
    const sideways = checkHistory([
      op({ kind: "read", startMs: 0, endMs: 1, version: v(1, 0) }),
      op({ kind: "read", startMs: 2, endMs: 3, version: v(0, 1) }),
    ]);
    expect(sideways.map((x) => x.rule)).toEqual(["monotonic_reads"]);
  });

  it("flags a quorum read that misses an acknowledged quorum write by another client", () => {
    const violations = checkHistory([
      op({ client: "w", kind: "write", mode: "quorum", startMs: 0, endMs: 1, version: v(3) }),
      op({ client: "r", kind: "read", mode: "quorum", startMs: 2, endMs: 3, version: v(2) }),
    ]);
    expect(violations.map((x) => x.rule)).toEqual(["quorum_visibility"]);
  });

  it("ignores failed operations and other clients' session writes", () => {
    expect(
      checkHistory([
        op({ kind: "write", startMs: 0, endMs: 1, version: v(5), ok: false }),
        op({ client: "other", kind: "write", startMs: 0, endMs: 1, version: v(4) }),
        op({ kind: "read", startMs: 2, endMs: 3, version: v(1) }),
      ]),
    ).toEqual([]);
  });

  it("flags a strong read that returns less than an earlier strong read, whoever made it", () => {
    const violations = checkHistory([
      op({ client: "a", kind: "read", mode: "strong", startMs: 0, endMs: 1, version: v(2) }),
      op({ client: "b", kind: "read", mode: "strong", startMs: 2, endMs: 3, version: v(1) }),
      // Overlapping strong reads promise nothing to each other.
      op({ client: "c", kind: "read", mode: "strong", startMs: 0.5, endMs: 4, version: v(1) }),
    ]);
    expect(violations.map((x) => x.rule)).toEqual(["strong_read_went_back"]);
  });

  it("flags a strong read that misses an acknowledged strong write", () => {
    const violations = checkHistory([
      op({ client: "a", kind: "write", mode: "strong", startMs: 0, endMs: 1, version: v(2) }),
      op({ client: "b", kind: "read", mode: "strong", startMs: 2, endMs: 3, version: v(1) }),
    ]);
    expect(violations.map((x) => x.rule)).toEqual(["quorum_visibility"]);
  });
});
