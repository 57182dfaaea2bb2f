// libp2p transport: TCP + noise + yamux between the replicas of one cluster.
//
// - Identity: each replica's libp2p peer id is derived from its ed25519 key in the cluster config.
//   Connections from or to peer ids outside the config are refused by the connection gater, so the
//   `from` of every delivered frame is authenticated by noise.
// - One long-lived stream per peer pair, used in both directions: the replica with the lower id dials
//   (with exponential backoff while the peer is down), the other accepts. A newer stream from the same
//   peer replaces the old one (the peer restarted).
// - Frames are length-prefixed (unsigned varint) with an explicit maximum; a peer that sends a longer
//   one loses its stream.
// - Backpressure: a bounded outgoing queue per peer (see transport.ts). Frames move from the queue to
//   the stream only while the stream does not need a drain; we wait for the stream's 'drain' event
//   (libp2p 3's onDrain() promise does not re-arm after its first use).
// - Watchdog: a stream that stays undrained for `stallMs` with frames waiting is aborted and redialled
//   (libp2p can stall under heavy load); the protocol retransmits whatever was lost.

import "../util/polyfill.ts";
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { generateKeyPairFromSeed, publicKeyFromRaw } from "@libp2p/crypto/keys";
import type { Connection, PeerId, Stream } from "@libp2p/interface";
import { peerIdFromPublicKey } from "@libp2p/peer-id";
import { tcp } from "@libp2p/tcp";
import { multiaddr } from "@multiformats/multiaddr";
import * as lp from "it-length-prefixed";
import { pipe } from "it-pipe";
import { createLibp2p, type Libp2p } from "libp2p";
import type { ReplicaId } from "../bft/types.ts";
import { type WithDefaults, withDefaults } from "../util/defaults.ts";
import {
  checkClusterConfig,
  DEFAULT_REDIAL_BACKOFF,
  type PeerLink,
  PeerLinkTransport,
} from "./peer-links.ts";
import { TransportConfigError, type TransportLimits } from "./transport.ts";

// The load-time patches (and their counters) live in libp2p-patches.ts; importing it applies them.
export { lengthPrefixGuard, tcpWriteCoalescing, yamuxWindowUpdates } from "./libp2p-patches.ts";

export const FRAMES_PROTOCOL = "/orderer/frames/1.0.0";

/** One replica of the cluster as every transport sees it. */
export interface Libp2pPeerConfig {
  readonly id: ReplicaId;
  /** Raw 32-byte ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** Where it listens, as a multiaddr, e.g. /ip4/127.0.0.1/tcp/7001. */
  readonly addr: string;
}

export interface Libp2pTransportOptions {
  readonly self: ReplicaId;
  /** This replica's 32-byte ed25519 private key seed; its public key must match the config. */
  readonly seed: Uint8Array;
  /** The whole cluster, this replica included. */
  readonly peers: readonly Libp2pPeerConfig[];
  /** Listen address (default: this replica's `addr`). */
  readonly listen?: string;
  readonly limits?: Partial<TransportLimits>;
  /** Redial backoff bounds in ms (default 50 .. 2000: DEFAULT_REDIAL_BACKOFF of peer-links.ts). */
  readonly redialMinMs?: number;
  readonly redialMaxMs?: number;
  /** Dial timeout in ms (default 5000). */
  readonly dialTimeoutMs?: number;
  /** A stream undrained this long with frames waiting is aborted and redialled (default 10000). */
  readonly stallMs?: number;
}

/** The libp2p transport's option defaults (see Libp2pTransportOptions): the one place they are written. */
export const LIBP2P_DEFAULTS = Object.freeze({
  redialMinMs: DEFAULT_REDIAL_BACKOFF.minMs,
  redialMaxMs: DEFAULT_REDIAL_BACKOFF.maxMs,
  dialTimeoutMs: 5000,
  stallMs: 10_000,
}) satisfies Partial<Libp2pTransportOptions>;

export { TransportConfigError };

/** The libp2p peer id (string form) of an ed25519 public key. */
export function libp2pPeerId(publicKey: Uint8Array): string {
  return peerIdFromPublicKey(publicKeyFromRaw(publicKey)).toString();
}

