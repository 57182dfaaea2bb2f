// Errors the ordering API returns: a stable code and a message (never a stack trace). The HTTP status of
// each code is the API layer's (src/node/api/statuses.ts).

import { OrdererError } from "../util/errors.ts";

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
  | "FORBIDDEN_ORIGIN"
  | "HEADERS_TOO_LARGE"
  | "TOO_MANY_CONNECTIONS"
  | "NO_QUORUM"
  | "OVERLOADED"
  | "NOT_EXECUTED"
  | "TIMEOUT"
  | "SHUTTING_DOWN"
  | "HALTED"
  | "INTERNAL";

export class ApiError extends OrdererError<ApiErrorCode> {
  override readonly name = "ApiError";

  toJSON(): { error: { code: ApiErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}
