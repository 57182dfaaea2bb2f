// The mode-independent part of a replica: request intake, batching, in-order execution, exactly-once,
// checkpoints, state transfer, timers and the Ready contract. Hybrid and PBFT agreement extend it.
// No I/O, no clocks, no randomness: inputs are step(), tick() and propose(); outputs come from ready().

import { bytesEqual } from "./bytes.ts";
import { type ClientRegistry, RequestVerifier } from "./client-auth.ts";
import { ClientTable, type ClientTableSnapshot } from "./client-table.ts";
import type { CoreCrypto, ReplicaAuthenticator } from "./crypto.ts";
import { Digests } from "./digests.ts";
import { AssertionFailed, assert, ConfigError, RequestError } from "./errors.ts";
import { agreedDigestQuorum, joinViewQuorum, type Quorums, quorums } from "./quorum.ts";
import { type StorageReader, seqKey } from "./storage.ts";
import type { TrustedSubsystem } from "./trusted.ts";
import {
  type Batch,
  type CheckpointMsg,
  type CheckpointProof,
  type ClientRequest,
  type CommittedBatch,
  DEFAULT_LIMITS,
  type Limits,
  type Message,
  type Mode,
  type Outgoing,
  type PersistOp,
  type Ready,
  type ReplicaEvent,
  type ReplicaId,
  type SnapshotMsg,
  type StateMsg,
  type StatusMsg,
} from "./types.ts";

export interface ReplicaConfig {
  readonly id: ReplicaId;
  readonly f: number;
  readonly mode: Mode;
  readonly limits?: Partial<Limits>;
}

export interface ReplicaDeps {
  readonly crypto: CoreCrypto;
  readonly registry: ClientRegistry;
  /** Transferable authentication of this replica's messages (checkpoints; PBFT phases). */
  readonly auth: ReplicaAuthenticator;
  /** Hybrid mode only: this replica's trusted subsystem. */
  readonly trusted?: TrustedSubsystem;
  /**
   * How many of a batch's batchMaxCount a request takes (default 1): a request carrying k entries for
   * the application (a gateway's batch of transactions) weighs k, so batchMaxCount bounds entries per
   * batch. Must be a pure function of the request, the same on every replica; at least 1.
   */
  readonly requestWeight?: (r: ClientRequest) => number;
}

/** The state digest before any batch (the genesis checkpoint). */
export const GENESIS_STATE_DIGEST = new Uint8Array(32);
/** By convention the genesis checkpoint's client-table digest is zero (no table was hashed). */
export const GENESIS_CLIENTS_DIGEST = new Uint8Array(32);
export const GENESIS_CHECKPOINT: CheckpointProof = Object.freeze({
  seq: 0,
  stateDigest: GENESIS_STATE_DIGEST,
  clientsDigest: GENESIS_CLIENTS_DIGEST,
  sigs: [],
});

/** A peer is sent a snapshot at most once per this many STATUS periods. */
const SNAPSHOT_RESEND_STATUS_PERIODS = 8;

export type ProposeResult = "accepted" | "pending" | "duplicate";

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

/** Times a replica sends its evidence to each peer after a snapshot jump (installSnapshot). */
const JUMP_EVIDENCE_SENDS = 4;

interface Executed {
  readonly view: number;
  readonly batch: Batch;
}

interface PersistedCheckpoint {
  readonly proof: CheckpointProof;
  readonly clients: ClientTableSnapshot;
}

const KEY_CKPT = "ckpt";
/** Requests re-forwarded to the leader per retransmission round. */
const REFORWARD_PER_TICK_MAX = 256;
const KEY_STABLE = "stable";
const PREFIX_EXEC = "exec/";
/** Taken entries of the leader's queue kept before the array is compacted (see maybePropose). */
export const QUEUE_COMPACT_MIN = 64;
/** Ops in one STATE message at most (a transport frame holds 64 MiB; batches reach requestMaxBytes). */
export const STATE_CHUNK_BYTES = 16 * 1024 * 1024;
/** Stable checkpoint proofs kept with the history, so a restarted replica can still serve state. */
const PREFIX_PROOF = "proof/";

