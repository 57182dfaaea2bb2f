// The coordination service of one replica: the WebSocket protocol of docs/coord-protocol.md on top of
// the replicated znode tree.
//
// Writes: a client signs each operation with its session key; the replica checks the signature, batches
// the operations of its clients into coordination entries and proposes them through the core as its
// own client `coord-<id>`. When a block is applied the tree's effects are dispatched in order: watch
// events first, then results, so a client never sees data before the event announcing it.
// Reads: served from the local tree once it has applied at least the client's last seen zxid, and never
// while a block is between being applied and being announced.
// Liveness: clients ping through the order (a ping is a signed operation that refreshes the session);
// expiry is decided by the tree's agreed clock (tree.ts), never by this replica alone.

import { toHex } from "../bft/bytes.ts";
import type { ClientRequest } from "../bft/types.ts";
import type { ZkCode } from "./errors.ts";
import {
  BUNDLE_DEPTH_MAX,
  BUNDLE_OPS_MAX,
  type BundleProof,
  COORD_MAGIC,
  decodeOp,
  ENTRY_HEADER_BYTES,
  ENTRY_OP_OVERHEAD,
  encodeEntry,
  type HashFn,
  isCoordEntry,
  type Op,
  OpKind,
  proofBytes,
  resumeSigningBytes,
  type SignedOp,
  verifySignedOp,
} from "./ops.ts";
import { pathProblem } from "./path.ts";
import type { Effect, OpResult, Stat, VerifyFn, ZTree } from "./tree.ts";
import { type WatchKind, WatchRegistry } from "./watches.ts";

export const COORD_PROTOCOL = 1;

/** How the service talks to one client connection (the API server adapts its WebSocket). */
export interface CoordSocket {
  send(msg: Record<string, unknown>): void;
  close(code: number, reason: string): void;
}

export interface CoordServiceOptions {
  readonly tree: ZTree;
  readonly self: number;
  /** Hands a request to the core; throws RequestError when refused. */
  readonly propose: (req: ClientRequest) => void;
  /** Signs a request of this replica's coordination client identity. */
  readonly signRequest: (reqNo: number, op: Uint8Array) => ClientRequest;
  readonly verify: VerifyFn;
  /** SHA-256 for bundle proofs (default @noble/hashes; replicas pass node:crypto's). */
  readonly hash?: HashFn;
  /** Largest entry the core accepts (the cluster's absoluteMaxBytes). */
  readonly entryMaxBytes: number;
  readonly now?: () => number;
  /** A replica proposes its clock at least this often while anything depends on time (default 250 ms). */
  readonly clockPeriodMs?: number;
  /** A read waiting for this replica to catch up fails after this long (default 10 s). */
  readonly readWaitMs?: number;
  /** Entries of this replica in the core at once (default 8). */
  readonly inFlightMax?: number;
  /** An entry not applied within this time gives its operations back to the queue (default 5 s). */
  readonly inFlightTimeoutMs?: number;
  /** Writes one connection may have waiting for their result (default 1024). */
  readonly connWritesMax?: number;
  /** Operations queued for proposal at this replica (default 100 000). */
  readonly queueMax?: number;
  /** Bytes of the operations queued, in flight or deferred here (default QUEUE_MAX_BYTES_DEFAULT). */
  readonly queueMaxBytes?: number;
  /** Watches one connection may hold (default 100 000). */
  readonly connWatchesMax?: number;
  /** Connections at once (default 10 000). */
  readonly connectionsMax?: number;
}

export interface CoordConn {
  readonly io: CoordSocket;
  readonly nonce: Uint8Array;
  sessionId: number;
  timeoutMs: number;
  /** Highest zxid this client has seen from us. */
  zxid: number;
  lastHeardMs: number;
  /** cxid -> request id of writes waiting for their result. */
  readonly waiting: Map<number, unknown>;
  /** A connect waiting for its session: the key (hex) and the request id. */
  connect: { keyHex: string; id: unknown } | null;
  reads: number;
  closed: boolean;
}

interface PendingOp {
  readonly sessionId: number;
  readonly cxid: number;
  readonly kind: number;
  readonly signed: SignedOp;
  readonly bytes: number;
  attempts: number;
}

interface InFlight {
  readonly ops: PendingOp[];
  readonly sentMs: number;
}

/**
 * An operation the order put before an earlier one of its session is proposed again (once that earlier one
 * is applied) at most this often; one whose predecessor does not arrive within inFlightTimeoutMs is
 * answered with an error. Either way it enters the order a bounded number of times.
 */
