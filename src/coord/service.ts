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
//
// Beside this file: service-types.ts (options, connections), service-wire.ts (message formats),
// service-proposer.ts (queueing and proposing entries), service-reads.ts (reads and watches).

import { toHex } from "../bft/bytes.ts";
import { withDefaults } from "../util/defaults.ts";
import type { ZkCode } from "./errors.ts";
import { COORD_PROTOCOL, isCoordEntry, OpKind, verifySignedOp } from "./ops.ts";
import { EntryProposer } from "./service-proposer.ts";
import { ReadServer } from "./service-reads.ts";
import { SessionDoor } from "./service-sessions.ts";
import {
  type AppliedBlocks,
  COORD_SERVICE_DEFAULTS,
  type CoordConn,
  type CoordServiceOptions,
  type CoordSocket,
  type PendingOp,
  type ResolvedCoordServiceOptions,
} from "./service-types.ts";
import { entryHeader, opBytes, resultJson, signedOpOf } from "./service-wire.ts";
import type { Effect, ZTree } from "./tree.ts";

export { COORD_PROTOCOL } from "./ops.ts";
export {
  type AppliedBlocks,
  COORD_SERVICE_DEFAULTS,
  type CoordConn,
  type CoordServiceOptions,
  type CoordSocket,
} from "./service-types.ts";
export { entryHeader, resultJson } from "./service-wire.ts";

/** The service's timer sleeps at most this long while nothing is connected or in progress. */
const IDLE_TIMER_MS = 1000;

