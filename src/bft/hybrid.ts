// Hybrid mode (Hybster-style), n = 2f+1. Every replica's trusted subsystem certifies its ordering
// messages with one monotonic "order" counter whose values are (view, slot):
//   slot 0      VIEW-CHANGE to `view` (continuing certificate: exposes the last value before it)
//   slot 1      NEW-VIEW of `view` (leader) or COMMIT-NV (followers)
//   slot s + 1  PREPARE (leader) or COMMIT (followers) of seq s in `view`
// A value is never certified twice, so no replica can send two different messages for one slot, and a
// VIEW-CHANGE cannot hide anything its sender certified before it. Commit needs f+1 matching votes.
// VIEW-CHANGEs and NEW-VIEWs name batches by digest; batches follow on request (batch-fetch.ts).

import { BatchFetch, pickViewChanges } from "./batch-fetch.ts";
import { bytesEqual } from "./bytes.ts";
import { assert, StateFormatError } from "./errors.ts";
import { matchingDigestQuorum } from "./quorum.ts";
import { ReplicaCore } from "./replica.ts";
import type { ReplicaConfig, ReplicaDeps } from "./replica-config.ts";
import { type StorageReader, seqKey } from "./storage.ts";
import {
  type CertifiedDigest,
  type CounterCert,
  type CounterValue,
  checkEquivocation,
  compareValues,
  type EquivocationProof,
  isFresh,
  type TrustedSubsystem,
  valuesEqual,
} from "./trusted.ts";
import type {
  Batch,
  ChainLink,
  CheckpointProof,
  HCerts,
  HCommit,
  HCommitNv,
  HEntry,
  HNewView,
  HNewViewSummary,
  HPrepare,
  HProof,
  HViewChange,
  Message,
  ReplicaId,
  StatusMsg,
} from "./types.ts";

/** The order counter's id inside the trusted subsystem (pillar 0; more pillars take more ids). */
export const ORDER_COUNTER = 0;

/** Verified proofs of a VIEW-CHANGE: the NEW-VIEW digest of each view it proves. */
type ProofContext = ReadonlyMap<number, Uint8Array>;

interface Slot {
  prepare: HPrepare | null;
  /** Batch digest voted by each replica for this seq in the current view (the PREPARE is the leader's). */
  readonly votes: Map<ReplicaId, Uint8Array>;
  myCommit: HCommit | null;
  committed: boolean;
}

interface NvState {
  readonly view: number;
  readonly s: number;
  readonly checkpointDigest: Uint8Array;
  readonly m: number;
  readonly batchDigests: readonly Uint8Array[];
  /** The re-issued batches themselves, held before the NEW-VIEW was accepted. */
  readonly batches: readonly Batch[];
  readonly digest: Uint8Array;
  readonly msg: HNewView;
  readonly votes: Map<ReplicaId, Uint8Array>;
  /** (view, 1) certificates over `digest`: the leader's and every matching COMMIT-NV's (ours included). */
  readonly certs: Map<ReplicaId, CounterCert>;
  myVote: HCommitNv | null;
  committed: boolean;
}

/** What a valid VIEW-CHANGE tells: its sender's last active view, last seq and the batches it covers. */
interface VcInfo {
  readonly w: number;
  readonly hi: number;
  /** Batch digest by seq. */
  readonly covered: ReadonlyMap<number, Uint8Array>;
}

interface Selection {
  readonly checkpoint: CheckpointProof;
  readonly maxSeq: number;
  readonly batchDigests: Uint8Array[];
}

/** A NEW-VIEW that checked out, waiting for batches this replica lacks. */
interface PendingNewView {
  readonly msg: HNewView;
  readonly sel: Selection;
  readonly digest: Uint8Array;
}

interface HybridMeta {
  readonly view: number;
  readonly vcTarget: number | null;
  readonly lastActiveView: number;
  readonly chain: readonly ChainLink[];
  readonly myVc: HViewChange | null;
}

interface PersistedSlot {
  readonly prepare: HPrepare | null;
  readonly myCommit: HCommit | null;
}

/**
 * Verified certificates remembered to catch a counter certifying one value twice (two window's worth of
 * slots per replica, plus view-change values); the oldest are forgotten first.
 */
export function certsSeenMax(n: number, window: number): number {
  return n * (2 * window + 8);
}

/** Most certificates an h-certs message carries: those remembered, the PREPAREs held and committed. */
export function certsEvidenceMax(n: number, window: number): number {
  return certsSeenMax(n, window) + window + COMMITTED_CERTS_WINDOWS * window;
}

/**
 * The leader certificates of the PREPAREs this replica committed are kept (and persisted) for this many
 * windows below the stable checkpoint: a fork's evidence outlives the checkpoint that garbage-collects
 * its slots, and a restart.
 */
const COMMITTED_CERTS_WINDOWS = 2;

/** A batch digest as messages carry it: 32 bytes. */
function isDigest(d: unknown): d is Uint8Array {
  return d instanceof Uint8Array && d.length === 32;
}

/** Whether a certificate of the value `seen` certified says the same (digest and previous value). */
function sameStatement(seen: CertifiedDigest, cert: CounterCert, digest: Uint8Array): boolean {
  const samePrev =
    (seen.cert.prev === undefined && cert.prev === undefined) ||
    (seen.cert.prev !== undefined && cert.prev !== undefined && valuesEqual(seen.cert.prev, cert.prev));
  return samePrev && bytesEqual(seen.digest, digest);
}

/** The counter value a certificate certified, as the key of certsSeen. */
function certKey(cert: CounterCert): string {
  return `${cert.subsystem}/${cert.counter}/${cert.value.view}/${cert.value.slot}`;
}

const KEY_META = "h/meta";
const KEY_NV = "h/nv";
const KEY_NV_VOTE = "h/nv-vote";
/** The batches the NEW-VIEW of KEY_NV re-issued (its VIEW-CHANGEs name them by digest only). */
const KEY_NV_BATCHES = "h/nv-batches";
const PREFIX_SLOT = "h/slot/";
const PREFIX_COMMITTED_CERT = "h/cc/";

