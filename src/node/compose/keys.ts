// This replica's identity as the composition uses it: its Ed25519 seed and every replica's public key,
// read from the configs (hex) and checked against each other before anything is opened.

import { ConfigError } from "../../bft/errors.ts";
import { ed25519PublicKeyOf } from "../../crypto/node-crypto.ts";
import { bytesEq } from "../../ordering/block.ts";
import type { ClusterConfig, NodeConfig } from "../config.ts";

export const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, "hex"));

export interface ReplicaKeys {
  /** This replica's Ed25519 seed. */
  readonly seed: Uint8Array;
  /** Every replica's Ed25519 public key, by replica id. */
  readonly keys: Uint8Array[];
}

/** The seed and the public keys; the seed must be the one of this replica's public key. */
export function replicaKeys(cluster: ClusterConfig, config: NodeConfig): ReplicaKeys {
  const seed = hex(config.seed);
  const keys = cluster.replicas.map((r) => hex(r.publicKey));
  if (!bytesEq(ed25519PublicKeyOf(seed), keys[config.id] as Uint8Array))
    throw new ConfigError("BAD_CONFIG", `seed: does not match replicas[${config.id}].publicKey`);
  return { seed, keys };
}
