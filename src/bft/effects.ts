// The replica's side of the Ready contract: what a step produced for the driver to persist, send, apply
// and observe, collected here until ready() takes it; plus the halt gate and the backoff of resent messages.
// Owned by ReplicaCore and shared with its helpers, so all of them emit effects in one order.

import type {
  CommittedBatch,
  Message,
  Outgoing,
  PersistOp,
  Ready,
  ReplicaEvent,
  ReplicaId,
} from "./types.ts";

/**
 * A PBFT message that carries batches (PRE-PREPARE, VIEW-CHANGE, NEW-VIEW) is resent to a peer after 1,
 * 2, 4, then every 8 retransmission periods since it last went there: a peer slow to take in large
 * batches would otherwise get each of them again every period, and fall further behind the more it is
 * sent. (Hybrid mode does not throttle its PREPAREs: their redundancy is how a compromised counter's
 * equivocation gets seen; see docs/protocol.md §7.7.)
 */
export const RESEND_BACKOFF_MAX = 3;

/** When a message last went to each peer, and how often it has been resent. */
export type SentLog = Map<ReplicaId, { at: number; resends: number }>;

/** Notes a message as just sent, at `now`, to every peer of replica `self` among `n`. */
export function markSent(log: SentLog, n: number, self: ReplicaId, now: number): void {
  for (let r = 0; r < n; r++) if (r !== self) log.set(r, { at: now, resends: 0 });
}

/** True, and noted as sent now, when the message last went to `to` a backed-off period ago (or never). */
export function resendDue(log: SentLog, to: ReplicaId, now: number, retransmitTicks: number): boolean {
  const last = log.get(to);
  if (last) {
    const wait = retransmitTicks * 2 ** Math.min(last.resends, RESEND_BACKOFF_MAX);
    if (now - last.at < wait) return false;
  }
  log.set(to, { at: now, resends: (last?.resends ?? -1) + 1 });
  return true;
}

export class Effects {
  private persistOut: PersistOp[] = [];
  private sendOut: Outgoing[] = [];
  private commitOut: CommittedBatch[] = [];
  private eventsOut: ReplicaEvent[] = [];
  /** Counts of dropped peer messages by reason. */
  readonly dropped = new Map<string, number>();
  /** Why the replica stopped ordering, or null (see ReplicaCore.halted). */
  haltReason: string | null = null;

  /** Stops ordering (the first reason stays). */
  halt(reason: string): void {
    if (this.haltReason === null) this.haltReason = reason;
  }

  // A halted replica sends and commits nothing more, even later in the step that halted it.
  send(to: ReplicaId, msg: Message): void {
    if (this.haltReason === null) this.sendOut.push({ to, msg });
  }

  broadcast(msg: Message): void {
    if (this.haltReason === null) this.sendOut.push({ to: "all", msg });
  }

  /** Sends even when halted: the evidence a halted replica still owes its peers. */
  sendAnyway(to: ReplicaId, msg: Message): void {
    this.sendOut.push({ to, msg });
  }

  persist(key: string, value: unknown): void {
    this.persistOut.push({ op: "put", key, value });
  }

  unpersist(key: string): void {
    this.persistOut.push({ op: "del", key });
  }

  commit(c: CommittedBatch): void {
    this.commitOut.push(c);
  }

  event(e: ReplicaEvent): void {
    this.eventsOut.push(e);
  }

  drop(from: ReplicaId, reason: string): void {
    this.dropped.set(reason, (this.dropped.get(reason) ?? 0) + 1);
    this.event({ kind: "dropped", from, reason });
  }

  droppedTotal(): number {
    let t = 0;
    for (const v of this.dropped.values()) t += v;
    return t;
  }

  hasReady(): boolean {
    return (
      this.persistOut.length > 0 ||
      this.sendOut.length > 0 ||
      this.commitOut.length > 0 ||
      this.eventsOut.length > 0
    );
  }

  /** Hands over everything collected since the last call. */
  take(): Ready {
    const r: Ready = {
      persist: this.persistOut,
      send: this.sendOut,
      commit: this.commitOut,
      events: this.eventsOut,
    };
    this.persistOut = [];
    this.sendOut = [];
    this.commitOut = [];
    this.eventsOut = [];
    return r;
  }
}
