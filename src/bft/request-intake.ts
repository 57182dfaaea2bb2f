// Requests on their way into a batch: the leader's queue and how it cuts batches from it, the requests
// proposed and not yet executed, and the timers a follower keeps on requests it waits to see executed.
// Also the one definition of a batch within the limits, shared by the leader that cuts and the followers
// that accept. Pure bookkeeping: ReplicaCore decides when to propose, send or suspect the leader.

import { dropTaken } from "../util/queue.ts";
import type { RequestVerifier } from "./client-auth.ts";
import { RecentSamples } from "./recent.ts";
import type { Batch, ClientRequest, Limits } from "./types.ts";

/** Taken entries of the leader's queue kept before the array is compacted (see cutBatch). */
export const QUEUE_COMPACT_MIN = 64;
/** Requests re-forwarded to the leader per retransmission round. */
export const REFORWARD_PER_TICK_MAX = 256;
/**
 * The request timer adapts to the cluster: REQUEST_TIMEOUT_MULTIPLE times the p99 of the last
 * REQUEST_SAMPLES forward-to-execute times of this replica's requests (once REQUEST_SAMPLES_MIN are
 * known), never below requestTimeoutTicks; doubled for each view entered after the first without an
 * execution in between; at most REQUEST_TIMEOUT_CAP times requestTimeoutTicks. A loaded but correct
 * leader is not deposed by a timer set for an idle cluster, and views that keep failing wait longer.
 */
export const REQUEST_TIMEOUT_MULTIPLE = 4;
export const REQUEST_SAMPLES = 64;
export const REQUEST_SAMPLES_MIN = 8;
export const REQUEST_TIMEOUT_CAP = 16;

