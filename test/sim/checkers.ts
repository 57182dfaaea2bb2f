// The simulator's checkers and what they keep: agreement, validity and exactly-once on every commit,
// per-replica invariants after every step, liveness after the heal; and the bookkeeping of a
// compromised counter's attack (conflicting certificates sent, forks, proofs of equivocation raised):
// a fork is allowed only if a correct replica proves the equivocation; a silent fork or a false
// accusation fails. A failed check records a violation and throws Violation, which ends the run.

import {
  type Batch,
  type CertChecker,
  checkEquivocation,
  type EquivocationProof,
  type HPrepare,
  toHex,
} from "../../src/bft/index.ts";
import { type SimContext, SimPart } from "./context.ts";

export class Violation extends Error {}

export class Checkers extends SimPart {
  /** Verifies any subsystem's certificates with public keys only (what replicas and auditors hold). */
  private readonly checker: CertChecker;
  readonly violations: string[] = [];
  /** (client, reqNo) -> the op its client sent. */
  readonly genuine = new Map<string, Uint8Array>();
  /** seq -> batch digest hex, as first committed by a correct replica. */
  private readonly agreed = new Map<number, string>();
  /** (client, reqNo) -> number of correct replicas that executed it. */
  private readonly executedBy = new Map<string, Set<number>>();
  /** Requests executed at each seq (by correct replicas): what a snapshot install copies into an app. */
  private readonly executedAt = new Map<number, string[]>();
  /** (client, reqNo) -> replicas (any) that executed it: the replies a client would get. */
  private readonly executedAny = new Map<string, number>();
  /**
   * PREPAREs a compromised-counter leader certified twice, by "culprit/view/slot" (the counter value):
   * the other version, who gets it, and when it was first sent.
   */
  readonly counterForks = new Map<string, { alt: HPrepare; altTo: ReadonlySet<number>; at: number }>();
  /** Tick at which the first conflicting certificate was sent. */
  firstConflictAt: number | null = null;
  /** Tick at which a correct replica first raised a valid proof of equivocation. */
  detectedAt: number | null = null;
  /** Ticks from the proven equivocation's first conflicting certificate to that first proof. */
  detectionTicks: number | null = null;
  /** Correct replicas that raised a proof, with their halt reason: their host keeps the proof on file. */
  readonly convicted = new Map<number, string>();
  /** First seq at which correct replicas committed different batches (after a counter equivocated). */
  forkedAt: { seq: number; tick: number } | null = null;
  /** Correct replicas whose core stopped because their state diverged from a stable checkpoint (fork). */
  private readonly stoppedOnFork = new Set<number>();
  maxSeq = 0;
  maxView = 0;

  constructor(ctx: SimContext, checker: CertChecker) {
    super(ctx);
    this.checker = checker;
  }

  private get verbose(): boolean {
    return this.ctx.verbose;
  }

  private get log(): string[] {
    return this.ctx.log;
  }

  private isCorrect(i: number): boolean {
    return this.ctx.isCorrect(i);
  }

  violate(what: string, context = true): never {
    const fork = context && this.forkedAt && this.detectedAt === null ? this.forkedAt : null;
    const v =
      `tick ${this.now}: ${what}` +
      (fork ? ` (after an undetected fork at seq ${fork.seq}, tick ${fork.tick})` : "");
    this.violations.push(v);
    throw new Violation(v);
  }

  /**
   * Correct replica i's core stopped on an assertion that its state diverged from a stable checkpoint,
   * after a counter certified one value twice: the fork's doing, which counts as a fork (see the world's
   * guard). It stays stopped.
   */
  stopOnFork(i: number, message: string): void {
    this.ctx.rep(i).core = null;
    this.stoppedOnFork.add(i);
    this.count("fork-state-diverged");
    const seq = this.ctx.rep(i).app.appliedSeq;
    if (this.forkedAt === null) this.forkedAt = { seq, tick: this.now };
    if (this.verbose) this.log.push(`t${this.now} r${i} stopped after a fork: ${message}`);
  }

