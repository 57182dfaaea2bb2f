// Telling peers what this replica accepted when its state may have forked from theirs: after it halted on
// a diverged state, when a peer signed another state at a checkpoint, and after a snapshot replaced its
// state. The evidence itself comes from the mode (ReplicaCore.divergenceEvidence); this is who gets it when.

import { type Effects, markSent, resendDue, type SentLog } from "./effects.ts";
import type { Limits, Message, ReplicaId } from "./types.ts";

/** Times a replica sends its evidence to each peer after a snapshot jump (installSnapshot). */
const JUMP_EVIDENCE_SENDS = 4;

export class DivergenceNotices {
  /** Sent by a replica halted on a diverged state (divergenceEvidence), and when to each peer. */
  private evidence: Message | null = null;
  private readonly evidenceSent: SentLog = new Map();
  /** When each peer that signed another state than ours was last sent our evidence. */
  private readonly conflictSent: SentLog = new Map();
  /**
   * What this replica had accepted (divergenceEvidence) when a snapshot last replaced its state (see
   * installSnapshot), the seq it jumped to, and when each peer was sent it.
   */
  private jumpEvidence: Message | null = null;
  private jumpSeq = 0;
  private readonly jumpSent: SentLog = new Map();

  constructor(
    private readonly id: ReplicaId,
    private readonly n: number,
    private readonly limits: Limits,
    private readonly out: Effects,
  ) {}

  /**
   * A stable checkpoint (f+1 or 2f+1 signatures) disagrees with the state this replica executed: with
   * at most f faults impossible, so more than f replicas, or a trusted counter, were compromised (a
   * fork). Stop rather than crash or go on: the operator decides which history to keep.
   */
  diverged(seq: number, evidence: Message | null, now: number): void {
    this.out.event({ kind: "state-diverged", seq });
    // What this replica accepted, for peers to compare with theirs: the fork's cause may be provable
    // where they stand (hybrid: a counter value certified over two digests). Sent before halting, then
    // again to a peer that keeps talking to this halted replica (toHaltedPeer).
    if (evidence !== null) {
      this.evidence = evidence;
      this.out.broadcast(evidence);
      markSent(this.evidenceSent, this.n, this.id, now);
    }
    this.out.halt(`this replica's state diverged from a stable checkpoint at seq ${seq} (a fork)`);
  }

  /** A halted replica heard from `from`: sends it the evidence again, backing off. */
  toHaltedPeer(from: ReplicaId, now: number): void {
    if (this.evidence !== null && resendDue(this.evidenceSent, from, now, this.limits.retransmitTicks))
      this.out.sendAnyway(from, this.evidence);
  }

  /**
   * A peer signed another state than ours at a checkpoint we executed. Either it lies, or correct replicas
   * executed different batches: a fork that no stable checkpoint need reveal, since a faulty replica can
   * sign each side's. Tell the peer what we accepted (`evidence()`, backing off): if it is correct it
   * holds the other side and may prove the cause.
   */
  conflict(from: ReplicaId, now: number, evidence: () => Message | null): void {
    this.out.drop(from, "checkpoint-conflict");
    if (!resendDue(this.conflictSent, from, now, this.limits.retransmitTicks)) return;
    const e = evidence();
    if (e !== null) this.out.send(from, e);
  }

  /**
   * A snapshot is about to replace this replica's state by the one at `seq`. What was executed since the
   * last checkpoint it reached itself is replaced by a state it cannot compare with its own: if the
   * cluster forked, this is where the fork would heal silently (the simulator found it: a follower cut off
   * from the leader by a view change, then brought forward by a snapshot). So the peers are told what was
   * accepted (`evidence`), that one holding the other side may prove the cause (hybrid: a counter value
   * certified over two digests); a peer that was unreachable is told once heard from again (toPeer).
   */
  jumping(evidence: Message | null, seq: number, now: number): void {
    if (evidence === null) return;
    this.jumpEvidence = evidence;
    this.jumpSeq = seq;
    this.jumpSent.clear();
    this.out.broadcast(evidence);
    markSent(this.jumpSent, this.n, this.id, now);
  }

  /**
   * Sends the evidence of the last snapshot jump again to `from`, backing off, at most JUMP_EVIDENCE_SENDS
   * times per peer, and forgets it once the stable checkpoint is two windows past the jump (the peers no
   * longer keep the certificates it could conflict with).
   */
  toPeer(from: ReplicaId, now: number, stableSeq: number): void {
    if (this.jumpEvidence === null) return;
    if (stableSeq > this.jumpSeq + 2 * this.limits.window) {
      this.jumpEvidence = null;
      return;
    }
    const sent = this.jumpSent.get(from)?.resends ?? -1;
    if (sent + 1 >= JUMP_EVIDENCE_SENDS || !resendDue(this.jumpSent, from, now, this.limits.retransmitTicks))
      return;
    this.out.sendAnyway(from, this.jumpEvidence);
  }
}
