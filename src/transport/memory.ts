// In-memory transport for tests and in-process clusters: a hub connects the transports of one cluster;
// frames are copied, delivered asynchronously in per-peer FIFO order, optionally after a latency.
// (The simulator has its own deterministic network; this one runs on real timers.)

import type { ReplicaId } from "../bft/types.ts";
import { withDefaults } from "../util/defaults.ts";
import {
  admitFrame,
  DEFAULT_TRANSPORT_LIMITS,
  type FrameHandler,
  type PeerStats,
  peerStats,
  type SendResult,
  type Transport,
  type TransportLimits,
} from "./transport.ts";

export interface MemoryHubOptions {
  /** Replicas of the cluster: ids 0..n-1. Anything else is refused. */
  readonly n: number;
  /** Delivery delay per frame in ms (0: next turn of the event loop). */
  readonly latencyMs?: number;
}

/** The memory hub's option defaults: the one place they are written. */
export const MEMORY_HUB_DEFAULTS = Object.freeze({ latencyMs: 0 }) satisfies Partial<MemoryHubOptions>;

/** Connects the memory transports of one cluster. */
export class MemoryHub {
  readonly n: number;
  readonly latencyMs: number;
  private readonly live = new Map<ReplicaId, MemoryTransport>();

  constructor(opts: MemoryHubOptions) {
    const o = withDefaults(MEMORY_HUB_DEFAULTS, opts);
    this.n = o.n;
    this.latencyMs = o.latencyMs;
  }

  transport(self: ReplicaId, limits: Partial<TransportLimits> = {}): MemoryTransport {
    return new MemoryTransport(this, self, { ...DEFAULT_TRANSPORT_LIMITS, ...limits });
  }

  /** @internal */
  attach(t: MemoryTransport): void {
    if (!Number.isInteger(t.self) || t.self < 0 || t.self >= this.n) {
      throw new Error(`replica ${t.self} is not in the cluster (0..${this.n - 1})`);
    }
    if (this.live.has(t.self)) throw new Error(`replica ${t.self} is already running`);
    this.live.set(t.self, t);
    for (const other of this.live.values()) if (other !== t) other.peerUp(t.self);
  }

  /** @internal */
  detach(t: MemoryTransport): void {
    if (this.live.get(t.self) === t) this.live.delete(t.self);
  }

  /** @internal */
  peer(id: ReplicaId): MemoryTransport | undefined {
    return this.live.get(id);
  }
}

interface PeerQueue {
  readonly frames: Uint8Array[];
  head: number;
  flushing: boolean;
}

export class MemoryTransport implements Transport {
  readonly self: ReplicaId;
  private readonly hub: MemoryHub;
  private readonly limits: TransportLimits;
  private handler: FrameHandler | null = null;
  private running = false;
  private readonly queues = new Map<ReplicaId, PeerQueue>();
  private readonly counters = new Map<ReplicaId, PeerStats>();
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private readonly immediates = new Set<ReturnType<typeof setImmediate>>();

  constructor(hub: MemoryHub, self: ReplicaId, limits: TransportLimits) {
    this.hub = hub;
    this.self = self;
    this.limits = limits;
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.hub.attach(this);
    this.running = true;
    for (let p = 0; p < this.hub.n; p++) if (p !== this.self) this.flush(p);
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.hub.detach(this);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const t of this.immediates) clearImmediate(t);
    this.immediates.clear();
    for (const [p, q] of this.queues) {
      const s = this.stat(p);
      s.queuedFrames = 0;
      s.queuedBytes = 0;
      q.frames.length = 0;
      q.head = 0;
    }
  }

  onFrame(handler: FrameHandler): void {
    this.handler = handler;
  }

  send(to: ReplicaId, frame: Uint8Array): SendResult {
    const refused = admitFrame(
      this.running,
      this.self,
      this.hub.n,
      this.limits,
      (p) => this.stat(p),
      to,
      frame,
    );
    if (refused !== null) return refused;
    const s = this.stat(to);
    const q = this.queue(to);
    q.frames.push(frame.slice());
    s.queuedFrames++;
    s.queuedBytes += frame.length;
    this.flush(to);
    return "queued";
  }

  broadcast(frame: Uint8Array): void {
    for (let p = 0; p < this.hub.n; p++) if (p !== this.self) this.send(p, frame);
  }

  stats(): ReadonlyMap<ReplicaId, Readonly<PeerStats>> {
    return this.counters;
  }

  /** @internal A peer (re)started: deliver what waited for it. */
  peerUp(peer: ReplicaId): void {
    this.flush(peer);
  }

  /** @internal Called by the hub on the receiving side. */
  deliver(from: ReplicaId, frame: Uint8Array): void {
    if (!this.running) return;
    this.stat(from).receivedFrames++;
    this.handler?.(from, frame);
  }

  private stat(p: ReplicaId): PeerStats {
    return peerStats(this.counters, p);
  }

  private queue(p: ReplicaId): PeerQueue {
    let q = this.queues.get(p);
    if (!q) {
      q = { frames: [], head: 0, flushing: false };
      this.queues.set(p, q);
    }
    return q;
  }

  /** Moves queued frames to a running peer, in order, one event-loop turn (or latency) later. */
  private flush(to: ReplicaId): void {
    const q = this.queues.get(to);
    if (!q || q.flushing || q.head >= q.frames.length || !this.running || !this.hub.peer(to)) return;
    q.flushing = true;
    const run = () => {
      if (timer) this.timers.delete(timer);
      if (immediate) this.immediates.delete(immediate);
      q.flushing = false;
      const peer = this.hub.peer(to);
      if (!this.running || !peer) return;
      const s = this.stat(to);
      while (q.head < q.frames.length) {
        const frame = q.frames[q.head++] as Uint8Array;
        s.queuedFrames--;
        s.queuedBytes -= frame.length;
        s.sentFrames++;
        peer.deliver(this.self, frame);
        if (!this.running || this.hub.peer(to) !== peer) break;
      }
      if (q.head >= q.frames.length) {
        q.frames.length = 0;
        q.head = 0;
      } else this.flush(to);
    };
    // setTimeout(0) would wait at least 1 ms; with no latency, the next turn of the event loop.
    const timer = this.hub.latencyMs > 0 ? setTimeout(run, this.hub.latencyMs) : null;
    const immediate = timer ? null : setImmediate(run);
    if (timer) this.timers.add(timer);
    if (immediate) this.immediates.add(immediate);
  }
}
