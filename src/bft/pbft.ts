// Classic mode: PBFT (Castro & Liskov), n = 3f+1, no trusted component. Replica messages are signed
// (ed25519 in production) so prepared certificates can be carried by VIEW-CHANGEs.
//   PRE-PREPARE(v, n, batch) from the leader; PREPARE all-to-all, prepared at the pre-prepare + 2f
//   matching PREPAREs; COMMIT all-to-all, committed at 2f+1; checkpoints stable at 2f+1;
//   VIEW-CHANGE carries the stable checkpoint and prepared certificates; NEW-VIEW re-issues them and
//   fills gaps with null batches. Both name batches by digest; batches follow on request (batch-fetch.ts).

import { BatchFetch, NULL_BATCH, pickViewChanges } from "./batch-fetch.ts";
import { bytesEqual } from "./bytes.ts";
import type { SentLog } from "./effects.ts";
import { assert, StateFormatError } from "./errors.ts";
import { matchingDigestQuorum } from "./quorum.ts";
import { ReplicaCore } from "./replica.ts";
import type { ReplicaConfig, ReplicaDeps } from "./replica-config.ts";
import { type StorageReader, seqKey } from "./storage.ts";
import type {
  Batch,
  CheckpointProof,
  Message,
  PCommit,
  PNewView,
  PPrePrepare,
  PPrePrepareRef,
  PPrepare,
  PPreparedProof,
  PViewChange,
  ReplicaId,
  StatusMsg,
} from "./types.ts";

interface Slot {
  pp: PPrePrepare | null;
  readonly prepares: Map<ReplicaId, PPrepare>;
  readonly commits: Map<ReplicaId, Uint8Array>;
  myPrepare: PPrepare | null;
  myCommit: PCommit | null;
  committed: boolean;
  /** When this replica last sent the PRE-PREPARE to each peer, and how often it has resent it. */
  readonly ppSent: SentLog;
}

interface PbftMeta {
  readonly view: number;
  readonly vcTarget: number | null;
  readonly myVc: PViewChange | null;
}

interface PersistedSlot {
  readonly pp: PPrePrepare;
  readonly myPrepare: PPrepare | null;
  readonly myCommit: PCommit | null;
}

/** A prepared certificate and its batch: the batch is served to peers while a VIEW-CHANGE may name it. */
interface PersistedPrepared {
  readonly proof: PPreparedProof;
  readonly batch: Batch;
}

/** A NEW-VIEW that checked out, waiting for batches this replica lacks. */
interface PendingNewView {
  readonly nv: PNewView;
  readonly checkpoint: CheckpointProof;
}

function refOf(pp: PPrePrepare, batchDigest: Uint8Array): PPrePrepareRef {
  return { view: pp.view, seq: pp.seq, batchDigest, sig: pp.sig };
}

const KEY_META = "p/meta";
const KEY_NV = "p/nv";
const PREFIX_SLOT = "p/slot/";
const PREFIX_PREPARED = "p/prepared/";

export class PbftReplica extends ReplicaCore {
  private readonly slots = new Map<number, Slot>();
  /** Highest-view prepared certificate per seq above the stable checkpoint. */
  private readonly prepared = new Map<number, PPreparedProof>();
  private nvMsg: PNewView | null = null;
  private nextSeq = 1;
  private myVc: PViewChange | null = null;
  /** When our VIEW-CHANGE last went to each peer. */
  private readonly vcSent: SentLog = new Map();
  /** When the NEW-VIEW of our view last went to each peer. */
  private readonly nvSent: SentLog = new Map();
  private readonly vcs = new Map<ReplicaId, PViewChange>();
  private pendingNv: PendingNewView | null = null;
  private readonly fetch = new BatchFetch({
    id: this.id,
    n: this.n,
    limits: this.limits,
    digests: this.digests,
    find: (d) => this.findBatch(d),
    batchShapeOk: (b) => this.batchShapeOk(b),
    send: (to, m) => this.send(to, m),
    drop: (from, reason) => this.drop(from, reason),
    now: () => this.now,
    arrived: () => this.batchesArrived(),
  });

