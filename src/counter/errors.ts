// Typed errors of the trusted counter process and its client.

import { BftError } from "../bft/errors.ts";

/** The counter's state file cannot be used (corrupt, another subsystem's, a failed write). */
export class CounterStoreError extends BftError {}

/** The counter socket: a bad frame, a refused handshake, an unreachable or misbehaving counter process. */
export class CounterLinkError extends BftError {}
