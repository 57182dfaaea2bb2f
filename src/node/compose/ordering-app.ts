// The ordering service's parts above the core: the ledger (blocks cut from committed batches, signed,
// certified by a quorum, kept in the store) and the gateway (transactions batched into signed requests
// for the core; each answered with its receipt once its block is certified).

import type { Digests } from "../../bft/digests.ts";
import type { ClientRequest } from "../../bft/types.ts";
import { COORD_PREFIX, isCoordEntry } from "../../coord/ops.ts";
import { sha256, signEd25519, verifyEd25519 } from "../../crypto/node-crypto.ts";
import { Gateway } from "../../ordering/gateway.ts";
import { Ledger } from "../../ordering/ledger.ts";
import { decodeTxBatch, TX_BATCH_OVERHEAD_BYTES } from "../../ordering/tx-batch.ts";
import type { LevelStore } from "../../storage/level-store.ts";
import type { Transport } from "../../transport/transport.ts";
import type { StageTrace } from "../../util/trace.ts";
import {
  type ClusterConfig,
  canonicalJson,
  coordClientId,
  gatewayClientId,
  type ResolvedNodeConfig,
} from "../config.ts";
import type { ReplicaKeys } from "./keys.ts";

/** The client ids of the replicas' gateways (their requests carry batches of transactions). */
export function gatewayIdsOf(cluster: ClusterConfig): Set<string> {
  return new Set(cluster.replicas.map((r) => gatewayClientId(r.id)));
}

/** The ledger, read back from the store; it exchanges block signatures with its peers over `transport`. */
export function openLedger(
  cluster: ClusterConfig,
  config: ResolvedNodeConfig,
  { seed, keys }: ReplicaKeys,
  quorum: { readonly n: number; readonly commit: number },
  store: LevelStore,
  transport: Transport,
): Promise<Ledger> {
  const gatewayIds = gatewayIdsOf(cluster);
  return Ledger.open({
    db: store.db,
    genesisConfig: new TextEncoder().encode(canonicalJson(cluster)),
    self: config.id,
    n: quorum.n,
    quorum: quorum.commit,
    replicaKeys: keys,
    hash: sha256,
    verify: verifyEd25519,
    sign: (hh) => signEd25519(seed, hh),
    send: (to, frame) => (to === "all" ? transport.broadcast(frame) : void transport.send(to, frame)),
    sync: config.sync,
    // A gateway's request carries a batch of transactions; any other request is one entry.
    entriesOf: (op, clientId) =>
      gatewayIds.has(clientId) ? decodeTxBatch(op, cluster.batch.maxMessageCount) : [op],
    // A coordination entry counts only when its proposer field names the replica that signed it.
    acceptEntry: (op, clientId) =>
      !isCoordEntry(op) ||
      (op.length >= 8 && clientId === coordClientId(new DataView(op.buffer, op.byteOffset).getUint32(4))),
  });
}

export interface GatewayLinks {
  /** Hands a signed request of this replica to the core (the host's submit); returns its verdict. */
  readonly propose: (req: ClientRequest) => string;
  /** Whether this replica hears from enough peers to commit (submissions are refused otherwise). */
  readonly quorumOk: () => boolean;
  readonly trace?: StageTrace;
}

/** The gateway: batches submitted transactions into requests signed by this replica, proposes them. */
export function createGateway(
  cluster: ClusterConfig,
  config: ResolvedNodeConfig,
  seed: Uint8Array,
  digests: Digests,
  ledger: Ledger,
  links: GatewayLinks,
): Gateway {
  return new Gateway({
    ledger,
    propose: links.propose,
    clientId: gatewayClientId(config.id),
    sign: (d) => signEd25519(seed, d),
    digests,
    hash: sha256,
    txMaxBytes: cluster.batch.absoluteMaxBytes,
    batchMaxCount: cluster.batch.maxMessageCount,
    // Within the core's request bound (absoluteMaxBytes plus the batch's framing) and PreferredMaxBytes.
    batchMaxBytes: Math.min(
      cluster.batch.preferredMaxBytes,
      cluster.batch.absoluteMaxBytes + TX_BATCH_OVERHEAD_BYTES,
    ),
    pendingMax: config.pendingMax,
    pendingMaxBytes: config.pendingMaxBytes,
    timeoutMs: config.submitTimeoutMs,
    quorumOk: links.quorumOk,
    reservedPrefix: COORD_PREFIX,
    trace: links.trace,
  });
}