  constructor(cfg: ReplicaConfig, deps: ReplicaDeps, storage?: StorageReader) {
    super({ ...cfg, mode: "pbft" }, deps);
    if (storage) this.restore(storage);
  }

  // ------------------------------------------------------------------ hooks

  protected protocolReady(): boolean {
    return this.vcTarget === null && (this.view === 0 || this.nvMsg?.view === this.view);
  }

  protected nextProposalSeq(): number {
    return this.nextSeq;
  }

  protected proposeBatch(seq: number, batch: Batch): void {
    const pp = this.makePrePrepare(this.view, seq, batch);
    const slot = this.slot(seq);
    slot.pp = pp;
    this.nextSeq = seq + 1;
    this.persistSlot(seq, slot);
    this.markSent(slot.ppSent);
    this.broadcast(pp);
  }

  protected dispatchProtocol(from: ReplicaId, msg: Message): void {
    switch (msg.type) {
      case "p-pre-prepare":
        return this.onPrePrepare(from, msg);
      case "p-prepare":
        return this.onPrepare(from, msg);
      case "p-commit":
        return this.onCommit(from, msg);
      case "p-view-change":
        return this.onViewChange(from, msg);
      case "p-new-view":
        return this.onNewView(from, msg);
      case "batch-fetch":
        return this.fetch.onFetch(from, msg);
      case "batch":
        return this.fetch.onBatch(from, msg);
      default:
        return this.drop(from, "wrong-mode");
    }
  }

  protected retransmit(): void {
    this.fetch.retry();
    if (this.vcTarget !== null) {
      this.tryBuildNewView();
      for (let r = 0; r < this.n; r++) if (r !== this.id) this.resendViewChange(r);
      return;
    }
    for (const slot of this.slots.values()) {
      if (slot.committed) continue;
      for (let r = 0; r < this.n; r++) {
        if (r === this.id || slot.commits.has(r)) continue;
        // Only to peers that have not shown they hold it: a PRE-PREPARE carries the whole batch.
        if (this.leader === this.id && slot.pp && !slot.prepares.has(r)) this.resendPrePrepare(r, slot);
        if (slot.myPrepare) this.send(r, slot.myPrepare);
      }
      if (slot.myCommit) this.broadcast(slot.myCommit);
    }
  }

  /** Sends a slot's PRE-PREPARE to a peer again, backing off (RESEND_BACKOFF_MAX in effects.ts). */
  private resendPrePrepare(to: ReplicaId, slot: Slot): void {
    if (slot.pp && this.resendDue(slot.ppSent, to)) this.send(to, slot.pp);
  }

  /** The same for our VIEW-CHANGE. */
  private resendViewChange(to: ReplicaId): void {
    if (this.myVc && this.resendDue(this.vcSent, to)) this.send(to, this.myVc);
  }

  /** The same for the NEW-VIEW of our view, to a peer still in an older one. */
  private resendNewView(to: ReplicaId): void {
    if (this.nvMsg?.view === this.view && this.resendDue(this.nvSent, to)) this.send(to, this.nvMsg);
  }

  protected helpPeer(from: ReplicaId, s: StatusMsg): void {
    if (this.vcTarget !== null && this.myVc && s.target >= this.vcTarget) this.resendViewChange(from);
    if (s.view < this.view) {
      if (s.target <= this.view) this.resendNewView(from);
      return;
    }
    // Same view, peer behind (even while either of us is changing view): resend what commits its gap.
    if (s.view !== this.view || s.lastExecuted >= this.lastExecuted) return;
    const top = Math.min(this.lastExecuted, this.stable.seq + this.limits.window);
    for (let seq = Math.max(s.lastExecuted, this.stable.seq) + 1; seq <= top; seq++) {
      const slot = this.slots.get(seq);
      if (!slot?.pp) continue;
      // A peer whose PREPARE or COMMIT we hold has the batch; one whose COMMIT we hold is prepared.
      if (!slot.commits.has(from)) {
        if (!slot.prepares.has(from)) this.resendPrePrepare(from, slot);
        for (const p of slot.prepares.values()) this.send(from, p);
      }
      if (slot.myCommit) this.send(from, slot.myCommit);
    }
  }

