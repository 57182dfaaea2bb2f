// The ordering side of a replica's coordination service: its clients' operations queued, batched into
// coordination entries and proposed through the core as this replica's client, entries in flight until
// applied (or, when late, handed to the core again), and operations the order put before an earlier one of their
// session (deferred: proposed again, or answered with an error).

import type { ClientRequest } from "../bft/types.ts";
import { ENTRY_HEADER_BYTES, ENTRY_OP_OVERHEAD, encodeEntry, OpKind } from "./ops.ts";
import type { PendingOp, ResolvedCoordServiceOptions } from "./service-types.ts";
import type { Effect, ZTree } from "./tree.ts";

interface InFlight {
  readonly ops: PendingOp[];
  /** The signed request that carries the entry: what is handed to the core again when it is late. */
  readonly request: ClientRequest;
  sentMs: number;
}

/**
 * An operation the order put before an earlier one of its session is proposed again (once that earlier one
 * is applied) at most this often; one whose predecessor is not held here and does not arrive within
 * inFlightTimeoutMs is answered with an error. Either way it enters the order a bounded number of times.
 */
const DEFER_ATTEMPTS_MAX = 3;

/** What the proposer needs of the service around it. */
export interface ProposerHost {
  /** Whether a connection of this session is here. */
  hasSession(sessionId: number): boolean;
  /** An entry of ours holding this ping of the session was applied. */
  pong(sessionId: number, seq: number): void;
  /** A deferred write of ours will not be ordered (counted already): its client gets an error. */
  deferredFailed(p: PendingOp): void;
}

/** The service's counters the proposer keeps (the service's own stats object). */
export type ProposerStats = Record<
  "entriesProposed" | "opsProposed" | "refused" | "deferredRetries" | "deferredFailed" | "inFlightTimeouts",
  number
>;

export class EntryProposer {
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
  private nextReqNo: number;
  private lastProposedMs = 0;
  private flushScheduled = false;
  private stopped = false;

  constructor(
    private readonly o: ResolvedCoordServiceOptions,
    private readonly tree: ZTree,
    private readonly now: () => number,
    private readonly stats: ProposerStats,
    private readonly host: ProposerHost,
  ) {
    // Request numbers grow across restarts (the core's client table remembers executed ones).
    this.nextReqNo = Date.now() * 1000;
  }

  /** No flush is scheduled any more. */
  stop(): void {
    this.stopped = true;
  }

  /** Anything queued, in flight or deferred here. */
  get busy(): boolean {
    return this.inFlight.size > 0 || this.deferred.size > 0 || this.queue.length > 0 || this.pings.size > 0;
  }

  get queued(): number {
    return this.queue.length + this.pings.size;
  }

  /** Bytes of the operations held for proposal (queued, in flight, deferred). */
  get queuedBytes(): number {
    return this.proposedBytes;
  }

  /** Whether this replica holds too much already to take `p` (its queue or its bytes). */
  full(p: PendingOp): boolean {
    return this.queue.length >= this.o.queueMax || this.proposedBytes + p.bytes > this.o.queueMaxBytes;
  }

  /** The highest cxid of the session queued here (0: none). */
  highest(sessionId: number): number {
    return this.highestCxid.get(sessionId) ?? 0;
  }

  /** A session's ping: the latest one replaces any not yet proposed. */
  ping(p: PendingOp): void {
    this.pings.set(p.sessionId, p);
    this.scheduleFlush();
  }

  enqueue(p: PendingOp): void {
    const key = `${p.sessionId}:${p.cxid}`;
    const old = this.proposed.get(key);
    if (old) this.proposedBytes -= old.bytes;
    this.proposed.set(key, p);
    this.proposedBytes += p.bytes;
    if (p.cxid > (this.highestCxid.get(p.sessionId) ?? 0)) this.highestCxid.set(p.sessionId, p.cxid);
    this.queue.push(p);
    this.scheduleFlush();
  }

  /** The operation `session:cxid` has its result: no longer held here. */
  unpropose(key: string): void {
    const p = this.proposed.get(key);
    if (!p) return;
    this.proposed.delete(key);
    this.proposedBytes -= p.bytes;
  }

  /** The order deferred an operation: ours (still held here) is proposed again later. */
  deferredByOrder(e: Extract<Effect, { kind: "deferred" }>): void {
    const key = `${e.sessionId}:${e.cxid}`;
    const p = this.proposed.get(key);
    if (e.proposer !== this.o.self || !p || this.deferred.has(key)) return;
    this.deferred.set(key, { p, sinceMs: this.now() });
  }

