/**
 * The validators of conditional requests (RFC 9110, 13.1): `If-Match` compares strongly, so a
 * weak tag (`W/"…"`) never matches; `If-None-Match` compares weakly. A header that is not `*`
 * or a list of entity tags is `invalid_precondition`, never guessed at.
 */
import { type Result, fail, ok } from "./errors.ts";

/** A parsed validator list: `*` (any current representation), or entity tags. */
export type Validators = "*" | ReadonlyArray<{ readonly weak: boolean; readonly tag: string }>;

/** One entity tag: optional `W/`, then a quoted string of etagc characters. */
const ENTITY_TAG = /^(W\/)?"([\x21\x23-\x7e\x80-\xff]*)"$/;

/** Parses `If-Match` or `If-None-Match` (`header` names it in the error). */
export function parseValidators(header: string, raw: string): Result<Validators> {
  const value = raw.trim();
  if (value === "*") return ok("*");
  const tags: Array<{ weak: boolean; tag: string }> = [];
  for (const part of value.split(",")) {
    const item = part.trim();
    if (item === "") continue;
    const match = ENTITY_TAG.exec(item);
    if (match === null) {
      return fail(
        "invalid_precondition",
        `${header} must be * or a list of entity tags such as "<version>" (the ETag of a read); got ${JSON.stringify(raw.slice(0, 100))}`,
      );
    }
    tags.push({ weak: match[1] !== undefined, tag: match[2] ?? "" });
  }
  if (tags.length === 0) return fail("invalid_precondition", `${header} is empty`);
  return ok(tags);
}

/** What `If-Match` asks of a write: any existing value, or one of these versions (strong tags only). */
export function ifMatchVersions(validators: Validators): "*" | string[] {
  return validators === "*" ? "*" : validators.filter((v) => !v.weak).map((v) => v.tag);
}

/** Whether `If-None-Match` holds against the current version (weak comparison; null: absent). */
export function noneMatch(validators: Validators, version: string | null): boolean {
  if (version === null) return true;
  return validators !== "*" && !validators.some((v) => v.tag === version);
}
