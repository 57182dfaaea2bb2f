// The mode-independent part of a replica: request intake, batching, in-order execution, exactly-once,
// checkpoints, state transfer, timers and the Ready contract. Hybrid and PBFT agreement extend it.
// No I/O, no clocks, no randomness: inputs are step(), tick() and propose(); outputs come from ready().
// The bookkeeping of each concern lives in a helper this class owns (effects, request-intake,
// checkpoints, state-transfer, view-triggers, divergence); here it is wired together in one order.

import { RequestVerifier } from "./client-auth.ts";
import type { ClientTable } from "./client-table.ts";
import type { CoreCrypto, ReplicaAuthenticator } from "./crypto.ts";
import { Digests } from "./digests.ts";
import { DivergenceNotices } from "./divergence.ts";
import { Effects, markSent, resendDue, type SentLog } from "./effects.ts";
import { AssertionFailed, RequestError } from "./errors.ts";
import { Execution, type ExecutionHooks } from "./execution.ts";
import { joinViewQuorum, type Quorums, quorums } from "./quorum.ts";
import { type ReplicaConfig, type ReplicaDeps, validateConfig } from "./replica-config.ts";
import { batchProblem, batchShapeOk, RequestIntake, requestKey } from "./request-intake.ts";
import type { Executed } from "./state-transfer.ts";
import type { StorageReader } from "./storage.ts";
import {
  type Batch,
  type CheckpointProof,
  type ClientRequest,
  DEFAULT_LIMITS,
  type Limits,
  type Message,
  type Mode,
  type Ready,
  type ReplicaEvent,
  type ReplicaId,
  type StatusMsg,
} from "./types.ts";
import { ViewTriggers } from "./view-triggers.ts";

export {
  GENESIS_CHECKPOINT,
  GENESIS_CLIENTS_DIGEST,
  GENESIS_STATE_DIGEST,
} from "./checkpoints.ts";
export { RESEND_BACKOFF_MAX, type SentLog } from "./effects.ts";
export type { ReplicaConfig, ReplicaDeps } from "./replica-config.ts";
export { batchWithin, QUEUE_COMPACT_MIN, requestKey } from "./request-intake.ts";
export { STATE_CHUNK_BYTES } from "./state-transfer.ts";

export type ProposeResult = "accepted" | "pending" | "duplicate";

export abstract class ReplicaCore {
  readonly id: ReplicaId;
  readonly mode: Mode;
  readonly q: Quorums;
  readonly n: number;
  readonly f: number;
  readonly limits: Limits;
  protected readonly crypto: CoreCrypto;
  protected readonly auth: ReplicaAuthenticator;
  protected readonly digests: Digests;
  protected readonly verifier: RequestVerifier;
  protected readonly weight: (r: ClientRequest) => number;

  /** Logical time in ticks. */
  protected now = 0;
  view = 0;
  /** The view this replica is changing to, or null when it is active in `view`. */
  vcTarget: number | null = null;

  /** What the driver takes from ready(); also the halt gate and the drop counts. */
  private readonly out = new Effects();
  readonly dropped = this.out.dropped;
  private readonly intake: RequestIntake;
  private readonly exec: Execution;
  private readonly triggers: ViewTriggers;
  private readonly notices: DivergenceNotices;

  constructor(cfg: ReplicaConfig, deps: ReplicaDeps) {
    this.id = cfg.id;
    this.mode = cfg.mode;
    this.f = cfg.f;
    this.q = quorums(cfg.mode, cfg.f);
    this.n = this.q.n;
    this.limits = { ...DEFAULT_LIMITS, ...cfg.limits };
    validateConfig(this.id, this.n, this.f, this.limits);
    this.crypto = deps.crypto;
    this.auth = deps.auth;
    this.digests = new Digests(deps.crypto);
    const w = deps.requestWeight;
    this.weight = w ? (r) => Math.max(1, w(r)) : () => 1;
    this.verifier = new RequestVerifier(
      this.id,
      this.n,
      deps.crypto,
      this.digests,
      deps.registry,
      this.limits,
      this.weight,
    );
    this.intake = new RequestIntake(this.limits, this.weight);
    this.exec = new Execution(
      this.limits,
      this.q,
      this.n,
      this.id,
      this.digests,
      this.auth,
      this.verifier,
      this.out,
      this.executionHooks(),
    );
    this.triggers = new ViewTriggers(this.limits);
    this.notices = new DivergenceNotices(this.id, this.n, this.limits, this.out);
  }