const DEFER_ATTEMPTS_MAX = 3;
/** The service's timer sleeps at most this long while nothing is connected or in progress. */
const IDLE_TIMER_MS = 1000;
/** Bytes of operations a replica holds for proposal (queued, in flight, deferred), by default. */
export const QUEUE_MAX_BYTES_DEFAULT = 256 * 1024 * 1024;
const READ_QUEUE_PER_CONN_MAX = 1024;
const SETWATCHES_MAX = 100_000;

/** What prepare() hands to written(): the effects of each applied block and which of our entries it held. */
export interface AppliedBlocks {
  readonly blocks: readonly {
    readonly number: number;
    readonly fx: readonly Effect[];
    readonly ownEntries: ReadonlySet<number>;
    readonly ownRequests: readonly number[];
  }[];
}

export class CoordService {
  readonly tree: ZTree;
  private readonly o: CoordServiceOptions;
  private readonly now: () => number;
  private readonly conns = new Set<CoordConn>();
  private readonly bySession = new Map<number, CoordConn>();
  private readonly connecting = new Map<string, CoordConn>();
  private readonly watches: WatchRegistry<CoordConn>;
  private readonly queue: PendingOp[] = [];
  private readonly pings = new Map<number, PendingOp>();
  private readonly inFlight = new Map<number, InFlight>();
  /** Operations proposed or queued here, by session:cxid (to retry deferred ones). */
  private readonly proposed = new Map<string, PendingOp>();
  /** Bytes of the operations in `proposed` (bounded by queueMaxBytes). */
  private proposedBytes = 0;
  /** The highest cxid queued here per session: a write must follow it or the tree's lastCxid. */
  private readonly highestCxid = new Map<number, number>();
  /** Deferred operations of ours, waiting for their session's previous cxid to be applied. */
  private readonly deferred = new Map<string, { readonly p: PendingOp; readonly sinceMs: number }>();
  private readonly readWaiters: { conn: CoordConn; need: number; deadline: number; run: () => void }[] = [];
  private nextReqNo: number;
  private applying = 0;
  private lastProposedMs = 0;
  private flushScheduled = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  readonly stats = {
    entriesProposed: 0,
    opsProposed: 0,
    refused: 0,
    deferredRetries: 0,
    deferredFailed: 0,
    cxidGaps: 0,
    inFlightTimeouts: 0,
    malformed: 0,
    badSignatures: 0,
  };

  constructor(o: CoordServiceOptions) {
    this.o = o;
    this.tree = o.tree;
    this.now = o.now ?? Date.now;
    this.watches = new WatchRegistry(o.connWatchesMax ?? 100_000);
    // Request numbers grow across restarts (the core's client table remembers executed ones).
    this.nextReqNo = Date.now() * 1000;
  }

  start(): void {
    this.scheduleTimer();
  }

