/**
 * Programmer-error checks. A failed assertion is a bug in this code, never bad user input
 * (that is a `StoreError`), so it is never caught.
 */
export class AssertionError extends Error {
  override readonly name = "AssertionError";
}

/** Asserts one condition; `message` names the broken invariant. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
