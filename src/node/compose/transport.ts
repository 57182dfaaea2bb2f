// The replica's links to its peers: libp2p by default, or the rdma provider when the cluster asks for
// it; either authenticates every peer by its replica key.

import { Libp2pTransport } from "../../transport/libp2p.ts";
import { RdmaTransport } from "../../transport/rdma.ts";
import type { Logger } from "../../util/log.ts";
import type { ClusterConfig, ResolvedNodeConfig } from "../config.ts";
import type { ReplicaKeys } from "./keys.ts";

/** The transport the cluster's config names (not yet started: the host starts it). */
export function createTransport(
  cluster: ClusterConfig,
  config: ResolvedNodeConfig,
  { seed, keys }: ReplicaKeys,
  log: Logger,
): RdmaTransport | Libp2pTransport {
  if (cluster.transport === "rdma")
    return new RdmaTransport({
      self: config.id,
      seed,
      peers: cluster.replicas.map((r, i) => ({
        id: r.id,
        publicKey: keys[i] as Uint8Array,
        path: r.rdma as string,
      })),
      // Refused keys, forged slots, bad mailboxes, bans: every one is logged.
      onSecurityEvent: (e) => log.warn({ peer: e.peer, reason: e.reason }, "rdma security event"),
    });
  return new Libp2pTransport({
    self: config.id,
    seed,
    peers: cluster.replicas.map((r, i) => ({
      id: r.id,
      publicKey: keys[i] as Uint8Array,
      addr: r.p2p,
    })),
    listen: config.p2pListen,
    redialMinMs: 20,
    redialMaxMs: 1000,
  });
}