  /**
   * A correct replica found its state differs from a stable checkpoint and halted (the core's answer to
   * a fork). Only a counter that certified one value twice can cause it: without one it is a bug; with
   * one it is a fork, and a correct replica must still raise the proof by the end of the run.
   */
  onDiverged(i: number, seq: number): void {
    // Through violate(), so that the run reports it (a bare throw ended the run with no violation).
    if (this.firstConflictAt === null)
      this.violate(`r${i}: state diverged at checkpoint ${seq} without any equivocation`);
    this.stoppedOnFork.add(i);
    this.count("fork-state-diverged");
    if (this.forkedAt === null) this.forkedAt = { seq: this.ctx.rep(i).app.appliedSeq, tick: this.now };
    if (this.verbose) this.log.push(`t${this.now} r${i} halted after a fork: state diverged at ${seq}`);
  }

  /**
   * Replica i's application copies the state up to the checkpoint `target` of a snapshot it installs
   * (as the ledger fetches certified blocks): the requests correct replicas executed at those seqs.
   */
  copySnapshot(i: number, target: number): void {
    const app = this.ctx.rep(i).app;
    for (let s = app.appliedSeq + 1; s <= target; s++) {
      const keys = this.executedAt.get(s);
      if (!keys) {
        if (this.isCorrect(i)) this.violate(`replica ${i} offered a snapshot at ${target}, seq ${s} unknown`);
        continue;
      }
      for (const k of keys) {
        if (app.executed.has(k) && this.isCorrect(i))
          this.violate(`exactly-once: replica ${i} holds ${k} twice after a snapshot`);
        app.executed.add(k);
      }
    }
    app.appliedSeq = Math.max(app.appliedSeq, target);
  }

  /** Whether replica i stopped for good after a fork (it does not restart). */
  stoppedForGood(i: number): boolean {
    return this.stoppedOnFork.has(i);
  }

  /** Requests executed by at least one replica (correct ones). */
  completed(): number {
    let completed = 0;
    for (const set of this.executedBy.values()) if (set.size > 0) completed++;
    return completed;
  }

  /** Whether a client has its answer: executed by a correct replica, and `need` replicas replied. */
  answered(key: string, need: number): boolean {
    return (this.executedBy.get(key)?.size ?? 0) >= 1 && (this.executedAny.get(key) ?? 0) >= need;
  }

  apply(i: number, seq: number, batch: Batch, executed: readonly boolean[], view: number): void {
    const app = this.ctx.rep(i).app;
    if (seq <= app.appliedSeq) return; // re-delivery after a restart
    if (seq !== app.appliedSeq + 1) this.violate(`replica ${i} applied seq ${seq} after ${app.appliedSeq}`);
    app.appliedSeq = seq;
    this.maxSeq = Math.max(this.maxSeq, seq);
    batch.requests.forEach((req, k) => {
      if (!executed[k]) return;
      const key = `${req.clientId}#${req.reqNo}`;
      this.executedAny.set(key, (this.executedAny.get(key) ?? 0) + 1);
    });
    if (!this.isCorrect(i)) return;
    const digest = toHex(this.ctx.digests.batch(batch));
    if (!this.executedAt.has(seq))
      this.executedAt.set(
        seq,
        batch.requests.flatMap((req, k) => (executed[k] ? [`${req.clientId}#${req.reqNo}`] : [])),
      );
    const prior = this.agreed.get(seq);
    if (prior === undefined) this.agreed.set(seq, digest);
    else if (prior !== digest) {
      // A compromised counter can split the correct replicas: allowed only if one of them catches it
      // (checked at the end of the run), never otherwise.
      if (this.firstConflictAt === null)
        this.violate(`agreement: replica ${i} committed a different batch at seq ${seq} (view ${view})`);
      this.count("fork");
      if (this.forkedAt === null) this.forkedAt = { seq, tick: this.now };
      if (this.verbose) this.log.push(`t${this.now} r${i} fork at seq ${seq}`);
    }
    batch.requests.forEach((req, k) => {
      if (!executed[k]) return;
      const key = `${req.clientId}#${req.reqNo}`;
      const op = this.genuine.get(key);
      if (!op || toHex(op) !== toHex(req.op))
        this.violate(`validity: replica ${i} executed a request no client sent (${key})`);
      if (app.executed.has(key)) this.violate(`exactly-once: replica ${i} executed ${key} twice`);
      app.executed.add(key);
      let set = this.executedBy.get(key);
      if (!set) {
        set = new Set();
        this.executedBy.set(key, set);
      }
      set.add(i);
    });
  }

