// The BFT core of this replica: who may submit (the replicas' gateways and coordination services, by
// their replica keys), how replica messages are authenticated, and its state read back from the store.

import {
  type ClientRegistry,
  createReplica,
  type Limits,
  type ReplicaCore,
  type StorageReader,
  staticRegistry,
} from "../../bft/index.ts";
import type { TrustedSubsystem } from "../../bft/trusted.ts";
import { ed25519ReplicaAuthenticator, nodeCrypto } from "../../crypto/node-crypto.ts";
import { txBatchCount } from "../../ordering/tx-batch.ts";
import { type ClusterConfig, coordClientId, gatewayClientId, type ResolvedNodeConfig } from "../config.ts";
import type { ReplicaKeys } from "./keys.ts";
import { gatewayIdsOf } from "./ordering-app.ts";

export function createCore(
  cluster: ClusterConfig,
  config: ResolvedNodeConfig,
  { seed, keys }: ReplicaKeys,
  limits: Partial<Limits>,
  storage: StorageReader,
  trusted: TrustedSubsystem | undefined,
): ReplicaCore {
  const registry: ClientRegistry = staticRegistry(
    cluster.replicas.flatMap((r, i) => [
      [gatewayClientId(r.id), { ed25519PublicKey: keys[i] as Uint8Array }],
      [coordClientId(r.id), { ed25519PublicKey: keys[i] as Uint8Array }],
    ]),
  );
  // Replica messages outside the counter's (checkpoints) are signed with the replica's key in both
  // modes; in hybrid mode, ordering messages carry the counter's certificates.
  const auth = ed25519ReplicaAuthenticator(seed, keys);
  const gatewayIds = gatewayIdsOf(cluster);
  return createReplica(
    { id: config.id, f: cluster.f, mode: cluster.mode, limits },
    {
      crypto: nodeCrypto,
      registry,
      auth,
      trusted,
      // A gateway's request weighs as many transactions as it carries: maxMessageCount bounds a block.
      requestWeight: (r) => (gatewayIds.has(r.clientId) ? txBatchCount(r.op) : 1),
    },
    storage,
  );
}