interface Link extends PeerLink {
  stream: Stream | null;
  /** Set while waiting for the stream's 'drain' event. */
  drainWaitSince: number | null;
}

export class Libp2pTransport extends PeerLinkTransport<Link> {
  private readonly opts: WithDefaults<Libp2pTransportOptions, typeof LIBP2P_DEFAULTS>;
  private readonly byPeerId = new Map<string, ReplicaId>();
  private readonly peerIds = new Map<ReplicaId, PeerId>();
  private node: Libp2p | null = null;
  private starting: Promise<void> | null = null;
  private watchdog: ReturnType<typeof setInterval> | null = null;

  constructor(options: Libp2pTransportOptions) {
    const opts = withDefaults(LIBP2P_DEFAULTS, options);
    super(opts.self, opts.peers.length, opts.limits, { minMs: opts.redialMinMs, maxMs: opts.redialMaxMs });
    this.opts = opts;
  }

  // ------------------------------------------------------------------ lifecycle

  start(): Promise<void> {
    if (this.running) return Promise.resolve();
    this.starting ??= this.doStart().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  private async doStart(): Promise<void> {
    const { self, seed, peers } = this.opts;
    const me = checkClusterConfig(peers, self, seed);
    const privateKey = await generateKeyPairFromSeed("Ed25519", seed);
    for (const p of peers) {
      const pid = peerIdFromPublicKey(publicKeyFromRaw(p.publicKey));
      this.peerIds.set(p.id, pid);
      this.byPeerId.set(pid.toString(), p.id);
    }
    if (privateKey.publicKey.toString() !== this.peerIds.get(self)?.toString()) {
      throw new TransportConfigError(`this key is not replica ${self}'s key in the cluster configuration`);
    }
    const known = (peer: PeerId) => this.byPeerId.has(peer.toString());
    const node = await createLibp2p({
      privateKey,
      start: false,
      addresses: { listen: [this.opts.listen ?? me.addr] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionGater: {
        denyDialPeer: (peer) => !known(peer),
        denyInboundEncryptedConnection: (peer) => !known(peer),
        denyOutboundEncryptedConnection: (peer) => !known(peer),
      },
    });
    await node.handle(FRAMES_PROTOCOL, (stream, connection) => this.onInbound(stream, connection), {
      maxInboundStreams: 4,
      maxOutboundStreams: 4,
    });
    await node.start();
    this.node = node;
    this.running = true;
    for (let p = 0; p < this.n; p++) {
      if (p === self) continue;
      const link = this.link(p);
      this.resetBackoff(link);
      if (self < p) this.dial(link);
    }
    const stallMs = this.opts.stallMs;
    this.watchdog = setInterval(() => this.checkStalls(stallMs), Math.max(50, Math.floor(stallMs / 4)));
    this.watchdog.unref?.();
  }

  async stop(): Promise<void> {
    if (this.starting) await this.starting.catch(() => undefined);
    if (!this.running) return;
    this.running = false;
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    for (const link of this.links.values()) {
      this.cancelRedial(link);
      link.stream?.abort(new Error("transport stopped"));
      link.stream = null;
      this.dropQueue(link);
    }
    const node = this.node;
    this.node = null;
    await node?.stop();
  }

  // ------------------------------------------------------------------ Transport (the rest: peer-links.ts)

  /** Addresses this node listens on (useful with port 0). */
  listenAddrs(): string[] {
    return this.node?.getMultiaddrs().map((a) => a.toString()) ?? [];
  }

  // ------------------------------------------------------------------ streams

  protected newLink(common: PeerLink): Link {
    return { ...common, stream: null, drainWaitSince: null };
  }

  protected dial(link: Link): void {
    const node = this.node;
    if (!this.running || !node || link.dialing || link.stream || link.redialTimer) return;
    const pid = this.peerIds.get(link.peer);
    const addr = this.opts.peers.find((p) => p.id === link.peer)?.addr;
    if (!pid || !addr) return;
    link.dialing = true;
    const timeout = AbortSignal.timeout(this.opts.dialTimeoutMs);
    node
      .dialProtocol(multiaddr(`${addr}/p2p/${pid.toString()}`), FRAMES_PROTOCOL, { signal: timeout })
      .then((stream) => {
        link.dialing = false;
        if (!this.running) {
          stream.abort(new Error("transport stopped"));
          return;
        }
        this.resetBackoff(link);
        this.attach(link, stream);
      })
      .catch(() => {
        link.dialing = false;
        this.redialIfDown(link);
      });
  }

  /** Redials a link whose stream is gone (a dial in flight does not hold it back). */
  private redialIfDown(link: Link): void {
    if (!this.running || link.stream) return;
    this.scheduleRedial(link);
  }

  private onInbound(stream: Stream, connection: Connection): void {
    const peer = this.byPeerId.get(connection.remotePeer.toString());
    if (!this.running || peer === undefined || peer === this.self) {
      stream.abort(new Error("unknown peer"));
      return;
    }
    this.attach(this.link(peer), stream);
  }

  private attach(link: Link, stream: Stream): void {
    const old = link.stream;
    link.stream = stream;
    link.drainWaitSince = null;
    if (old && old !== stream) old.abort(new Error("replaced by a newer stream"));
    stream.maxReadBufferLength = this.limits.frameMaxBytes + 16;
    const onDrain = () => {
      if (link.stream !== stream) return;
      link.drainWaitSince = null;
      this.flush(link);
    };
    stream.addEventListener("drain", onDrain);
    stream.addEventListener(
      "close",
      () => {
        stream.removeEventListener("drain", onDrain);
        this.detach(link, stream);
      },
      { once: true },
    );
    const peer = link.peer;
    pipe(
      stream,
      (source) => lp.decode(source, { maxDataLength: this.limits.frameMaxBytes }),
      async (frames) => {
        for await (const f of frames) {
          if (link.stream !== stream) return;
          this.deliver(peer, f.subarray());
        }
      },
    )
      .catch((err: unknown) => stream.abort(err instanceof Error ? err : new Error(String(err))))
      .finally(() => this.detach(link, stream));
    this.flush(link);
  }

  isConnected(peer: ReplicaId): boolean {
    const s = this.links.get(peer)?.stream;
    return s !== null && s !== undefined && s.status === "open";
  }

  private detach(link: Link, stream: Stream): void {
    if (link.stream !== stream) return;
    link.stream = null;
    link.drainWaitSince = null;
    if (stream.status === "open") stream.abort(new Error("stream ended"));
    this.redialIfDown(link);
  }

  /**
   * Moves queued frames onto the stream until it needs a drain. Frames are coalesced into writes of up
   * to COALESCE_BYTES: each stream write costs a yamux frame and a noise message.
   */
  protected flush(link: Link): void {
    const stream = link.stream;
    if (!this.running || !stream || link.drainWaitSince !== null) return;
    const s = this.stat(link.peer);
    while (link.head < link.frames.length) {
      if (stream.status !== "open" || stream.writeStatus !== "writable") return;
      const parts: Uint8Array[] = [];
      let bytes = 0;
      let taken = 0;
      while (link.head + taken < link.frames.length && (taken === 0 || bytes < COALESCE_BYTES)) {
        const frame = link.frames[link.head + taken] as Uint8Array;
        const prefix = varint(frame.length);
        parts.push(prefix, frame);
        bytes += prefix.length + frame.length;
        taken++;
      }
      let more: boolean;
      try {
        more = stream.send(concat(parts, bytes));
      } catch {
        this.detach(link, stream);
        return;
      }
      for (let k = 0; k < taken; k++) this.frameSent(link, s);
      if (!more) {
        link.drainWaitSince = Date.now();
        break;
      }
    }
    this.compact(link);
  }

  private checkStalls(stallMs: number): void {
    const now = Date.now();
    for (const link of this.links.values()) {
      const since = link.drainWaitSince;
      if (link.stream && since !== null && now - since > stallMs) {
        const stream = link.stream;
        stream.abort(new Error(`stalled for ${now - since} ms`));
        this.detach(link, stream);
      }
    }
  }
}

const COALESCE_BYTES = 64 * 1024;

/** Unsigned LEB128, as it-length-prefixed decodes it. */
function varint(n: number): Uint8Array {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Uint8Array.from(out);
}

function concat(parts: readonly Uint8Array[], bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