export class HybridReplica extends ReplicaCore {
  private readonly trusted: TrustedSubsystem;
  private readonly slots = new Map<number, Slot>();
  private nv: NvState | null = null;
  /** Next seq this replica certifies in the current view. */
  private nextCertSeq = 1;
  private lastActiveView = 0;
  private chain: ChainLink[] = [];
  private myVc: HViewChange | null = null;
  private readonly vcs = new Map<ReplicaId, { vc: HViewChange; info: VcInfo }>();
  private readonly earlyNvVotes = new Map<ReplicaId, HCommitNv>();
  /** Fresh certificates verified, by (subsystem, counter, value): what each counter certified. */
  private readonly certsSeen = new Map<string, CertifiedDigest>();
  /** By seq: the leader's certificate of each PREPARE this replica committed in its slot (not its own). */
  private readonly committedCerts = new Map<number, CertifiedDigest>();
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
    super({ ...cfg, mode: "hybrid" }, deps);
    assert(deps.trusted !== undefined, "hybrid mode needs a trusted subsystem");
    assert(deps.trusted.id === cfg.id, "trusted subsystem id must equal the replica id");
    this.trusted = deps.trusted;
    if (storage) this.restore(storage);
  }

  // ------------------------------------------------------------------ ReplicaCore hooks

  protected protocolReady(): boolean {
    return this.vcTarget === null && (this.view === 0 || this.nv?.view === this.view);
  }

  protected nextProposalSeq(): number {
    return this.nextCertSeq;
  }

  /**
   * Whether our counter can still certify `seq` in this view. Not when it is already past it: the host
   * crashed after a (hardware) subsystem certified but before the Ready was durable. Those seqs are
   * lost to this replica; it skips ahead (followers then time out and change view).
   */
  private canCertify(seq: number): boolean {
    const cur = this.trusted.current(ORDER_COUNTER);
    if (compareValues(cur, { view: this.view, slot: seq + 1 }) < 0) return true;
    this.drop(this.id, "counter-ahead-of-state");
    if (cur.view === this.view) this.nextCertSeq = Math.max(this.nextCertSeq, cur.slot);
    // A counter in a later view cannot vote in this one at all: leave it.
    else this.startViewChange(cur.view + 1, "trusted counter is ahead of this view");
    return false;
  }

  protected proposeBatch(seq: number, batch: Batch): void {
    assert(seq === this.nextCertSeq, "leader proposes in order");
    if (!this.canCertify(seq)) {
      this.requeue(batch.requests);
      return;
    }
    const bd = this.digests.batch(batch);
    const cert = this.trusted.certifyIndependent(
      ORDER_COUNTER,
      { view: this.view, slot: seq + 1 },
      this.digests.hPrepare(this.view, seq, bd),
    );
    const prepare: HPrepare = { type: "h-prepare", view: this.view, seq, batch, cert };
    const slot = this.slot(seq);
    slot.prepare = prepare;
    slot.votes.set(this.id, bd);
    this.nextCertSeq = seq + 1;
    this.persistSlot(seq, slot);
    this.broadcast(prepare);
    this.checkCommit(seq);
  }

  protected dispatchProtocol(from: ReplicaId, msg: Message): void {
    switch (msg.type) {
      case "h-prepare":
        return this.onPrepare(from, msg);
      case "h-commit":
        return this.onCommit(from, msg);
      case "h-view-change":
        return this.onViewChange(from, msg);
      case "h-new-view":
        return this.onNewView(from, msg);
      case "h-commit-nv":
        return this.onCommitNv(from, msg);
      case "h-proof":
        return this.onProof(from, msg);
      case "h-certs":
        return this.onCerts(from, msg);
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
      if (this.myVc?.newView === this.vcTarget) this.broadcast(this.myVc);
      else {
        this.retryViewChange();
        // Still unproven: ask for (leader) or offer (follower) the COMMIT-NVs of our current view.
        const nv = this.nv;
        if (this.myVc?.newView !== this.vcTarget && nv?.view === this.view) {
          if (this.leader === this.id) this.broadcast(nv.msg);
          else if (nv.myVote) this.broadcast(nv.myVote);
        }
      }
      return;
    }
    const nv = this.nv;
    if (nv && nv.view === this.view && !nv.committed) {
      if (this.leader === this.id) this.broadcast(nv.msg);
      else if (nv.myVote) this.broadcast(nv.myVote);
    }
    for (const slot of this.slots.values()) {
      if (slot.committed) continue;
      if (this.leader === this.id && slot.prepare) {
        for (let r = 0; r < this.n; r++) if (r !== this.id && !slot.votes.has(r)) this.send(r, slot.prepare);
      } else if (slot.myCommit) this.broadcast(slot.myCommit);
    }
  }

  protected helpPeer(from: ReplicaId, s: StatusMsg): void {
    if (this.vcTarget !== null && this.myVc && s.target >= this.vcTarget) this.send(from, this.myVc);
    const nv = this.nv;
    if (s.view < this.view) {
      if (nv && nv.view === this.view && s.target <= this.view) this.send(from, nv.msg);
      return;
    }
    // Same view, peer behind (even while either of us is changing view): resend what commits its gap.
    if (s.view !== this.view || s.lastExecuted >= this.lastExecuted) return;
    if (nv && nv.view === this.view && s.lastExecuted < nv.m) {
      this.send(from, nv.msg);
      if (nv.myVote) this.send(from, nv.myVote);
    }
    const top = Math.min(this.lastExecuted, this.stable.seq + this.limits.window);
    for (let seq = Math.max(s.lastExecuted, this.stable.seq) + 1; seq <= top; seq++) {
      const slot = this.slots.get(seq);
      if (!slot?.prepare) continue;
      this.send(from, slot.prepare);
      if (slot.myCommit) this.send(from, slot.myCommit);
    }
  }

  protected collectGarbage(seq: number): void {
    const keepAbove = seq - COMMITTED_CERTS_WINDOWS * this.limits.window;
    for (const s of [...this.committedCerts.keys()]) {
      if (s <= keepAbove) {
        this.committedCerts.delete(s);
        this.unpersist(seqKey(PREFIX_COMMITTED_CERT, s));
      }
    }
    for (const s of [...this.slots.keys()]) {
      if (s <= seq) {
        this.slots.delete(s);
        this.unpersist(seqKey(PREFIX_SLOT, s));
      }
    }
    if (this.nextCertSeq <= seq) this.nextCertSeq = seq + 1;
    this.fetch.collect(seq);
    this.processInOrder();
  }

  /** A batch this replica holds by digest: a PREPARE's of its window, or one its NEW-VIEW re-issued. */
  private findBatch(digest: Uint8Array): Batch | undefined {
    for (const slot of this.slots.values()) {
      const b = slot.prepare?.batch;
      if (b && bytesEqual(this.digests.batch(b), digest)) return b;
    }
    const nv = this.nv;
    if (nv)
      for (let i = 0; i < nv.batchDigests.length; i++)
        if (bytesEqual(nv.batchDigests[i] as Uint8Array, digest)) return nv.batches[i];
    return undefined;
  }

  /** A batch asked for arrived: a NEW-VIEW may now be accepted (follower) or built (leader). */
  private batchesArrived(): void {
    const p = this.pendingNv;
    if (p) {
      const view = p.msg.view;
      if (view <= this.view || compareValues(this.trusted.current(ORDER_COUNTER), { view, slot: 1 }) >= 0)
        this.pendingNv = null;
      else {
        const batches = this.resolveSelection(p.sel, this.leaderOf(view));
        if (batches) {
          this.acceptNewView(p.msg, p.sel, p.digest, batches);
          return;
        }
      }
    }
    this.tryBuildNewView();
  }

  /** The selected batches when all are held; otherwise asks `hint` (then the others) and returns null. */
  private resolveSelection(sel: Selection, hint: ReplicaId): Batch[] | null {
    const first = sel.checkpoint.seq + 1;
    return this.fetch.resolve(
      sel.batchDigests.map((digest, i) => ({ seq: first + i, digest })),
      hint,
    );
  }

  /** Whether we hold every batch a VIEW-CHANGE covers (asking its sender, then others, when not). */
  private vcBatchesHeld(vc: HViewChange, info: VcInfo, above: number): boolean {
    const named: { seq: number; digest: Uint8Array }[] = [];
    for (const [seq, digest] of info.covered) if (seq > above) named.push({ seq, digest });
    return this.fetch.resolve(named, vc.replica) !== null;
  }

  protected onStateTransferred(): void {
    if (this.nextCertSeq <= this.stable.seq) this.nextCertSeq = this.stable.seq + 1;
    this.processInOrder();
  }

  // ------------------------------------------------------------------ normal case

  private slot(seq: number): Slot {
    let s = this.slots.get(seq);
    if (!s) {
      s = { prepare: null, votes: new Map(), myCommit: null, committed: false };
      this.slots.set(seq, s);
    }
    return s;
  }

  private persistSlot(seq: number, slot: Slot): void {
    this.persist(seqKey(PREFIX_SLOT, seq), {
      prepare: slot.prepare,
      myCommit: slot.myCommit,
    } satisfies PersistedSlot);
  }

  /** Lowest seq a PREPARE/COMMIT of the current view may carry. */
  private firstSeq(): number {
    return Math.max(this.stable.seq, this.nv && this.nv.view === this.view ? this.nv.m : 0) + 1;
  }

  private certOk(
    cert: CounterCert,
    subsystem: ReplicaId,
    value: CounterValue,
    independent: boolean,
  ): boolean {
    return (
      !!cert &&
      cert.subsystem === subsystem &&
      cert.counter === ORDER_COUNTER &&
      !!cert.value &&
      valuesEqual(cert.value, value) &&
      (independent ? cert.prev === undefined : cert.prev !== undefined) &&
      cert.sig instanceof Uint8Array
    );
  }

  /**
   * Verifies a certificate and remembers what its counter certified. A second fresh certificate of one
   * value over another digest proves that counter's key compromised: this replica raises the proof and
   * stops ordering (the certificate still counts as valid; halting is what protects).
   */
  private checkCert(cert: CounterCert, digest: Uint8Array): boolean {
    if (!this.trusted.verifyCert(cert, digest)) return false;
    if (!isFresh(cert)) return true;
    const seen = this.certsSeen.get(certKey(cert)) ?? this.committedCert(cert);
    if (seen === undefined) {
      this.remember(cert, digest);
      return true;
    }
    if (sameStatement(seen, cert, digest)) return true;
    this.convict(cert.subsystem, { a: seen, b: { cert, digest } });
    return true;
  }

  /** The certificate of a PREPARE we committed that has `cert`'s subsystem and value, if we keep one. */
  private committedCert(cert: CounterCert): CertifiedDigest | undefined {
    const v = cert.value;
    if (!v || !Number.isSafeInteger(v.slot) || v.slot < 2) return undefined;
    const c = this.committedCerts.get(v.slot - 1);
    return c && c.cert.subsystem === cert.subsystem && valuesEqual(c.cert.value, v) ? c : undefined;
  }

  /** Adds a verified fresh certificate to certsSeen, forgetting the oldest beyond certsSeenMax. */
  private remember(cert: CounterCert, digest: Uint8Array): void {
    this.certsSeen.set(certKey(cert), { cert, digest });
    const max = certsSeenMax(this.n, this.limits.window);
    while (this.certsSeen.size > max) this.certsSeen.delete(this.certsSeen.keys().next().value as string);
  }

  private convict(culprit: ReplicaId, proof: EquivocationProof): void {
    if (this.halted !== null) return;
    this.event({ kind: "equivocation", culprit, proof });
    // Tell everyone (the culprit too: harmless) before stopping; halted replicas send nothing more.
    this.broadcast({ type: "h-proof", culprit, proof });
    this.halt(`replica ${culprit}'s trusted counter certified two messages with one value`);
  }

  /** A peer's proof: convincing on its own (public keys), whoever relays it. */
  private onProof(from: ReplicaId, m: HProof): void {
    const culprit = m.proof?.a?.cert?.subsystem;
    if (culprit !== m.culprit || !Number.isInteger(culprit) || culprit < 0 || culprit >= this.n)
      return this.drop(from, "proof-bad-culprit");
    if (checkEquivocation(m.proof, this.trusted) !== null) return this.drop(from, "proof-invalid");
    this.convict(culprit, m.proof);
  }

  /**
   * Our state diverged from a stable checkpoint: some seq committed here with another batch than at the
   * replicas that certified the checkpoint, which only a counter certifying one value twice explains (with
   * at most f faults). We may hold one side of it and a peer the other: send every peer certificate we
   * accepted, and those of the PREPAREs we hold (restored after a restart, when certsSeen is empty).
   */
  protected override divergenceEvidence(): HCerts | null {
    const out = new Map<string, CertifiedDigest>(this.certsSeen);
    for (const c of this.committedCerts.values()) if (!out.has(certKey(c.cert))) out.set(certKey(c.cert), c);
    for (const [seq, slot] of this.slots) {
      const p = slot.prepare;
      if (!p || p.cert.subsystem === this.id || !isFresh(p.cert) || out.has(certKey(p.cert))) continue;
      const bd = slot.votes.get(p.cert.subsystem) ?? this.digests.batch(p.batch);
      out.set(certKey(p.cert), { cert: p.cert, digest: this.digests.hPrepare(p.view, seq, bd) });
    }
    const certs = [...out.values()];
    if (certs.length === 0) return null;
    return {
      type: "h-certs",
      certs: certs.slice(certs.length - certsEvidenceMax(this.n, this.limits.window)),
    };
  }

  /**
   * A diverged peer's certificates: one whose value we remember over another digest proves its counter
   * equivocated (checkCert convicts). Only such a conflict costs a signature check; the rest is lookups.
   */
  private onCerts(from: ReplicaId, m: HCerts): void {
    if (!Array.isArray(m.certs) || m.certs.length > certsEvidenceMax(this.n, this.limits.window))
      return this.drop(from, "certs-bad");
    for (const e of m.certs) {
      const cert = e?.cert;
      if (
        !cert ||
        !Number.isInteger(cert.subsystem) ||
        cert.subsystem < 0 ||
        cert.subsystem >= this.n ||
        cert.counter !== ORDER_COUNTER ||
        !cert.value ||
        !(cert.sig instanceof Uint8Array) ||
        !(e.digest instanceof Uint8Array)
      )
        return this.drop(from, "certs-bad");
      if (cert.subsystem === this.id || !isFresh(cert)) continue;
      const seen = this.certsSeen.get(certKey(cert)) ?? this.committedCert(cert);
      if (seen === undefined || sameStatement(seen, cert, e.digest)) continue;
      if (!this.checkCert(cert, e.digest)) return this.drop(from, "certs-invalid");
      if (this.halted !== null) return;
    }
  }

  private onPrepare(from: ReplicaId, p: HPrepare): void {
    if (p.view !== this.view) {
      if (p.view > this.view) this.drop(from, "prepare-future-view");
      return;
    }
    if (!Number.isSafeInteger(p.seq)) return this.drop(from, "prepare-bad-seq");
    if (p.seq < this.firstSeq()) return;
    if (p.seq > this.stable.seq + this.limits.window) return this.drop(from, "prepare-outside-window");
    const leader = this.leader;
    if (leader === this.id) return;
    if (!this.certOk(p.cert, leader, { view: p.view, slot: p.seq + 1 }, true))
      return this.drop(from, "prepare-bad-cert");
    if (!this.batchShapeOk(p.batch)) return this.drop(from, "prepare-bad-batch");
    const existing = this.slots.get(p.seq);
    if (existing?.prepare) {
      // Another PREPARE for a seq we hold one for: a leader whose counter certified both is caught here.
      if (!bytesEqual(existing.prepare.cert.sig, p.cert.sig))
        this.checkCert(p.cert, this.digests.hPrepare(p.view, p.seq, this.digests.batch(p.batch)));
      return;
    }
    const bd = this.digests.batch(p.batch);
    if (!this.checkCert(p.cert, this.digests.hPrepare(p.view, p.seq, bd))) {
      return this.drop(from, "prepare-bad-cert");
    }
    if (this.halted !== null) return;
    const slot = this.slot(p.seq);
    slot.prepare = p;
    slot.votes.set(leader, bd);
    this.noteProposal(p.seq, p.batch);
    this.processInOrder();
    this.checkCommit(p.seq);
  }

  /** Followers certify COMMITs strictly in seq order (their counter must not skip a seq they vote on). */
  private processInOrder(): void {
    if (this.halted !== null) return;
    if (this.vcTarget !== null || this.leader === this.id || !this.protocolReady()) return;
    for (;;) {
      if (this.vcTarget !== null) return;
      const seq = this.nextCertSeq;
      if (seq > this.stable.seq + this.limits.window) return;
      const slot = this.slots.get(seq);
      if (!slot?.prepare) return;
      const problem = this.batchProblem(slot.prepare.batch);
      if (problem !== null) {
        this.drop(this.leader, `prepare-${problem}`);
        this.startViewChange(this.view + 1, `leader proposed an invalid batch (${problem})`);
        return;
      }
      if (!this.canCertify(seq)) {
        if (this.nextCertSeq <= seq) return;
        continue;
      }
      const bd = this.digests.batch(slot.prepare.batch);
      const cert = this.trusted.certifyIndependent(
        ORDER_COUNTER,
        { view: this.view, slot: seq + 1 },
        this.digests.hPrepare(this.view, seq, bd),
      );
      const commit: HCommit = {
        type: "h-commit",
        view: this.view,
        seq,
        batchDigest: bd,
        cert,
        prepareCert: slot.prepare.cert,
      };
      slot.myCommit = commit;
      slot.votes.set(this.id, bd);
      this.nextCertSeq = seq + 1;
      this.persistSlot(seq, slot);
      this.broadcast(commit);
      this.checkCommit(seq);
    }
  }

  private onCommit(from: ReplicaId, c: HCommit): void {
    if (c.view !== this.view) {
      if (c.view > this.view) this.drop(from, "commit-future-view");
      return;
    }
    if (!Number.isSafeInteger(c.seq)) return this.drop(from, "commit-bad-seq");
    if (c.seq < this.firstSeq()) return;
    if (c.seq > this.stable.seq + this.limits.window) return this.drop(from, "commit-outside-window");
    if (from === this.leader) return this.drop(from, "commit-from-leader");
    if (!this.certOk(c.cert, from, { view: c.view, slot: c.seq + 1 }, true))
      return this.drop(from, "commit-bad-cert");
    if (!(c.batchDigest instanceof Uint8Array) || c.batchDigest.length !== 32)
      return this.drop(from, "commit-bad");
    if (this.slots.get(c.seq)?.votes.has(from)) return;
    const digest = this.digests.hPrepare(c.view, c.seq, c.batchDigest);
    if (!this.checkCert(c.cert, digest)) return this.drop(from, "commit-bad-cert");
    // What the leader certified to the sender: checked only when it is not the PREPARE we hold.
    const pc = c.prepareCert;
    if (!this.certOk(pc, this.leader, { view: c.view, slot: c.seq + 1 }, true))
      return this.drop(from, "commit-bad-prepare-cert");
    // The PREPARE we hold, by its leader certificate and the batch digest recorded as the leader's vote
    // (no batch is hashed again per COMMIT).
    const slot = this.slots.get(c.seq);
    const leaderBd = slot?.votes.get(this.leader);
    const same =
      slot?.prepare &&
      leaderBd &&
      bytesEqual(slot.prepare.cert.sig, pc.sig) &&
      bytesEqual(leaderBd, c.batchDigest);
    if (!same && !this.checkCert(pc, digest)) return this.drop(from, "commit-bad-prepare-cert");
    if (this.halted !== null) return;
    this.slot(c.seq).votes.set(from, c.batchDigest);
    this.checkCommit(c.seq);
  }

  private checkCommit(seq: number): void {
    const slot = this.slots.get(seq);
    if (!slot?.prepare || slot.committed) return;
    const bd = this.digests.batch(slot.prepare.batch);
    const votes = new Map<ReplicaId, { digest: Uint8Array }>();
    for (const [r, d] of slot.votes) votes.set(r, { digest: d });
    const res = matchingDigestQuorum(this.q.commit)({ digest: bd, include: this.leader }, votes);
    if (!res.done) return;
    slot.committed = true;
    const pc = slot.prepare.cert;
    if (pc.subsystem !== this.id && !this.committedCerts.has(seq)) {
      const cd = { cert: pc, digest: this.digests.hPrepare(slot.prepare.view, seq, bd) };
      this.committedCerts.set(seq, cd);
      this.persist(seqKey(PREFIX_COMMITTED_CERT, seq), cd);
    }
    this.commitBatch(seq, this.view, slot.prepare.batch);
  }

  // ------------------------------------------------------------------ view change

  protected viewChangeTargets(): Map<ReplicaId, number> {
    const out = new Map<ReplicaId, number>();
    for (const [r, x] of this.vcs) out.set(r, x.vc.newView);
    return out;
  }

  protected startViewChange(target: number, reason: string): void {
    if (target <= this.view || (this.vcTarget !== null && target <= this.vcTarget)) return;
    if (compareValues(this.trusted.current(ORDER_COUNTER), { view: target, slot: 0 }) >= 0) return;
    if (this.chain.length >= this.limits.vcChainMax) {
      this.drop(this.id, "vc-chain-full");
      return;
    }
    this.vcTarget = target;
    this.startViewChangeTimer();
    const sent = this.makeViewChange();
    this.event({
      kind: "view-change-started",
      view: target,
      reason: sent ? reason : `${reason} (without a VIEW-CHANGE)`,
    });
    if (!sent) return;
    this.armViewChangeTimer();
    this.tryBuildNewView();
  }

  /** A VIEW-CHANGE we could not prove before may be provable now (new COMMIT-NV certificates). */
  private retryViewChange(): void {
    if (this.vcTarget === null || this.myVc?.newView === this.vcTarget) return;
    if (!this.makeViewChange()) return;
    this.armViewChangeTimer();
    this.tryBuildNewView();
  }

  /**
   * Certifies and broadcasts our VIEW-CHANGE for vcTarget. False when it cannot be proven: our counter
   * certified something our persisted state lost (crash between certify and persist), or our last
   * NEW-VIEW has neither f+1 certificates nor room to nest. We then stop voting in this view and wait
   * for a NEW-VIEW (or for COMMIT-NVs that prove ours).
   */
  private makeViewChange(): boolean {
    const target = this.vcTarget;
    if (target === null) return false;
    const counter = this.trusted.current(ORDER_COUNTER);
    if (compareValues(counter, { view: target, slot: 0 }) >= 0) return false;
    if (this.chain.length >= this.limits.vcChainMax) return false;
    const last: CounterValue = this.chain.length > 0 ? (this.chain[0]?.cert.prev as CounterValue) : counter;
    const w = last.view;
    const proven = w >= 1 && this.nv?.view === w ? this.provenSummary(this.nv) : null;
    const nvSummary = proven?.summary ?? null;
    const m = nvSummary ? nvSummary.maxSeq : 0;
    const hi = last.slot === 0 ? 0 : last.slot === 1 ? m : last.slot - 1;
    const from = Math.max(m, this.stable.seq);
    const entries: HEntry[] = [];
    let unprovable: string | null =
      w === 0 || nvSummary !== null ? null : this.nv?.view === w ? "vc-too-many-proofs" : "vc-nv-lost";
    for (let seq = from + 1; seq <= hi && unprovable === null; seq++) {
      const p = this.slots.get(seq)?.prepare;
      if (p && p.view === w)
        entries.push({ seq, view: w, batchDigest: this.digests.batch(p.batch), cert: p.cert });
      else unprovable = "vc-entry-lost";
    }
    if (unprovable !== null) {
      this.drop(this.id, "vc-cannot-prove");
      this.drop(this.id, unprovable);
      this.persistMeta();
      return false;
    }
    const content = { replica: this.id, newView: target, checkpoint: this.stable, nv: nvSummary, entries };
    const digest = this.digests.hViewChange(content);
    const cert = this.trusted.certifyContinuing(ORDER_COUNTER, { view: target, slot: 0 }, digest);
    this.chain = [...this.chain, { cert, digest }];
    const vc: HViewChange = {
      type: "h-view-change",
      ...content,
      chain: this.chain,
      proofs: proven?.proofs ?? [],
    };
    const info = this.checkVc(vc);
    if (typeof info === "string") {
      // Only after a crash between certify and persist (the chain lost a link).
      this.drop(this.id, `vc-own-invalid-${info}`);
      this.myVc = null;
      this.persistMeta();
      return false;
    }
    this.myVc = vc;
    this.persistMeta();
    this.broadcast(vc);
    this.vcs.set(this.id, { vc, info });
    return true;
  }

  private persistMeta(): void {
    this.persist(KEY_META, {
      view: this.view,
      vcTarget: this.vcTarget,
      lastActiveView: this.lastActiveView,
      chain: this.chain,
      myVc: this.myVc,
    } satisfies HybridMeta);
  }

  /**
   * The summary of an accepted NEW-VIEW for a VIEW-CHANGE, with its proof: f+1 certificates when we
   * have them (compact), else the NEW-VIEW itself plus the proofs its VIEW-CHANGEs carried, one
   * NEW-VIEW per view; null when that would exceed vcProofsMax.
   */
  private provenSummary(nv: NvState): { summary: HNewViewSummary; proofs: HNewView[] } | null {
    const base = {
      view: nv.view,
      checkpointSeq: nv.s,
      checkpointDigest: nv.checkpointDigest,
      maxSeq: nv.m,
      batchDigests: nv.batchDigests,
      vcSetDigest: this.digests.hVcSet(nv.msg.vcs),
    };
    if (nv.certs.size >= this.q.commit) {
      const certs = [...nv.certs.entries()]
        .sort(([a], [b]) => a - b)
        .slice(0, this.q.commit)
        .map(([, c]) => c);
      return { summary: { ...base, certs }, proofs: [] };
    }
    // A valid NEW-VIEW is unique per view (its leader certifies (view, 1) once), so one per view suffices.
    const byView = new Map<number, HNewView>();
    for (const vc of nv.msg.vcs) for (const p of vc.proofs) if (!byView.has(p.view)) byView.set(p.view, p);
    byView.set(nv.view, { ...nv.msg, vcs: nv.msg.vcs.map((vc) => ({ ...vc, proofs: [] })) });
    if (byView.size > this.limits.vcProofsMax) return null;
    const proofs = [...byView.values()].sort((a, b) => a.view - b.view);
    return { summary: { ...base, certs: [] }, proofs };
  }

  /**
   * Verifies a VIEW-CHANGE's proofs in ascending view order, each against the ones below it; returns
   * the digest of each proven NEW-VIEW by view, or null if any is invalid.
   */
  private checkProofs(vc: HViewChange): ProofContext | null {
    const proofs = vc.proofs;
    if (!Array.isArray(proofs) || proofs.length > this.limits.vcProofsMax) return null;
    const ctx = new Map<number, Uint8Array>();
    let prev = 0;
    for (const p of proofs) {
      if (!p || !Number.isSafeInteger(p.view) || p.view <= prev || p.view >= vc.newView) return null;
      prev = p.view;
      const checked = this.checkNewView(p, ctx);
      if (typeof checked === "string") return null;
      ctx.set(p.view, checked.digest);
    }
    return ctx;
  }

  /** Whether a VIEW-CHANGE's summary of NEW-VIEW `nv.view` is proven (see HNewViewSummary). */
  private nvProofOk(nv: HNewViewSummary, ctx: ProofContext): boolean {
    if (!Array.isArray(nv.certs)) return false;
    const digest = this.digests.hNewViewSummary(nv);
    if (nv.certs.length === 0) {
      const proven = ctx.get(nv.view);
      return proven !== undefined && bytesEqual(proven, digest);
    }
    if (nv.certs.length !== this.q.commit) return false;
    const seen = new Set<number>();
    for (const c of nv.certs) {
      const r = c?.subsystem;
      if (!Number.isInteger(r) || r < 0 || r >= this.n || seen.has(r)) return false;
      seen.add(r);
      if (!this.certOk(c, r, { view: nv.view, slot: 1 }, true) || !this.checkCert(c, digest)) return false;
    }
    return true;
  }

  /**
   * Validates a VIEW-CHANGE completely; returns what it covers or the reason it is invalid. `ctx` is
   * given for a VIEW-CHANGE inside a proof: it then carries no proofs and refers to the enclosing ones.
   */
  private checkVc(vc: HViewChange, ctx?: ProofContext): VcInfo | string {
    const L = this.limits;
    if (!vc || !Number.isInteger(vc.replica) || vc.replica < 0 || vc.replica >= this.n)
      return "vc-bad-replica";
    if (!Number.isSafeInteger(vc.newView) || vc.newView < 1) return "vc-bad-view";
    if (!Array.isArray(vc.chain) || vc.chain.length === 0 || vc.chain.length > L.vcChainMax)
      return "vc-bad-chain";
    if (!Array.isArray(vc.entries) || vc.entries.length > L.window) return "vc-bad-entries";
    const digest = this.digests.hViewChange(vc);
    for (let i = 0; i < vc.chain.length; i++) {
      const link = vc.chain[i] as ChainLink;
      const c = link.cert;
      if (!c || c.subsystem !== vc.replica || c.counter !== ORDER_COUNTER || !c.prev || !c.value)
        return "vc-bad-chain";
      if (c.value.slot !== 0 || compareValues(c.value, c.prev) <= 0) return "vc-bad-chain";
      if (i > 0 && !valuesEqual(c.prev, (vc.chain[i - 1] as ChainLink).cert.value)) return "vc-broken-chain";
      if (i === vc.chain.length - 1 && (c.value.view !== vc.newView || !bytesEqual(link.digest, digest))) {
        return "vc-bad-chain-head";
      }
      if (!(link.digest instanceof Uint8Array) || !this.checkCert(c, link.digest)) return "vc-bad-cert";
    }
    const last = (vc.chain[0] as ChainLink).cert.prev as CounterValue;
    if (last.slot === 0 && last.view !== 0) return "vc-chain-not-anchored";
    if (!this.verifyCheckpointProof(vc.checkpoint)) return "vc-bad-checkpoint";
    const ckpt = vc.checkpoint.seq;
    const covered = new Map<number, Uint8Array>();
    if (last.view === 0 && last.slot === 0) {
      if (vc.nv !== null || vc.entries.length !== 0) return "vc-unexpected-entries";
      return { w: 0, hi: 0, covered };
    }
    const w = last.view;
    let m = 0;
    if (w === 0) {
      if (vc.nv !== null) return "vc-unexpected-nv";
      if (last.slot < 2) return "vc-bad-last-value";
    } else {
      const nv = vc.nv;
      if (!nv || nv.view !== w) return "vc-missing-nv";
      if (!Number.isSafeInteger(nv.checkpointSeq) || !Number.isSafeInteger(nv.maxSeq)) return "vc-bad-nv";
      if (nv.maxSeq < nv.checkpointSeq || nv.maxSeq - nv.checkpointSeq > L.window) return "vc-bad-nv";
      if (!Array.isArray(nv.batchDigests) || nv.batchDigests.length !== nv.maxSeq - nv.checkpointSeq)
        return "vc-bad-nv";
      if (!nv.batchDigests.every(isDigest)) return "vc-bad-nv";
      if (!(nv.checkpointDigest instanceof Uint8Array) || !(nv.vcSetDigest instanceof Uint8Array))
        return "vc-bad-nv";
      let proofs = ctx;
      if (!proofs) {
        const own = this.checkProofs(vc);
        if (own === null) return "vc-bad-proofs";
        proofs = own;
      }
      if (!this.nvProofOk(nv, proofs)) return "vc-nv-unproven";
      if (ckpt < nv.checkpointSeq) return "vc-checkpoint-below-nv";
      m = nv.maxSeq;
      for (let seq = Math.max(nv.checkpointSeq, ckpt) + 1; seq <= m; seq++) {
        covered.set(seq, nv.batchDigests[seq - nv.checkpointSeq - 1] as Uint8Array);
      }
    }
    const hi = last.slot === 1 ? m : last.slot - 1;
    if (last.slot >= 2 && hi <= m) return "vc-bad-last-value";
    if (hi > ckpt + L.window) return "vc-beyond-window";
    const from = Math.max(m, ckpt);
    if (vc.entries.length !== Math.max(0, hi - from)) return "vc-incomplete";
    const leader = this.leaderOf(w);
    for (let i = 0; i < vc.entries.length; i++) {
      const e = vc.entries[i] as HEntry;
      const seq = from + 1 + i;
      if (e.seq !== seq || e.view !== w || !isDigest(e.batchDigest)) return "vc-bad-entry";
      if (!this.certOk(e.cert, leader, { view: w, slot: seq + 1 }, true)) return "vc-bad-entry-cert";
      if (!this.checkCert(e.cert, this.digests.hPrepare(w, seq, e.batchDigest))) return "vc-bad-entry-cert";
      covered.set(seq, e.batchDigest);
    }
    return { w, hi, covered };
  }

  private onViewChange(from: ReplicaId, vc: HViewChange): void {
    if (vc.replica !== from) return this.drop(from, "vc-wrong-sender");
    if (!Number.isSafeInteger(vc.newView)) return this.drop(from, "vc-bad-view");
    if (vc.newView <= this.view) {
      // The sender missed our NEW-VIEW.
      if (this.vcTarget === null && this.nv?.view === this.view) this.send(from, this.nv.msg);
      return;
    }
    const existing = this.vcs.get(from);
    if (existing && existing.vc.newView >= vc.newView) return;
    const info = this.checkVc(vc);
    if (typeof info === "string") return this.drop(from, info);
    this.vcs.set(from, { vc, info });
    this.reactToViewChanges();
    this.tryBuildNewView();
  }

  private tryBuildNewView(): void {
    const target = this.vcTarget;
    if (target === null || this.leaderOf(target) !== this.id) return;
    // Followers fetch the NEW-VIEW's batches from us: only VIEW-CHANGEs whose batches we hold.
    const candidates = [...this.vcs.values()]
      .filter((x) => x.vc.newView === target)
      .sort((a, b) => a.vc.replica - b.vc.replica);
    if (candidates.length < this.q.viewChange) return;
    const waited = this.fetch.waitedFor(target);
    // Batches at or below our own VIEW-CHANGE's checkpoint are not re-issued (pickViewChanges).
    const own = candidates.find((x) => x.vc.replica === this.id);
    const above = own?.vc.checkpoint.seq ?? 0;
    const held = (x: { vc: HViewChange; info: VcInfo }) => this.vcBatchesHeld(x.vc, x.info, above);
    const picked = pickViewChanges(candidates, this.q.viewChange, held, waited, own);
    if (!picked) return;
    const sel = this.select(picked);
    const batches = this.resolveSelection(sel, this.id);
    assert(batches !== null, "new view: every selected batch is held");
    const vcs = picked.map((x) => x.vc);
    const digest = this.nvDigest(target, sel, vcs);
    const cert = this.trusted.certifyIndependent(ORDER_COUNTER, { view: target, slot: 1 }, digest);
    const msg: HNewView = { type: "h-new-view", view: target, vcs, cert };
    this.broadcast(msg);
    this.fetch.offer(batches);
    this.acceptNewView(msg, sel, digest, batches);
  }

  /** The NEW-VIEW's content, computed the same way by the leader and every follower. */
  private select(picked: readonly { vc: HViewChange; info: VcInfo }[]): Selection {
    let checkpoint = (picked[0] as { vc: HViewChange }).vc.checkpoint;
    for (const x of picked) if (x.vc.checkpoint.seq > checkpoint.seq) checkpoint = x.vc.checkpoint;
    const s = checkpoint.seq;
    let maxSeq = s;
    for (const x of picked) if (x.info.hi > maxSeq) maxSeq = x.info.hi;
    const batchDigests: Uint8Array[] = [];
    for (let seq = s + 1; seq <= maxSeq; seq++) {
      let best: { w: number; digest: Uint8Array } | null = null;
      for (const x of picked) {
        const d = x.info.covered.get(seq);
        if (d && (!best || x.info.w > best.w)) best = { w: x.info.w, digest: d };
      }
      assert(best !== null, `new view: seq ${seq} is not covered`);
      batchDigests.push(best.digest);
    }
    return { checkpoint, maxSeq, batchDigests };
  }

  private nvDigest(view: number, sel: Selection, vcs: readonly HViewChange[]): Uint8Array {
    return this.digests.hNewView(
      view,
      sel.checkpoint.seq,
      sel.checkpoint.stateDigest,
      sel.maxSeq,
      sel.batchDigests,
      this.digests.hVcSet(vcs),
    );
  }

  /** Validates a NEW-VIEW completely; returns its content or a reason. `ctx`: it is a proof (see checkVc). */
  private checkNewView(nv: HNewView, ctx?: ProofContext): { sel: Selection; digest: Uint8Array } | string {
    if (!nv || !Number.isSafeInteger(nv.view) || nv.view < 1) return "nv-bad-view";
    if (!this.certOk(nv.cert, this.leaderOf(nv.view), { view: nv.view, slot: 1 }, true)) return "nv-bad-cert";
    if (!Array.isArray(nv.vcs) || nv.vcs.length !== this.q.viewChange) return "nv-bad-vcs";
    const picked: { vc: HViewChange; info: VcInfo }[] = [];
    const seen = new Set<number>();
    for (const vc of nv.vcs) {
      if (!vc || vc.newView !== nv.view || seen.has(vc.replica)) return "nv-bad-vcs";
      seen.add(vc.replica);
      if (ctx && (!Array.isArray(vc.proofs) || vc.proofs.length !== 0)) return "nv-nested-proofs";
      const info = this.checkVc(vc, ctx);
      if (typeof info === "string") return `nv-${info}`;
      picked.push({ vc, info });
    }
    const sel = this.select(picked);
    const digest = this.nvDigest(nv.view, sel, nv.vcs);
    if (!this.checkCert(nv.cert, digest)) return "nv-bad-cert";
    return { sel, digest };
  }

  private onNewView(from: ReplicaId, nv: HNewView): void {
    if (!Number.isSafeInteger(nv.view) || nv.view < 1) return this.drop(from, "nv-bad-view");
    if (nv.view <= this.view) {
      // The leader re-sends its NEW-VIEW while it lacks COMMIT-NVs (they prove its next VIEW-CHANGE).
      const mine = this.nv?.myVote;
      if (nv.view === this.view && from === this.leader && mine?.view === nv.view) this.send(from, mine);
      return;
    }
    // Our counter must still be able to vote at (view, 1).
    if (compareValues(this.trusted.current(ORDER_COUNTER), { view: nv.view, slot: 1 }) >= 0) return;
    const checked = this.checkNewView(nv);
    if (typeof checked === "string") return this.drop(from, checked);
    const { sel, digest } = checked;
    // Re-issued batches are not re-checked for client authentication: each is bound by its old
    // leader's certificate, and execution skips unauthenticated requests the same way everywhere.
    // Refusing here would let one Byzantine replica block every future view.
    // Its batches first: we vote for it only holding them all, so a committed NEW-VIEW's batches are
    // held by a correct replica (the leader built it only from batches it held).
    const batches = this.resolveSelection(sel, from);
    if (!batches) {
      if (!this.pendingNv || this.pendingNv.msg.view <= nv.view) this.pendingNv = { msg: nv, sel, digest };
      return;
    }
    this.acceptNewView(nv, sel, digest, batches);
  }

  private acceptNewView(msg: HNewView, sel: Selection, digest: Uint8Array, batches: readonly Batch[]): void {
    const v = msg.view;
    const s = sel.checkpoint.seq;
    this.pendingNv = null;
    this.fetch.forgetWanted();
    // A peer may still fetch the batches of our old slots for a NEW-VIEW it has not accepted yet.
    for (const [seq, slot] of this.slots) if (slot.prepare) this.fetch.keep(seq, slot.prepare.batch);
    this.view = v;
    this.lastActiveView = v;
    this.chain = [];
    this.myVc = null;
    for (const [r, x] of [...this.vcs]) if (x.vc.newView <= v) this.vcs.delete(r);
    for (const seq of [...this.slots.keys()]) this.unpersist(seqKey(PREFIX_SLOT, seq));
    this.slots.clear();
    const leader = this.leaderOf(v);
    const nv: NvState = {
      view: v,
      s,
      checkpointDigest: sel.checkpoint.stateDigest,
      m: sel.maxSeq,
      batchDigests: sel.batchDigests,
      batches,
      digest,
      msg,
      votes: new Map([[leader, digest]]),
      certs: new Map([[leader, msg.cert]]),
      myVote: null,
      committed: false,
    };
    this.nv = nv;
    if (sel.checkpoint.seq > this.stable.seq) this.adoptCheckpoint(sel.checkpoint);
    if (leader !== this.id) {
      const cert = this.trusted.certifyIndependent(ORDER_COUNTER, { view: v, slot: 1 }, digest);
      nv.myVote = { type: "h-commit-nv", view: v, nvDigest: digest, cert };
      nv.votes.set(this.id, digest);
      nv.certs.set(this.id, cert);
      this.persist(KEY_NV_VOTE, nv.myVote);
      this.broadcast(nv.myVote);
    }
    this.nextCertSeq = Math.max(sel.maxSeq, this.stable.seq) + 1;
    this.persist(KEY_NV, msg);
    this.persist(KEY_NV_BATCHES, batches);
    this.onEnterView();
    this.resetViewTimers();
    this.persistMeta();
    this.event({ kind: "new-view", view: v, leader });
    for (const [r, vote] of [...this.earlyNvVotes]) {
      if (vote.view <= v) this.earlyNvVotes.delete(r);
      if (vote.view === v && bytesEqual(vote.nvDigest, digest)) {
        nv.votes.set(r, digest);
        nv.certs.set(r, vote.cert);
      }
    }
    this.checkNvCommit();
    this.maybePropose();
  }

  private onCommitNv(from: ReplicaId, c: HCommitNv): void {
    if (!Number.isSafeInteger(c.view) || c.view < 1) return this.drop(from, "commit-nv-bad");
    if (c.view < this.view) return;
    if (from === this.leaderOf(c.view)) return this.drop(from, "commit-nv-from-leader");
    if (!this.certOk(c.cert, from, { view: c.view, slot: 1 }, true))
      return this.drop(from, "commit-nv-bad-cert");
    if (!(c.nvDigest instanceof Uint8Array) || !this.checkCert(c.cert, c.nvDigest)) {
      return this.drop(from, "commit-nv-bad-cert");
    }
    if (c.view > this.view) {
      this.earlyNvVotes.set(from, c);
      return;
    }
    const nv = this.nv;
    if (!nv || nv.view !== c.view) return;
    if (nv.votes.has(from)) {
      // A retransmitted vote: its sender still lacks votes (to commit, or to prove its VIEW-CHANGE).
      if (nv.myVote) this.send(from, nv.myVote);
      return;
    }
    nv.votes.set(from, c.nvDigest);
    if (bytesEqual(c.nvDigest, nv.digest)) nv.certs.set(from, c.cert);
    this.checkNvCommit();
    this.retryViewChange();
  }

  private checkNvCommit(): void {
    const nv = this.nv;
    if (!nv || nv.committed) return;
    const votes = new Map<ReplicaId, { digest: Uint8Array }>();
    for (const [r, d] of nv.votes) votes.set(r, { digest: d });
    const res = matchingDigestQuorum(this.q.commit)(
      { digest: nv.digest, include: this.leaderOf(nv.view) },
      votes,
    );
    if (!res.done) return;
    nv.committed = true;
    assert(
      nv.batches.length === nv.batchDigests.length,
      `new view ${nv.view}: expected a batch for each of its ${nv.batchDigests.length} digests`,
    );
    for (let i = 0; i < nv.batches.length; i++)
      this.commitBatch(nv.s + 1 + i, nv.view, nv.batches[i] as Batch);
  }

  // ------------------------------------------------------------------ restore

  private restore(storage: StorageReader): void {
    this.restoreCommon(storage);
    const meta = storage.get(KEY_META) as HybridMeta | undefined;
    if (meta) {
      this.view = meta.view;
      this.vcTarget = meta.vcTarget;
      this.lastActiveView = meta.lastActiveView;
      this.chain = [...meta.chain];
      this.myVc = meta.myVc;
    }
    const nvMsg = storage.get(KEY_NV) as HNewView | undefined;
    const oldVc = (vc: HViewChange | null | undefined) =>
      !!vc && (vc.entries.some((e) => !e.batchDigest) || (vc.nv !== null && !vc.nv.batchDigests));
    if (oldVc(meta?.myVc)) throw new StateFormatError(KEY_META);
    if (nvMsg?.vcs.some(oldVc)) throw new StateFormatError(KEY_NV);
    if (nvMsg && nvMsg.view === this.lastActiveView) {
      const picked = nvMsg.vcs.map((vc) => ({ vc, info: this.checkVc(vc) as VcInfo }));
      const sel = this.select(picked);
      const digest = this.nvDigest(nvMsg.view, sel, nvMsg.vcs);
      const leader = this.leaderOf(nvMsg.view);
      // Written in the same atomic batch as KEY_NV.
      const batches = (storage.get(KEY_NV_BATCHES) as Batch[] | undefined) ?? [];
      const match =
        batches.length === sel.batchDigests.length &&
        batches.every((b, i) => bytesEqual(this.digests.batch(b), sel.batchDigests[i] as Uint8Array));
      if (!match) throw new StateFormatError(KEY_NV_BATCHES);
      this.nv = {
        view: nvMsg.view,
        s: sel.checkpoint.seq,
        checkpointDigest: sel.checkpoint.stateDigest,
        m: sel.maxSeq,
        batchDigests: sel.batchDigests,
        batches,
        digest,
        msg: nvMsg,
        votes: new Map([[leader, digest]]),
        certs: new Map([[leader, nvMsg.cert]]),
        myVote: null,
        committed: false,
      };
      const vote = storage.get(KEY_NV_VOTE) as HCommitNv | undefined;
      if (vote && vote.view === nvMsg.view && bytesEqual(vote.nvDigest, digest)) {
        this.nv.myVote = vote;
        this.nv.votes.set(this.id, digest);
        this.nv.certs.set(this.id, vote.cert);
      }
    }
    for (const key of storage.keys(PREFIX_COMMITTED_CERT)) {
      const cd = storage.get(key) as CertifiedDigest | undefined;
      if (cd) this.committedCerts.set(Number(key.slice(PREFIX_COMMITTED_CERT.length)), cd);
    }
    for (const key of storage.keys(PREFIX_SLOT)) {
      const seq = Number(key.slice(PREFIX_SLOT.length));
      if (seq <= this.stable.seq) continue;
      const ps = storage.get(key) as PersistedSlot;
      const slot = this.slot(seq);
      slot.prepare = ps.prepare;
      slot.myCommit = ps.myCommit;
      if (ps.prepare) {
        const bd = this.digests.batch(ps.prepare.batch);
        slot.votes.set(this.leaderOf(ps.prepare.view), bd);
        // Verified before it was persisted: what the leader's counter certified is remembered again, so
        // an equivocation is still caught after a restart (a VIEW-CHANGE entry, an h-certs).
        const c = ps.prepare.cert;
        if (c.subsystem !== this.id && isFresh(c) && !this.certsSeen.has(certKey(c)))
          this.remember(c, this.digests.hPrepare(ps.prepare.view, seq, bd));
      }
      if (ps.myCommit) slot.votes.set(this.id, ps.myCommit.batchDigest);
    }
    const counter = this.trusted.current(ORDER_COUNTER);
    const m = this.nv?.view === this.view ? this.nv.m : 0;
    if (counter.view === this.view && counter.slot >= 2) this.nextCertSeq = counter.slot;
    else this.nextCertSeq = m + 1;
    if (this.nextCertSeq <= this.stable.seq) this.nextCertSeq = this.stable.seq + 1;
    if (this.vcTarget !== null) {
      this.startViewChangeTimer();
      if (this.myVc) {
        const info = this.checkVc(this.myVc);
        if (typeof info !== "string") this.vcs.set(this.id, { vc: this.myVc, info });
      }
    }
    for (const seq of [...this.slots.keys()].sort((a, b) => a - b)) this.checkCommit(seq);
    // The NEW-VIEW may have committed before the restart (our vote and the leader's suffice for f=1):
    // its batches must still execute, and one already executed must not be re-sent forever.
    if (this.nv && this.lastExecuted >= this.nv.m) this.nv.committed = true;
    this.checkNvCommit();
  }
}
