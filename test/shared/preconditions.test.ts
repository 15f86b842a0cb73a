// Conditional request validators (RFC 9110, 13.1): `*` or a list of entity tags; If-Match
// compares strongly (weak tags never match), If-None-Match weakly; anything else is refused.
import { describe, expect, it } from "vitest";
import { ifMatchVersions, noneMatch, parseValidators } from "../../shared/preconditions.ts";

const parsed = (raw: string) => {
  const result = parseValidators("If-Match", raw);
  return result.ok ? result.value : result.error.code;
};

describe("validators", () => {
  it("parse *, one tag, a list, and weak tags", () => {
    expect(parsed("*")).toBe("*");
    expect(parsed(' "abc" ')).toEqual([{ weak: false, tag: "abc" }]);
    expect(parsed('"a", W/"b",  "c"')).toEqual([
      { weak: false, tag: "a" },
      { weak: true, tag: "b" },
      { weak: false, tag: "c" },
    ]);
    expect(parsed('""')).toEqual([{ weak: false, tag: "" }]);
  });

  it("refuse anything that is not * or entity tags", () => {
    for (const bad of ["abc", '"a" "b"', '"unterminated', "W/abc", "**", ",", '"a"b', 'w/"a"', '"a\\"b"'])
      expect([bad, parsed(bad)]).toEqual([bad, "invalid_precondition"]);
  });

  it("If-Match keeps strong tags only; If-None-Match matches weakly", () => {
    const list = parseValidators("If-Match", '"a", W/"b"');
    if (!list.ok) throw new Error(list.error.message);
    expect(ifMatchVersions(list.value)).toEqual(["a"]);
    expect(ifMatchVersions("*")).toBe("*");
    expect(noneMatch(list.value, "b")).toBe(false);
    expect(noneMatch(list.value, "a")).toBe(false);
    expect(noneMatch(list.value, "z")).toBe(true);
    expect(noneMatch("*", "z")).toBe(false);
    expect(noneMatch("*", null)).toBe(true);
  });
});
