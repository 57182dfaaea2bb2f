// The mode-independent part of a replica: request intake, batching, in-order execution, exactly-once,
// checkpoints, state transfer, timers and the Ready contract. Hybrid and PBFT agreement extend it.
// No I/O, no clocks, no randomness: inputs are step(), tick() and propose(); outputs come from ready().
// Each concern lives in a helper this class owns: execution.ts (with checkpoints.ts, state-transfer.ts),
// request-router.ts (request-intake.ts), view-triggers.ts (leader-pace.ts), divergence.ts, effects.ts;
// here they are wired together, and to the mode, in one order.

import { RequestVerifier } from "./client-auth.ts";
import type { ClientTable } from "./client-table.ts";
import type { CoreCrypto, ReplicaAuthenticator } from "./crypto.ts";
import { Digests } from "./digests.ts";
import { DivergenceNotices } from "./divergence.ts";
import { Effects, markSent, resendDue, type SentLog } from "./effects.ts";
import { RequestError } from "./errors.ts";
import { Execution, type ExecutionHooks } from "./execution.ts";
import { LeaderPace } from "./leader-pace.ts";
import { joinViewQuorum, type Quorums, quorums } from "./quorum.ts";
import { type ReplicaConfig, type ReplicaDeps, validateConfig } from "./replica-config.ts";
import { batchProblem, batchShapeOk, RequestIntake } from "./request-intake.ts";
import { type ProposeResult, RequestRouter } from "./request-router.ts";
import { messageShapeProblem } from "./shape.ts";
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
  private readonly router: RequestRouter;
  private readonly exec: Execution;
  private readonly triggers: ViewTriggers;
  private readonly pace: LeaderPace;
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
    const { id, n, limits, digests, weight } = this;
    this.verifier = new RequestVerifier(id, n, deps.crypto, digests, deps.registry, limits, weight);
    this.intake = new RequestIntake(this.limits, this.weight);
    this.router = new RequestRouter(this.id, this.limits, this.verifier, this.intake, this.out, {
      now: () => this.now,
      leader: () => this.leader,
      active: () => this.vcTarget === null,
      leads: () => this.isLeader,
      mayPropose: () => this.isLeader && this.protocolReady(),
      executed: (r) => this.clients.isExecuted(r.clientId, r.reqNo),
      lastExecuted: () => this.lastExecuted,
      nextSeq: () => this.nextProposalSeq(),
      inWindow: (seq) => seq <= this.stable.seq + this.limits.window,
      proposeBatch: (seq, batch) => {
        this.proposeBatch(seq, batch);
        this.armProgressTimer();
      },
    });
    this.triggers = new ViewTriggers(this.id, this.limits);
    this.pace = new LeaderPace(this.limits);
    this.notices = new DivergenceNotices(this.id, this.n, this.limits, this.out);
    const { q, auth, verifier, out, notices } = this;
    this.exec = new Execution(
      { limits, q, n, id, digests, auth, verifier, out, notices },
      this.executionHooks(),
    );
  }

  /** How execution reaches back into the replica (see ExecutionHooks). */
  private executionHooks(): ExecutionHooks {
    return {
      executed: (seq, batch) => {
        this.intake.settle(batch.requests, this.now, seq);
        this.pace.executed(seq, this.now);
        this.triggers.clearProgress();
        if (this.leader === this.id && this.nextProposalSeq() - 1 > seq) this.armProgressTimer();
      },
      evidence: () => this.divergenceEvidence(),
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
      view: () => this.view,
      target: () => this.vcTarget,
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

  /**
   * Why this replica stopped ordering, or null. It stops for good (until an operator intervenes) when it
   * holds proof that a replica's trusted counter equivocated: the assumption hybrid mode's safety rests
   * on no longer holds, and committing more could extend a fork.
   */
  get halted(): string | null {
    return this.out.haltReason;
  }

  /** What a replica whose state diverged tells its peers (null: nothing that could prove the cause). */
  protected divergenceEvidence(): Message | null {
    return null;
  }

  /** Stops ordering (also used by a host that restarts with a proof on file). */
  halt(reason: string): void {
    this.out.halt(reason);
  }

  /**
   * A client request arrives at this replica. Throws RequestError when it is refused. `own`: the
   * request was signed by this replica's own key (its gateway or coordination service), so its
   * signature is checked only once per client id (RequestVerifier).
   */
  propose(req: ClientRequest, own = false): ProposeResult {
    if (this.halted !== null) throw new RequestError("HALTED", `ordering stopped: ${this.halted}`);
    return this.router.propose(req, own);
  }

  /**
   * A message from replica `from` (authenticated by the transport). Bad messages are dropped and counted:
   * one not shaped like a Message (shape.ts) as "malformed", others by the handlers with their reasons.
   */
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
    // What the codec would refuse is dropped (shape.ts); past it, a handler's exception is a bug and propagates.
    if (messageShapeProblem(msg) !== null) return this.drop(from, "malformed");
    this.notices.toPeer(from, this.now, this.stable.seq);
    this.dispatch(from, msg);
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
    const expired = this.intake.timerExpired(this.now);
    const targets = () => this.viewChangeTargets();
    const follows = this.vcTarget === null && this.leader !== this.id;
    this.pace.followRequestTimeout(this.intake.timeoutTicks);
    const slow = follows && this.pace.tick(this.now, this.intake.waitingOnLeader, this.stable.seq);
    const cause =
      this.vcTarget === null
        ? this.triggers.whyLeave(this.now, this.view, this.leader, expired, targets, slow)
        : this.triggers.whyGiveUp(this.now, this.vcTarget);
    if (cause !== null) this.startViewChange(cause.target, cause.reason);
    if (this.now % this.limits.retransmitTicks === 0) {
      this.retransmit();
      this.router.reforward();
      const mine = this.exec.unprovenCheckpoint();
      if (mine) this.broadcast(mine);
    }
    if (this.now % this.limits.statusTicks === 0) this.broadcast(this.exec.statusMsg());
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

  /** Acknowledges the last Ready (the etcd-style contract; ready() already hands over ownership). */
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
    // Peers are told what was accepted before (DivergenceNotices.jumping).
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

  /** Sends nothing once halted (Effects). */
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

  /** A follower accepted the leader's proposal at `seq` in its view (LeaderPace: the leader's pace). */
  protected noteProposal(seq: number, batch: Batch): void {
    if (this.vcTarget !== null || this.leader === this.id) return;
    this.intake.markProposed(batch.requests);
    this.pace.proposed(seq, this.now, batch.requests.length, this.pace.full(batch, this.weight));
  }

  /** Puts requests of a batch that could not be proposed back into the queue. */
  protected requeue(reqs: readonly ClientRequest[]): void {
    this.intake.requeue(reqs, this.now);
  }

  /** Leader: outstanding proposals must commit within the request timeout, or it changes view itself. */
  protected armProgressTimer(): void {
    this.triggers.armProgress(this.now, this.intake.timeoutTicks);
  }

  protected resetViewTimers(): void {
    this.triggers.resetViewChangeTicks();
  }

  /** Called by subclasses when they enter a new view: pending requests go to the new leader. */
  protected onEnterView(): void {
    this.vcTarget = null;
    this.triggers.clearProgress();
    this.pace.enterView();
    this.intake.viewEntered();
    if (this.leader === this.id && this.nextProposalSeq() - 1 > this.lastExecuted) this.armProgressTimer();
    this.router.handOver();
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
    this.router.proposeQueued();
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
        return this.router.onRequest(from, msg.request);
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

  private onStatus(from: ReplicaId, s: StatusMsg): void {
    if (this.exec.onStatus(from, s)) this.helpPeer(from, s);
  }
}
