/**
 * The closed set of operating errors: everything a caller can get wrong or the system can
 * refuse. Each kind has one HTTP status, mapped in exactly one place (the router's `onError`).
 * Programmer errors are assertions instead (see `assert.ts`).
 */

/** Every operating error code, with the HTTP status it answers. */
export const ERROR_STATUS = {
  invalid_key: 400,
  invalid_body: 400,
  invalid_query: 400,
  invalid_header: 400,
  invalid_cursor: 400,
  unknown_region: 400,
  invalid_ack: 400,
  invalid_consistency: 400,
  invalid_session_token: 400,
  invalid_precondition: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  type_mismatch: 409,
  counter_overflow: 409,
  fenced: 409,
  precondition_failed: 412,
  value_too_large: 413,
  uri_too_long: 414,
  clock_skew: 422,
  region_unavailable: 503,
  primary_unavailable: 503,
  staleness_exceeded: 503,
  overloaded: 503,
  wrong_shard: 503,
  ack_timeout: 504,
  internal: 500,
} as const;

/** An operating error code. */
export type ErrorCode = keyof typeof ERROR_STATUS;

/** Extra, machine-readable facts an error answer carries (for example the regions that acked). */
export type ErrorDetails = Readonly<Record<string, DetailValue>>;

/** A detail's value: JSON-safe and structured-clone-safe, so errors cross RPC and reach clients intact. */
export type DetailValue = string | number | boolean | null | readonly string[];

/** The wire shape of every error answer. */
export interface ErrorBody {
  readonly error: { readonly code: ErrorCode; readonly message: string; readonly [detail: string]: DetailValue };
}

/** An operating error: a code, a message that says how to fix it, and optional details. */
export class StoreError extends Error {
  override readonly name = "StoreError";
  readonly code: ErrorCode;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message);
    this.code = code;
    this.details = details;
  }

  /** The HTTP status for this error. */
  get status(): number {
    return ERROR_STATUS[this.code];
  }

  /** The JSON body this error answers with. */
  toBody(): ErrorBody {
    return { error: { ...this.details, code: this.code, message: this.message } };
  }
}

/** A plain, structured-clone-safe error, for results that cross an RPC boundary. */
export interface ErrorData {
  readonly code: ErrorCode;
  readonly message: string;
  readonly details?: ErrorDetails;
}

/** Either a value or an operating error, for calls whose errors must survive serialisation. */
export type Result<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ErrorData };

/** A successful {@link Result}. */
export function ok<T>(value: T): Result<T> {
  return { ok: true, value };
}

/** A failed {@link Result}. */
export function fail<T = never>(code: ErrorCode, message: string, details?: ErrorDetails): Result<T> {
  return { ok: false, error: details === undefined ? { code, message } : { code, message, details } };
}

/** The value of a result, or its error thrown as a {@link StoreError}. */
export function unwrap<T>(result: Result<T>): T {
  if (result.ok) return result.value;
  throw new StoreError(result.error.code, result.error.message, result.error.details);
}

/** Whether `code` is one of the known error codes. */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_STATUS, code);
}
