// The simulator's outcome checker on registers: the final value must be the last writer's, and
// it must carry the last writer's metadata, not another write's.
import { describe, expect, it } from "vitest";
import { type CommittedWrite, checkOutcome } from "../../shared/check/outcomes.ts";
import { formatHlc, hlcNow, hlcZero } from "../../shared/hlc.ts";
import { type KeyState, applyKeyOp, encodeKeyState, keyVersion } from "../../shared/store/key-state.ts";

/** A put of `value` with `metadata` at `wallMs` on top of `prior`, and the write the checker would record. */
function put(
  id: number,
  prior: KeyState | undefined,
  value: string,
  metadata: string | null,
  wallMs: number,
): { state: KeyState; write: CommittedWrite } {
  const stamp = hlcNow(hlcZero("wnam"), wallMs);
  const applied = applyKeyOp(
    prior,
    {
      type: "register",
      op: { kind: "put", value: new TextEncoder().encode(value), contentType: "text/plain", metadata },
    },
    "wnam",
    stamp,
  );
  if (!applied.ok) throw new Error(applied.error.message);
  const write: CommittedWrite = {
    id,
    region: "wnam",
    key: "k",
    op: { type: "register", value, metadata },
    version: keyVersion(applied.value),
    stamp: formatHlc(stamp),
    epoch: null,
    acknowledged: true,
  };
  return { state: applied.value, write };
}

/** One replica's final keys: `k` at `state`. */
function finals(state: KeyState) {
  return new Map([["k", { encoded: encodeKeyState(state), epoch: 0 }]]);
}

describe("checkOutcome on registers", () => {
  it("accepts the last writer's value with its metadata, and reports it with another write's", () => {
    const first = put(0, undefined, "a", '{"by":"first"}', 1_000);
    const second = put(1, first.state, "b", null, 2_000);
    const writes = [first.write, second.write];
    expect(checkOutcome(finals(second.state), writes, [])).toEqual([]);
    // The last writer's value, but the first write's metadata kept on it.
    const mixed: KeyState =
      second.state.type === "register"
        ? { type: "register", register: { ...second.state.register, metadata: '{"by":"first"}' } }
        : second.state;
    expect(checkOutcome(finals(mixed), writes, []).map((v) => v.rule)).toEqual(["register_not_last_writer"]);
  });
});