  /** The session ended: nothing of it is proposed any more. */
  forgetSession(sessionId: number): void {
    for (const [k, p] of this.proposed) if (p.sessionId === sessionId) this.unpropose(k);
    for (const [k, d] of this.deferred) if (d.p.sessionId === sessionId) this.deferred.delete(k);
    this.highestCxid.delete(sessionId);
    this.pings.delete(sessionId);
  }

  scheduleFlush(): void {
    if (this.flushScheduled || this.stopped) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush(false);
    });
  }

  /** Proposes entries while there is something to propose and room in the core. */
  private flush(clockOnly: boolean): void {
    const max = this.o.inFlightMax;
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
      const request = this.o.signRequest(reqNo, entry);
      try {
        this.o.propose(request);
      } catch {
        // The core refused (overloaded): put the operations back and try again on the next timer tick.
        this.stats.refused++;
        this.requeue(ops);
        return;
      }
      this.inFlight.set(reqNo, { ops, request, sentMs: this.now() });
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
  settleEntry(reqNo: number, applied: boolean): void {
    const f = this.inFlight.get(reqNo);
    if (!f) return;
    this.inFlight.delete(reqNo);
    if (applied) {
      for (const p of f.ops) {
        if (p.kind === OpKind.PING) this.host.pong(p.sessionId, p.cxid);
      }
      return;
    }
    this.requeue(f.ops);
  }

  /**
   * Deferred operations of ours: proposed again once their session's previous write is applied; answered
   * with an error after DEFER_ATTEMPTS_MAX proposals, or when that write is not held here and does not come
   * within inFlightTimeoutMs.
   */
  retryDeferred(): void {
    if (this.deferred.size === 0) return;
    const now = this.now();
    const timeout = this.o.inFlightTimeoutMs;
    for (const [key, { p, sinceMs }] of this.deferred) {
      const s = this.tree.session(p.sessionId);
      if (!s || s.lastCxid >= p.cxid) {
        this.deferred.delete(key);
        continue;
      }
      if (s.lastCxid === p.cxid - 1 && p.attempts < DEFER_ATTEMPTS_MAX && this.host.hasSession(p.sessionId)) {
        this.deferred.delete(key);
        p.attempts++;
        this.stats.deferredRetries++;
        this.queue.push(p);
        continue;
      }
      // Its predecessor still held here (queued or in the core) will come: a slow order is not a lost one.
      const waiting = now - sinceMs < timeout || this.proposed.has(`${p.sessionId}:${p.cxid - 1}`);
      if (waiting && p.attempts < DEFER_ATTEMPTS_MAX) continue;
      this.deferred.delete(key);
      this.unpropose(key);
      this.stats.deferredFailed++;
      this.host.deferredFailed(p);
    }
  }

  /**
   * Entries not applied within inFlightTimeoutMs go to the core again as the same request: one the core
   * still holds is not ordered twice (it answers "pending"), and the entries keep their order. Only an
   * entry the core counts as executed without our having seen its block (a state transfer jumped over it)
   * gives its operations back to the queue, all such in the order they were first proposed.
   */
  private resubmitLate(now: number): void {
    const timeout = this.o.inFlightTimeoutMs;
    const back: PendingOp[] = [];
    for (const [reqNo, f] of this.inFlight) {
      if (now - f.sentMs < timeout) continue;
      this.stats.inFlightTimeouts++;
      let verdict: unknown;
      try {
        verdict = this.o.propose(f.request);
      } catch {
        continue; // refused (overloaded): the next timer tick tries again
      }
      if (verdict !== "duplicate") {
        f.sentMs = now;
        continue;
      }
      this.inFlight.delete(reqNo);
      back.push(...f.ops);
    }
    if (back.length > 0) this.requeue(back);
  }

  /**
   * The timer's share of proposing: entries the core lost go again, deferred operations are retried, and
   * our clock is proposed when, by it, something is due.
   */
  onTimer(now: number, period: number): void {
    this.resubmitLate(now);
    // Our clock feeds the agreed time when, by our clock, something is due: a TTL node's expiry, an
    // emptied container, or (while sessions live) every period. An idle cluster orders nothing.
    this.retryDeferred();
    const clockDue = this.tree.timeDeadlineMs() <= now && now - this.lastProposedMs >= period;
    if (clockDue || this.queue.length > 0 || this.pings.size > 0) this.flush(clockDue);
  }
}
