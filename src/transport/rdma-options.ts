// The rdma transport's options and their defaults (RDMA_DEFAULTS, the one place they are written);
// rdma.ts resolves them with withDefaults.

import type { ReplicaId } from "../bft/types.ts";
import { MAX_SLOT } from "./rdma-slots.ts";
import type { TransportLimits } from "./transport.ts";

/** One replica as the rdma transport sees it. */
export interface RdmaPeerConfig {
  readonly id: ReplicaId;
  /** Raw 32-byte ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** The UNIX socket path its rdma endpoint listens on. */
  readonly path: string;
}

export interface RdmaTransportOptions {
  readonly self: ReplicaId;
  /** This replica's 32-byte ed25519 private key seed; its public key must match the config. */
  readonly seed: Uint8Array;
  readonly peers: readonly RdmaPeerConfig[];
  readonly limits?: Partial<TransportLimits>;
  /** Inbox slots per peer (default 64) and slot size in bytes (default 16 320, one mailbox request). */
  readonly inboxSlots?: number;
  readonly slotBytes?: number;
  /** Redial backoff bounds in ms (default 20 .. 1000). */
  readonly redialMinMs?: number;
  readonly redialMaxMs?: number;
  /** An unauthenticated connection is closed after this long (default 5000 ms). */
  readonly handshakeMs?: number;
  /** Provider limits: refusals before a connection is closed / an identity banned. */
  readonly closeAfter?: number;
  readonly banAfter?: number;
  /** Called for every security event the provider raises (refused keys, bans, bad mailboxes). */
  readonly onSecurityEvent?: (e: { peer: ReplicaId | null; reason: string }) => void;
}

/**
 * The rdma transport's option defaults (see RdmaTransportOptions). Its redial bounds (20 .. 1000 ms) are its
 * own from before the shared base: kept, not DEFAULT_REDIAL_BACKOFF of peer-links.ts (50 .. 2000 ms).
 */
export const RDMA_DEFAULTS = Object.freeze({
  inboxSlots: 64,
  slotBytes: MAX_SLOT,
  redialMinMs: 20,
  redialMaxMs: 1000,
  handshakeMs: 5000,
}) satisfies Partial<RdmaTransportOptions>;