  /**
   * The timer runs every half clock period while anything here is in progress or connected; otherwise
   * it sleeps until the tree's next time deadline (a TTL, a container), at most IDLE_TIMER_MS.
   */
  private scheduleTimer(): void {
    if (this.stopped) return;
    const period = this.o.clockPeriodMs ?? 250;
    let delay = Math.max(10, Math.floor(period / 2));
    const busy =
      this.conns.size > 0 ||
      this.inFlight.size > 0 ||
      this.deferred.size > 0 ||
      this.queue.length > 0 ||
      this.pings.size > 0 ||
      this.readWaiters.length > 0;
    if (!busy) delay = Math.max(delay, Math.min(IDLE_TIMER_MS, this.tree.timeDeadlineMs() - this.now()));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.onTimer();
      this.scheduleTimer();
    }, delay);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const c of [...this.conns]) this.drop(c, 1001, "the replica is shutting down");
  }

  get connections(): number {
    return this.conns.size;
  }

  get queued(): number {
    return this.queue.length + this.pings.size;
  }

  /** The core asked to apply these blocks; returns the tree's writes for the same atomic batch. */
  prepare(
    blocks: readonly {
      number: number;
      entries: readonly Uint8Array[];
      requests: readonly { clientId: string; reqNo: number }[];
    }[],
    coordClientId: string,
  ): AppliedBlocks {
    this.applying++;
    const out: AppliedBlocks["blocks"][number][] = [];
    for (const b of blocks) {
      const entries = b.entries.filter(isCoordEntry);
      const ownEntries = new Set<number>();
      for (const e of entries) {
        const h = entryHeader(e);
        if (h && h.proposer === this.o.self) ownEntries.add(h.entrySeq);
      }
      const fx = this.tree.applyBlock(b.number, entries);
      const ownRequests = b.requests.filter((r) => r.clientId === coordClientId).map((r) => r.reqNo);
      out.push({ number: b.number, fx, ownEntries, ownRequests });
    }
    return { blocks: out };
  }

  /** The blocks of prepare() are durable: announce their effects, settle our entries, serve reads. */
  written(applied: AppliedBlocks): void {
    try {
      for (const b of applied.blocks) {
        for (const e of b.fx) this.dispatch(e);
        for (const reqNo of b.ownRequests) this.settleEntry(reqNo, b.ownEntries.has(reqNo));
      }
    } finally {
      this.applying--;
    }
    this.retryDeferred();
    this.serveReads();
    this.scheduleFlush();
  }

  // ------------------------------------------------------------------ connections

  open(io: CoordSocket, nonce: Uint8Array): CoordConn | null {
    if (this.stopped || this.conns.size >= (this.o.connectionsMax ?? 10_000)) {
      io.close(1013, "too many connections");
      return null;
    }
    const c: CoordConn = {
      io,
      nonce,
      sessionId: 0,
      timeoutMs: 0,
      zxid: 0,
      lastHeardMs: this.now(),
      waiting: new Map(),
      connect: null,
      reads: 0,
      closed: false,
    };
    this.conns.add(c);
    io.send({
      type: "hello",
      protocol: COORD_PROTOCOL,
      replica: this.o.self,
      nonce: toHex(nonce),
      zxid: this.tree.appliedZxid,
      dataMaxBytes: this.tree.cfg.dataMaxBytes,
      entryMaxBytes: this.o.entryMaxBytes,
    });
    return c;
  }

  closed(c: CoordConn): void {
    if (c.closed) return;
    c.closed = true;
    this.conns.delete(c);
    if (c.sessionId && this.bySession.get(c.sessionId) === c) this.bySession.delete(c.sessionId);
    if (c.connect && this.connecting.get(c.connect.keyHex) === c) this.connecting.delete(c.connect.keyHex);
    this.watches.removeWatcher(c);
  }

  private drop(c: CoordConn, code: number, reason: string): void {
    this.closed(c);
    try {
      c.io.close(code, reason);
    } catch {
      // already closed
    }
  }

  private send(c: CoordConn, msg: Record<string, unknown>): void {
    if (c.closed) return;
    const z = msg.zxid;
    if (typeof z === "number" && z > c.zxid) c.zxid = z;
    c.io.send(msg);
  }

  private fail(c: CoordConn, id: unknown, code: ZkCode | "MARSHALLINGERROR", message: string): void {
    this.send(c, { type: "error", id: id ?? null, code, message });
  }

  /** One text message from a client. Never throws: a bad message gets an error reply. */
  message(c: CoordConn, text: string): void {
    if (c.closed) return;
    c.lastHeardMs = this.now();
    let m: Record<string, unknown>;
    try {
      const v: unknown = JSON.parse(text);
      if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("not an object");
      m = v as Record<string, unknown>;
    } catch {
      this.stats.malformed++;
      this.fail(c, null, "MARSHALLINGERROR", "a message is one JSON object");
      return;
    }
    const id = m.id;
    try {
      this.handle(c, m);
    } catch (err) {
      this.stats.malformed++;
      this.fail(c, id, "MARSHALLINGERROR", err instanceof Error ? err.message : "malformed message");
    }
  }

  private handle(c: CoordConn, m: Record<string, unknown>): void {
    const id = m.id;
    switch (m.type) {
      case "connect":
        return this.onConnect(c, id, m);
      case "resume":
        return this.onResume(c, id, m);
      case "ping":
      case "write":
        return this.onSigned(c, id, m);
    }
    if (!c.sessionId) return this.fail(c, id, "UNKNOWNSESSION", "connect or resume a session first");
    switch (m.type) {
      case "getData":
      case "exists":
      case "getChildren":
        return this.onRead(c, id, m);
      case "setWatches":
        return this.onSetWatches(c, id, m);
      case "addWatch":
      case "removeWatches": {
        // Like reads: only once this replica has what the client saw (no event from its past).
        const minZxid = m.minZxid ?? 0;
        if (!Number.isSafeInteger(minZxid)) throw new Error("minZxid must be an integer");
        const run =
          m.type === "addWatch" ? () => this.onAddWatch(c, id, m) : () => this.onRemoveWatches(c, id, m);
        return this.afterZxid(c, minZxid as number, id, run);
      }
      default:
        return this.fail(c, id, "MARSHALLINGERROR", `unknown message type ${JSON.stringify(m.type)}`);
    }
  }

  private signedOp(m: Record<string, unknown>): { op: Op; signed: SignedOp } {
    if (typeof m.op !== "string" || typeof m.sig !== "string")
      throw new Error("op and sig are base64 strings");
    const payload = b64(m.op, "op");
    const sig = b64(m.sig, "sig");
    if (sig.length !== 64) throw new Error("sig is 64 bytes");
    const proof = m.proof === undefined ? undefined : bundleProof(m.proof);
    const signed: SignedOp = proof ? { payload, sig, proof } : { payload, sig };
    if (ENTRY_HEADER_BYTES + ENTRY_OP_OVERHEAD + proofBytes(signed) + payload.length > this.o.entryMaxBytes)
      throw new Error(`the operation exceeds the largest entry (${this.o.entryMaxBytes} bytes)`);
    let op: Op;
    try {
      op = decodeOp(payload, this.tree.cfg.dataMaxBytes);
    } catch (err) {
      throw new Error(`op does not decode: ${(err as Error).message}`);
    }
    return { op, signed };
  }

  private onConnect(c: CoordConn, id: unknown, m: Record<string, unknown>): void {
    if (c.sessionId || c.connect)
      return this.fail(c, id, "APIERROR", "this connection already has a session");
    const { op, signed } = this.signedOp(m);
    const b = op.body;
    if (b.kind !== OpKind.CREATE_SESSION || op.sessionId !== 0)
      return this.fail(c, id, "MARSHALLINGERROR", "connect carries a createSession operation");
    if (!verifySignedOp(this.o.verify, b.publicKey, signed, this.o.hash)) {
      this.stats.badSignatures++;
      return this.fail(c, id, "AUTHFAILED", "bad signature");
    }
    const keyHex = toHex(b.publicKey);
    c.connect = { keyHex, id };
    this.connecting.set(keyHex, c);
    this.enqueue({ sessionId: 0, cxid: 0, kind: b.kind, signed, bytes: opBytes(signed), attempts: 0 });
  }

  private onResume(c: CoordConn, id: unknown, m: Record<string, unknown>): void {
    if (c.sessionId || c.connect)
      return this.fail(c, id, "APIERROR", "this connection already has a session");
    const sid = m.sessionId;
    const zxid = m.zxid ?? 0;
    if (!Number.isSafeInteger(sid) || !Number.isSafeInteger(zxid) || typeof m.sig !== "string")
      throw new Error("resume needs sessionId, zxid and sig");
    const sig = b64(m.sig, "sig");
    this.afterZxid(c, zxid as number, id, () => {
      const s = this.tree.session(sid as number);
      if (!s) {
        this.send(c, { type: "error", id, code: "SESSIONEXPIRED", message: "the session expired" });
        return;
      }
      if (sig.length !== 64 || !this.o.verify(s.publicKey, resumeSigningBytes(s.id, c.nonce), sig)) {
        this.stats.badSignatures++;
        this.fail(c, id, "AUTHFAILED", "bad signature");
        return;
      }
      this.attach(c, s.id, s.timeoutMs);
      this.send(c, {
        type: "connected",
        id,
        sessionId: s.id,
        timeoutMs: s.timeoutMs,
        zxid: this.tree.appliedZxid,
      });
    });
  }

  private attach(c: CoordConn, sessionId: number, timeoutMs: number): void {
    const prev = this.bySession.get(sessionId);
    if (prev && prev !== c) this.drop(prev, 4000, "the session moved to another connection");
    c.sessionId = sessionId;
    c.timeoutMs = timeoutMs;
    this.bySession.set(sessionId, c);
  }

  private onSigned(c: CoordConn, id: unknown, m: Record<string, unknown>): void {
    if (!c.sessionId) return this.fail(c, id, "UNKNOWNSESSION", "connect or resume a session first");
    const { op, signed } = this.signedOp(m);
    const kind = op.body.kind;
    if (op.sessionId !== c.sessionId)
      return this.fail(c, id, "SESSIONMOVED", "the operation is for another session");
    if (kind === OpKind.CREATE_SESSION || (m.type === "ping") !== (kind === OpKind.PING))
      return this.fail(c, id, "MARSHALLINGERROR", "wrong operation for this message");
    const s = this.tree.session(c.sessionId);
    if (!s) return this.fail(c, id, "SESSIONEXPIRED", "the session expired");
    if (!verifySignedOp(this.o.verify, s.publicKey, signed, this.o.hash)) {
      this.stats.badSignatures++;
      return this.fail(c, id, "AUTHFAILED", "bad signature");
    }
    const p: PendingOp = {
      sessionId: c.sessionId,
      cxid: op.cxid,
      kind,
      signed,
      bytes: opBytes(signed),
      attempts: 0,
    };
    if (kind === OpKind.PING) {
      this.pings.set(c.sessionId, p);
      this.scheduleFlush();
      return;
    }
    if (
      c.waiting.size >= (this.o.connWritesMax ?? 1024) ||
      this.queue.length >= (this.o.queueMax ?? 100_000) ||
      this.proposedBytes + p.bytes > (this.o.queueMaxBytes ?? QUEUE_MAX_BYTES_DEFAULT)
    ) {
      this.stats.refused++;
      return this.fail(c, id, "THROTTLEDOP", "too many operations waiting; slow down");
    }
    // A write must follow the session's last one. The tree may lag behind what the client saw through
    // another replica: then check again once this replica has applied the client's zxid (the waiters run
    // in arrival order, so pipelined writes keep theirs). A gap then is the client's: refused, not ordered.
    const known = Math.max(s.lastCxid, this.highestCxid.get(c.sessionId) ?? 0);
    if (op.cxid > known + 1) {
      if (this.tree.appliedZxid < c.zxid || this.applying > 0)
        return this.afterZxid(c, c.zxid, id, () => this.onSigned(c, id, m));
      this.stats.cxidGaps++;
      return this.fail(
        c,
        id,
        "MARSHALLINGERROR",
        `cxid ${op.cxid} skips ${known + 1}: a session numbers its writes one after another`,
      );
    }
    c.waiting.set(op.cxid, id);
    this.enqueue(p);
  }

  // ------------------------------------------------------------------ proposing

  private enqueue(p: PendingOp): void {
    const key = `${p.sessionId}:${p.cxid}`;
    const old = this.proposed.get(key);
    if (old) this.proposedBytes -= old.bytes;
    this.proposed.set(key, p);
    this.proposedBytes += p.bytes;
    if (p.cxid > (this.highestCxid.get(p.sessionId) ?? 0)) this.highestCxid.set(p.sessionId, p.cxid);
    this.queue.push(p);
    this.scheduleFlush();
  }

  private unpropose(key: string): void {
    const p = this.proposed.get(key);
    if (!p) return;
    this.proposed.delete(key);
    this.proposedBytes -= p.bytes;
  }

  /** Bytes of the operations held for proposal (queued, in flight, deferred). */
  get queuedBytes(): number {
    return this.proposedBytes;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.stopped) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush(false);
    });
  }

  /** Proposes entries while there is something to propose and room in the core. */
  private flush(clockOnly: boolean): void {
    const max = this.o.inFlightMax ?? 8;
    const budget = this.o.entryMaxBytes - ENTRY_HEADER_BYTES;
    while (this.inFlight.size < max && (this.queue.length > 0 || this.pings.size > 0 || clockOnly)) {
      clockOnly = false;
      const ops: PendingOp[] = [];
      let size = 0;
      for (const p of this.pings.values()) {
        if (size + p.bytes + ENTRY_OP_OVERHEAD > budget) break;
        ops.push(p);
        size += p.bytes + ENTRY_OP_OVERHEAD;
        this.pings.delete(p.sessionId);
      }
      while (this.queue.length > 0) {
        const p = this.queue[0] as PendingOp;
        if (ops.length > 0 && size + p.bytes + ENTRY_OP_OVERHEAD > budget) break;
        this.queue.shift();
        ops.push(p);
        size += p.bytes + ENTRY_OP_OVERHEAD;
      }
      const reqNo = this.nextReqNo++;
      const entry = encodeEntry({
        proposer: this.o.self,
        clockMs: this.now(),
        entrySeq: reqNo,
        ops: ops.map((p) => p.signed),
      });
      try {
        this.o.propose(this.o.signRequest(reqNo, entry));
      } catch {
        // The core refused (overloaded): put the operations back and try again on the next timer tick.
        this.stats.refused++;
        this.requeue(ops);
        return;
      }
      this.inFlight.set(reqNo, { ops, sentMs: this.now() });
      this.lastProposedMs = this.now();
      this.stats.entriesProposed++;
      this.stats.opsProposed += ops.length;
    }
  }

  private requeue(ops: readonly PendingOp[]): void {
    const back = ops.filter((p) => p.kind !== OpKind.PING);
    this.queue.unshift(...back);
    for (const p of ops)
      if (p.kind === OpKind.PING && !this.pings.has(p.sessionId)) this.pings.set(p.sessionId, p);
  }

  /** One of our requests left the core: applied as an entry, or not (then its operations go back). */
  private settleEntry(reqNo: number, applied: boolean): void {
    const f = this.inFlight.get(reqNo);
    if (!f) return;
    this.inFlight.delete(reqNo);
    if (applied) {
      for (const p of f.ops) {
        if (p.kind === OpKind.PING) {
          const c = this.bySession.get(p.sessionId);
          if (c) this.send(c, { type: "pong", seq: p.cxid, zxid: this.tree.appliedZxid });
        }
      }
      return;
    }
    this.requeue(f.ops);
  }

  /**
   * Deferred operations of ours: proposed again once their session's previous write is applied; answered
   * with an error when it is not within inFlightTimeoutMs or after DEFER_ATTEMPTS_MAX proposals.
   */
  private retryDeferred(): void {
    if (this.deferred.size === 0) return;
    const now = this.now();
    const timeout = this.o.inFlightTimeoutMs ?? 5000;
    for (const [key, { p, sinceMs }] of this.deferred) {
      const s = this.tree.session(p.sessionId);
      if (!s || s.lastCxid >= p.cxid) {
        this.deferred.delete(key);
        continue;
      }
      if (s.lastCxid === p.cxid - 1 && p.attempts < DEFER_ATTEMPTS_MAX && this.bySession.has(p.sessionId)) {
        this.deferred.delete(key);
        p.attempts++;
        this.stats.deferredRetries++;
        this.queue.push(p);
        continue;
      }
      if (now - sinceMs < timeout && p.attempts < DEFER_ATTEMPTS_MAX) continue;
      this.deferred.delete(key);
      this.unpropose(key);
      this.stats.deferredFailed++;
      const c = this.bySession.get(p.sessionId);
      const id = c?.waiting.get(p.cxid);
      if (!c || id === undefined) continue;
      c.waiting.delete(p.cxid);
      this.fail(
        c,
        id,
        "MARSHALLINGERROR",
        `write ${p.cxid} was ordered before write ${p.cxid - 1}, which never came`,
      );
    }
  }

  private onTimer(): void {
    if (this.stopped) return;
    const now = this.now();
    const period = this.o.clockPeriodMs ?? 250;
    // Entries the core lost (e.g. across a view change): their operations are proposed again.
    const timeout = this.o.inFlightTimeoutMs ?? 5000;
    for (const [reqNo, f] of this.inFlight) {
      if (now - f.sentMs < timeout) continue;
      this.inFlight.delete(reqNo);
      this.stats.inFlightTimeouts++;
      this.requeue(f.ops);
    }
    // Our clock feeds the agreed time when, by our clock, something is due: a TTL node's expiry, an
    // emptied container, or (while sessions live) every period. An idle cluster orders nothing.
    this.retryDeferred();
    const clockDue = this.tree.timeDeadlineMs() <= now && now - this.lastProposedMs >= period;
    if (clockDue || this.queue.length > 0 || this.pings.size > 0) this.flush(clockDue);
    // A client silent for its whole session timeout is gone from this replica's point of view.
    for (const c of [...this.conns]) {
      const limit = c.sessionId ? c.timeoutMs : 30_000;
      if (now - c.lastHeardMs > limit) this.drop(c, 4001, "no message within the session timeout");
    }
    for (let i = this.readWaiters.length - 1; i >= 0; i--) {
      const w = this.readWaiters[i] as (typeof this.readWaiters)[number];
      if (now < w.deadline) continue;
      this.readWaiters.splice(i, 1);
      w.conn.reads--;
      this.send(w.conn, {
        type: "error",
        code: "OPERATIONTIMEOUT",
        message: `this replica has not reached zxid ${w.need} yet; try another replica`,
      });
    }
  }

  // ------------------------------------------------------------------ applying

  private dispatch(e: Effect): void {
    switch (e.kind) {
      case "watch":
        for (const c of this.watches.trigger(e.type, e.path))
          this.send(c, { type: "event", event: e.type, path: e.path, zxid: e.zxid });
        return;
      case "result": {
        this.unpropose(`${e.sessionId}:${e.cxid}`);
        if (e.opKind === OpKind.CREATE_SESSION) {
          const c = e.keyHex ? this.connecting.get(e.keyHex) : undefined;
          if (!c?.connect) return;
          this.connecting.delete(e.keyHex as string);
          const id = c.connect.id;
          c.connect = null;
          if (e.result.code !== "OK" || e.result.sessionId === undefined) {
            this.send(c, { type: "error", id, code: e.result.code, message: "the session was refused" });
            return;
          }
          this.attach(c, e.result.sessionId, e.result.timeoutMs ?? 0);
          this.send(c, {
            type: "connected",
            id,
            sessionId: e.result.sessionId,
            timeoutMs: e.result.timeoutMs,
            zxid: Math.max(e.zxid, this.tree.appliedZxid),
          });
          return;
        }
        const c = this.bySession.get(e.sessionId);
        if (!c) return;
        const id = c.waiting.get(e.cxid);
        if (id === undefined) return;
        c.waiting.delete(e.cxid);
        this.send(c, { type: "result", id, zxid: e.zxid, ...resultJson(e.result) });
        return;
      }
      case "deferred": {
        const key = `${e.sessionId}:${e.cxid}`;
        const p = this.proposed.get(key);
        if (e.proposer !== this.o.self || !p || this.deferred.has(key)) return;
        this.deferred.set(key, { p, sinceMs: this.now() });
        return;
      }
      case "closed": {
        for (const [k, p] of this.proposed) if (p.sessionId === e.sessionId) this.unpropose(k);
        for (const [k, d] of this.deferred) if (d.p.sessionId === e.sessionId) this.deferred.delete(k);
        this.highestCxid.delete(e.sessionId);
        this.pings.delete(e.sessionId);
        const c = this.bySession.get(e.sessionId);
        if (!c) return;
        this.send(c, { type: "state", state: e.reason === "expired" ? "Expired" : "Closed", zxid: e.zxid });
        this.drop(c, 1000, e.reason === "expired" ? "session expired" : "session closed");
        return;
      }
    }
  }

  // ------------------------------------------------------------------ reads and watches

  /** Runs `fn` once this replica has applied `zxid` and no block is half-announced. */
  private afterZxid(c: CoordConn, zxid: number, id: unknown, fn: () => void): void {
    const need = Math.max(zxid, c.zxid);
    if (this.applying === 0 && this.tree.appliedZxid >= need) {
      fn();
      return;
    }
    if (c.reads >= READ_QUEUE_PER_CONN_MAX) {
      this.fail(c, id, "THROTTLEDOP", "too many reads waiting");
      return;
    }
    c.reads++;
    this.readWaiters.push({ conn: c, need, deadline: this.now() + (this.o.readWaitMs ?? 10_000), run: fn });
  }

  private serveReads(): void {
    if (this.applying > 0 || this.readWaiters.length === 0) return;
    const ready = this.readWaiters.filter((w) => this.tree.appliedZxid >= w.need);
    if (ready.length === 0) return;
    const rest = this.readWaiters.filter((w) => this.tree.appliedZxid < w.need);
    this.readWaiters.length = 0;
    this.readWaiters.push(...rest);
    for (const w of ready) {
      w.conn.reads--;
      if (!w.conn.closed) w.run();
    }
  }

  private onRead(c: CoordConn, id: unknown, m: Record<string, unknown>): void {
    const path = m.path;
    const minZxid = m.minZxid ?? 0;
    if (!Number.isSafeInteger(minZxid)) throw new Error("minZxid must be an integer");
    const watch = m.watch === true;
    this.afterZxid(c, minZxid as number, id, () => {
      const zxid = this.tree.appliedZxid;
      if (typeof path !== "string" || pathProblem(path)) {
        this.send(c, { type: "result", id, zxid, code: "BADARGUMENTS" });
        return;
      }
      const node = this.tree.get(path);
      if (m.type === "exists") {
        if (watch && !this.watches.add(c, "data", path))
          return this.fail(c, id, "THROTTLEDOP", "too many watches");
        this.send(c, { type: "result", id, zxid, code: "OK", stat: node ? this.tree.stat(path) : null });
        return;
      }
      if (!node) {
        this.send(c, { type: "result", id, zxid, code: "NONODE" });
        return;
      }
      const kind: WatchKind = m.type === "getData" ? "data" : "child";
      if (watch && !this.watches.add(c, kind, path))
        return this.fail(c, id, "THROTTLEDOP", "too many watches");
      const stat = this.tree.stat(path) as Stat;
      if (m.type === "getData")
        this.send(c, {
          type: "result",
          id,
          zxid,
          code: "OK",
          data: Buffer.from(node.data).toString("base64"),
          stat,
        });
      else this.send(c, { type: "result", id, zxid, code: "OK", children: this.tree.children(path), stat });
    });
  }

  /** ZooKeeper's setWatches after a reconnect: fire what changed since relZxid, register the rest. */
  private onSetWatches(c: CoordConn, id: unknown, m: Record<string, unknown>): void {
    const rel = m.relZxid ?? 0;
    if (!Number.isSafeInteger(rel)) throw new Error("relZxid must be an integer");
    const lists: Record<string, string[]> = {};
    let total = 0;
    for (const k of ["data", "exist", "child", "persistent", "persistentRecursive"]) {
      const v = m[k] ?? [];
      if (!Array.isArray(v) || !v.every((p) => typeof p === "string" && !pathProblem(p)))
        throw new Error(`${k} must be a list of valid paths`);
      total += v.length;
      lists[k] = v as string[];
    }
    if (total > SETWATCHES_MAX) throw new Error(`at most ${SETWATCHES_MAX} watches at once`);
    this.afterZxid(c, rel as number, id, () => {
      const ev = (event: string, path: string) =>
        this.send(c, { type: "event", event, path, zxid: this.tree.appliedZxid });
      for (const p of lists.data as string[]) {
        const n = this.tree.get(p);
        if (!n) ev("NodeDeleted", p);
        else if (n.mzxid > (rel as number)) ev("NodeDataChanged", p);
        else this.watches.add(c, "data", p);
      }
      for (const p of lists.exist as string[]) {
        if (this.tree.get(p)) ev("NodeCreated", p);
        else this.watches.add(c, "data", p);
      }
      for (const p of lists.child as string[]) {
        const n = this.tree.get(p);
        if (!n) ev("NodeDeleted", p);
        else if (n.pzxid > (rel as number)) ev("NodeChildrenChanged", p);
        else this.watches.add(c, "child", p);
      }
      for (const p of lists.persistent as string[]) this.watches.add(c, "persistent", p);
      for (const p of lists.persistentRecursive as string[]) this.watches.add(c, "persistentRecursive", p);
      this.send(c, { type: "result", id, zxid: this.tree.appliedZxid, code: "OK" });
    });
  }

  private onAddWatch(c: CoordConn, id: unknown, m: Record<string, unknown>): void {
    const path = m.path;
    const mode = m.mode;
    if (
      typeof path !== "string" ||
      pathProblem(path) ||
      (mode !== "persistent" && mode !== "persistentRecursive")
    ) {
      this.send(c, { type: "result", id, zxid: this.tree.appliedZxid, code: "BADARGUMENTS" });
      return;
    }
    const ok = this.watches.add(c, mode, path);
    this.send(c, { type: "result", id, zxid: this.tree.appliedZxid, code: ok ? "OK" : "THROTTLEDOP" });
  }

  private onRemoveWatches(c: CoordConn, id: unknown, m: Record<string, unknown>): void {
    const path = m.path;
    const kind = m.kind ?? "any";
    const kinds: Record<string, WatchKind[]> = {
      data: ["data"],
      child: ["child"],
      persistent: ["persistent"],
      persistentRecursive: ["persistentRecursive"],
      any: ["data", "child", "persistent", "persistentRecursive"],
    };
    const list = typeof kind === "string" ? kinds[kind] : undefined;
    if (typeof path !== "string" || pathProblem(path) || !list) {
      this.send(c, { type: "result", id, zxid: this.tree.appliedZxid, code: "BADARGUMENTS" });
      return;
    }
    let removed = false;
    for (const k of list) removed = this.watches.remove(c, k, path) || removed;
    this.send(c, { type: "result", id, zxid: this.tree.appliedZxid, code: removed ? "OK" : "NOWATCHER" });
  }
}

