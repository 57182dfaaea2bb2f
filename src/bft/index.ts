// The BFT core's public surface.

import { HybridReplica } from "./hybrid.ts";
import { PbftReplica } from "./pbft.ts";
import type { ReplicaConfig, ReplicaCore, ReplicaDeps } from "./replica.ts";
import type { StorageReader } from "./storage.ts";

export * from "./bytes.ts";
export * from "./client-auth.ts";
export * from "./crypto.ts";
export * from "./digests.ts";
export * from "./errors.ts";
export { HybridReplica, ORDER_COUNTER } from "./hybrid.ts";
export { PbftReplica } from "./pbft.ts";
export * from "./quorum.ts";
export * from "./replica.ts";
export { messageShapeProblem } from "./shape.ts";
export * from "./storage.ts";
export * from "./trusted.ts";
export * from "./types.ts";

export type Replica = ReplicaCore;

/** Builds a replica of the configured mode, restored from `storage` when given. */
export function createReplica(cfg: ReplicaConfig, deps: ReplicaDeps, storage?: StorageReader): ReplicaCore {
  return cfg.mode === "hybrid" ? new HybridReplica(cfg, deps, storage) : new PbftReplica(cfg, deps, storage);
}