  protected collectGarbage(seq: number): void {
    for (const s of [...this.slots.keys()]) {
      if (s <= seq) {
        this.slots.delete(s);
        this.unpersist(seqKey(PREFIX_SLOT, s));
      }
    }
    for (const s of [...this.prepared.keys()]) {
      if (s <= seq) {
        this.prepared.delete(s);
        this.unpersist(seqKey(PREFIX_PREPARED, s));
      }
    }
    if (this.nextSeq <= seq) this.nextSeq = seq + 1;
    this.fetch.collect(seq);
  }

  /** A batch this replica's slots hold, by digest (the window's slots; digests are cached per batch). */
  private findBatch(digest: Uint8Array): Batch | undefined {
    for (const slot of this.slots.values())
      if (slot.pp && bytesEqual(this.digests.batch(slot.pp.batch), digest)) return slot.pp.batch;
    return undefined;
  }

  /** A batch asked for arrived: a NEW-VIEW may now be built (leader) or accepted (follower). */
  private batchesArrived(): void {
    const p = this.pendingNv;
    if (p) {
      if (p.nv.view <= this.view || (this.vcTarget !== null && p.nv.view < this.vcTarget))
        this.pendingNv = null;
      else {
        const pps = this.resolvePrePrepares(p.nv);
        if (pps) {
          this.pendingNv = null;
          this.acceptNewView(p.nv, p.checkpoint, pps);
          return;
        }
      }
    }
    this.tryBuildNewView();
  }

  /** The NEW-VIEW's pre-prepares with their batches, or null (and the missing ones asked for). */
  private resolvePrePrepares(nv: PNewView): PPrePrepare[] | null {
    const named = nv.prePrepares.map((r) => ({ seq: r.seq, digest: r.batchDigest }));
    const batches = this.fetch.resolve(named, this.leaderOf(nv.view));
    if (!batches) return null;
    return nv.prePrepares.map((r, i) => ({
      type: "p-pre-prepare",
      view: r.view,
      seq: r.seq,
      batch: batches[i] as Batch,
      sig: r.sig,
    }));
  }

  protected onStateTransferred(): void {
    if (this.nextSeq <= this.stable.seq) this.nextSeq = this.stable.seq + 1;
  }

  // ------------------------------------------------------------------ normal case

  private slot(seq: number): Slot {
    let s = this.slots.get(seq);
    if (!s) {
      s = {
        pp: null,
        prepares: new Map(),
        commits: new Map(),
        myPrepare: null,
        myCommit: null,
        committed: false,
        ppSent: new Map(),
      };
      this.slots.set(seq, s);
    }
    return s;
  }

  private persistSlot(seq: number, slot: Slot): void {
    if (!slot.pp) return;
    this.persist(seqKey(PREFIX_SLOT, seq), {
      pp: slot.pp,
      myPrepare: slot.myPrepare,
      myCommit: slot.myCommit,
    } satisfies PersistedSlot);
  }

  private makePrePrepare(view: number, seq: number, batch: Batch): PPrePrepare {
    const sig = this.auth.sign(this.digests.pPrePrepare(view, seq, this.digests.batch(batch)));
    return { type: "p-pre-prepare", view, seq, batch, sig };
  }

  private inWindow(seq: number): boolean {
    return Number.isSafeInteger(seq) && seq > this.stable.seq && seq <= this.stable.seq + this.limits.window;
  }

  private prePrepareValid(pp: PPrePrepare): boolean {
    return (
      !!pp &&
      this.batchShapeOk(pp.batch) &&
      this.refValid({ ...pp, batchDigest: this.digests.batch(pp.batch) })
    );
  }

  /** A PRE-PREPARE named by digest: the leader of its view signed (view, seq, digest). */
  private refValid(pp: PPrePrepareRef): boolean {
    return (
      !!pp &&
      Number.isSafeInteger(pp.view) &&
      Number.isSafeInteger(pp.seq) &&
      pp.batchDigest instanceof Uint8Array &&
      pp.batchDigest.length === 32 &&
      pp.sig instanceof Uint8Array &&
      this.auth.verify(
        this.leaderOf(pp.view),
        this.digests.pPrePrepare(pp.view, pp.seq, pp.batchDigest),
        pp.sig,
      )
    );
  }