  /** How execution reaches back into the replica (see ExecutionHooks). */
  private executionHooks(): ExecutionHooks {
    return {
      executed: (seq, batch) => {
        this.intake.settle(batch.requests, this.now);
        this.triggers.clearProgress();
        if (this.leader === this.id && this.nextProposalSeq() - 1 > seq) this.armProgressTimer();
      },
      diverged: (seq) => this.diverged(seq),
      conflict: (from) => this.checkpointConflict(from),
      // See installSnapshot.
      jumping: (seq) => this.notices.jumping(this.divergenceEvidence(), seq, this.now),
      jumped: () => {
        // Requests this replica waited for were executed or not in the skipped range: clients retransmit.
        this.intake.clearWaiting();
        this.triggers.clearProgress();
      },
      stableAt: (seq) => {
        this.collectGarbage(seq);
        this.maybePropose();
      },
      transferred: () => this.onStateTransferred(),
      drained: () => this.maybePropose(),
      status: () => this.statusMsg(),
      view: () => this.view,
      now: () => this.now,
    };
  }

  // ------------------------------------------------------------------ public API

  /** The latest stable checkpoint (its proof). */
  get stable(): CheckpointProof {
    return this.exec.stable;
  }

  /** The seq of the last batch executed here. */
  get lastExecuted(): number {
    return this.exec.lastExecuted;
  }

  /** The state digest after lastExecuted. */
  get stateDigest(): Uint8Array {
    return this.exec.stateDigest;
  }

  protected get clients(): ClientTable {
    return this.exec.clients;
  }

  leaderOf(view: number): ReplicaId {
    return view % this.n;
  }

  get leader(): ReplicaId {
    return this.leaderOf(this.view);
  }

  get isLeader(): boolean {
    return this.leader === this.id && this.vcTarget === null;
  }

  get tickCount(): number {
    return this.now;
  }

  /**
   * Why this replica stopped ordering, or null. It stops for good (until an operator intervenes) when it
   * holds proof that a replica's trusted counter equivocated: the assumption hybrid mode's safety rests
   * on no longer holds, and committing more could extend a fork.
   */
  get halted(): string | null {
    return this.out.haltReason;
  }

  /**
   * A stable checkpoint (f+1 or 2f+1 signatures) disagrees with the state this replica executed: with
   * at most f faults impossible, so more than f replicas, or a trusted counter, were compromised (a
   * fork). Stop rather than crash or go on: the operator decides which history to keep.
   */
  private diverged(seq: number): void {
    this.event({ kind: "state-diverged", seq });
    // What this replica accepted, for peers to compare with theirs: the fork's cause may be provable
    // where they stand (hybrid: a counter value certified over two digests). Sent before halting, then
    // again to a peer that keeps talking to this halted replica (step).
    this.notices.halting(this.divergenceEvidence(), this.now);
    this.halt(`this replica's state diverged from a stable checkpoint at seq ${seq} (a fork)`);
  }

  /** What a replica whose state diverged tells its peers (null: nothing that could prove the cause). */
  protected divergenceEvidence(): Message | null {
    return null;
  }

  /** Stops ordering (also used by a host that restarts with a proof on file). */
  halt(reason: string): void {
    if (this.out.haltReason === null) this.out.haltReason = reason;
  }

