// The HTTP status of each ordering API error code: the one place where codes become statuses.

import type { ApiErrorCode } from "../../ordering/errors.ts";

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
  FORBIDDEN_ORIGIN: 403,
  HEADERS_TOO_LARGE: 431,
  TOO_MANY_CONNECTIONS: 429,
  NO_QUORUM: 503,
  OVERLOADED: 503,
  SHUTTING_DOWN: 503,
  HALTED: 503,
  NOT_EXECUTED: 500,
  TIMEOUT: 504,
  INTERNAL: 500,
});
