// The BFT core's public surface.

import { HybridReplica } from "./hybrid.ts";
import { PbftReplica } from "./pbft.ts";
import type { ReplicaCore } from "./replica.ts";
import type { ReplicaConfig, ReplicaDeps } from "./replica-config.ts";
import type { StorageReader } from "./storage.ts";

export * from "./bytes.ts";
export {
  GENESIS_CHECKPOINT,
  GENESIS_CLIENTS_DIGEST,
  GENESIS_STATE_DIGEST,
} from "./checkpoints.ts";
export * from "./client-auth.ts";
export * from "./crypto.ts";
export * from "./digests.ts";
export { RESEND_BACKOFF_MAX, type SentLog } from "./effects.ts";
export * from "./errors.ts";
export { HybridReplica, ORDER_COUNTER } from "./hybrid.ts";
export * from "./leader-pace.ts";
export { PbftReplica } from "./pbft.ts";
export * from "./quorum.ts";
export * from "./replica.ts";
export type { ReplicaConfig, ReplicaDeps } from "./replica-config.ts";
export {
  batchWithin,
  QUEUE_COMPACT_MIN,
  REQUEST_SAMPLES,
  REQUEST_SAMPLES_MIN,
  REQUEST_TIMEOUT_CAP,
  REQUEST_TIMEOUT_MULTIPLE,
  requestKey,
} from "./request-intake.ts";
export type { ProposeResult } from "./request-router.ts";
export { messageShapeProblem } from "./shape.ts";
export { STATE_CHUNK_BYTES } from "./state-transfer.ts";
export * from "./storage.ts";
export * from "./trusted.ts";
export * from "./types.ts";

export type Replica = ReplicaCore;

/** Builds a replica of the configured mode, restored from `storage` when given. */
export function createReplica(cfg: ReplicaConfig, deps: ReplicaDeps, storage?: StorageReader): ReplicaCore {
  return cfg.mode === "hybrid" ? new HybridReplica(cfg, deps, storage) : new PbftReplica(cfg, deps, storage);
}
