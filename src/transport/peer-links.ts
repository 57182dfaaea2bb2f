// The peer-link base of the connection-oriented transports (libp2p, rdma): the cluster-config checks,
// one link record per peer with its bounded outgoing frame queue, per-peer stats, send and broadcast,
// queue compaction and the redial backoff schedule. Each transport adds its own connection state to
// the link record and moves frames from the queue to the wire in its own flush().

import type { ReplicaId } from "../bft/types.ts";
import {
  admitFrame,
  DEFAULT_TRANSPORT_LIMITS,
  enqueueFrame,
  type FrameHandler,
  type PeerStats,
  peerStats,
  type SendResult,
  type Transport,
  TransportConfigError,
  type TransportLimits,
} from "./transport.ts";

/**
 * Redial backoff bounds in ms: the replica with the lower id redials a peer it lost after `minMs`,
 * doubling the delay after every failed attempt up to `maxMs`, and starts again at `minMs` once a
 * connection is up.
 */
export interface RedialBackoff {
  readonly minMs: number;
  readonly maxMs: number;
}

/** The default redial bounds (50 .. 2000 ms); a transport that needs others passes its own. */
export const DEFAULT_REDIAL_BACKOFF: RedialBackoff = Object.freeze({ minMs: 50, maxMs: 2000 });

/** A queue whose sent head is longer than this (and than half the queue) is compacted. */
const COMPACT_MIN_HEAD = 1024;

/** Put in place of a sent frame so that its bytes can be collected before the queue is compacted. */
const EMPTY = new Uint8Array(0);

/** What every link record holds: the outgoing queue (frames[head..] wait) and the redial state. */
export interface PeerLink {
  readonly peer: ReplicaId;
  readonly frames: Uint8Array[];
  head: number;
  flushScheduled: boolean;
  dialing: boolean;
  backoffMs: number;
  redialTimer: ReturnType<typeof setTimeout> | null;
}

/**
 * Checks what both transports require of a cluster configuration: ids 0..n-1, this replica among
 * them, a 32-byte ed25519 seed. Returns this replica's entry (whether the seed is its key is the
 * transport's check: each derives the public key its own way).
 */
export function checkClusterConfig<P extends { readonly id: ReplicaId }>(
  peers: readonly P[],
  self: ReplicaId,
  seed: Uint8Array,
): P {
  const ids = peers.map((p) => p.id).sort((a, b) => a - b);
  if (!ids.every((id, i) => id === i)) throw new TransportConfigError("replica ids must be 0..n-1");
  const me = peers.find((p) => p.id === self);
  if (!me) throw new TransportConfigError(`replica ${self} is not in the cluster configuration`);
  if (!(seed instanceof Uint8Array) || seed.length !== 32)
    throw new TransportConfigError("the ed25519 seed must be 32 bytes");
  return me;
}

/**
 * The common part of a transport that keeps one link per peer: send() queues frames on the peer's
 * link (transport.ts's admission and backpressure policy) and schedules the subclass's flush();
 * the subclass dials, accepts and moves frames, using the helpers below.
 */
export abstract class PeerLinkTransport<L extends PeerLink> implements Transport {
  readonly self: ReplicaId;
  protected readonly limits: TransportLimits;
  /** Replicas of the cluster: ids 0..n-1. */
  protected readonly n: number;
  protected readonly redial: RedialBackoff;
  protected readonly links = new Map<ReplicaId, L>();
  protected readonly counters = new Map<ReplicaId, PeerStats>();
  protected handler: FrameHandler | null = null;
  protected running = false;

  constructor(
    self: ReplicaId,
    n: number,
    limits: Partial<TransportLimits> | undefined,
    redial: RedialBackoff,
  ) {
    this.self = self;
    this.n = n;
    this.limits = { ...DEFAULT_TRANSPORT_LIMITS, ...limits };
    this.redial = redial;
  }

  abstract start(): Promise<void>;
  abstract stop(): Promise<void>;

