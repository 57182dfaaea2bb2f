// How a client request moves between replicas before it is proposed: taken in where the client sent it,
// queued at the leader or forwarded to it, relayed to every replica when the leader is slow, and handed
// to the next leader on a view change. The bookkeeping is RequestIntake's; agreement stays in ReplicaCore.

import type { RequestVerifier } from "./client-auth.ts";
import type { Effects } from "./effects.ts";
import { RequestError } from "./errors.ts";
import { type RequestIntake, requestKey } from "./request-intake.ts";
import type { Batch, ClientRequest, Limits, ReplicaId } from "./types.ts";

export type ProposeResult = "accepted" | "pending" | "duplicate";

/** What routing needs to know of the replica now. */
export interface RouterHooks {
  now(): number;
  /** The leader of the replica's view. */
  leader(): ReplicaId;
  /** Active in its view (not changing view). */
  active(): boolean;
  /** Leads its active view (ReplicaCore.isLeader). */
  leads(): boolean;
  /** Leads its active view and its mode may propose in it (the NEW-VIEW is done). */
  mayPropose(): boolean;
  /** The request was executed (or is below its client's window). */
  executed(r: ClientRequest): boolean;
  lastExecuted(): number;
  /** The next seq the leader proposes. */
  nextSeq(): number;
  /** `seq` is within the window above the stable checkpoint. */
  inWindow(seq: number): boolean;
  /** Proposes `batch` at `seq` (and arms the leader's progress timer). */
  proposeBatch(seq: number, batch: Batch): void;
}

export class RequestRouter {
  constructor(
    private readonly id: ReplicaId,
    private readonly limits: Limits,
    private readonly verifier: RequestVerifier,
    private readonly intake: RequestIntake,
    private readonly out: Effects,
    private readonly hooks: RouterHooks,
  ) {}

  /** See ReplicaCore.propose (which refuses requests once halted). */
  propose(req: ClientRequest, own: boolean): ProposeResult {
    const problem = this.verifier.check(req, own);
    if (problem !== null) throw new RequestError(problem, `request refused: ${problem}`);
    if (this.hooks.executed(req)) {
      this.out.event({ kind: "duplicate-request", clientId: req.clientId, reqNo: req.reqNo });
      return "duplicate";
    }
    const key = requestKey(req);
    if (this.intake.isPending(key)) return "pending";
    if (this.hooks.mayPropose()) {
      if (!this.intake.enqueue(req, key, this.hooks.now()))
        throw new RequestError("OVERLOADED", "request queue is full (pendingMax or pendingMaxBytes)");
      this.proposeQueued();
      return "accepted";
    }
    if (!this.intake.timerRoom(req))
      throw new RequestError("OVERLOADED", "too many pending requests (pendingMax or pendingMaxBytes)");
    const now = this.hooks.now();
    this.intake.setTimer(key, { req, since: now, deadline: now + this.intake.timeoutTicks });
    const leader = this.hooks.leader();
    if (this.hooks.active() && leader !== this.id) this.out.send(leader, { type: "request", request: req });
    return "accepted";
  }

  /** Leader: cuts batches from the queue while the window allows. */
  proposeQueued(): void {
    if (!this.hooks.mayPropose()) return;
    for (;;) {
      if (this.intake.queued === 0) return;
      const seq = this.hooks.nextSeq();
      if (!this.hooks.inWindow(seq)) return;
      const idle = seq - 1 <= this.hooks.lastExecuted();
      if (!idle && !this.intake.batchDue(this.hooks.now())) return;
      const requests = this.intake.cutBatch(this.hooks.now(), (r) => this.hooks.executed(r));
      if (requests.length === 0) continue;
      this.hooks.proposeBatch(seq, { requests });
      this.intake.proposedHere(seq, this.hooks.now());
      // A proposal that could not be made (the mode refused the seq) must not spin this loop.
      if (this.hooks.nextSeq() <= seq || !this.hooks.mayPropose()) return;
    }
  }

  /** A REQUEST from a peer: a follower forwarding it to us as the leader, or relaying it (watchRelayed). */
  onRequest(from: ReplicaId, req: ClientRequest): void {
    if (!this.hooks.leads()) return this.watchRelayed(from, req);
    if (this.verifier.check(req) !== null) return this.out.drop(from, "request-unauthenticated");
    const key = requestKey(req);
    if (this.hooks.executed(req) || this.intake.isQueuedOrInFlight(key)) return;
    if (!this.intake.enqueue(req, key, this.hooks.now())) return this.out.drop(from, "request-queue-full");
    this.proposeQueued();
  }

  /**
   * A follower got a client request from a peer whose timer for it ran half-way: it waits for it too
   * (and suspects the leader if it does not commit in time), and hands it to the leader itself in case
   * the relaying peer did not. It does not relay it further.
   */
  private watchRelayed(from: ReplicaId, req: ClientRequest): void {
    if (!this.hooks.active()) return this.out.drop(from, "request-not-leader");
    if (this.verifier.check(req) !== null) return this.out.drop(from, "request-unauthenticated");
    const key = requestKey(req);
    if (this.hooks.executed(req) || this.intake.hasTimer(key)) return;
    if (!this.intake.timerRoom(req)) return this.out.drop(from, "request-queue-full");
    // The relaying peer's timer has half of its time left: so does ours (both suspect the leader together).
    const now = this.hooks.now();
    const deadline = now + Math.ceil(this.intake.timeoutTicks / 2);
    this.intake.setTimer(key, { req, since: now, deadline, resent: true });
    this.out.send(this.hooks.leader(), { type: "request", request: req });
  }

  /**
   * A forwarded request half-way to its deadline is sent once more, to every replica (PBFT's client
   * multicasts on a timeout): the leader gets another copy (the first may be lost), and the other
   * followers start their own timers, so that they suspect a leader that is dead or ignores it and
   * the view change finds its quorum.
   */
  reforward(): void {
    if (!this.hooks.active() || this.hooks.leader() === this.id) return;
    for (const request of this.intake.takeReforwards(this.hooks.now()))
      this.out.broadcast({ type: "request", request });
  }

  /**
   * A new view: the requests this replica waited for, or queued as an old leader, now wait on the new
   * leader (queued again when that is this replica, else forwarded to it under a new timer).
   */
  handOver(): void {
    const leader = this.hooks.leader();
    const leaderNow = leader === this.id;
    for (const req of this.intake.takeAll()) {
      if (this.hooks.executed(req)) continue;
      const key = requestKey(req);
      if (leaderNow) this.intake.enqueue(req, key, this.hooks.now());
      else if (this.intake.timerRoom(req)) {
        const now = this.hooks.now();
        this.intake.setTimer(key, { req, since: now, deadline: now + this.intake.timeoutTicks });
        this.out.send(leader, { type: "request", request: req });
      }
    }
  }
}
