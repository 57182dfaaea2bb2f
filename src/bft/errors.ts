// Typed errors of the core. Expected failures carry a stable `code`; bugs are assertions.

import { OrdererError } from "../util/errors.ts";

export class BftError extends OrdererError {}

/** The trusted subsystem refused to certify (a value would be certified twice or go backwards). */
export class CounterError extends BftError {}

/** The configuration is unusable. */
export class ConfigError extends BftError {}

/**
 * Persisted core state this version cannot read (code STATE_FORMAT): written by an older release
 * whose view-change records carried batches instead of their digests.
 */
export class StateFormatError extends BftError {
  constructor(what: string) {
    super(
      "STATE_FORMAT",
      `${what} was written by an older release (before wire version 5); start this replica on an empty ` +
        "data directory (it catches up from its peers)",
    );
  }
}

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
