// Errors of the `orderer` command: a stable code and a one-line message; the exit code says what failed.

import { OrdererError } from "../util/errors.ts";

export type CliErrorCode =
  | "BAD_ARGUMENT"
  | "CONFIG_NOT_FOUND"
  | "CONFIG_SYNTAX"
  | "EXISTS"
  | "UNREACHABLE"
  | "FAILED";

export class CliError extends OrdererError<CliErrorCode> {
  override readonly name = "CliError";
  constructor(
    code: CliErrorCode,
    message: string,
    /** Process exit code: 2 for bad usage or configuration, 1 otherwise. */
    readonly exitCode = code === "BAD_ARGUMENT" || code.startsWith("CONFIG") || code === "EXISTS" ? 2 : 1,
  ) {
    super(code, message);
  }
}
