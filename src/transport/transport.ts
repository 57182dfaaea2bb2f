// The Transport interface: how replicas exchange frames (encoded protocol messages), whatever carries
// them (libp2p, RDMA, memory). The BFT core never sees a transport; the node's driver does.

import type { ReplicaId } from "../bft/types.ts";
import { OrdererError } from "../util/errors.ts";

/** What became of one frame handed to send(). */
export type SendResult =
  /** Queued for the peer (delivery is still best effort: the protocol retransmits). */
  | "queued"
  /** The peer's outgoing queue is full: the frame was dropped and counted (see BACKPRESSURE). */
  | "dropped-full"
  /** Larger than the transport's frame limit: refused and counted. */
  | "refused-oversized"
  /** Not a replica of the configured cluster (or this replica itself). */
  | "refused-unknown-peer"
  /** The transport is not running. */
  | "refused-stopped";

/**
 * Backpressure policy (all transports): each peer has a bounded outgoing queue (`queueMaxFrames`
 * frames and `queueMaxBytes` bytes). While a peer is slow, unreachable or restarting, frames for it
 * queue up to that bound; beyond it, new frames for that peer are dropped (newest first) and counted,
 * and send() says so. Dropping is safe because the protocol tolerates message loss and retransmits;
 * blocking the replica's single event loop on one slow peer would not be.
 */
export interface TransportLimits {
  readonly frameMaxBytes: number;
  readonly queueMaxFrames: number;
  readonly queueMaxBytes: number;
}

export const DEFAULT_TRANSPORT_LIMITS: TransportLimits = Object.freeze({
  frameMaxBytes: 64 * 1024 * 1024,
  queueMaxFrames: 65_536,
  queueMaxBytes: 256 * 1024 * 1024,
});

export interface PeerStats {
  queuedFrames: number;
  queuedBytes: number;
  sentFrames: number;
  receivedFrames: number;
  droppedFull: number;
  refusedOversized: number;
}

/** A transport's configuration is unusable (ids, keys, addresses): start() rejects with it. */
export class TransportConfigError extends OrdererError<"TRANSPORT_CONFIG"> {
  override readonly name = "TransportConfigError";
  constructor(message: string) {
    super("TRANSPORT_CONFIG", message);
  }
}

export type FrameHandler = (from: ReplicaId, frame: Uint8Array) => void;

export interface Transport {
  /** This replica's id in the cluster configuration. */
  readonly self: ReplicaId;
  /** Begins accepting and making connections. Rejects if the identity is not in the cluster config. */
  start(): Promise<void>;
  /** Stops: closes connections, drops queued frames, releases every handle. Idempotent. */
  stop(): Promise<void>;
  /** Hands one frame to peer `to` (see SendResult and the backpressure policy). Never throws. */
  send(to: ReplicaId, frame: Uint8Array): SendResult;
  /** send() to every other replica. */
  broadcast(frame: Uint8Array): void;
  /** The one handler for incoming frames, in per-peer FIFO order. `from` is authenticated. */
  onFrame(handler: FrameHandler): void;
  /** Per-peer counters. */
  stats(): ReadonlyMap<ReplicaId, Readonly<PeerStats>>;
  /**
   * Whether a connection to `peer` is open now. Optional: a transport without the notion leaves it
   * out, and its replicas suspect a leader by request timeouts only (limits.leaderLinkGraceTicks).
   */
  isConnected?(peer: ReplicaId): boolean;
}

/** The counters of `peer` in `counters`, created on first use. */
export function peerStats(counters: Map<ReplicaId, PeerStats>, peer: ReplicaId): PeerStats {
  let s = counters.get(peer);
  if (!s) {
    s = emptyPeerStats();
    counters.set(peer, s);
  }
  return s;
}

export function emptyPeerStats(): PeerStats {
  return {
    queuedFrames: 0,
    queuedBytes: 0,
    sentFrames: 0,
    receivedFrames: 0,
    droppedFull: 0,
    refusedOversized: 0,
  };
}

/** A peer's outgoing queue as the stream transports (libp2p, rdma) keep it. */
export interface FrameQueue {
  readonly frames: Uint8Array[];
  flushScheduled: boolean;
}

/**
 * Queues a frame admitFrame() let through, counting it, and schedules one flush for the end of the
 * caller's turn, so that frames sent together share writes.
 */
export function enqueueFrame(q: FrameQueue, s: PeerStats, frame: Uint8Array, flush: () => void): SendResult {
  q.frames.push(frame);
  s.queuedFrames++;
  s.queuedBytes += frame.length;
  if (!q.flushScheduled) {
    q.flushScheduled = true;
    queueMicrotask(() => {
      q.flushScheduled = false;
      flush();
    });
  }
  return "queued";
}

/**
 * What every transport's send() checks before queueing a frame for `to` (of replicas 0..n-1), counting
 * refusals in the peer's stats; null when the frame may be queued. Applies the backpressure policy.
 */
export function admitFrame(
  running: boolean,
  self: ReplicaId,
  n: number,
  limits: TransportLimits,
  statOf: (peer: ReplicaId) => PeerStats,
  to: ReplicaId,
  frame: Uint8Array,
): SendResult | null {
  if (!running) return "refused-stopped";
  if (!Number.isInteger(to) || to < 0 || to >= n || to === self) return "refused-unknown-peer";
  const s = statOf(to);
  if (!(frame instanceof Uint8Array) || frame.length > limits.frameMaxBytes) {
    s.refusedOversized++;
    return "refused-oversized";
  }
  if (s.queuedFrames >= limits.queueMaxFrames || s.queuedBytes + frame.length > limits.queueMaxBytes) {
    s.droppedFull++;
    return "dropped-full";
  }
  return null;
}
