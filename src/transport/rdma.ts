// The rdma transport: replicas exchange frames by one-sided RDMA WRITEs into each other's memory,
// through the native-rdma addon (the shm provider on one host; see docs/rdma.md).
//
// - Endpoints: each replica listens on a UNIX socket path given in the cluster config; the replica with
//   the lower id connects (with backoff while the peer is down), as in the libp2p transport.
// - Authentication: over the new connection's SEND channel both sides exchange an ephemeral X25519 key
//   (HELLO) and then an ed25519 signature, by their configured replica key, over both ephemerals and
//   both ids (AUTH). Only then does a connection carry frames; its identity is handed to the provider,
//   which bans identities that keep presenting bad keys. A newer authenticated connection from the
//   same replica replaces the older one (the peer restarted).
// - Data: each side registers an inbox region per peer (a ring of `inboxSlots` slots) and grants the
//   peer's connection a slotted write key: every write must be one whole slot carrying the next
//   sequence number and an HMAC-SHA256 under a key both sides derived from the X25519 secret; the
//   owner checks both before any byte lands. Frames are packed into slots as segments (small frames
//   share a slot, large ones span several; FIRST/LAST flags), each slot written with an immediate so the
//   owner learns of it, and reassembled in order. The receiver returns
//   credits (slots consumed) every quarter ring, so the sender never laps it.
// - Delivery: a frame leaves the queue only when the write of its last slot has completed (the owner
//   applied it). When a connection closes, the sender rewinds to the oldest unconfirmed frame and writes
//   it again on the next connection, so frames sent while a peer restarts arrive (or, rarely, twice:
//   the protocol is idempotent).
// - Backpressure: the bounded per-peer queue of transport.ts; frames wait while the link is down.
//
// This module holds the connections and links; rdma-handshake.ts the HELLO/AUTH exchange and key
// derivation, rdma-slots.ts the slot format (packing, reassembly, MAC), rdma-credits.ts the delivery
// marks and credits, peer-links.ts (shared with libp2p) the queues, stats and redial backoff.

import type { ReplicaId } from "../bft/types.ts";
import { ed25519PublicKeyOf } from "../crypto/node-crypto.ts";
import { type WithDefaults, withDefaults } from "../util/defaults.ts";
import { checkClusterConfig, type PeerLink, PeerLinkTransport } from "./peer-links.ts";
import { creditDue, creditMessage, MSG_CREDIT, PostedRequests, readCreditMessage } from "./rdma-credits.ts";
import * as handshake from "./rdma-handshake.ts";
import { PERM_WRITE, type RdmaEvent, requireRdmaNative, type ShmProvider } from "./rdma-native.ts";
import { RDMA_DEFAULTS, type RdmaTransportOptions } from "./rdma-options.ts";
import {
  keyMessage,
  MAX_SLOT,
  MIN_SLOT,
  MSG_KEY,
  readKeyMessage,
  readSlot,
  SLOT_HDR,
  SlotPacker,
} from "./rdma-slots.ts";
import { TransportConfigError } from "./transport.ts";

export { RDMA_DEFAULTS, type RdmaPeerConfig, type RdmaTransportOptions } from "./rdma-options.ts";
export { slotMac } from "./rdma-slots.ts";

interface Link extends PeerLink {
  conn: number | null;
  // sending: frames[head..cursor) are written but not all confirmed; frames[cursor..] wait
  cursor: number;
  /** Bytes of frames[cursor] already written (its first slot carries the length). */
  sentOfCursor: number;
  rkey: bigint | null;
  peerSlots: number;
  peerSlotBytes: number;
  sendMac: Buffer | null;
  nextSeq: number;
  acked: number;
  // receiving
  inboxRegion: number;
  inbox: Uint8Array;
  recvMac: Buffer | null;
  expectSeq: number;
  reported: number;
  creditOwed: boolean;
  assembling: Uint8Array | null;
  assembled: number;
}

export class RdmaTransport extends PeerLinkTransport<Link> {
  private readonly opts: WithDefaults<RdmaTransportOptions, typeof RDMA_DEFAULTS>;
  private readonly slots: number;
  private readonly slotBytes: number;
  private readonly conns = new Map<number, handshake.Conn>();
  private readonly linkOfConn = new Map<number, Link>();
  /** Per connection, one mark per posted request in order: how many frames the request completes. */
  private readonly posted = new PostedRequests();
  private provider: ShmProvider | null = null;
  private wr = 1;
  private securityEvents = 0;
  /** Where flush() packs a slot's body before postSlot copies it into the mailbox. */
  private readonly packer = new SlotPacker();

