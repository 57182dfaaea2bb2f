// Typed errors of the core. Expected failures carry a stable `code`; bugs are assertions.

import { OrdererError } from "../util/errors.ts";

export class BftError extends OrdererError {}

/** The trusted subsystem refused to certify (a value would be certified twice or go backwards). */
export class CounterError extends BftError {}

/** The configuration is unusable. */
export class ConfigError extends BftError {}

/** A request from a client was refused at intake. */
export class RequestError extends BftError {}

/** An internal invariant did not hold: a bug, never caused by input. */
export class AssertionFailed extends OrdererError<"ASSERTION_FAILED"> {
  constructor(message: string) {
    super("ASSERTION_FAILED", message);
  }
}

export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new AssertionFailed(message);
}