export function requestKey(r: ClientRequest): string {
  return `${r.clientId}\u0000${r.reqNo}`;
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

/** Validates a batch proposed by a peer: size limits and every request authenticated for us. */
export function batchProblem(
  batch: Batch,
  l: Limits,
  verifier: RequestVerifier,
  weightOf: (r: ClientRequest) => number,
): string | null {
  if (!batch || !Array.isArray(batch.requests)) return "malformed-batch";
  if (batch.requests.length > l.batchMaxCount) return "batch-too-many";
  let bytes = 0;
  let weight = 0;
  for (const r of batch.requests) {
    const p = verifier.check(r);
    if (p !== null) return `batch-request-${p}`;
    bytes += r.op.length;
    weight += weightOf(r);
  }
  if (weight > l.batchMaxCount) return "batch-too-many";
  if (!batchWithin(l, batch.requests.length, weight, bytes)) return "batch-too-large";
  return null;
}

export function batchShapeOk(batch: Batch, l: Limits): boolean {
  return !!batch && Array.isArray(batch.requests) && batch.requests.length <= l.batchMaxCount;
}

/** A request a follower forwarded and waits to see executed. */
export interface RequestTimer {
  readonly req: ClientRequest;
  /** When this replica started waiting for it (in this view). */
  readonly since: number;
  deadline: number;
  resent?: boolean;
  /** The leader proposed it in this view (LeaderPace waits only on those it has not). */
  proposed?: boolean;
}

export class RequestIntake {
  /** Leader's queue of requests to propose (entries before queueHead are taken). */
  queue: ClientRequest[] = [];
  private queueHead = 0;
  private readonly queueKeys = new Set<string>();
  private queueBytes = 0;
  /** Sum of the queued requests' weights (requestWeight). */
  private queueWeight = 0;
  private queueSince = 0;
  /** Requests proposed in this view and not yet executed. */
  private readonly inFlight = new Set<string>();
  /** Requests this replica forwarded and waits to see executed (oldest first). */
  private readonly timers = new Map<string, RequestTimer>();
  /** Bytes of the ops in `timers` (bounded by pendingMaxBytes, as the leader's queueBytes). */
  private timerBytes = 0;
  /** Timers whose request the leader has not proposed yet. */
  private unproposed = 0;
  /** Forward-to-execute times of the requests waited for here (the request timer adapts to them). */
  private readonly waits = new RecentSamples(REQUEST_SAMPLES);
  /** Views entered since a batch last executed here. */
  private viewsWithoutProgress = 0;
  /** Leader: when it proposed each seq of this view not yet executed (propose-to-execute samples). */
  private readonly ownProposals = new Map<number, number>();

  constructor(
    private readonly limits: Limits,
    private readonly weight: (r: ClientRequest) => number,
  ) {}

  /** Queued, proposed, or waited for here. */
  isPending(key: string): boolean {
    return this.queueKeys.has(key) || this.inFlight.has(key) || this.timers.has(key);
  }

  /** Queued or proposed (the leader's side of isPending). */
  isQueuedOrInFlight(key: string): boolean {
    return this.queueKeys.has(key) || this.inFlight.has(key);
  }

  hasTimer(key: string): boolean {
    return this.timers.has(key);
  }

  /** The request timeout now, in ticks (see REQUEST_TIMEOUT_MULTIPLE). */
  get timeoutTicks(): number {
    const floor = this.limits.requestTimeoutTicks;
    const cap = REQUEST_TIMEOUT_CAP * floor;
    const learned =
      this.waits.size >= REQUEST_SAMPLES_MIN
        ? Math.ceil(REQUEST_TIMEOUT_MULTIPLE * this.waits.quantile(0.99))
        : 0;
    const doubled = Math.max(floor, learned) * 2 ** Math.min(Math.max(0, this.viewsWithoutProgress - 1), 8);
    return Math.min(cap, doubled);
  }

  /** A new view was entered: one more without progress until a batch executes. */
  viewEntered(): void {
    this.viewsWithoutProgress++;
    this.ownProposals.clear();
  }

  /** Leader: it proposed `seq` now (its execution time is a sample of the request timeout). */
  proposedHere(seq: number, now: number): void {
    if (this.ownProposals.size < 2 * this.limits.window) this.ownProposals.set(seq, now);
  }

  /** Nothing queued, in flight or waited for. */
  idle(): boolean {
    return this.timers.size === 0 && this.inFlight.size === 0 && this.queueHead === this.queue.length;
  }

  /** Leader: queues a request, false when the queue is full (pendingMax, pendingMaxBytes). */
  enqueue(req: ClientRequest, key: string, now: number): boolean {
    if (this.queue.length - this.queueHead >= this.limits.pendingMax) return false;
    if (this.queueBytes + req.op.length > this.limits.pendingMaxBytes) return false;
    if (this.queue.length === this.queueHead) this.queueSince = now;
    this.queue.push(req);
    this.queueKeys.add(key);
    this.queueBytes += req.op.length;
    this.queueWeight += this.weight(req);
    return true;
  }

  /** Puts requests of a batch that could not be proposed back into the queue. */
  requeue(reqs: readonly ClientRequest[], now: number): void {
    for (const r of reqs) {
      const key = requestKey(r);
      this.inFlight.delete(key);
      this.enqueue(r, key, now);
    }
  }

  /** Requests queued and not yet taken into a batch. */
  get queued(): number {
    return this.queue.length - this.queueHead;
  }

  /** The queue holds a full batch, or its oldest request waited batchTimeoutTicks. */
  batchDue(now: number): boolean {
    const full =
      this.queueWeight >= this.limits.batchMaxCount || this.queueBytes >= this.limits.batchMaxBytes;
    const timedOut = now - this.queueSince >= this.limits.batchTimeoutTicks;
    return full || timedOut;
  }

  /**
   * Takes the next batch's requests from the queue (batchWithin), skipping those executed or already in
   * flight, and marks them in flight. May return none when every taken request was skipped.
   */
  cutBatch(now: number, executed: (r: ClientRequest) => boolean): ClientRequest[] {
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
      if (executed(r) || this.inFlight.has(key)) continue;
      requests.push(r);
      bytes += r.op.length;
      weight += w;
      this.inFlight.add(key);
    }
    const kept = dropTaken(this.queue, this.queueHead, QUEUE_COMPACT_MIN);
    if (kept !== null) {
      this.queue = kept;
      this.queueHead = 0;
    }
    this.queueSince = now;
    return requests;
  }

  /** Whether a follower may wait for one more request: pendingMax requests, pendingMaxBytes of ops. */
  timerRoom(req: ClientRequest): boolean {
    return (
      this.timers.size < this.limits.pendingMax &&
      this.timerBytes + req.op.length <= this.limits.pendingMaxBytes
    );
  }

  setTimer(key: string, t: RequestTimer): void {
    const old = this.timers.get(key);
    if (old) {
      this.timerBytes -= old.req.op.length;
      if (!old.proposed) this.unproposed--;
    }
    this.timers.set(key, t);
    this.timerBytes += t.req.op.length;
    if (!t.proposed) this.unproposed++;
  }

  private deleteTimer(key: string): void {
    const t = this.timers.get(key);
    if (!t) return;
    this.timers.delete(key);
    this.timerBytes -= t.req.op.length;
    if (!t.proposed) this.unproposed--;
  }

  /** The leader proposed these requests: those waited for here no longer wait on its pace. */
  markProposed(requests: readonly ClientRequest[]): void {
    if (this.unproposed === 0) return;
    for (const r of requests) {
      const t = this.timers.get(requestKey(r));
      if (t && !t.proposed) {
        t.proposed = true;
        this.unproposed--;
      }
    }
  }

  /** Requests forwarded here wait for the leader to propose them. */
  get waitingOnLeader(): boolean {
    return this.unproposed > 0;
  }

  /** The oldest request timer ran out. */
  timerExpired(now: number): boolean {
    const first = this.timers.values().next();
    return !first.done && first.value.deadline <= now;
  }

  /**
   * The requests of a batch being executed are no longer waited for or in flight (their waits are samples
   * of the request timeout, and the execution is progress: see viewEntered). PBFT's request timer
   * restarts, for the next request waited for, when the oldest one executes: a correct leader that keeps
   * up with nothing but its backlog is not deposed; one that leaves a request behind still is.
   */
  settle(requests: readonly ClientRequest[], now: number, seq?: number): void {
    this.viewsWithoutProgress = 0;
    const proposedAt = seq === undefined ? undefined : this.ownProposals.get(seq);
    if (proposedAt !== undefined) {
      this.ownProposals.delete(seq as number);
      this.waits.add(now - proposedAt);
    }
    const oldest = this.timers.keys().next().value;
    for (const r of requests) {
      const key = requestKey(r);
      const t = this.timers.get(key);
      if (t) this.waits.add(now - t.since);
      this.deleteTimer(key);
      this.inFlight.delete(key);
    }
    if (oldest !== undefined && !this.timers.has(oldest)) {
      const next = this.timers.values().next();
      if (!next.done) next.value.deadline = Math.max(next.value.deadline, now + this.timeoutTicks);
    }
  }

  /**
   * Marks as resent, and returns, the forwarded requests half-way to their deadline not yet resent (at
   * most REFORWARD_PER_TICK_MAX, oldest first).
   */
  takeReforwards(now: number): ClientRequest[] {
    const half = Math.floor(this.timeoutTicks / 2);
    const out: ClientRequest[] = [];
    let budget = REFORWARD_PER_TICK_MAX;
    for (const t of this.timers.values()) {
      if (t.deadline - half > now || budget === 0) break;
      if (t.resent) continue;
      t.resent = true;
      budget--;
      out.push(t.req);
    }
    return out;
  }

  /** Forgets the requests waited for and in flight (execution jumped over them). */
  clearWaiting(): void {
    this.ownProposals.clear();
    this.timers.clear();
    this.timerBytes = 0;
    this.unproposed = 0;
    this.inFlight.clear();
  }

  /**
   * A new view: empties the queue, the timers and the in-flight set, and returns the requests waited for
   * followed by those queued, for the new leader.
   */
  takeAll(): ClientRequest[] {
    this.inFlight.clear();
    const queued = this.queue.slice(this.queueHead);
    this.queue = [];
    this.queueHead = 0;
    this.queueKeys.clear();
    this.queueBytes = 0;
    this.queueWeight = 0;
    const waiting = [...this.timers.values()].map((t) => t.req).concat(queued);
    this.timers.clear();
    this.timerBytes = 0;
    this.unproposed = 0;
    return waiting;
  }
}
