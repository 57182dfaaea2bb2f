// How a replica is configured (ReplicaConfig) and what it is given to work with (ReplicaDeps), and the
// checks a configuration must pass before a replica is built: the limits relate to one another.

import type { ClientRegistry } from "./client-auth.ts";
import type { CoreCrypto, ReplicaAuthenticator } from "./crypto.ts";
import { ConfigError } from "./errors.ts";
import type { TrustedSubsystem } from "./trusted.ts";
import type { ClientRequest, Limits, Mode, ReplicaId } from "./types.ts";

export interface ReplicaConfig {
  readonly id: ReplicaId;
  readonly f: number;
  readonly mode: Mode;
  readonly limits?: Partial<Limits>;
}

export interface ReplicaDeps {
  readonly crypto: CoreCrypto;
  readonly registry: ClientRegistry;
  /** Transferable authentication of this replica's messages (checkpoints; PBFT phases). */
  readonly auth: ReplicaAuthenticator;
  /** Hybrid mode only: this replica's trusted subsystem. */
  readonly trusted?: TrustedSubsystem;
  /**
   * How many of a batch's batchMaxCount a request takes (default 1): a request carrying k entries for
   * the application (a gateway's batch of transactions) weighs k, so batchMaxCount bounds entries per
   * batch. Must be a pure function of the request, the same on every replica; at least 1.
   */
  readonly requestWeight?: (r: ClientRequest) => number;
}

export function validateConfig(id: number, n: number, f: number, l: Limits): void {
  const bad = (field: string, why: string) => {
    throw new ConfigError("BAD_CONFIG", `${field}: ${why}`);
  };
  if (!Number.isInteger(f) || f < 0) bad("f", "must be an integer >= 0");
  if (!Number.isInteger(id) || id < 0 || id >= n) bad("id", `must be in 0..${n - 1}`);
  /** Limits where 0 turns the mechanism off. */
  const offAtZero = new Set(["leaderLinkGraceTicks", "leaderPaceFloorTicks"]);
  for (const [k, v] of Object.entries(l))
    if (!Number.isSafeInteger(v) || v < 0 || (v === 0 && !offAtZero.has(k)))
      bad(k, offAtZero.has(k) ? "must be an integer >= 0" : "must be a positive integer");
  if (l.window < 2 * l.checkpointInterval) bad("window", "must be >= 2 * checkpointInterval");
  if (l.retainBatches < l.checkpointInterval) bad("retainBatches", "must be >= checkpointInterval");
  // requestMaxBytes may exceed batchMaxBytes (Fabric: AbsoluteMaxBytes > PreferredMaxBytes): see batchWithin.
  if (l.stateChunkBatches < l.checkpointInterval) bad("stateChunkBatches", "must be >= checkpointInterval");
  if (l.pendingMaxBytes < l.requestMaxBytes) bad("pendingMaxBytes", "must be >= requestMaxBytes");
}
