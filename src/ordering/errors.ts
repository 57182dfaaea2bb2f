// Errors the ordering API returns: a stable code, an HTTP status and a message (never a stack trace).

export type ApiErrorCode =
  | "MALFORMED"
  | "TX_TOO_LARGE"
  | "EMPTY_TX"
  | "RESERVED_PREFIX"
  | "BLOCK_NOT_FOUND"
  | "TX_NOT_FOUND"
  | "NOT_FOUND"
  | "NOT_READY"
  | "METHOD_NOT_ALLOWED"
  | "NO_QUORUM"
  | "OVERLOADED"
  | "NOT_EXECUTED"
  | "TIMEOUT"
  | "SHUTTING_DOWN"
  | "HALTED"
  | "INTERNAL";

export const API_ERROR_STATUS: Readonly<Record<ApiErrorCode, number>> = Object.freeze({
  MALFORMED: 400,
  EMPTY_TX: 400,
  RESERVED_PREFIX: 400,
  TX_TOO_LARGE: 413,
  BLOCK_NOT_FOUND: 404,
  TX_NOT_FOUND: 404,
  NOT_FOUND: 404,
  NOT_READY: 404,
  METHOD_NOT_ALLOWED: 405,
  NO_QUORUM: 503,
  OVERLOADED: 503,
  SHUTTING_DOWN: 503,
  HALTED: 503,
  NOT_EXECUTED: 500,
  TIMEOUT: 504,
  INTERNAL: 500,
});

export class ApiError extends Error {
  override readonly name = "ApiError";
  readonly status: number;
  constructor(
    readonly code: ApiErrorCode,
    message: string,
  ) {
    super(message);
    this.status = API_ERROR_STATUS[code];
  }

  toJSON(): { error: { code: ApiErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}