  private onPrePrepare(from: ReplicaId, pp: PPrePrepare): void {
    if (pp.view !== this.view || this.vcTarget !== null) {
      if (pp.view > this.view) this.drop(from, "pre-prepare-future-view");
      return;
    }
    if (!this.inWindow(pp.seq)) return;
    if (this.leader === this.id) return;
    // A resent PRE-PREPARE (same leader signature) costs no batch digest: the one we hold was checked.
    const held = this.slots.get(pp.seq)?.pp;
    if (held && pp.sig instanceof Uint8Array && bytesEqual(held.sig, pp.sig)) return;
    if (!this.prePrepareValid(pp)) return this.drop(from, "pre-prepare-bad-sig");
    const slot = this.slot(pp.seq);
    if (slot.pp) {
      if (!bytesEqual(this.digests.batch(slot.pp.batch), this.digests.batch(pp.batch))) {
        this.drop(from, "pre-prepare-equivocation");
        this.startViewChange(this.view + 1, "leader equivocated");
      }
      return;
    }
    const problem = this.batchProblem(pp.batch);
    if (problem !== null) {
      this.drop(from, `pre-prepare-${problem}`);
      this.startViewChange(this.view + 1, `leader proposed an invalid batch (${problem})`);
      return;
    }
    this.noteProposal(pp.seq, pp.batch);
    this.acceptPrePrepare(slot, pp);
  }

  private acceptPrePrepare(slot: Slot, pp: PPrePrepare): void {
    slot.pp = pp;
    if (this.leader !== this.id) {
      const bd = this.digests.batch(pp.batch);
      const sig = this.auth.sign(this.digests.pPrepare(pp.view, pp.seq, bd));
      slot.myPrepare = {
        type: "p-prepare",
        view: pp.view,
        seq: pp.seq,
        batchDigest: bd,
        replica: this.id,
        sig,
      };
      slot.prepares.set(this.id, slot.myPrepare);
      this.broadcast(slot.myPrepare);
    }
    this.persistSlot(pp.seq, slot);
    this.checkPrepared(pp.seq);
  }

  private onPrepare(from: ReplicaId, p: PPrepare): void {
    if (p.view !== this.view) return;
    if (!this.inWindow(p.seq)) return;
    // PREPAREs are signed, so a peer may forward another replica's (state catch-up).
    if (!Number.isInteger(p.replica) || p.replica < 0 || p.replica >= this.n || p.replica === this.leader) {
      return this.drop(from, "prepare-bad-sender");
    }
    if (!(p.batchDigest instanceof Uint8Array) || p.batchDigest.length !== 32)
      return this.drop(from, "prepare-bad");
    if (this.slots.get(p.seq)?.prepares.has(p.replica)) return;
    if (!this.auth.verify(p.replica, this.digests.pPrepare(p.view, p.seq, p.batchDigest), p.sig)) {
      return this.drop(from, "prepare-bad-sig");
    }
    this.slot(p.seq).prepares.set(p.replica, p);
    this.checkPrepared(p.seq);
  }

  private checkPrepared(seq: number): void {
    const slot = this.slots.get(seq);
    if (!slot?.pp || slot.myCommit || this.vcTarget !== null) return;
    const bd = this.digests.batch(slot.pp.batch);
    const votes = new Map<ReplicaId, { digest: Uint8Array }>();
    for (const [r, p] of slot.prepares) votes.set(r, { digest: p.batchDigest });
    const res = matchingDigestQuorum(this.q.prepare)({ digest: bd }, votes);
    if (!res.done || !res.value) return;
    const proof: PPreparedProof = {
      prePrepare: refOf(slot.pp, bd),
      prepares: res.value.slice(0, this.q.prepare).map((r) => slot.prepares.get(r) as PPrepare),
    };
    this.prepared.set(seq, proof);
    // Our VIEW-CHANGEs may name this batch until the stable checkpoint passes seq: keep it to serve.
    this.fetch.keep(seq, slot.pp.batch);
    this.persist(seqKey(PREFIX_PREPARED, seq), { proof, batch: slot.pp.batch } satisfies PersistedPrepared);
    const sig = this.auth.sign(this.digests.pCommit(slot.pp.view, seq, bd));
    slot.myCommit = { type: "p-commit", view: slot.pp.view, seq, batchDigest: bd, replica: this.id, sig };
    slot.commits.set(this.id, bd);
    this.persistSlot(seq, slot);
    this.broadcast(slot.myCommit);
    this.checkCommitted(seq);
  }