  /** A new link record for `peer`: the common fields plus the transport's own. */
  protected abstract newLink(common: PeerLink): L;
  /** Moves queued frames of `link` towards the peer, as far as the connection lets it. */
  protected abstract flush(link: L): void;
  /** Opens a connection to `link.peer` (called by the redial timer). */
  protected abstract dial(link: L): void;

  // ------------------------------------------------------------------ Transport

  onFrame(handler: FrameHandler): void {
    this.handler = handler;
  }

  send(to: ReplicaId, frame: Uint8Array): SendResult {
    const refused = admitFrame(this.running, this.self, this.n, this.limits, (p) => this.stat(p), to, frame);
    if (refused !== null) return refused;
    const link = this.link(to);
    return enqueueFrame(link, this.stat(to), frame, () => this.flush(link));
  }

  broadcast(frame: Uint8Array): void {
    for (let p = 0; p < this.n; p++) if (p !== this.self) this.send(p, frame);
  }

  stats(): ReadonlyMap<ReplicaId, Readonly<PeerStats>> {
    return this.counters;
  }

  // ------------------------------------------------------------------ links and stats

  /** The link to `peer`, created on first use. */
  protected link(peer: ReplicaId): L {
    let l = this.links.get(peer);
    if (!l) {
      l = this.newLink({
        peer,
        frames: [],
        head: 0,
        flushScheduled: false,
        dialing: false,
        backoffMs: this.redial.minMs,
        redialTimer: null,
      });
      this.links.set(peer, l);
    }
    return l;
  }

  protected stat(peer: ReplicaId): PeerStats {
    return peerStats(this.counters, peer);
  }

  /** Hands a frame received from `peer` to the handler, counting it. */
  protected deliver(peer: ReplicaId, frame: Uint8Array): void {
    this.stat(peer).receivedFrames++;
    try {
      this.handler?.(peer, frame);
    } catch {
      // A handler's failure is the handler's; the link goes on.
    }
  }

  /** The frame at the head of the queue has been sent (`s`: the peer's stats): it leaves the queue. */
  protected frameSent(link: L, s: PeerStats): void {
    const frame = link.frames[link.head] as Uint8Array;
    link.frames[link.head++] = EMPTY;
    s.queuedFrames--;
    s.queuedBytes -= frame.length;
    s.sentFrames++;
  }

  /**
   * Drops the sent frames (before `head`) from the queue once all of it is sent, or once they are
   * more than COMPACT_MIN_HEAD and half of it. Returns how many were dropped: indices into the queue
   * that a transport keeps besides `head` move down by that many.
   */
  protected compact(link: L): number {
    const dropped = link.head;
    if (dropped === link.frames.length) link.frames.length = 0;
    else if (dropped > COMPACT_MIN_HEAD && dropped * 2 > link.frames.length) link.frames.splice(0, dropped);
    else return 0;
    link.head = 0;
    return dropped;
  }

  /** On stop: the queued frames are dropped and no longer counted as queued; no redial stays armed. */
  protected dropQueue(link: L): void {
    this.cancelRedial(link);
    link.frames.length = 0;
    link.head = 0;
    const s = this.stat(link.peer);
    s.queuedFrames = 0;
    s.queuedBytes = 0;
  }

  // ------------------------------------------------------------------ redial

  /**
   * Arms the redial timer for a link that is down: only the replica with the lower id dials, and only
   * one timer at a time. The caller checks that the transport runs and that the link is down (each
   * transport knows what "down" means); the delay doubles up to `redial.maxMs`.
   */
  protected scheduleRedial(link: L): void {
    if (this.self > link.peer || link.redialTimer) return;
    const delay = link.backoffMs;
    link.backoffMs = Math.min(link.backoffMs * 2, this.redial.maxMs);
    link.redialTimer = setTimeout(() => {
      link.redialTimer = null;
      this.dial(link);
    }, delay);
  }

  /** A connection is up: the next redial starts again from `redial.minMs`. */
  protected resetBackoff(link: L): void {
    link.backoffMs = this.redial.minMs;
  }

  protected cancelRedial(link: L): void {
    if (link.redialTimer) clearTimeout(link.redialTimer);
    link.redialTimer = null;
  }
}