  /**
   * A client request arrives at this replica. Throws RequestError when it is refused. `own`: the
   * request was signed by this replica's own key (its gateway or coordination service), so its
   * signature is checked only once per client id (RequestVerifier).
   */
  propose(req: ClientRequest, own = false): ProposeResult {
    if (this.halted !== null) throw new RequestError("HALTED", `ordering stopped: ${this.halted}`);
    const problem = this.verifier.check(req, own);
    if (problem !== null) throw new RequestError(problem, `request refused: ${problem}`);
    if (this.clients.isExecuted(req.clientId, req.reqNo)) {
      this.event({ kind: "duplicate-request", clientId: req.clientId, reqNo: req.reqNo });
      return "duplicate";
    }
    const key = requestKey(req);
    if (this.intake.isPending(key)) return "pending";
    if (this.isLeader && this.protocolReady()) {
      if (!this.intake.enqueue(req, key, this.now))
        throw new RequestError("OVERLOADED", "request queue is full (pendingMax or pendingMaxBytes)");
      this.maybePropose();
      return "accepted";
    }
    if (!this.intake.timerRoom(req))
      throw new RequestError("OVERLOADED", "too many pending requests (pendingMax or pendingMaxBytes)");
    this.intake.setTimer(key, { req, deadline: this.now + this.limits.requestTimeoutTicks });
    if (this.vcTarget === null && this.leader !== this.id)
      this.send(this.leader, { type: "request", request: req });
    return "accepted";
  }

  /** A message from replica `from` (authenticated by the transport). Bad messages are dropped and counted. */
  step(from: ReplicaId, msg: Message): void {
    if (!Number.isInteger(from) || from < 0 || from >= this.n || from === this.id) {
      this.drop(from, "bad-sender");
      return;
    }
    if (this.halted !== null) {
      this.drop(from, "halted");
      this.notices.toHaltedPeer(from, this.now);
      return;
    }
    this.notices.toPeer(from, this.now, this.stable.seq);
    try {
      this.dispatch(from, msg);
    } catch (err) {
      if (err instanceof AssertionFailed) throw err;
      // Malformed input that slipped past validation (missing fields, wrong types): drop, never crash.
      this.drop(from, "malformed");
    }
  }

  /**
   * The driver's view of its connection to `peer` (call on every change; repeating a state is fine).
   * Only a link seen open and then closed counts: one not yet established at start suspects nobody.
   */
  link(peer: ReplicaId, open: boolean): void {
    if (!Number.isInteger(peer) || peer < 0 || peer >= this.n || peer === this.id) return;
    this.triggers.link(peer, open, this.now);
  }

  tick(): void {
    this.now++;
    if (this.halted !== null) return;
    const cause =
      this.vcTarget === null
        ? this.triggers.whyLeave(
            this.now,
            this.view,
            this.leader,
            this.id,
            this.intake.timerExpired(this.now),
            () => this.viewChangeTargets(),
          )
        : this.triggers.whyGiveUp(this.now, this.vcTarget);
    if (cause !== null) this.startViewChange(cause.target, cause.reason);
    if (this.now % this.limits.retransmitTicks === 0) {
      this.retransmit();
      this.reforwardRequests();
      const mine = this.exec.unprovenCheckpoint();
      if (mine) this.broadcast(mine);
    }
    if (this.now % this.limits.statusTicks === 0) {
      this.broadcast(this.statusMsg());
    }
    this.maybePropose();
  }

  /**
   * Nothing here waits on time: no request timer, nothing queued, in flight or committed and waiting,
   * no view change, no checkpoint of ours still short of its proof, nothing for the driver to take. A
   * driver may then tick less often, running the skipped ticks before its next input (host.ts); what
   * time still does here (STATUS gossip) is late by at most that period.
   */
  quiet(): boolean {
    if (this.halted !== null) return true;
    return (
      this.vcTarget === null &&
      !this.triggers.linkClosed(this.leader) &&
      this.intake.idle() &&
      this.exec.settled() &&
      !this.hasReady()
    );
  }

  hasReady(): boolean {
    return this.out.hasReady();
  }

  /** Takes what the driver must do: persist, then send, then apply commits. */
  ready(): Ready {
    return this.out.take();
  }

  /** Acknowledges the last Ready (kept for the etcd-style contract; ready() already hands over ownership). */
  advance(): void {}

  /**
   * Keeps the application's reply to an executed request (the last one per client), so that a
   * retransmitted request can be answered without executing it again. Refused beyond replyMaxBytes.
   */
  recordReply(clientId: string, reqNo: number, reply: Uint8Array): boolean {
    if (reply.length > this.limits.replyMaxBytes) return false;
    return this.clients.setReply(clientId, reqNo, reply);
  }