/** The proposer and entry sequence number of a coordination entry, without decoding its operations. */
export function entryHeader(e: Uint8Array): { proposer: number; entrySeq: number } | undefined {
  if (e.length < ENTRY_HEADER_BYTES) return undefined;
  const dv = new DataView(
    e.buffer,
    e.byteOffset + COORD_MAGIC.length,
    ENTRY_HEADER_BYTES - COORD_MAGIC.length,
  );
  return { proposer: dv.getUint32(0), entrySeq: dv.getUint32(12) * 0x1_0000_0000 + dv.getUint32(16) };
}

/** Bytes an operation takes in an entry besides ENTRY_OP_OVERHEAD: its payload and proof. */
function opBytes(so: SignedOp): number {
  return so.payload.length + proofBytes(so);
}

/** A bundle proof from a message: { i: index, n: bundle size, path: [base64 of 32 bytes, ...] }. */
function bundleProof(v: unknown): BundleProof {
  const p = v as { i?: unknown; n?: unknown; path?: unknown };
  if (
    typeof p !== "object" ||
    p === null ||
    !Array.isArray(p.path) ||
    !Number.isSafeInteger(p.i) ||
    !Number.isSafeInteger(p.n)
  )
    throw new Error("proof is { i, n, path }");
  if (p.path.length > BUNDLE_DEPTH_MAX)
    throw new Error(`a bundle proof has at most ${BUNDLE_DEPTH_MAX} hashes`);
  const path = p.path.map((h) => {
    if (typeof h !== "string") throw new Error("proof hashes are base64 strings");
    const b = b64(h, "proof");
    if (b.length !== 32) throw new Error("a proof hash is 32 bytes");
    return b;
  });
  const index = p.i as number;
  const size = p.n as number;
  if (size < 1 || size > BUNDLE_OPS_MAX) throw new Error(`a bundle holds 1 to ${BUNDLE_OPS_MAX} operations`);
  if (index < 0 || index >= size) throw new Error("proof index out of range");
  return { index, size, path };
}

function b64(s: string, field: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) throw new Error(`${field} is not base64`);
  return new Uint8Array(Buffer.from(s, "base64"));
}

export function resultJson(r: OpResult): Record<string, unknown> {
  const out: Record<string, unknown> = { code: r.code };
  if (r.path !== undefined) out.path = r.path;
  if (r.stat !== undefined) out.stat = r.stat;
  if (r.results !== undefined) out.results = r.results.map(resultJson);
  return out;
}