  constructor(options: RdmaTransportOptions) {
    const opts = withDefaults(RDMA_DEFAULTS, options);
    super(opts.self, opts.peers.length, opts.limits, { minMs: opts.redialMinMs, maxMs: opts.redialMaxMs });
    this.opts = opts;
    this.slots = opts.inboxSlots;
    this.slotBytes = opts.slotBytes;
  }

  // ------------------------------------------------------------------ lifecycle

  async start(): Promise<void> {
    if (this.running) return;
    const { self, seed, peers } = this.opts;
    const me = checkClusterConfig(peers, self, seed);
    if (!Buffer.from(ed25519PublicKeyOf(seed)).equals(Buffer.from(me.publicKey)))
      throw new TransportConfigError(`this key is not replica ${self}'s key in the cluster configuration`);
    if (!Number.isInteger(this.slots) || this.slots < 2 || this.slots > 4096)
      throw new TransportConfigError("inboxSlots must be 2..4096");
    if (!Number.isInteger(this.slotBytes) || this.slotBytes < MIN_SLOT || this.slotBytes > MAX_SLOT)
      throw new TransportConfigError(`slotBytes must be ${MIN_SLOT}..${MAX_SLOT}`);
    const addon = requireRdmaNative();
    const provider = new addon.ShmProvider({
      onEvents: (events) => this.onEvents(events),
      closeAfter: this.opts.closeAfter,
      banAfter: this.opts.banAfter,
      maxConnections: 4 * this.n + 16,
    });
    try {
      provider.listen(me.path);
    } catch (err) {
      provider.close();
      throw new TransportConfigError(`cannot listen on ${me.path}: ${(err as Error).message}`);
    }
    this.provider = provider;
    this.running = true;
    for (let p = 0; p < this.n; p++) {
      if (p === self) continue;
      const link = this.link(p);
      if (self < p) this.dial(link);
    }
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const c of this.conns.values()) clearTimeout(c.timer);
    this.conns.clear();
    this.linkOfConn.clear();
    this.posted.clear();
    for (const link of this.links.values()) {
      link.conn = null;
      this.dropQueue(link);
      link.cursor = 0;
      link.sentOfCursor = 0;
    }
    this.links.clear();
    const p = this.provider;
    this.provider = null;
    p?.close();
  }

  // ------------------------------------------------------------------ Transport (the rest: peer-links.ts)

  /** The provider's counters: served and refused requests by reason, bans, keys. */
  securityStats(): Record<string, number> {
    return { ...(this.provider?.stats() ?? {}), securityEvents: this.securityEvents };
  }

  /** For attack tests: the provider and the live connection to `peer`. */
  internals(peer: ReplicaId): { provider: ShmProvider | null; conn: number | null; rkey: bigint | null } {
    const l = this.links.get(peer);
    return { provider: this.provider, conn: l?.conn ?? null, rkey: l?.rkey ?? null };
  }

  // ------------------------------------------------------------------ connections

  protected newLink(common: PeerLink): Link {
    return {
      ...common,
      conn: null,
      cursor: 0,
      sentOfCursor: 0,
      rkey: null,
      peerSlots: 0,
      peerSlotBytes: 0,
      sendMac: null,
      nextSeq: 0,
      acked: 0,
      inboxRegion: 0,
      inbox: new Uint8Array(0),
      recvMac: null,
      expectSeq: 0,
      reported: 0,
      creditOwed: false,
      assembling: null,
      assembled: 0,
    };
  }

  protected dial(link: Link): void {
    const p = this.provider;
    if (!this.running || !p || link.conn !== null || link.dialing || link.redialTimer) return;
    const path = this.opts.peers.find((x) => x.id === link.peer)?.path as string;
    let id: number;
    try {
      id = p.connect(path);
    } catch {
      this.redialIfDown(link);
      return;
    }
    link.dialing = true;
    this.newConn(id, true, link.peer);
  }

  /** Redials a link with neither a connection nor a dial in flight. */
  private redialIfDown(link: Link): void {
    if (!this.running || link.conn !== null || link.dialing) return;
    this.scheduleRedial(link);
  }

  private newConn(id: number, connector: boolean, peer: ReplicaId | null): handshake.Conn {
    const c = handshake.newConn(id, connector, peer, this.opts.handshakeMs, () => this.dropConn(id));
    this.conns.set(id, c);
    this.posted.open(id);
    return c;
  }

  /** Closes a connection we no longer want (unauthenticated too long, protocol violation, replaced). */
  private dropConn(id: number): void {
    this.provider?.closeConnection(id);
  }

  private onEvents(events: RdmaEvent[]): void {
    if (!this.running) return;
    for (const e of events) {
      switch (e.type) {
        case "connected":
        case "accepted":
          this.onUp(e.conn, e.type === "accepted");
          break;
        case "recv":
          if (e.data) this.onMessage(e.conn, e.data);
          break;
        case "write":
          this.onWrite(e);
          break;
        case "writable": {
          const l = this.linkOfConn.get(e.conn);
          if (l) {
            this.sendCredit(l);
            this.flush(l);
          }
          break;
        }
        case "completion":
          // A write of ours was refused: our key is stale or the peer thinks we misbehaved. Start over.
          // Nothing more on it counts as delivered (its frames are written again on the next connection).
          if (e.status !== 0) {
            this.posted.fail(e.conn);
            this.dropConn(e.conn);
          }
          break;
        case "acked":
          this.onAcked(e.conn, e.count ?? 0);
          break;
        case "security":
          this.securityEvents++;
          this.opts.onSecurityEvent?.({
            peer: this.linkOfConn.get(e.conn)?.peer ?? null,
            reason: e.reason ?? "",
          });
          break;
        case "closed":
          this.onClosed(e.conn);
          break;
      }
    }
    for (const l of this.links.values()) if (l.creditOwed) this.sendCredit(l);
  }

  private onUp(id: number, accepted: boolean): void {
    const c = accepted ? this.newConn(id, false, null) : this.conns.get(id);
    if (!c) return;
    const hello = handshake.helloMessage(this.self, c);
    this.posted.post(id, 0, () => this.provider?.postSend(id, 0, hello) ?? false);
  }

  /** `count` more requests on `conn` completed: frames whose last slot is among them leave the queue. */
  private onAcked(conn: number, count: number): void {
    const link = this.linkOfConn.get(conn);
    const s = link ? this.stat(link.peer) : null;
    const open = this.posted.acked(conn, count, (completes) => {
      if (!link || !s || link.conn !== conn) return;
      while (completes-- > 0 && link.head < link.cursor) this.frameSent(link, s);
    });
    if (open && link) link.cursor -= this.compact(link);
  }

  private onClosed(id: number): void {
    this.posted.close(id);
    const c = this.conns.get(id);
    if (c) {
      clearTimeout(c.timer);
      this.conns.delete(id);
      if (c.connector && c.peer !== null) {
        const l = this.link(c.peer);
        l.dialing = false;
        if (l.conn === null) this.redialIfDown(l);
      }
    }
    const link = this.linkOfConn.get(id);
    if (!link) return;
    this.linkOfConn.delete(id);
    if (link.conn !== id) return;
    link.conn = null;
    link.rkey = null;
    link.sendMac = null;
    link.recvMac = null;
    link.assembling = null;
    link.creditOwed = false;
    // Unconfirmed frames are written again, whole, on the next connection.
    link.cursor = link.head;
    link.sentOfCursor = 0;
    this.redialIfDown(link);
  }

  private onMessage(id: number, m: Buffer): void {
    const c = this.conns.get(id);
    const link = this.linkOfConn.get(id);
    const type = m[0];
    if (type === handshake.MSG_HELLO && c && !c.peerEph) {
      if (!handshake.takeHello(this.self, c, m)) return this.dropConn(id);
      const auth = handshake.authMessage(this.self, this.opts.seed, c);
      c.authSent = this.posted.post(id, 0, () => this.provider?.postSend(id, 0, auth) ?? false);
      return;
    }
    if (type === handshake.MSG_AUTH && c && c.peerEph && !c.authed && c.peer !== null) {
      const pub = this.opts.peers.find((p) => p.id === c.peer)?.publicKey;
      if (!handshake.verifyAuth(this.self, c, m, pub)) return this.dropConn(id);
      c.authed = true;
      clearTimeout(c.timer);
      this.bind(c);
      return;
    }
    if (!link || link.conn !== id) return this.dropConn(id);
    if (type === MSG_KEY && m.length === 17) {
      const key = readKeyMessage(m);
      if (!key) return this.dropConn(id);
      link.rkey = key.rkey;
      link.peerSlots = key.slots;
      link.peerSlotBytes = key.slotBytes;
      link.nextSeq = 0;
      link.acked = 0;
      this.flush(link);
      return;
    }
    if (type === MSG_CREDIT && m.length === 9) {
      const upTo = readCreditMessage(m);
      if (upTo < link.acked || upTo > link.nextSeq) return this.dropConn(id);
      link.acked = upTo;
      this.flush(link);
      return;
    }
    this.dropConn(id);
  }

  /** An authenticated connection becomes the link's: keys derived, inbox granted. */
  private bind(c: handshake.Conn): void {
    const p = this.provider;
    const peer = c.peer as ReplicaId;
    if (!p) return;
    if (!p.setIdentity(c.id, `replica-${peer}`)) return; // banned: the provider closed it
    const link = this.link(peer);
    const old = link.conn;
    if (old !== null && old !== c.id) {
      this.onClosed(old);
      this.dropConn(old);
    }
    link.dialing = false;
    this.resetBackoff(link);
    this.cancelRedial(link);
    const { sendMac, recvMac } = handshake.deriveMacKeys(this.self, c);
    link.sendMac = sendMac;
    link.recvMac = recvMac;
    link.conn = c.id;
    this.linkOfConn.set(c.id, link);
    this.conns.delete(c.id);
    if (link.inboxRegion === 0) {
      const r = p.registerRegion(this.slots * this.slotBytes);
      link.inboxRegion = r.id;
      link.inbox = new Uint8Array(r.memory);
    }
    link.expectSeq = 0;
    link.reported = 0;
    link.assembling = null;
    link.rkey = null;
    const rkey = p.grant(link.inboxRegion, c.id, PERM_WRITE, 0, this.slots * this.slotBytes, {
      macKey: link.recvMac,
      slotSize: this.slotBytes,
    });
    const key = keyMessage(rkey, this.slots, this.slotBytes);
    this.posted.post(c.id, 0, () => p.postSend(c.id, 0, key));
  }

  // ------------------------------------------------------------------ data

  /**
   * Writes queued frames into the peer's inbox while there are credits and mailbox slots, packed into
   * slots as segments (see SlotPacker).
   */
  protected flush(link: Link): void {
    const p = this.provider;
    const mac = link.sendMac;
    if (!this.running || !p || link.conn === null || link.rkey === null || !mac) return;
    const cap = link.peerSlotBytes - SLOT_HDR;
    const conn = link.conn;
    const rkey = link.rkey;
    const packer = this.packer;
    while (link.cursor < link.frames.length && link.nextSeq - link.acked < link.peerSlots) {
      const used = packer.pack(link.frames, link.cursor, link.sentOfCursor, cap);
      if (used === 0) return; // cannot happen with slots of MIN_SLOT or more
      const { cursor, sent, completes } = packer;
      const seq = link.nextSeq;
      const offset = (seq % link.peerSlots) * link.peerSlotBytes;
      const wr = this.wr++;
      const slot = packer.body.subarray(0, used);
      // A full mailbox: the "writable" event resumes.
      const post = () => p.postSlot(conn, wr, rkey, offset, mac, seq, slot, seq >>> 0);
      if (!this.posted.post(conn, completes, post)) return;
      link.nextSeq++;
      link.cursor = cursor;
      link.sentOfCursor = sent;
    }
  }

  /** A slot landed in one of our inboxes (the provider already checked its key, sequence and MAC). */
  private onWrite(e: RdmaEvent): void {
    const conn = e.conn;
    const link = this.linkOfConn.get(conn);
    if (!link || link.conn !== conn || e.region !== link.inboxRegion) return;
    const off = e.offset as number;
    const mem = link.inbox;
    const dv = new DataView(mem.buffer, mem.byteOffset + off, e.length as number);
    const seq = dv.getUint32(0, true) + dv.getUint32(4, true) * 2 ** 32;
    const len = dv.getUint32(8, true);
    if (seq !== link.expectSeq || len + SLOT_HDR !== e.length) return this.dropConn(conn);
    link.expectSeq++;
    if (creditDue(link.expectSeq, link.reported, this.slots)) {
      link.creditOwed = true;
      this.sendCredit(link);
    }
    const ok = readSlot(link, mem, off, dv, SLOT_HDR + len, this.limits.frameMaxBytes, (frame) => {
      this.deliver(link.peer, frame);
      return this.running && link.conn === conn; // false: the handler stopped us or the link went down
    });
    if (!ok) this.dropConn(conn);
  }

  private sendCredit(link: Link): void {
    if (!link.creditOwed || link.conn === null || !this.provider) return;
    const m = creditMessage(link.expectSeq);
    const p = this.provider;
    const conn = link.conn;
    if (this.posted.post(conn, 0, () => p.postSend(conn, 0, m))) {
      link.reported = link.expectSeq;
      link.creditOwed = false;
    }
  }
}