  private onCommit(from: ReplicaId, c: PCommit): void {
    if (c.view !== this.view) return;
    if (!this.inWindow(c.seq)) return;
    if (!Number.isInteger(c.replica) || c.replica < 0 || c.replica >= this.n)
      return this.drop(from, "commit-bad-sender");
    if (!(c.batchDigest instanceof Uint8Array) || c.batchDigest.length !== 32)
      return this.drop(from, "commit-bad");
    if (this.slots.get(c.seq)?.commits.has(c.replica)) return;
    if (!this.auth.verify(c.replica, this.digests.pCommit(c.view, c.seq, c.batchDigest), c.sig)) {
      return this.drop(from, "commit-bad-sig");
    }
    this.slot(c.seq).commits.set(c.replica, c.batchDigest);
    this.checkCommitted(c.seq);
  }

  /**
   * Committed at 2f+1 matching COMMITs (our own among them or not: a replica changing view sends no
   * COMMIT but may still learn that f+1 correct replicas prepared and committed the batch).
   */
  private checkCommitted(seq: number): void {
    const slot = this.slots.get(seq);
    if (!slot?.pp || slot.committed) return;
    const votes = new Map<ReplicaId, { digest: Uint8Array }>();
    for (const [r, d] of slot.commits) votes.set(r, { digest: d });
    const res = matchingDigestQuorum(this.q.commit)({ digest: this.digests.batch(slot.pp.batch) }, votes);
    if (!res.done) return;
    slot.committed = true;
    this.commitBatch(seq, this.view, slot.pp.batch);
  }

  // ------------------------------------------------------------------ view change

  protected viewChangeTargets(): Map<ReplicaId, number> {
    const out = new Map<ReplicaId, number>();
    for (const [r, vc] of this.vcs) out.set(r, vc.newView);
    return out;
  }

  protected startViewChange(target: number, reason: string): void {
    if (target <= this.view || (this.vcTarget !== null && target <= this.vcTarget)) return;
    const prepared = [...this.prepared.entries()]
      .filter(([seq]) => seq > this.stable.seq)
      .sort((a, b) => a[0] - b[0])
      .map(([, p]) => p);
    const content = { replica: this.id, newView: target, checkpoint: this.stable, prepared };
    const sig = this.auth.sign(this.digests.pViewChange(content));
    const vc: PViewChange = { type: "p-view-change", ...content, sig };
    this.myVc = vc;
    this.markSent(this.vcSent);
    this.vcTarget = target;
    this.startViewChangeTimer();
    this.persistMeta();
    this.broadcast(vc);
    this.event({ kind: "view-change-started", view: target, reason });
    this.vcs.set(this.id, vc);
    this.armViewChangeTimer();
    this.tryBuildNewView();
  }

  private persistMeta(): void {
    this.persist(KEY_META, { view: this.view, vcTarget: this.vcTarget, myVc: this.myVc } satisfies PbftMeta);
  }

  private preparedProofValid(p: PPreparedProof, ckpt: number, newView: number): boolean {
    const pp = p?.prePrepare;
    if (!pp || !Number.isSafeInteger(pp.view) || pp.view >= newView || pp.view < 0) return false;
    if (!Number.isSafeInteger(pp.seq) || pp.seq <= ckpt || pp.seq > ckpt + this.limits.window) return false;
    if (!this.refValid(pp)) return false;
    if (!Array.isArray(p.prepares) || p.prepares.length !== this.q.prepare) return false;
    const bd = pp.batchDigest;
    const leader = this.leaderOf(pp.view);
    const seen = new Set<number>();
    for (const x of p.prepares) {
      if (!x || x.view !== pp.view || x.seq !== pp.seq || !(x.batchDigest instanceof Uint8Array))
        return false;
      if (!bytesEqual(x.batchDigest, bd) || x.replica === leader || seen.has(x.replica)) return false;
      if (!Number.isInteger(x.replica) || x.replica < 0 || x.replica >= this.n) return false;
      seen.add(x.replica);
      if (!this.auth.verify(x.replica, this.digests.pPrepare(x.view, x.seq, x.batchDigest), x.sig))
        return false;
    }
    return true;
  }