  /** The kept reply to (client, reqNo), when that is the client's last replied request. */
  cachedReply(clientId: string, reqNo: number): Uint8Array | undefined {
    return this.clients.reply(clientId, reqNo);
  }

  /** True when (client, reqNo) was executed here (or is below the client's window). */
  wasExecuted(clientId: string, reqNo: number): boolean {
    return this.clients.isExecuted(clientId, reqNo);
  }

  /**
   * The seq of a verified checkpoint snapshot this replica was offered because its peers no longer keep
   * the batches it is missing, or null. The application must bring its own state to that seq (the
   * ledger fetches the certified blocks) and then call installSnapshot().
   */
  get snapshotOffer(): number | null {
    return this.exec.transfer.offerAhead(this.lastExecuted);
  }

  /**
   * Jumps execution to the offered checkpoint: its state digest and client table, no batches executed
   * (the application already holds the state at that seq). Returns false when there is nothing to install.
   */
  installSnapshot(): boolean {
    // What was executed here since the last checkpoint this replica reached itself is about to be
    // replaced by a state it cannot compare with its own (it never executes up to the snapshot's seq): if
    // the cluster forked, this is where the fork would heal silently (the simulator found it: a follower
    // cut off from the leader by a view change, then brought forward by a snapshot). The peers are told
    // what was accepted (the jumping hook), so that one holding the other side can prove the cause
    // (hybrid: a counter value certified over two digests), and a peer that was unreachable is told once
    // it is heard from again (DivergenceNotices.toPeer).
    return this.exec.installSnapshot();
  }

  /** Counts of dropped peer messages by reason. */
  droppedTotal(): number {
    return this.out.droppedTotal();
  }

  // ------------------------------------------------------------------ for subclasses

  protected abstract dispatchProtocol(from: ReplicaId, msg: Message): void;
  /** True when this replica may propose new seqs in its view (the NEW-VIEW is done). */
  protected abstract protocolReady(): boolean;
  /** The next seq the leader proposes. */
  protected abstract nextProposalSeq(): number;
  /** Proposes `batch` at `seq` (leader only). */
  protected abstract proposeBatch(seq: number, batch: Batch): void;
  protected abstract startViewChange(target: number, reason: string): void;
  protected abstract retransmit(): void;
  /** A peer's STATUS shows it is behind in view or within the window: help it along. */
  protected abstract helpPeer(from: ReplicaId, status: StatusMsg): void;
  /** The stable checkpoint moved to `seq`: drop protocol state up to it. */
  protected abstract collectGarbage(seq: number): void;
  /** Execution jumped forward by state transfer. */
  protected abstract onStateTransferred(): void;
  /** The view each replica's latest valid VIEW-CHANGE (own included) asks for. */
  protected abstract viewChangeTargets(): Map<ReplicaId, number>;

  // A halted replica sends and commits nothing more, even later in the step that halted it.
  protected send(to: ReplicaId, msg: Message): void {
    this.out.send(to, msg);
  }

  protected broadcast(msg: Message): void {
    this.out.broadcast(msg);
  }

  /** Notes a message as just sent to every peer (its first broadcast). */
  protected markSent(log: SentLog): void {
    markSent(log, this.n, this.id, this.now);
  }

  /** True, and noted as sent now, when the message last went to `to` a backed-off period ago (or never). */
  protected resendDue(log: SentLog, to: ReplicaId): boolean {
    return resendDue(log, to, this.now, this.limits.retransmitTicks);
  }

  protected persist(key: string, value: unknown): void {
    this.out.persist(key, value);
  }

  protected unpersist(key: string): void {
    this.out.unpersist(key);
  }

  protected event(e: ReplicaEvent): void {
    this.out.event(e);
  }

  protected drop(from: ReplicaId, reason: string): void {
    this.out.drop(from, reason);
  }

  /** Validates a batch proposed by a peer: size limits and every request authenticated for us. */
  protected batchProblem(batch: Batch): string | null {
    return batchProblem(batch, this.limits, this.verifier, this.weight);
  }

  protected batchShapeOk(batch: Batch): boolean {
    return batchShapeOk(batch, this.limits);
  }

