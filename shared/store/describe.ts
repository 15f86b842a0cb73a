/**
 * JSON descriptions of stored states for the conflict log: enough to see what won, what lost
 * and why, and to recover a losing value.
 */
import { toBase64Url } from "../bytes.ts";
import { formatHlc } from "../hlc.ts";
import { orsetMembers } from "../crdt/or-set.ts";
import { pnValueExact } from "../crdt/pn-counter.ts";
import { type KeyState, decodeKeyState, keyVersion } from "./key-state.ts";

/** Values up to this size are included in conflict descriptions; larger ones give only their size. */
export const DESCRIBED_VALUE_BYTES_MAX = 64 * 1024;

/** A JSON description of one side of a conflict. */
export type StateDescription = Readonly<Record<string, unknown>>;

/** Describes an encoded key state. */
export function describeState(encoded: Uint8Array): StateDescription {
  return describe(decodeKeyState(encoded));
}

function describe(state: KeyState): StateDescription {
  const version = keyVersion(state);
  switch (state.type) {
    case "register": {
      const r = state.register;
      const base = {
        type: "register",
        version,
        stamp: formatHlc(r.stamp),
        region: r.stamp.region,
        wallMs: r.stamp.wallMs,
      };
      if (r.value === null) return { ...base, deleted: true };
      return {
        ...base,
        deleted: false,
        contentType: r.contentType,
        sizeBytes: r.value.length,
        valueBase64url: r.value.length <= DESCRIBED_VALUE_BYTES_MAX ? toBase64Url(r.value) : null,
      };
    }
    case "counter":
      return { type: "counter", version, value: pnValueExact(state.counter).toString() };
    case "set":
      return { type: "set", version, members: orsetMembers(state.set) };
  }
}