export function requestKey(r: ClientRequest): string {
  return `${r.clientId}\u0000${r.reqNo}`;
}

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
  protected vcDeadline = 0;
  protected vcTimeout: number;

  stable: CheckpointProof = GENESIS_CHECKPOINT;
  lastExecuted = 0;
  stateDigest: Uint8Array = GENESIS_STATE_DIGEST;
  protected clients: ClientTable;
  /** Executed batches from stable.seq - retainBatches on (state transfer source), in seq order. */
  protected readonly history = new Map<number, Executed>();
  /** Bytes of the ops in `history` (kept within retainMaxBytes, see onStableCheckpoint). */
  private historyBytes = 0;
  /** Committed batches waiting for their predecessors. */
  protected readonly committedWaiting = new Map<number, Executed>();
  /** State digest and client table after each executed checkpoint seq not yet stable. */
  protected readonly executedCheckpoints = new Map<
    number,
    { digest: Uint8Array; clientsDigest: Uint8Array; clients: ClientTableSnapshot }
  >();
  /** Stable checkpoint proofs within the retained history (state transfer ends at one of them). */
  protected readonly proofs = new Map<number, CheckpointProof>();
  protected readonly ckptVotes = new Map<
    number,
    Map<
      ReplicaId,
      { digest: Uint8Array; stateDigest: Uint8Array; clientsDigest: Uint8Array; sig: Uint8Array }
    >
  >();
  protected myCheckpoint: CheckpointMsg | null = null;

  /** Leader's queue of requests to propose. */
  protected queue: ClientRequest[] = [];
  protected queueHead = 0;
  protected readonly queueKeys = new Set<string>();
  protected queueBytes = 0;
  /** Sum of the queued requests' weights (requestWeight). */
  protected queueWeight = 0;
  protected queueSince = 0;
  /** Requests proposed in this view and not yet executed. */
  protected readonly inFlight = new Set<string>();
  /** Requests this replica forwarded and waits to see executed (oldest first). */
  protected readonly timers = new Map<string, { req: ClientRequest; deadline: number; resent?: boolean }>();
  /** Bytes of the ops in `timers` (bounded by pendingMaxBytes, as the leader's queueBytes). */
  private timerBytes = 0;

  private draining = false;
  /** Seq of the checkpoint (with client table) a restart resumes from. */
  private persistedCheckpointSeq = 0;
  /** That checkpoint with its client table: what this replica serves as a snapshot. */
  private persisted: PersistedCheckpoint | null = null;
  /** A verified snapshot ahead of execution, waiting for the application to reach it (installSnapshot). */
  private offer: PersistedCheckpoint | null = null;
  /** When each peer was last sent a snapshot (ticks). */
  private readonly snapshotSentAt = new Map<ReplicaId, number>();
  /** Leader: when the oldest outstanding proposal must have committed, or +Infinity. */
  private progressDeadline = Number.POSITIVE_INFINITY;
  /** Since when some peer's latest VIEW-CHANGE asks for a view above ours (null: none does). */
  private peerAheadSince: number | null = null;
  /** Peers whose link the driver reported open at least once (see link()). */
  private readonly linksSeenOpen = new Set<ReplicaId>();
  /** Peers whose link is closed, since which tick. */
  private readonly linkClosedSince = new Map<ReplicaId, number>();
  private persistOut: PersistOp[] = [];
  private sendOut: Outgoing[] = [];
  private commitOut: CommittedBatch[] = [];
  private eventsOut: ReplicaEvent[] = [];
  readonly dropped = new Map<string, number>();
  private haltReason: string | null = null;
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
    this.clients = new ClientTable(this.limits.clientsMax);
    this.vcTimeout = this.limits.viewChangeTimeoutTicks;
  }

  // ------------------------------------------------------------------ public API

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
    return this.haltReason;
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
    const evidence = this.divergenceEvidence();
    if (evidence !== null) {
      this.evidence = evidence;
      this.broadcast(evidence);
      this.markSent(this.evidenceSent);
    }
    this.halt(`this replica's state diverged from a stable checkpoint at seq ${seq} (a fork)`);
  }

  /** What a replica whose state diverged tells its peers (null: nothing that could prove the cause). */
  protected divergenceEvidence(): Message | null {
    return null;
  }

  /** Stops ordering (also used by a host that restarts with a proof on file). */
  halt(reason: string): void {
    if (this.haltReason === null) this.haltReason = reason;
  }

  /**
   * A client request arrives at this replica. Throws RequestError when it is refused. `own`: the
   * request was signed by this replica's own key (its gateway or coordination service), so its
   * signature is checked only once per client id (RequestVerifier).
   */
  propose(req: ClientRequest, own = false): ProposeResult {
    if (this.haltReason !== null) throw new RequestError("HALTED", `ordering stopped: ${this.haltReason}`);
    const problem = this.verifier.check(req, own);
    if (problem !== null) throw new RequestError(problem, `request refused: ${problem}`);
    if (this.clients.isExecuted(req.clientId, req.reqNo)) {
      this.event({ kind: "duplicate-request", clientId: req.clientId, reqNo: req.reqNo });
      return "duplicate";
    }
    const key = requestKey(req);
    if (this.queueKeys.has(key) || this.inFlight.has(key) || this.timers.has(key)) return "pending";
    if (this.isLeader && this.protocolReady()) {
      if (!this.enqueue(req, key))
        throw new RequestError("OVERLOADED", "request queue is full (pendingMax or pendingMaxBytes)");
      this.maybePropose();
      return "accepted";
    }
    if (!this.timerRoom(req))
      throw new RequestError("OVERLOADED", "too many pending requests (pendingMax or pendingMaxBytes)");
    this.setTimer(key, { req, deadline: this.now + this.limits.requestTimeoutTicks });
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
    if (this.haltReason !== null) {
      this.drop(from, "halted");
      if (this.evidence !== null && this.resendDue(this.evidenceSent, from))
        this.sendOut.push({ to: from, msg: this.evidence });
      return;
    }
    if (this.jumpEvidence !== null) this.resendJumpEvidence(from);
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
    if (open) {
      this.linksSeenOpen.add(peer);
      this.linkClosedSince.delete(peer);
    } else if (this.linksSeenOpen.has(peer) && !this.linkClosedSince.has(peer)) {
      this.linkClosedSince.set(peer, this.now);
    }
  }

  /** The leader's link closed at least leaderLinkGraceTicks ago (and has not reopened). */
  private leaderLinkLost(): boolean {
    const grace = this.limits.leaderLinkGraceTicks;
    if (grace <= 0 || this.leader === this.id) return false;
    const since = this.linkClosedSince.get(this.leader);
    return since !== undefined && this.now - since >= grace;
  }

  tick(): void {
    this.now++;
    if (this.haltReason !== null) return;
    if (this.vcTarget === null) {
      const first = this.timers.values().next();
      if (!first.done && first.value.deadline <= this.now)
        this.startViewChange(this.view + 1, "request-timeout");
      else if (this.leaderLinkLost()) {
        // Once per loss: a view change that fails on its own timer is not restarted from here.
        this.linkClosedSince.delete(this.leader);
        this.startViewChange(this.view + 1, "the leader's connection closed");
      } else if (this.now >= this.progressDeadline && this.leader === this.id) {
        this.startViewChange(this.view + 1, "proposals not committing");
      } else this.joinLonePeer();
    } else {
      this.peerAheadSince = null;
      if (this.now >= this.vcDeadline) {
        this.vcTimeout = Math.min(this.vcTimeout * 2, this.limits.viewChangeTimeoutMaxTicks);
        this.startViewChange(this.vcTarget + 1, "view-change-timeout");
      }
    }
    if (this.now % this.limits.retransmitTicks === 0) {
      this.retransmit();
      this.reforwardRequests();
      if (this.myCheckpoint && this.myCheckpoint.seq > this.stable.seq) this.broadcast(this.myCheckpoint);
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
    if (this.haltReason !== null) return true;
    return (
      this.vcTarget === null &&
      !this.linkClosedSince.has(this.leader) &&
      this.timers.size === 0 &&
      this.inFlight.size === 0 &&
      this.queueHead === this.queue.length &&
      this.committedWaiting.size === 0 &&
      (this.myCheckpoint === null || this.myCheckpoint.seq <= this.stable.seq) &&
      !this.hasReady()
    );
  }

  hasReady(): boolean {
    return (
      this.persistOut.length > 0 ||
      this.sendOut.length > 0 ||
      this.commitOut.length > 0 ||
      this.eventsOut.length > 0
    );
  }

  /** Takes what the driver must do: persist, then send, then apply commits. */
  ready(): Ready {
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
    return this.offer && this.offer.proof.seq > this.lastExecuted ? this.offer.proof.seq : null;
  }

  /**
   * Jumps execution to the offered checkpoint: its state digest and client table, no batches executed
   * (the application already holds the state at that seq). Returns false when there is nothing to install.
   */
  installSnapshot(): boolean {
    const o = this.offer;
    this.offer = null;
    if (!o || o.proof.seq <= this.lastExecuted) return false;
    const cp = o.proof;
    const fromSeq = this.lastExecuted + 1;
    // What was executed here since the last checkpoint this replica reached itself is about to be
    // replaced by a state it cannot compare with its own (it never executes up to cp.seq): if the cluster
    // forked, this is where the fork would heal silently (the simulator found it: a follower cut off
    // from the leader by a view change, then brought forward by a snapshot). Tell the peers what was
    // accepted, so that one holding the other side can prove the cause (hybrid: a counter value
    // certified over two digests), and tell a peer that was unreachable once it is heard from again
    // (resendJumpEvidence).
    {
      const evidence = this.divergenceEvidence();
      if (evidence !== null) {
        this.jumpEvidence = evidence;
        this.jumpSeq = cp.seq;
        this.jumpSent.clear();
        this.broadcast(evidence);
        this.markSent(this.jumpSent);
      }
    }
    this.lastExecuted = cp.seq;
    this.stateDigest = cp.stateDigest;
    this.clients = ClientTable.restore(this.limits.clientsMax, o.clients);
    // The batches before the jump can no longer be served (the history must be contiguous).
    for (const s of [...this.history.keys()]) {
      this.history.delete(s);
      this.unpersist(seqKey(PREFIX_EXEC, s));
    }
    this.historyBytes = 0;
    for (const s of [...this.committedWaiting.keys()]) if (s <= cp.seq) this.committedWaiting.delete(s);
    for (const s of [...this.executedCheckpoints.keys()]) if (s <= cp.seq) this.executedCheckpoints.delete(s);
    // Requests this replica waited for were executed or not in the skipped range: clients retransmit.
    this.clearTimers();
    this.inFlight.clear();
    this.progressDeadline = Number.POSITIVE_INFINITY;
    this.persistCheckpoint(cp, o.clients);
    if (cp.seq > this.stable.seq) this.adoptCheckpoint(cp);
    else this.keepProof(cp);
    this.event({ kind: "state-transfer", fromSeq, toSeq: cp.seq });
    this.onStateTransferred();
    this.drainCommitted();
    if (this.lastExecuted < this.stable.seq) this.broadcast(this.statusMsg());
    return true;
  }

  /** Counts of dropped peer messages by reason. */
  droppedTotal(): number {
    let t = 0;
    for (const v of this.dropped.values()) t += v;
    return t;
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

  // A halted replica sends and commits nothing more, even later in the step that halted it.
  protected send(to: ReplicaId, msg: Message): void {
    if (this.haltReason === null) this.sendOut.push({ to, msg });
  }

  /**
   * Sends the evidence of the last snapshot jump again to `from`, backing off, at most JUMP_EVIDENCE_SENDS
   * times per peer, and forgets it once the stable checkpoint is two windows past the jump (the peers no
   * longer keep the certificates it could conflict with).
   */
  private resendJumpEvidence(from: ReplicaId): void {
    if (this.stable.seq > this.jumpSeq + 2 * this.limits.window) {
      this.jumpEvidence = null;
      return;
    }
    const sent = this.jumpSent.get(from)?.resends ?? -1;
    if (sent + 1 >= JUMP_EVIDENCE_SENDS || !this.resendDue(this.jumpSent, from)) return;
    this.sendOut.push({ to: from, msg: this.jumpEvidence as Message });
  }

  /** Notes a message as just sent to every peer (its first broadcast). */
  protected markSent(log: SentLog): void {
    for (let r = 0; r < this.n; r++) if (r !== this.id) log.set(r, { at: this.now, resends: 0 });
  }

  /** True, and noted as sent now, when the message last went to `to` a backed-off period ago (or never). */
  protected resendDue(log: SentLog, to: ReplicaId): boolean {
    const last = log.get(to);
    if (last) {
      const wait = this.limits.retransmitTicks * 2 ** Math.min(last.resends, RESEND_BACKOFF_MAX);
      if (this.now - last.at < wait) return false;
    }
    log.set(to, { at: this.now, resends: (last?.resends ?? -1) + 1 });
    return true;
  }

  protected broadcast(msg: Message): void {
    if (this.haltReason === null) this.sendOut.push({ to: "all", msg });
  }

  protected persist(key: string, value: unknown): void {
    this.persistOut.push({ op: "put", key, value });
  }

  protected unpersist(key: string): void {
    this.persistOut.push({ op: "del", key });
  }

  protected event(e: ReplicaEvent): void {
    this.eventsOut.push(e);
  }

  protected drop(from: ReplicaId, reason: string): void {
    this.dropped.set(reason, (this.dropped.get(reason) ?? 0) + 1);
    this.event({ kind: "dropped", from, reason });
  }

  /** Validates a batch proposed by a peer: size limits and every request authenticated for us. */
  protected batchProblem(batch: Batch): string | null {
    if (!batch || !Array.isArray(batch.requests)) return "malformed-batch";
    if (batch.requests.length > this.limits.batchMaxCount) return "batch-too-many";
    let bytes = 0;
    let weight = 0;
    for (const r of batch.requests) {
      const p = this.verifier.check(r);
      if (p !== null) return `batch-request-${p}`;
      bytes += r.op.length;
      weight += this.weight(r);
    }
    if (weight > this.limits.batchMaxCount) return "batch-too-many";
    if (!batchWithin(this.limits, batch.requests.length, weight, bytes)) return "batch-too-large";
    return null;
  }

  protected batchShapeOk(batch: Batch): boolean {
    return !!batch && Array.isArray(batch.requests) && batch.requests.length <= this.limits.batchMaxCount;
  }

  /** A batch committed at `seq`: executes it and any successors that were waiting. */
  protected commitBatch(seq: number, view: number, batch: Batch): void {
    if (this.haltReason !== null) return;
    if (seq <= this.lastExecuted || this.committedWaiting.has(seq)) return;
    this.committedWaiting.set(seq, { view, batch });
    this.drainCommitted();
  }

  private drainCommitted(): void {
    if (this.draining) return; // re-entered from a checkpoint that became stable while executing
    this.draining = true;
    try {
      for (;;) {
        const next = this.committedWaiting.get(this.lastExecuted + 1);
        if (!next) break;
        this.committedWaiting.delete(this.lastExecuted + 1);
        this.execute(this.lastExecuted + 1, next.view, next.batch);
      }
    } finally {
      this.draining = false;
    }
    this.maybePropose();
  }

  /** The seqs committed but not yet executed (for subclasses that track instances). */
  protected isCommittedOrExecuted(seq: number): boolean {
    return seq <= this.lastExecuted || this.committedWaiting.has(seq);
  }

  protected verifyCheckpointProof(p: CheckpointProof): boolean {
    if (
      !p ||
      !Number.isSafeInteger(p.seq) ||
      p.seq < 0 ||
      !(p.stateDigest instanceof Uint8Array) ||
      !(p.clientsDigest instanceof Uint8Array)
    )
      return false;
    if (p.seq === 0)
      return (
        p.sigs.length === 0 &&
        bytesEqual(p.stateDigest, GENESIS_STATE_DIGEST) &&
        bytesEqual(p.clientsDigest, GENESIS_CLIENTS_DIGEST)
      );
    if (p.seq % this.limits.checkpointInterval !== 0) return false;
    if (!Array.isArray(p.sigs) || p.sigs.length < this.q.checkpoint || p.sigs.length > this.n) return false;
    const digest = this.digests.checkpoint(p.seq, p.stateDigest, p.clientsDigest);
    const seen = new Set<number>();
    for (const s of p.sigs) {
      if (!Number.isInteger(s.replica) || s.replica < 0 || s.replica >= this.n || seen.has(s.replica))
        return false;
      seen.add(s.replica);
      if (!(s.sig instanceof Uint8Array) || !this.auth.verify(s.replica, digest, s.sig)) return false;
    }
    return true;
  }

  /** Adopts a verified stable checkpoint that may be ahead of execution (state transfer follows). */
  protected adoptCheckpoint(proof: CheckpointProof): void {
    if (proof.seq <= this.stable.seq) return;
    this.stable = proof;
    this.keepProof(proof);
    this.persist(KEY_STABLE, proof);
    this.event({ kind: "checkpoint-stable", seq: proof.seq });
    const mine = this.executedCheckpoints.get(proof.seq);
    if (this.lastExecuted >= proof.seq) {
      if (
        mine &&
        (!bytesEqual(mine.digest, proof.stateDigest) || !bytesEqual(mine.clientsDigest, proof.clientsDigest))
      ) {
        return this.diverged(proof.seq);
      }
      if (mine) this.persistCheckpoint(proof, mine.clients);
    }
    for (const s of [...this.ckptVotes.keys()]) if (s <= proof.seq) this.ckptVotes.delete(s);
    for (const s of [...this.executedCheckpoints.keys()])
      if (s < proof.seq) this.executedCheckpoints.delete(s);
    if (this.myCheckpoint && this.myCheckpoint.seq <= proof.seq) this.myCheckpoint = null;
    // Executed batches stay until a persisted checkpoint covers them (a restart replays from there).
    // At most retainBatches of them below that, and the oldest go while all hold over retainMaxBytes.
    const covered = Math.min(proof.seq, this.persistedCheckpointSeq);
    let keepFrom = covered - this.limits.retainBatches;
    for (const [s, e] of this.history) {
      if (s > covered || (s > keepFrom && this.historyBytes <= this.limits.retainMaxBytes)) break;
      this.history.delete(s);
      this.historyBytes -= opBytes(e.batch);
      this.unpersist(seqKey(PREFIX_EXEC, s));
      keepFrom = Math.max(keepFrom, s);
    }
    for (const s of [...this.proofs.keys()]) {
      if (s <= keepFrom) {
        this.proofs.delete(s);
        this.unpersist(seqKey(PREFIX_PROOF, s));
      }
    }
    for (const s of [...this.committedWaiting.keys()])
      if (s <= proof.seq && s <= this.lastExecuted) this.committedWaiting.delete(s);
    this.collectGarbage(proof.seq);
    this.maybePropose();
  }

  /** Puts requests of a batch that could not be proposed back into the queue. */
  protected requeue(reqs: readonly ClientRequest[]): void {
    for (const r of reqs) {
      const key = requestKey(r);
      this.inFlight.delete(key);
      this.enqueue(r, key);
    }
  }

  /** Leader: outstanding proposals must commit within requestTimeoutTicks, or it changes view itself. */
  protected armProgressTimer(): void {
    if (this.progressDeadline === Number.POSITIVE_INFINITY) {
      this.progressDeadline = this.now + this.limits.requestTimeoutTicks;
    }
  }

  protected resetViewTimers(): void {
    this.vcTimeout = this.limits.viewChangeTimeoutTicks;
  }

  /** Called by subclasses when they enter a new view: pending requests go to the new leader. */
  protected onEnterView(): void {
    this.vcTarget = null;
    this.progressDeadline = Number.POSITIVE_INFINITY;
    if (this.leader === this.id && this.nextProposalSeq() - 1 > this.lastExecuted) this.armProgressTimer();
    this.inFlight.clear();
    const leaderNow = this.leader === this.id;
    // Requests this replica queued as an old leader now wait on the new leader.
    const queued = this.queue.slice(this.queueHead);
    this.queue = [];
    this.queueHead = 0;
    this.queueKeys.clear();
    this.queueBytes = 0;
    this.queueWeight = 0;
    const waiting = [...this.timers.values()].map((t) => t.req).concat(queued);
    this.clearTimers();
    for (const req of waiting) {
      if (this.clients.isExecuted(req.clientId, req.reqNo)) continue;
      const key = requestKey(req);
      if (leaderNow) this.enqueue(req, key);
      else if (this.timerRoom(req)) {
        this.setTimer(key, { req, deadline: this.now + this.limits.requestTimeoutTicks });
        this.send(this.leader, { type: "request", request: req });
      }
    }
  }

  /**
   * A view change waits without a deadline until a quorum of replicas wants the target view (or a
   * higher one); only then may it time out and move on (PBFT's rule). A replica cut off from the others
   * therefore stays at its first target instead of running ahead alone.
   */
  /**
   * A forwarded request half-way to its deadline is sent once more, to every replica (PBFT's client
   * multicasts on a timeout): the leader gets another copy (the first may be lost), and the other
   * followers start their own timers, so that they suspect a leader that is dead or ignores it and
   * the view change finds its quorum.
   */
  private reforwardRequests(): void {
    if (this.vcTarget !== null || this.leader === this.id) return;
    const half = Math.floor(this.limits.requestTimeoutTicks / 2);
    let budget = REFORWARD_PER_TICK_MAX;
    for (const t of this.timers.values()) {
      if (t.deadline - half > this.now || budget === 0) break;
      if (t.resent) continue;
      t.resent = true;
      budget--;
      this.broadcast({ type: "request", request: t.req });
    }
  }

  /**
   * A peer whose VIEW-CHANGE asks for a view above ours has left our view for good: it cannot vote in it
   * again (hybrid: its counter is past it; PBFT: it ignores our view's messages), and it waits for a
   * NEW-VIEW its view change alone cannot produce. When it is still there after requestTimeoutTicks,
   * join the lowest such view. Otherwise a replica that suspected the leader alone (a partition, a restart
   * of its peers) stays out until another failure moves everyone, its clients unanswered, and the
   * rest run with one replica less; and one whose checkpoint needs it never sees it stable. A faulty
   * replica can use this to force one view change per requestTimeoutTicks, no more.
   */
  private joinLonePeer(): void {
    let lowest = Number.POSITIVE_INFINITY;
    for (const v of this.viewChangeTargets().values()) if (v > this.view && v < lowest) lowest = v;
    if (lowest === Number.POSITIVE_INFINITY) {
      this.peerAheadSince = null;
      return;
    }
    this.peerAheadSince ??= this.now;
    if (this.now - this.peerAheadSince < this.limits.requestTimeoutTicks) return;
    this.peerAheadSince = null;
    this.startViewChange(lowest, "a peer changes view alone");
  }

  protected startViewChangeTimer(): void {
    this.vcDeadline = Number.POSITIVE_INFINITY;
  }

  /** The view each replica's latest valid VIEW-CHANGE (own included) asks for. */
  protected abstract viewChangeTargets(): Map<ReplicaId, number>;

  /** Arms the view-change deadline once a quorum of replicas wants vcTarget or a higher view. */
  protected armViewChangeTimer(): void {
    const target = this.vcTarget;
    if (target === null || this.vcDeadline !== Number.POSITIVE_INFINITY) return;
    let count = 0;
    for (const v of this.viewChangeTargets().values()) if (v >= target) count++;
    if (count >= this.q.viewChange) this.vcDeadline = this.now + this.vcTimeout;
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
      const pending = this.queue.length - this.queueHead;
      if (pending === 0) return;
      const seq = this.nextProposalSeq();
      if (seq > this.stable.seq + this.limits.window) return;
      const idle = seq - 1 <= this.lastExecuted;
      const full =
        this.queueWeight >= this.limits.batchMaxCount || this.queueBytes >= this.limits.batchMaxBytes;
      const timedOut = this.now - this.queueSince >= this.limits.batchTimeoutTicks;
      if (!idle && !full && !timedOut) return;
      const requests: ClientRequest[] = [];
      let bytes = 0;
      let weight = 0;
      while (this.queueHead < this.queue.length) {
        const r = this.queue[this.queueHead] as ClientRequest;
        const w = this.weight(r);
        if (!batchWithin(this.limits, requests.length + 1, weight + w, bytes + r.op.length)) break;
        this.queueHead++;
        const key = requestKey(r);
        this.queueKeys.delete(key);
        this.queueBytes -= r.op.length;
        this.queueWeight -= w;
        if (this.clients.isExecuted(r.clientId, r.reqNo) || this.inFlight.has(key)) continue;
        requests.push(r);
        bytes += r.op.length;
        weight += w;
        this.inFlight.add(key);
      }
      // Taken entries go soon (they may hold megabytes): at once when the queue is drained, else once
      // they are more than QUEUE_COMPACT_MIN and half the array.
      if (this.queueHead === this.queue.length) {
        this.queue.length = 0;
        this.queueHead = 0;
      } else if (this.queueHead > QUEUE_COMPACT_MIN && this.queueHead * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.queueHead);
        this.queueHead = 0;
      }
      this.queueSince = this.now;
      if (requests.length === 0) continue;
      this.proposeBatch(seq, { requests });
      this.armProgressTimer();
      // A proposal that could not be made (the mode refused the seq) must not spin this loop.
      if (this.nextProposalSeq() <= seq || !this.isLeader || !this.protocolReady()) return;
    }
  }

  private persistCheckpoint(proof: CheckpointProof, clients: ClientTableSnapshot): void {
    this.persisted = { proof, clients };
    this.persist(KEY_CKPT, this.persisted);
    this.persistedCheckpointSeq = proof.seq;
  }

  // ------------------------------------------------------------------ restore

  /** Rebuilds the common state from storage and replays executed batches after the checkpoint. */
  private keepProof(proof: CheckpointProof): void {
    if (this.proofs.has(proof.seq)) return;
    this.proofs.set(proof.seq, proof);
    this.persist(seqKey(PREFIX_PROOF, proof.seq), proof);
  }

  protected restoreCommon(storage: StorageReader): void {
    const ck = storage.get(KEY_CKPT) as PersistedCheckpoint | undefined;
    if (ck) {
      if (!(ck.proof.clientsDigest instanceof Uint8Array))
        throw new ConfigError("BAD_STORAGE", "the stored checkpoint predates client-table digests");
      this.persisted = ck;
      this.persistedCheckpointSeq = ck.proof.seq;
      this.stable = ck.proof;
      this.lastExecuted = ck.proof.seq;
      this.stateDigest = ck.proof.stateDigest;
      this.clients = ClientTable.restore(this.limits.clientsMax, ck.clients);
    }
    const ahead = storage.get(KEY_STABLE) as CheckpointProof | undefined;
    if (ahead && ahead.seq > this.stable.seq) this.stable = ahead;
    this.proofs.set(this.stable.seq, this.stable);
    for (const key of storage.keys(PREFIX_PROOF)) {
      const p = storage.get(key) as CheckpointProof;
      if (p.seq < this.stable.seq) this.proofs.set(p.seq, p);
    }
    for (const key of storage.keys(PREFIX_EXEC)) {
      const seq = Number(key.slice(PREFIX_EXEC.length));
      const e = storage.get(key) as Executed;
      if (seq <= this.lastExecuted) {
        this.history.set(seq, e);
        this.historyBytes += opBytes(e.batch);
      } else if (seq === this.lastExecuted + 1) this.execute(seq, e.view, e.batch, true);
      else break;
    }
  }

  // ------------------------------------------------------------------ internals

  private enqueue(req: ClientRequest, key: string): boolean {
    if (this.queue.length - this.queueHead >= this.limits.pendingMax) return false;
    if (this.queueBytes + req.op.length > this.limits.pendingMaxBytes) return false;
    if (this.queue.length === this.queueHead) this.queueSince = this.now;
    this.queue.push(req);
    this.queueKeys.add(key);
    this.queueBytes += req.op.length;
    this.queueWeight += this.weight(req);
    return true;
  }

  /** Whether a follower may wait for one more request: pendingMax requests, pendingMaxBytes of ops. */
  private timerRoom(req: ClientRequest): boolean {
    return (
      this.timers.size < this.limits.pendingMax &&
      this.timerBytes + req.op.length <= this.limits.pendingMaxBytes
    );
  }

  private setTimer(key: string, t: { req: ClientRequest; deadline: number; resent?: boolean }): void {
    const old = this.timers.get(key);
    if (old) this.timerBytes -= old.req.op.length;
    this.timers.set(key, t);
    this.timerBytes += t.req.op.length;
  }

  private deleteTimer(key: string): void {
    const t = this.timers.get(key);
    if (!t) return;
    this.timers.delete(key);
    this.timerBytes -= t.req.op.length;
  }

  private clearTimers(): void {
    this.timers.clear();
    this.timerBytes = 0;
  }

  private dispatch(from: ReplicaId, msg: Message): void {
    switch (msg.type) {
      case "request":
        return this.onRequest(from, msg.request);
      case "checkpoint":
        return this.onCheckpoint(from, msg);
      case "status":
        return this.onStatus(from, msg);
      case "state":
        return this.onState(from, msg);
      case "snapshot":
        return this.onSnapshot(from, msg);
      default:
        return this.dispatchProtocol(from, msg);
    }
  }

  private onRequest(from: ReplicaId, req: ClientRequest): void {
    if (!this.isLeader) return this.watchRelayed(from, req);
    if (this.verifier.check(req) !== null) return this.drop(from, "request-unauthenticated");
    const key = requestKey(req);
    if (this.clients.isExecuted(req.clientId, req.reqNo) || this.queueKeys.has(key) || this.inFlight.has(key))
      return;
    if (!this.enqueue(req, key)) return this.drop(from, "request-queue-full");
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
    if (this.clients.isExecuted(req.clientId, req.reqNo) || this.timers.has(key)) return;
    if (!this.timerRoom(req)) return this.drop(from, "request-queue-full");
    // The relaying peer's timer has half of its time left: so does ours (both suspect the leader together).
    const deadline = this.now + Math.ceil(this.limits.requestTimeoutTicks / 2);
    this.setTimer(key, { req, deadline, resent: true });
    this.send(this.leader, { type: "request", request: req });
  }

  private execute(seq: number, view: number, batch: Batch, replay = false): void {
    assert(seq === this.lastExecuted + 1, `execute ${seq} after ${this.lastExecuted}`);
    const batchDigest = this.digests.batch(batch);
    const oldest = this.timers.keys().next().value;
    const executed = batch.requests.map((r) => {
      const key = requestKey(r);
      this.deleteTimer(key);
      this.inFlight.delete(key);
      if (!this.verifier.executable(r)) return false;
      if (this.clients.isExecuted(r.clientId, r.reqNo)) return false;
      this.clients.record(r.clientId, r.reqNo, seq);
      return true;
    });
    if (oldest !== undefined && !this.timers.has(oldest)) {
      // PBFT's request timer restarts, for the next request waited for, when the oldest one executes: a
      // correct leader that keeps up with nothing but its backlog is not deposed; one that leaves a
      // request behind still is.
      const next = this.timers.values().next();
      if (!next.done)
        next.value.deadline = Math.max(next.value.deadline, this.now + this.limits.requestTimeoutTicks);
    }
    this.stateDigest = this.digests.nextState(this.stateDigest, seq, batchDigest);
    this.lastExecuted = seq;
    this.progressDeadline = Number.POSITIVE_INFINITY;
    if (this.leader === this.id && this.nextProposalSeq() - 1 > seq) this.armProgressTimer();
    this.history.set(seq, { view, batch });
    this.historyBytes += opBytes(batch);
    if (!replay) this.persist(seqKey(PREFIX_EXEC, seq), { view, batch } satisfies Executed);
    this.commitOut.push({ seq, view, batch, batchDigest, executed, stateDigest: this.stateDigest });
    if (seq % this.limits.checkpointInterval === 0) {
      const clients = this.clients.snapshot();
      const clientsDigest = this.digests.clients(clients);
      this.executedCheckpoints.set(seq, { digest: this.stateDigest, clientsDigest, clients });
      if (seq === this.stable.seq) {
        // Reached a checkpoint that became stable before we executed it (state transfer or replay).
        if (
          !bytesEqual(this.stateDigest, this.stable.stateDigest) ||
          !bytesEqual(clientsDigest, this.stable.clientsDigest)
        ) {
          return this.diverged(seq);
        }
        if (!replay) this.persistCheckpoint(this.stable, clients);
        else this.persisted ??= { proof: this.stable, clients };
      } else if (seq > this.stable.seq) {
        const sig = this.auth.sign(this.digests.checkpoint(seq, this.stateDigest, clientsDigest));
        this.myCheckpoint = { type: "checkpoint", seq, stateDigest: this.stateDigest, clientsDigest, sig };
        if (!replay) this.broadcast(this.myCheckpoint);
        this.recordCheckpointVote(this.id, seq, this.stateDigest, clientsDigest, sig);
        // Peers' votes that came before we executed it.
        for (const [r, v] of this.ckptVotes.get(seq) ?? []) {
          const agrees =
            bytesEqual(v.stateDigest, this.stateDigest) && bytesEqual(v.clientsDigest, clientsDigest);
          if (r !== this.id && !agrees) this.checkpointConflict(r);
        }
      }
    }
  }

  private onCheckpoint(from: ReplicaId, m: CheckpointMsg): void {
    if (!Number.isSafeInteger(m.seq) || m.seq <= 0 || m.seq % this.limits.checkpointInterval !== 0) {
      return this.drop(from, "checkpoint-bad-seq");
    }
    if (m.seq < this.stable.seq) return;
    if (m.seq > this.stable.seq + this.limits.window) return this.drop(from, "checkpoint-too-far");
    if (
      !(m.stateDigest instanceof Uint8Array) ||
      m.stateDigest.length !== 32 ||
      !(m.clientsDigest instanceof Uint8Array) ||
      m.clientsDigest.length !== 32
    )
      return this.drop(from, "checkpoint-bad");
    // Our own state at m.seq, when we executed it (or hold it as the stable checkpoint).
    const executed = this.executedCheckpoints.get(m.seq);
    const mine =
      m.seq === this.stable.seq
        ? { state: this.stable.stateDigest, clients: this.stable.clientsDigest }
        : executed && { state: executed.digest, clients: executed.clientsDigest };
    const agrees =
      mine !== undefined &&
      bytesEqual(mine.state, m.stateDigest) &&
      bytesEqual(mine.clients, m.clientsDigest);
    if (m.seq === this.stable.seq && agrees) return;
    if (!this.auth.verify(from, this.digests.checkpoint(m.seq, m.stateDigest, m.clientsDigest), m.sig)) {
      return this.drop(from, "checkpoint-bad-sig");
    }
    if (mine !== undefined && !agrees) this.checkpointConflict(from);
    if (m.seq > this.stable.seq)
      this.recordCheckpointVote(from, m.seq, m.stateDigest, m.clientsDigest, m.sig);
  }

  /**
   * A peer signed another state than ours at a checkpoint we executed. Either it lies, or correct replicas
   * executed different batches: a fork that no stable checkpoint need reveal, since a faulty replica can
   * sign each side's. Tell the peer what we accepted (divergenceEvidence, backing off): if it is correct
   * it holds the other side and may prove the cause.
   */
  private checkpointConflict(from: ReplicaId): void {
    this.drop(from, "checkpoint-conflict");
    if (!this.resendDue(this.conflictSent, from)) return;
    const evidence = this.divergenceEvidence();
    if (evidence !== null) this.send(from, evidence);
  }

  private recordCheckpointVote(
    from: ReplicaId,
    seq: number,
    stateDigest: Uint8Array,
    clientsDigest: Uint8Array,
    sig: Uint8Array,
  ): void {
    let votes = this.ckptVotes.get(seq);
    if (!votes) {
      votes = new Map();
      this.ckptVotes.set(seq, votes);
    }
    // Votes agree when they sign the same digest (state and client table).
    const digest = this.digests.checkpoint(seq, stateDigest, clientsDigest);
    votes.set(from, { digest, stateDigest, clientsDigest, sig });
    const res = agreedDigestQuorum(this.q.checkpoint)(undefined, votes);
    if (!res.done || !res.value) return;
    const agreed = votes.get(res.value.voters[0] as ReplicaId) as {
      stateDigest: Uint8Array;
      clientsDigest: Uint8Array;
    };
    const sigs = res.value.voters.map((r) => ({
      replica: r,
      sig: (votes.get(r) as { sig: Uint8Array }).sig,
    }));
    const proof: CheckpointProof = {
      seq,
      stateDigest: agreed.stateDigest,
      clientsDigest: agreed.clientsDigest,
      sigs,
    };
    this.adoptCheckpoint(proof);
    if (this.lastExecuted < seq) {
      // We are behind a stable checkpoint: ask its signers for the batches.
      for (const r of res.value.voters) if (r !== this.id) this.send(r, this.statusMsg());
    }
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
    if (s.lastExecuted < this.stable.seq && s.lastExecuted >= 0) {
      const served = this.serveState(from, s.lastExecuted + 1);
      if (served !== "sent") this.serveSnapshot(from, s.lastExecuted, served === "too-large");
    }
    this.helpPeer(from, s);
  }

  /**
   * The peer is behind the batches we keep: send our persisted checkpoint with its client table (rate
   * limited per peer; the peer's application fetches the blocks in between by itself).
   */
  private serveSnapshot(to: ReplicaId, peerExecuted: number, batchesTooLarge: boolean): void {
    const p = this.persisted;
    if (!p || p.proof.seq <= peerExecuted || p.proof.seq > this.stable.seq) return;
    // The batches exist: state transfer will come (unless they are too large for one STATE message).
    if (this.history.has(peerExecuted + 1) && !batchesTooLarge) return;
    const last = this.snapshotSentAt.get(to);
    const period = SNAPSHOT_RESEND_STATUS_PERIODS * this.limits.statusTicks;
    if (last !== undefined && this.now - last < period) return;
    this.snapshotSentAt.set(to, this.now);
    this.send(to, { type: "snapshot", checkpoint: p.proof, clients: p.clients });
  }

  private onSnapshot(from: ReplicaId, m: SnapshotMsg): void {
    const cp = m.checkpoint;
    // Cheap checks first: a repeated or stale snapshot costs no signature check.
    if (!cp || !Number.isSafeInteger(cp.seq)) return this.drop(from, "snapshot-bad-proof");
    if (cp.seq <= this.lastExecuted || (this.offer && this.offer.proof.seq >= cp.seq)) return;
    if (!this.verifyCheckpointProof(cp) || cp.seq === 0) return this.drop(from, "snapshot-bad-proof");
    if (!Array.isArray(m.clients) || m.clients.length > this.limits.clientsMax)
      return this.drop(from, "snapshot-bad-clients");
    if (!bytesEqual(this.digests.clients(m.clients), cp.clientsDigest))
      return this.drop(from, "snapshot-bad-clients");
    this.offer = { proof: cp, clients: m.clients };
    if (cp.seq > this.stable.seq) this.adoptCheckpoint(cp);
    this.event({ kind: "snapshot-offered", from, seq: cp.seq });
  }

  /**
   * Sends batches fromSeq.. up to the highest retained stable checkpoint within one chunk: at most
   * stateChunkBatches batches and STATE_CHUNK_BYTES of ops. "too-large" when even the nearest checkpoint
   * is beyond the bytes (the peer then gets a snapshot and fetches the blocks itself).
   */
  private serveState(to: ReplicaId, fromSeq: number): "sent" | "none" | "too-large" {
    const last = Math.min(this.lastExecuted, fromSeq + this.limits.stateChunkBatches - 1);
    const batches: Batch[] = [];
    let target: CheckpointProof | undefined;
    let sent = 0;
    let bytes = 0;
    for (let seq = fromSeq; seq <= last; seq++) {
      const e = this.history.get(seq);
      if (!e) break;
      bytes += opBytes(e.batch);
      if (bytes > STATE_CHUNK_BYTES)
        return target ? this.sendState(to, target, fromSeq, batches, sent) : "too-large";
      batches.push(e.batch);
      const p = this.proofs.get(seq);
      if (p) {
        target = p;
        sent = batches.length;
      }
    }
    return target ? this.sendState(to, target, fromSeq, batches, sent) : "none";
  }

  private sendState(
    to: ReplicaId,
    checkpoint: CheckpointProof,
    fromSeq: number,
    batches: Batch[],
    count: number,
  ): "sent" {
    this.send(to, { type: "state", checkpoint, fromSeq, batches: batches.slice(0, count) });
    return "sent";
  }

  private onState(from: ReplicaId, m: StateMsg): void {
    const cp = m.checkpoint;
    if (m.fromSeq !== this.lastExecuted + 1) return; // stale or not for us now
    if (
      !Array.isArray(m.batches) ||
      m.batches.length === 0 ||
      m.batches.length > this.limits.stateChunkBatches
    ) {
      return this.drop(from, "state-bad-size");
    }
    if (cp.seq !== m.fromSeq + m.batches.length - 1) return this.drop(from, "state-bad-range");
    if (!this.verifyCheckpointProof(cp)) return this.drop(from, "state-bad-proof");
    let digest = this.stateDigest;
    for (let i = 0; i < m.batches.length; i++) {
      const b = m.batches[i] as Batch;
      if (!this.batchShapeOk(b)) return this.drop(from, "state-bad-batch");
      digest = this.digests.nextState(digest, m.fromSeq + i, this.digests.batch(b));
    }
    if (!bytesEqual(digest, cp.stateDigest)) return this.drop(from, "state-bad-digest");
    this.event({ kind: "state-transfer", fromSeq: m.fromSeq, toSeq: cp.seq });
    this.draining = true;
    try {
      for (let i = 0; i < m.batches.length; i++) {
        const seq = m.fromSeq + i;
        this.committedWaiting.delete(seq);
        this.execute(seq, this.view, m.batches[i] as Batch);
      }
    } finally {
      this.draining = false;
    }
    if (cp.seq > this.stable.seq) this.adoptCheckpoint(cp);
    else this.keepProof(cp);
    this.onStateTransferred();
    this.drainCommitted();
    if (this.lastExecuted < this.stable.seq) this.send(from, this.statusMsg()); // next chunk
  }
}

