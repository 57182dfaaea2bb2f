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

  /** The replica is about to halt on a diverged state: broadcasts `evidence`, to be resent on contact. */
  halting(evidence: Message | null, now: number): void {
    if (evidence === null) return;
    this.evidence = evidence;
    this.out.broadcast(evidence);
    markSent(this.evidenceSent, this.n, this.id, now);
  }

  /** A halted replica heard from `from`: sends it the evidence again, backing off. */
  toHaltedPeer(from: ReplicaId, now: number): void {
    if (this.evidence !== null && resendDue(this.evidenceSent, from, now, this.limits.retransmitTicks))
      this.out.sendAnyway(from, this.evidence);
  }

  /** `from` signed another state than ours at a checkpoint: sends it `evidence()` (backing off). */
  conflict(from: ReplicaId, now: number, evidence: () => Message | null): void {
    if (!resendDue(this.conflictSent, from, now, this.limits.retransmitTicks)) return;
    const e = evidence();
    if (e !== null) this.out.send(from, e);
  }

  /** A snapshot is about to replace this replica's state by the one at `seq`: broadcasts `evidence`. */
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