  /** A batch committed at `seq`: executes it and any successors that were waiting. */
  protected commitBatch(seq: number, view: number, batch: Batch): void {
    if (this.halted !== null) return;
    this.exec.commit(seq, view, batch);
  }

  /** The seqs committed but not yet executed (for subclasses that track instances). */
  protected isCommittedOrExecuted(seq: number): boolean {
    return this.exec.isCommittedOrExecuted(seq);
  }

  protected verifyCheckpointProof(p: CheckpointProof): boolean {
    return this.exec.checkpoints.verify(p);
  }

  /** Adopts a verified stable checkpoint that may be ahead of execution (state transfer follows). */
  protected adoptCheckpoint(proof: CheckpointProof): void {
    this.exec.adopt(proof);
  }

  /** Puts requests of a batch that could not be proposed back into the queue. */
  protected requeue(reqs: readonly ClientRequest[]): void {
    this.intake.requeue(reqs, this.now);
  }

  /** Leader: outstanding proposals must commit within requestTimeoutTicks, or it changes view itself. */
  protected armProgressTimer(): void {
    this.triggers.armProgress(this.now);
  }

  protected resetViewTimers(): void {
    this.triggers.resetTimeout();
  }

  /** Called by subclasses when they enter a new view: pending requests go to the new leader. */
  protected onEnterView(): void {
    this.vcTarget = null;
    this.triggers.clearProgress();
    if (this.leader === this.id && this.nextProposalSeq() - 1 > this.lastExecuted) this.armProgressTimer();
    const leaderNow = this.leader === this.id;
    // Requests this replica queued as an old leader now wait on the new leader.
    for (const req of this.intake.takeAll()) {
      if (this.clients.isExecuted(req.clientId, req.reqNo)) continue;
      const key = requestKey(req);
      if (leaderNow) this.intake.enqueue(req, key, this.now);
      else if (this.intake.timerRoom(req)) {
        this.intake.setTimer(key, { req, deadline: this.now + this.limits.requestTimeoutTicks });
        this.send(this.leader, { type: "request", request: req });
      }
    }
  }

  /**
   * A forwarded request half-way to its deadline is sent once more, to every replica (PBFT's client
   * multicasts on a timeout): the leader gets another copy (the first may be lost), and the other
   * followers start their own timers, so that they suspect a leader that is dead or ignores it and
   * the view change finds its quorum.
   */
  private reforwardRequests(): void {
    if (this.vcTarget !== null || this.leader === this.id) return;
    for (const request of this.intake.takeReforwards(this.now)) this.broadcast({ type: "request", request });
  }

  /** A view change starts without a deadline (see ViewTriggers.disarm). */
  protected startViewChangeTimer(): void {
    this.triggers.disarm();
  }

  /** Arms the view-change deadline once a quorum of replicas wants vcTarget or a higher view. */
  protected armViewChangeTimer(): void {
    const target = this.vcTarget;
    if (target === null) return;
    this.triggers.arm(target, () => this.viewChangeTargets(), this.q.viewChange, this.now);
  }

  /** After a valid VIEW-CHANGE arrives: join a higher view that f+1 replicas want; arm the timer. */
  protected reactToViewChanges(): void {
    const join = joinViewQuorum(this.q.join)({ view: this.vcTarget ?? this.view }, this.viewChangeTargets());
    if (join.done && join.value !== undefined) this.startViewChange(join.value, "f+1 replicas changed view");
    this.armViewChangeTimer();
  }

  /** Leader: cuts batches from the queue while the window allows. */
  protected maybePropose(): void {
    if (!this.isLeader || !this.protocolReady()) return;
    for (;;) {
      if (this.intake.queued === 0) return;
      const seq = this.nextProposalSeq();
      if (seq > this.stable.seq + this.limits.window) return;
      const idle = seq - 1 <= this.lastExecuted;
      if (!idle && !this.intake.batchDue(this.now)) return;
      const requests = this.intake.cutBatch(this.now, (r) => this.clients.isExecuted(r.clientId, r.reqNo));
      if (requests.length === 0) continue;
      this.proposeBatch(seq, { requests });
      this.armProgressTimer();
      // A proposal that could not be made (the mode refused the seq) must not spin this loop.
      if (this.nextProposalSeq() <= seq || !this.isLeader || !this.protocolReady()) return;
    }
  }