  private vcProblem(vc: PViewChange): string | null {
    if (!vc || !Number.isInteger(vc.replica) || vc.replica < 0 || vc.replica >= this.n)
      return "vc-bad-replica";
    if (!Number.isSafeInteger(vc.newView) || vc.newView < 1) return "vc-bad-view";
    if (!Array.isArray(vc.prepared) || vc.prepared.length > this.limits.window) return "vc-bad-prepared";
    if (
      !(vc.sig instanceof Uint8Array) ||
      !this.auth.verify(vc.replica, this.digests.pViewChange(vc), vc.sig)
    ) {
      return "vc-bad-sig";
    }
    if (!this.verifyCheckpointProof(vc.checkpoint)) return "vc-bad-checkpoint";
    const seqs = new Set<number>();
    for (const p of vc.prepared) {
      if (!this.preparedProofValid(p, vc.checkpoint.seq, vc.newView)) return "vc-bad-prepared";
      if (seqs.has(p.prePrepare.seq)) return "vc-duplicate-seq";
      seqs.add(p.prePrepare.seq);
    }
    return null;
  }

  private onViewChange(from: ReplicaId, vc: PViewChange): void {
    if (vc.replica !== from) return this.drop(from, "vc-wrong-sender");
    if (!Number.isSafeInteger(vc.newView)) return this.drop(from, "vc-bad-view");
    if (vc.newView <= this.view) {
      if (this.vcTarget === null) this.resendNewView(from);
      return;
    }
    const existing = this.vcs.get(from);
    if (existing && existing.newView >= vc.newView) return;
    const problem = this.vcProblem(vc);
    if (problem !== null) return this.drop(from, problem);
    this.vcs.set(from, vc);
    this.reactToViewChanges();
    this.tryBuildNewView();
  }

  /** The pre-prepares a NEW-VIEW must carry for a set of view changes: (checkpoint, [seq, batch digest]). */
  private select(vcs: readonly PViewChange[]): {
    checkpoint: CheckpointProof;
    batches: [number, Uint8Array][];
  } {
    let checkpoint = (vcs[0] as PViewChange).checkpoint;
    for (const vc of vcs) if (vc.checkpoint.seq > checkpoint.seq) checkpoint = vc.checkpoint;
    const best = new Map<number, PPrePrepareRef>();
    let maxSeq = checkpoint.seq;
    for (const vc of vcs) {
      for (const p of vc.prepared) {
        const pp = p.prePrepare;
        if (pp.seq <= checkpoint.seq) continue;
        const cur = best.get(pp.seq);
        if (!cur || pp.view > cur.view) best.set(pp.seq, pp);
        if (pp.seq > maxSeq) maxSeq = pp.seq;
      }
    }
    const batches: [number, Uint8Array][] = [];
    const nullDigest = this.digests.batch(NULL_BATCH);
    for (let seq = checkpoint.seq + 1; seq <= maxSeq; seq++)
      batches.push([seq, best.get(seq)?.batchDigest ?? nullDigest]);
    return { checkpoint, batches };
  }

  /**
   * Whether this replica holds the batches of every prepared certificate of a VIEW-CHANGE; if not, it
   * asks the sender (then the others, in turn) for the missing ones.
   */
  private vcBatchesHeld(vc: PViewChange, above: number): boolean {
    const named = vc.prepared
      .filter((p) => p.prePrepare.seq > above)
      .map((p) => ({ seq: p.prePrepare.seq, digest: p.prePrepare.batchDigest }));
    return this.fetch.resolve(named, vc.replica) !== null;
  }