function validateConfig(id: number, n: number, f: number, l: Limits): void {
  const bad = (field: string, why: string) => {
    throw new ConfigError("BAD_CONFIG", `${field}: ${why}`);
  };
  if (!Number.isInteger(f) || f < 0) bad("f", "must be an integer >= 0");
  if (!Number.isInteger(id) || id < 0 || id >= n) bad("id", `must be in 0..${n - 1}`);
  /** Limits where 0 turns the mechanism off. */
  const offAtZero = new Set(["leaderLinkGraceTicks"]);
  for (const [k, v] of Object.entries(l))
    if (!Number.isSafeInteger(v) || v < 0 || (v === 0 && !offAtZero.has(k)))
      bad(k, offAtZero.has(k) ? "must be an integer >= 0" : "must be a positive integer");
  if (l.window < 2 * l.checkpointInterval) bad("window", "must be >= 2 * checkpointInterval");
  if (l.retainBatches < l.checkpointInterval) bad("retainBatches", "must be >= checkpointInterval");
  // requestMaxBytes may exceed batchMaxBytes (Fabric: AbsoluteMaxBytes > PreferredMaxBytes): see batchWithin.
  if (l.stateChunkBatches < l.checkpointInterval) bad("stateChunkBatches", "must be >= checkpointInterval");
  if (l.pendingMaxBytes < l.requestMaxBytes) bad("pendingMaxBytes", "must be >= requestMaxBytes");
}

/**
 * The one definition of a batch within the limits: the leader cuts by it (maybePropose) and followers
 * accept by it (batchProblem), so a batch a correct leader cuts is always accepted. At most
 * batchMaxCount of weight, and at most batchMaxBytes of ops unless the batch is a single request: a
 * request larger than batchMaxBytes (up to requestMaxBytes, which intake enforces) goes alone, as
 * Fabric cuts a transaction above PreferredMaxBytes into a block of its own.
 */
export function batchWithin(l: Limits, requests: number, weight: number, bytes: number): boolean {
  return weight <= l.batchMaxCount && (requests <= 1 || bytes <= l.batchMaxBytes);
}

/** Bytes of a batch's ops. */
function opBytes(batch: Batch): number {
  let n = 0;
  for (const r of batch.requests) n += r.op.length;
  return n;
}