  /** The leader's queue (tests check that it lets go of the requests it proposed). */
  protected get queue(): readonly ClientRequest[] {
    return this.intake.queue;
  }

  /** The executed batches kept for state transfer (tests check what is retained). */
  protected get history(): ReadonlyMap<number, Executed> {
    return this.exec.transfer.history;
  }

  // ------------------------------------------------------------------ restore

  /** Rebuilds the common state from storage and replays executed batches after the checkpoint. */
  protected restoreCommon(storage: StorageReader): void {
    this.exec.restore(storage);
  }

  // ------------------------------------------------------------------ internals

  private dispatch(from: ReplicaId, msg: Message): void {
    switch (msg.type) {
      case "request":
        return this.onRequest(from, msg.request);
      case "checkpoint":
        return this.exec.onCheckpoint(from, msg);
      case "status":
        return this.onStatus(from, msg);
      case "state":
        return this.exec.onState(from, msg);
      case "snapshot":
        return this.exec.onSnapshot(from, msg);
      default:
        return this.dispatchProtocol(from, msg);
    }
  }

  private onRequest(from: ReplicaId, req: ClientRequest): void {
    if (!this.isLeader) return this.watchRelayed(from, req);
    if (this.verifier.check(req) !== null) return this.drop(from, "request-unauthenticated");
    const key = requestKey(req);
    if (this.clients.isExecuted(req.clientId, req.reqNo) || this.intake.isQueuedOrInFlight(key)) return;
    if (!this.intake.enqueue(req, key, this.now)) return this.drop(from, "request-queue-full");
    this.maybePropose();
  }

  /**
   * A follower got a client request from a peer whose timer for it ran half-way: it waits for it too
   * (and suspects the leader if it does not commit in time), and hands it to the leader itself in case
   * the relaying peer did not. It does not relay it further.
   */
  private watchRelayed(from: ReplicaId, req: ClientRequest): void {
    if (this.vcTarget !== null) return this.drop(from, "request-not-leader");
    if (this.verifier.check(req) !== null) return this.drop(from, "request-unauthenticated");
    const key = requestKey(req);
    if (this.clients.isExecuted(req.clientId, req.reqNo) || this.intake.hasTimer(key)) return;
    if (!this.intake.timerRoom(req)) return this.drop(from, "request-queue-full");
    // The relaying peer's timer has half of its time left: so does ours (both suspect the leader together).
    const deadline = this.now + Math.ceil(this.limits.requestTimeoutTicks / 2);
    this.intake.setTimer(key, { req, deadline, resent: true });
    this.send(this.leader, { type: "request", request: req });
  }

  /**
   * A peer signed another state than ours at a checkpoint we executed. Either it lies, or correct replicas
   * executed different batches: a fork that no stable checkpoint need reveal, since a faulty replica can
   * sign each side's. Tell the peer what we accepted (divergenceEvidence, backing off): if it is correct
   * it holds the other side and may prove the cause.
   */
  private checkpointConflict(from: ReplicaId): void {
    this.drop(from, "checkpoint-conflict");
    this.notices.conflict(from, this.now, () => this.divergenceEvidence());
  }

  private statusMsg(): StatusMsg {
    return {
      type: "status",
      view: this.view,
      target: this.vcTarget ?? this.view,
      lastExecuted: this.lastExecuted,
      stableSeq: this.stable.seq,
    };
  }

  private onStatus(from: ReplicaId, s: StatusMsg): void {
    if (
      !Number.isSafeInteger(s.view) ||
      !Number.isSafeInteger(s.target) ||
      s.target < s.view ||
      !Number.isSafeInteger(s.lastExecuted) ||
      !Number.isSafeInteger(s.stableSeq)
    ) {
      return this.drop(from, "status-bad");
    }
    if (s.lastExecuted < this.stable.seq && s.lastExecuted >= 0) this.exec.serve(from, s.lastExecuted);
    this.helpPeer(from, s);
  }
}