  private tryBuildNewView(): void {
    const target = this.vcTarget;
    if (target === null || this.leaderOf(target) !== this.id) return;
    // Followers fetch the NEW-VIEW's batches from us: only VIEW-CHANGEs whose batches we hold.
    const candidates = [...this.vcs.values()]
      .filter((vc) => vc.newView === target)
      .sort((a, b) => a.replica - b.replica);
    if (candidates.length < this.q.viewChange) return;
    const waited = this.fetch.waitedFor(target);
    // Batches at or below our own VIEW-CHANGE's checkpoint are not re-issued (pickViewChanges).
    const own = candidates.find((vc) => vc.replica === this.id);
    const above = own?.checkpoint.seq ?? 0;
    const held = (vc: PViewChange) => this.vcBatchesHeld(vc, above);
    const vcs = pickViewChanges(candidates, this.q.viewChange, held, waited, own);
    if (!vcs) return;
    const sel = this.select(vcs);
    const pps = sel.batches.map(([seq, digest]) => {
      const batch = this.fetch.get(digest);
      assert(batch !== undefined, `new view: batch of seq ${seq} not held`);
      return this.makePrePrepare(target, seq, batch);
    });
    const prePrepares = pps.map((pp, i) => refOf(pp, (sel.batches[i] as [number, Uint8Array])[1]));
    const sig = this.auth.sign(this.digests.pNewView(target, vcs, prePrepares));
    const msg: PNewView = { type: "p-new-view", view: target, vcs, prePrepares, sig };
    this.broadcast(msg);
    this.fetch.offer(pps.map((pp) => pp.batch));
    this.acceptNewView(msg, sel.checkpoint, pps);
  }

  private onNewView(from: ReplicaId, nv: PNewView): void {
    if (!Number.isSafeInteger(nv.view) || nv.view < 1) return this.drop(from, "nv-bad-view");
    if (nv.view <= this.view || (this.vcTarget !== null && nv.view < this.vcTarget)) return;
    const leader = this.leaderOf(nv.view);
    if (!Array.isArray(nv.vcs) || nv.vcs.length !== this.q.viewChange) return this.drop(from, "nv-bad-vcs");
    if (!Array.isArray(nv.prePrepares) || nv.prePrepares.length > this.limits.window)
      return this.drop(from, "nv-bad");
    if (
      !(nv.sig instanceof Uint8Array) ||
      !this.auth.verify(leader, this.digests.pNewView(nv.view, nv.vcs, nv.prePrepares), nv.sig)
    ) {
      return this.drop(from, "nv-bad-sig");
    }
    const seen = new Set<number>();
    for (const vc of nv.vcs) {
      if (!vc || vc.newView !== nv.view || seen.has(vc.replica)) return this.drop(from, "nv-bad-vcs");
      seen.add(vc.replica);
      const problem = this.vcProblem(vc);
      if (problem !== null) return this.drop(from, `nv-${problem}`);
    }
    const sel = this.select(nv.vcs);
    if (sel.batches.length !== nv.prePrepares.length) return this.drop(from, "nv-wrong-pre-prepares");
    for (let i = 0; i < sel.batches.length; i++) {
      const [seq, digest] = sel.batches[i] as [number, Uint8Array];
      const pp = nv.prePrepares[i] as PPrePrepareRef;
      if (!pp || pp.view !== nv.view || pp.seq !== seq) return this.drop(from, "nv-wrong-pre-prepares");
      if (!(pp.batchDigest instanceof Uint8Array) || !bytesEqual(pp.batchDigest, digest))
        return this.drop(from, "nv-wrong-pre-prepares");
      if (!this.refValid(pp)) return this.drop(from, "nv-bad-pre-prepare");
      // Re-issued batches come from prepared certificates (accepted by f+1 correct replicas) or are
      // null batches, so their requests are not re-checked here: a client whose MAC entry is bad for
      // some replicas only must not be able to block the view change.
    }
    // The batches: a prepared certificate's is held by at least f+1 correct replicas, and the leader
    // built the NEW-VIEW only from ones it held. Until they are all here, the NEW-VIEW waits.
    const pps = this.resolvePrePrepares(nv);
    if (!pps) {
      if (!this.pendingNv || this.pendingNv.nv.view <= nv.view)
        this.pendingNv = { nv, checkpoint: sel.checkpoint };
      return;
    }
    this.acceptNewView(nv, sel.checkpoint, pps);
  }