  /**
   * A correct replica raised a proof of equivocation. It must verify with public keys only, name a
   * replica whose counter key the attacker holds (anyone else is falsely accused), and the replica
   * raising it must have stopped ordering.
   */
  onEquivocation(i: number, culprit: number, proof: EquivocationProof): void {
    if (!this.isCorrect(i)) return; // a Byzantine replica's claims prove nothing
    const why = checkEquivocation(proof, this.checker);
    if (why !== null)
      this.violate(`false proof: replica ${i} accused replica ${culprit} with an invalid proof (${why})`);
    if (proof.a.cert.subsystem !== culprit)
      this.violate(
        `false proof: replica ${i} accused replica ${culprit} with a proof against ${proof.a.cert.subsystem}`,
      );
    if (this.ctx.byz.get(culprit) !== "compromised-counter")
      this.violate(
        `false accusation: replica ${i} accused replica ${culprit}, whose counter is not compromised`,
      );
    const reason = this.ctx.replicas[i]?.core?.halted ?? null;
    if (reason === null)
      this.violate(`replica ${i} raised a proof of equivocation but did not stop ordering`);
    this.convicted.set(i, reason);
    this.count("equivocation-detected");
    if (this.detectedAt === null) {
      this.detectedAt = this.now;
      const v = proof.a.cert.value;
      const sent = this.counterForks.get(`${culprit}/${v.view}/${v.slot}`)?.at ?? this.firstConflictAt;
      this.detectionTicks = sent === null ? null : this.now - sent;
      if (this.verbose) this.log.push(`t${this.now} r${i} detected replica ${culprit}'s equivocation`);
    }
  }

  /** Correct replicas may only have diverged if one of them raised a proof of equivocation. */
  checkForks(): void {
    const fork = this.forkedAt;
    if (fork === null || this.detectedAt !== null) return;
    this.violate(
      `agreement: silent fork: correct replicas committed different batches at seq ${fork.seq} (tick ${fork.tick}) and none raised a proof of equivocation`,
      false,
    );
  }

  checkInvariants(i: number): void {
    const r = this.ctx.rep(i).core;
    if (!r || !this.isCorrect(i)) return;
    if (r.stable.seq > r.lastExecuted + this.ctx.limits.window * 64)
      this.violate(`replica ${i}: stable far ahead`);
    if (r.vcTarget !== null && r.vcTarget <= r.view)
      this.violate(`replica ${i}: changing to a view not above its own`);
  }

  /**
   * After the heal: every request a client sent was executed by f+1 replicas (enough matching replies
   * for the client, at least one of them correct), and every correct replica caught up at least to the
   * highest stable checkpoint of the correct replicas (state transfer works).
   */
  checkLiveness(): void {
    for (const c of this.ctx.clients) {
      for (const [reqNo, o] of c.outstanding) {
        this.violate(
          `liveness: ${c.id}#${reqNo} (sent at tick ${o.sentAt}) not executed by f+1 replicas by the end`,
        );
      }
    }
    const correct = [...Array(this.ctx.n).keys()].filter((i) => this.isCorrect(i));
    const top = Math.max(...correct.map((i) => this.ctx.rep(i).core?.stable.seq ?? 0));
    for (const i of correct) {
      const r = this.ctx.rep(i).core;
      if (r && r.lastExecuted < top) {
        this.violate(
          `liveness: correct replica ${i} executed up to ${r.lastExecuted}, behind stable checkpoint ${top}`,
        );
      }
    }
  }
}