export class CoordService {
  readonly tree: ZTree;
  private readonly o: ResolvedCoordServiceOptions;
  private readonly now: () => number;
  private readonly conns = new Set<CoordConn>();
  /** connect and resume, and which connection holds which session (service-sessions.ts). */
  private readonly door: SessionDoor;
  /** Queueing, batching and proposing the operations of our clients (service-proposer.ts). */
  private readonly proposer: EntryProposer;
  /** Reads and watches (service-reads.ts). */
  private readonly reads: ReadServer;
  private applying = 0;
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
    /** createSessions refused because they are not bound to the connection they came on (replays). */
    unbound: 0,
  };

  constructor(o: CoordServiceOptions) {
    this.o = withDefaults(COORD_SERVICE_DEFAULTS, o);
    this.tree = o.tree;
    this.now = o.now ?? Date.now;
    this.reads = new ReadServer(this.tree, this.now, this.o.readWaitMs, this.o.connWatchesMax, {
      send: (c, msg) => this.send(c, msg),
      fail: (c, id, code, message) => this.fail(c, id, code, message),
      applying: () => this.applying,
    });
    this.door = new SessionDoor(this.o, this.tree, this.stats, {
      send: (c, msg) => this.send(c, msg),
      fail: (c, id, code, message) => this.fail(c, id, code, message),
      drop: (c, code, reason) => this.drop(c, code, reason),
      enqueue: (p) => this.proposer.enqueue(p),
      afterZxid: (c, zxid, id, run) => this.reads.afterZxid(c, zxid, id, run),
      signedOp: (m) => this.signedOp(m),
    });
    this.proposer = new EntryProposer(this.o, this.tree, this.now, this.stats, {
      hasSession: (sessionId) => this.door.bySession.has(sessionId),
      pong: (sessionId, seq) => {
        const c = this.door.bySession.get(sessionId);
        if (c) this.send(c, { type: "pong", seq, zxid: this.tree.appliedZxid });
      },
      deferredFailed: (p) => this.deferredFailed(p),
    });
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
    const period = this.o.clockPeriodMs;
    let delay = Math.max(10, Math.floor(period / 2));
    const busy = this.conns.size > 0 || this.proposer.busy || this.reads.waiting > 0;
    if (!busy) delay = Math.max(delay, Math.min(IDLE_TIMER_MS, this.tree.timeDeadlineMs() - this.now()));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.onTimer();
      this.scheduleTimer();
    }, delay);
  }

  stop(): void {
    this.stopped = true;
    this.proposer.stop();
    if (this.timer) clearTimeout(this.timer);
    for (const c of [...this.conns]) this.drop(c, 1001, "the replica is shutting down");
  }

  get connections(): number {
    return this.conns.size;
  }

  get queued(): number {
    return this.proposer.queued;
  }

  /** Bytes of the operations held for proposal (queued, in flight, deferred). */
  get queuedBytes(): number {
    return this.proposer.queuedBytes;
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
        for (const reqNo of b.ownRequests) this.proposer.settleEntry(reqNo, b.ownEntries.has(reqNo));
      }
    } finally {
      this.applying--;
    }
    this.proposer.retryDeferred();
    this.reads.serve();
    this.proposer.scheduleFlush();
  }

  // ------------------------------------------------------------------ connections

  open(io: CoordSocket, nonce: Uint8Array): CoordConn | null {
    if (this.stopped || this.conns.size >= this.o.connectionsMax) {
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
    this.door.closed(c);
    this.reads.watches.removeWatcher(c);
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
        return this.door.connect(c, id, m);
      case "resume":
        return this.door.resume(c, id, m);
      case "ping":
      case "write":
        return this.onSigned(c, id, m);
    }
    if (!c.sessionId) return this.fail(c, id, "UNKNOWNSESSION", "connect or resume a session first");
    switch (m.type) {
      case "getData":
      case "exists":
      case "getChildren":
      case "getACL":
        return this.reads.read(c, id, m);
      case "setWatches":
        return this.reads.setWatches(c, id, m);
      case "addWatch":
      case "removeWatches": {
        // Like reads: only once this replica has what the client saw (no event from its past).
        const minZxid = m.minZxid ?? 0;
        if (!Number.isSafeInteger(minZxid)) throw new Error("minZxid must be an integer");
        const run =
          m.type === "addWatch"
            ? () => this.reads.addWatch(c, id, m)
            : () => this.reads.removeWatches(c, id, m);
        return this.reads.afterZxid(c, minZxid as number, id, run);
      }
      default:
        return this.fail(c, id, "MARSHALLINGERROR", `unknown message type ${JSON.stringify(m.type)}`);
    }
  }

  private signedOp(m: Record<string, unknown>): ReturnType<typeof signedOpOf> {
    return signedOpOf(m, this.o.entryMaxBytes, this.tree.cfg.dataMaxBytes);
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
      this.proposer.ping(p);
      return;
    }
    if (c.waiting.size >= this.o.connWritesMax || this.proposer.full(p)) {
      this.stats.refused++;
      return this.fail(c, id, "THROTTLEDOP", "too many operations waiting; slow down");
    }
    // A write must follow the session's last one. The tree may lag behind what the client saw through
    // another replica: then check again once this replica has applied the client's zxid (the waiters run
    // in arrival order, so pipelined writes keep theirs). A gap then is the client's: refused, not ordered.
    const known = Math.max(s.lastCxid, this.proposer.highest(c.sessionId));
    if (op.cxid > known + 1) {
      if (this.tree.appliedZxid < c.zxid || this.applying > 0)
        return this.reads.afterZxid(c, c.zxid, id, () => this.onSigned(c, id, m));
      this.stats.cxidGaps++;
      return this.fail(
        c,
        id,
        "MARSHALLINGERROR",
        `cxid ${op.cxid} skips ${known + 1}: a session numbers its writes one after another`,
      );
    }
    c.waiting.set(op.cxid, id);
    this.proposer.enqueue(p);
  }

  /** A deferred write of ours that the order will not get: its client learns why. */
  private deferredFailed(p: PendingOp): void {
    const c = this.door.bySession.get(p.sessionId);
    const id = c?.waiting.get(p.cxid);
    if (!c || id === undefined) return;
    c.waiting.delete(p.cxid);
    this.fail(
      c,
      id,
      "MARSHALLINGERROR",
      `write ${p.cxid} was ordered before write ${p.cxid - 1}, which never came`,
    );
  }

  private onTimer(): void {
    if (this.stopped) return;
    const now = this.now();
    this.proposer.onTimer(now, this.o.clockPeriodMs);
    // A client silent for its whole session timeout is gone from this replica's point of view.
    for (const c of [...this.conns]) {
      const limit = c.sessionId ? c.timeoutMs : 30_000;
      if (now - c.lastHeardMs > limit) this.drop(c, 4001, "no message within the session timeout");
    }
    this.reads.expire(now);
  }

  // ------------------------------------------------------------------ applying

  private dispatch(e: Effect): void {
    switch (e.kind) {
      case "watch":
        for (const c of this.reads.watches.trigger(e.type, e.path))
          this.send(c, { type: "event", event: e.type, path: e.path, zxid: e.zxid });
        return;
      case "result": {
        this.proposer.unpropose(`${e.sessionId}:${e.cxid}`);
        if (e.opKind === OpKind.CREATE_SESSION) return this.door.created(e);
        const c = this.door.bySession.get(e.sessionId);
        if (!c) return;
        const id = c.waiting.get(e.cxid);
        if (id === undefined) return;
        c.waiting.delete(e.cxid);
        this.send(c, { type: "result", id, zxid: e.zxid, ...resultJson(e.result) });
        return;
      }
      case "deferred":
        this.proposer.deferredByOrder(e);
        return;
      case "closed": {
        this.proposer.forgetSession(e.sessionId);
        const c = this.door.bySession.get(e.sessionId);
        if (!c) return;
        this.send(c, { type: "state", state: e.reason === "expired" ? "Expired" : "Closed", zxid: e.zxid });
        this.drop(c, 1000, e.reason === "expired" ? "session expired" : "session closed");
        return;
      }
    }
  }
}