  private acceptNewView(nv: PNewView, checkpoint: CheckpointProof, pps: readonly PPrePrepare[]): void {
    assert(
      pps.length === nv.prePrepares.length && pps.every((pp, i) => pp.seq === nv.prePrepares[i]?.seq),
      `new view ${nv.view}: expected a held batch for each re-issued seq`,
    );
    this.view = nv.view;
    this.nvMsg = nv;
    this.pendingNv = null;
    this.fetch.forgetWanted();
    this.nvSent.clear();
    this.myVc = null;
    for (const [r, vc] of [...this.vcs]) if (vc.newView <= nv.view) this.vcs.delete(r);
    // A later leader may still need a batch it names (a certificate prepared elsewhere): keep them.
    for (const [seq, slot] of this.slots) if (slot.pp) this.fetch.keep(seq, slot.pp.batch);
    for (const seq of [...this.slots.keys()]) this.unpersist(seqKey(PREFIX_SLOT, seq));
    this.slots.clear();
    if (checkpoint.seq > this.stable.seq) this.adoptCheckpoint(checkpoint);
    this.vcTarget = null;
    let maxSeq = checkpoint.seq;
    for (const pp of pps) {
      maxSeq = Math.max(maxSeq, pp.seq);
      if (pp.seq <= this.stable.seq) continue;
      const slot = this.slot(pp.seq);
      // The NEW-VIEW carried it to everyone: the leader's resends of it start from now.
      this.markSent(slot.ppSent);
      this.acceptPrePrepare(slot, pp);
    }
    this.nextSeq = Math.max(maxSeq, this.stable.seq) + 1;
    this.persist(KEY_NV, nv);
    this.onEnterView();
    this.resetViewTimers();
    this.persistMeta();
    this.event({ kind: "new-view", view: nv.view, leader: this.leaderOf(nv.view) });
    this.maybePropose();
  }

  // ------------------------------------------------------------------ restore

  private restore(storage: StorageReader): void {
    this.restoreCommon(storage);
    const meta = storage.get(KEY_META) as PbftMeta | undefined;
    if (meta) {
      if (meta.myVc?.prepared.some((p) => !p.prePrepare.batchDigest)) throw new StateFormatError(KEY_META);
      this.view = meta.view;
      this.vcTarget = meta.vcTarget;
      this.myVc = meta.myVc;
    }
    const nv = storage.get(KEY_NV) as PNewView | undefined;
    if (nv && nv.view === this.view) this.nvMsg = nv;
    this.nextSeq = Math.max(this.stable.seq, this.lastExecuted) + 1;
    if (nv && nv.view === this.view) {
      for (const pp of nv.prePrepares) this.nextSeq = Math.max(this.nextSeq, pp.seq + 1);
    }
    for (const key of storage.keys(PREFIX_PREPARED)) {
      const seq = Number(key.slice(PREFIX_PREPARED.length));
      if (seq <= this.stable.seq) continue;
      const pp = storage.get(key) as PersistedPrepared;
      if (!pp?.proof?.prePrepare?.batchDigest || !pp.batch) throw new StateFormatError(key);
      this.prepared.set(seq, pp.proof);
      this.fetch.keep(seq, pp.batch);
    }
    for (const key of storage.keys(PREFIX_SLOT)) {
      const seq = Number(key.slice(PREFIX_SLOT.length));
      const ps = storage.get(key) as PersistedSlot;
      if (seq <= this.stable.seq || ps.pp.view !== this.view) continue;
      const slot = this.slot(seq);
      slot.pp = ps.pp;
      slot.myPrepare = ps.myPrepare;
      slot.myCommit = ps.myCommit;
      if (ps.myPrepare) slot.prepares.set(this.id, ps.myPrepare);
      if (ps.myCommit) slot.commits.set(this.id, ps.myCommit.batchDigest);
      if (this.leaderOf(this.view) === this.id) this.nextSeq = Math.max(this.nextSeq, seq + 1);
    }
    if (this.vcTarget !== null) {
      this.startViewChangeTimer();
      if (this.myVc) this.vcs.set(this.id, this.myVc);
    }
    assert(this.nextSeq > 0, "nextSeq");
  }
}
