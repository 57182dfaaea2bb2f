// The replicated state machine's side of a replica: committed batches executed in seq order, exactly once
// per request; checkpoints reached, agreed and made stable; state transfer to and from peers; restore.
// Agreement (ReplicaCore and its modes) commits batches into it; it answers through ExecutionHooks.

import { bytesEqual } from "./bytes.ts";
import { CheckpointTracker, GENESIS_CHECKPOINT, GENESIS_STATE_DIGEST } from "./checkpoints.ts";
import type { RequestVerifier } from "./client-auth.ts";
import { ClientTable } from "./client-table.ts";
import type { ReplicaAuthenticator } from "./crypto.ts";
import type { Digests } from "./digests.ts";
import type { DivergenceNotices } from "./divergence.ts";
import type { Effects } from "./effects.ts";
import { assert } from "./errors.ts";
import type { Quorums } from "./quorum.ts";
import { type Executed, StateTransfer } from "./state-transfer.ts";
import type { StorageReader } from "./storage.ts";
import type {
  Batch,
  CheckpointMsg,
  CheckpointProof,
  Limits,
  Message,
  ReplicaId,
  SnapshotMsg,
  StateMsg,
  StatusMsg,
} from "./types.ts";

const KEY_STABLE = "stable";

/** The replica's parameters and the helpers execution shares with it. */
export interface ExecutionParts {
  readonly limits: Limits;
  readonly q: Quorums;
  readonly n: number;
  readonly id: ReplicaId;
  readonly digests: Digests;
  readonly auth: ReplicaAuthenticator;
  readonly verifier: RequestVerifier;
  readonly out: Effects;
  readonly notices: DivergenceNotices;
}

/** What execution needs from the rest of the replica, called at the points the names say. */
export interface ExecutionHooks {
  /** A batch was executed at `seq` (lastExecuted is `seq`): its requests are no longer pending. */
  executed(seq: number, batch: Batch): void;
  /** What this replica accepted, for peers whose state may have forked from ours (divergenceEvidence). */
  evidence(): Message | null;
  /** Execution jumped over a range by a snapshot: requests waited for may be in it. */
  jumped(): void;
  /** The stable checkpoint moved to `seq`. */
  stableAt(seq: number): void;
  /** Execution jumped forward by state transfer (or a snapshot). */
  transferred(): void;
  /** Execution went as far as the committed batches allow. */
  drained(): void;
  /** The current view (the view transferred batches are executed in). */
  view(): number;
  /** The view this replica is changing to, or null. */
  target(): number | null;
  now(): number;
}

export class Execution {
  stable: CheckpointProof = GENESIS_CHECKPOINT;
  lastExecuted = 0;
  stateDigest: Uint8Array = GENESIS_STATE_DIGEST;
  clients: ClientTable;
  /** Committed batches waiting for their predecessors. */
  private readonly committedWaiting = new Map<number, Executed>();
  private draining = false;
  readonly checkpoints: CheckpointTracker;
  readonly transfer: StateTransfer;

  private readonly limits: Limits;
  private readonly id: ReplicaId;
  private readonly digests: Digests;
  private readonly verifier: RequestVerifier;
  private readonly out: Effects;
  private readonly notices: DivergenceNotices;

  constructor(
    parts: ExecutionParts,
    private readonly hooks: ExecutionHooks,
  ) {
    const { limits, digests, out } = parts;
    this.limits = limits;
    this.id = parts.id;
    this.digests = digests;
    this.verifier = parts.verifier;
    this.out = out;
    this.notices = parts.notices;
    this.clients = new ClientTable(limits.clientsMax);
    this.checkpoints = new CheckpointTracker(parts.n, parts.q, limits, digests, parts.auth, out);
    this.transfer = new StateTransfer(limits, digests, out);
  }

  /** A batch committed at `seq`: executes it and any successors that were waiting. */
  commit(seq: number, view: number, batch: Batch): void {
    assert(Number.isSafeInteger(seq) && seq > 0, `commit: expected a positive integer seq, got ${seq}`);
    if (seq <= this.lastExecuted || this.committedWaiting.has(seq)) return;
    this.committedWaiting.set(seq, { view, batch });
    this.drainCommitted();
  }

  /** Seq committed here, executed or waiting for its predecessors. */
  isCommittedOrExecuted(seq: number): boolean {
    return seq <= this.lastExecuted || this.committedWaiting.has(seq);
  }

  /** Nothing committed waits, and no checkpoint of ours is short of its proof. */
  settled(): boolean {
    return this.committedWaiting.size === 0 && this.unprovenCheckpoint() === null;
  }

  /** Our CHECKPOINT while it is not yet stable (it is resent until it is). */
  unprovenCheckpoint(): CheckpointMsg | null {
    const mine = this.checkpoints.mine;
    return mine && mine.seq > this.stable.seq ? mine : null;
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
    this.hooks.drained();
  }

  private execute(seq: number, view: number, batch: Batch, replay = false): void {
    assert(seq === this.lastExecuted + 1, `execute: expected seq ${this.lastExecuted + 1}, got ${seq}`);
    assert(!this.committedWaiting.has(seq), `execute: seq ${seq} must no longer wait (executed once)`);
    const batchDigest = this.digests.batch(batch);
    const executed = batch.requests.map((r) => {
      if (!this.verifier.executable(r)) return false;
      if (this.clients.isExecuted(r.clientId, r.reqNo)) return false;
      this.clients.record(r.clientId, r.reqNo, seq);
      return true;
    });
    this.stateDigest = this.digests.nextState(this.stateDigest, seq, batchDigest);
    this.lastExecuted = seq;
    this.hooks.executed(seq, batch);
    assert(this.lastExecuted === seq, `execute: expected lastExecuted ${seq} after executing it`);
    this.transfer.record(seq, view, batch, replay);
    this.out.commit({ seq, view, batch, batchDigest, executed, stateDigest: this.stateDigest });
    if (seq % this.limits.checkpointInterval === 0) this.reachedCheckpoint(seq, replay);
  }

  /** Executed a checkpoint seq: checks it against the stable checkpoint, or signs and votes for it. */
  private reachedCheckpoint(seq: number, replay: boolean): void {
    const clients = this.clients.snapshot();
    const clientsDigest = this.digests.clients(clients);
    this.checkpoints.executed.set(seq, { digest: this.stateDigest, clientsDigest, clients });
    if (seq === this.stable.seq) {
      // Reached a checkpoint that became stable before we executed it (state transfer or replay).
      if (
        !bytesEqual(this.stateDigest, this.stable.stateDigest) ||
        !bytesEqual(clientsDigest, this.stable.clientsDigest)
      ) {
        return this.diverged(seq);
      }
      if (!replay) this.transfer.persistCheckpoint(this.stable, clients);
      else this.transfer.replayedCheckpoint(this.stable, clients);
    } else if (seq > this.stable.seq) {
      const mine = this.checkpoints.sign(seq, this.stateDigest, clientsDigest);
      if (!replay) this.out.broadcast(mine);
      this.recordCheckpointVote(this.id, seq, this.stateDigest, clientsDigest, mine.sig);
      // Peers' votes that came before we executed it.
      for (const [r, v] of this.checkpoints.votesAt(seq)) {
        const agrees =
          bytesEqual(v.stateDigest, this.stateDigest) && bytesEqual(v.clientsDigest, clientsDigest);
        if (r !== this.id && !agrees) this.conflict(r);
      }
    }
  }

  onCheckpoint(from: ReplicaId, m: CheckpointMsg): void {
    const r = this.checkpoints.receive(from, m, this.stable);
    if (r === null) return;
    if (r.conflict) this.conflict(from);
    if (r.vote) this.recordCheckpointVote(from, m.seq, m.stateDigest, m.clientsDigest, m.sig);
  }

  private recordCheckpointVote(
    from: ReplicaId,
    seq: number,
    stateDigest: Uint8Array,
    clientsDigest: Uint8Array,
    sig: Uint8Array,
  ): void {
    const agreed = this.checkpoints.recordVote(from, seq, stateDigest, clientsDigest, sig);
    if (agreed === null) return;
    this.adopt(agreed.proof);
    if (this.lastExecuted < seq) {
      // We are behind a stable checkpoint: ask its signers for the batches.
      for (const r of agreed.voters) if (r !== this.id) this.out.send(r, this.statusMsg());
    }
  }

  /** Adopts a verified stable checkpoint that may be ahead of execution (state transfer follows). */
  adopt(proof: CheckpointProof): void {
    if (proof.seq <= this.stable.seq) return;
    assert(
      proof.seq > 0 && proof.seq % this.limits.checkpointInterval === 0,
      `adopt: expected a verified checkpoint seq (a multiple of checkpointInterval), got ${proof.seq}`,
    );
    this.stable = proof;
    this.checkpoints.keepProof(proof);
    this.out.persist(KEY_STABLE, proof);
    this.out.event({ kind: "checkpoint-stable", seq: proof.seq });
    const mine = this.checkpoints.executed.get(proof.seq);
    if (this.lastExecuted >= proof.seq) {
      if (
        mine &&
        (!bytesEqual(mine.digest, proof.stateDigest) || !bytesEqual(mine.clientsDigest, proof.clientsDigest))
      ) {
        return this.diverged(proof.seq);
      }
      if (mine) this.transfer.persistCheckpoint(proof, mine.clients);
    }
    this.checkpoints.stableAt(proof.seq);
    const pruned = this.transfer.prune(proof.seq);
    assert(pruned <= proof.seq, `adopt: expected pruning up to stable ${proof.seq} at most, got ${pruned}`);
    this.checkpoints.dropProofs(pruned);
    for (const s of [...this.committedWaiting.keys()])
      if (s <= proof.seq && s <= this.lastExecuted) this.committedWaiting.delete(s);
    this.hooks.stableAt(proof.seq);
    assert(this.stable.seq >= proof.seq, `adopt: expected stable >= ${proof.seq}, got ${this.stable.seq}`);
  }

  private diverged(seq: number): void {
    this.notices.diverged(seq, this.hooks.evidence(), this.hooks.now());
  }

  private conflict(from: ReplicaId): void {
    this.notices.conflict(from, this.hooks.now(), () => this.hooks.evidence());
  }

  statusMsg(): StatusMsg {
    const view = this.hooks.view();
    return {
      type: "status",
      view,
      target: this.hooks.target() ?? view,
      lastExecuted: this.lastExecuted,
      stableSeq: this.stable.seq,
    };
  }

  /** A peer's STATUS: false when it is malformed (dropped); sends state when the peer is behind. */
  onStatus(from: ReplicaId, s: StatusMsg): boolean {
    if (
      !Number.isSafeInteger(s.view) ||
      !Number.isSafeInteger(s.target) ||
      s.target < s.view ||
      !Number.isSafeInteger(s.lastExecuted) ||
      !Number.isSafeInteger(s.stableSeq)
    ) {
      this.out.drop(from, "status-bad");
      return false;
    }
    if (s.lastExecuted < this.stable.seq && s.lastExecuted >= 0) this.serve(from, s.lastExecuted);
    return true;
  }

  /** A peer executed up to `peerExecuted`, behind our stable checkpoint: sends it STATE or a SNAPSHOT. */
  private serve(to: ReplicaId, peerExecuted: number): void {
    const state = this.transfer.stateFor(peerExecuted + 1, this.lastExecuted, (seq) =>
      this.checkpoints.proofAt(seq),
    );
    if (typeof state === "object") return this.out.send(to, state);
    // The batches are gone, or too large for one STATE message.
    const snapshot = this.transfer.snapshotFor(
      to,
      peerExecuted,
      state === "too-large",
      this.stable.seq,
      this.hooks.now(),
    );
    if (snapshot !== null) this.out.send(to, snapshot);
  }

  onSnapshot(from: ReplicaId, m: SnapshotMsg): void {
    const cp = this.transfer.receiveSnapshot(from, m, this.lastExecuted, (p) => this.checkpoints.verify(p));
    if (cp === null) return;
    if (cp.seq > this.stable.seq) this.adopt(cp);
    this.out.event({ kind: "snapshot-offered", from, seq: cp.seq });
  }

  onState(from: ReplicaId, m: StateMsg): void {
    const verify = (p: CheckpointProof) => this.checkpoints.verify(p);
    if (!this.transfer.checkState(from, m, this.lastExecuted, this.stateDigest, verify)) return;
    const cp = m.checkpoint;
    this.out.event({ kind: "state-transfer", fromSeq: m.fromSeq, toSeq: cp.seq });
    this.draining = true;
    try {
      for (let i = 0; i < m.batches.length; i++) {
        const seq = m.fromSeq + i;
        this.committedWaiting.delete(seq);
        this.execute(seq, this.hooks.view(), m.batches[i] as Batch);
      }
    } finally {
      this.draining = false;
    }
    assert(
      this.lastExecuted === cp.seq && bytesEqual(this.stateDigest, cp.stateDigest),
      `state transfer: expected to end at checkpoint ${cp.seq} with its state, at ${this.lastExecuted}`,
    );
    if (cp.seq > this.stable.seq) this.adopt(cp);
    else this.checkpoints.keepProof(cp);
    this.hooks.transferred();
    this.drainCommitted();
    if (this.lastExecuted < this.stable.seq) this.out.send(from, this.statusMsg()); // next chunk
  }

  /** See ReplicaCore.installSnapshot. */
  installSnapshot(): boolean {
    const o = this.transfer.takeOffer();
    if (!o || o.proof.seq <= this.lastExecuted) return false;
    const cp = o.proof;
    const fromSeq = this.lastExecuted + 1;
    this.notices.jumping(this.hooks.evidence(), cp.seq, this.hooks.now());
    this.lastExecuted = cp.seq;
    this.stateDigest = cp.stateDigest;
    this.clients = ClientTable.restore(this.limits.clientsMax, o.clients);
    // The batches before the jump can no longer be served (the history must be contiguous).
    this.transfer.dropHistory();
    for (const s of [...this.committedWaiting.keys()]) if (s <= cp.seq) this.committedWaiting.delete(s);
    this.checkpoints.jumpedTo(cp.seq);
    this.hooks.jumped();
    this.transfer.persistCheckpoint(cp, o.clients);
    if (cp.seq > this.stable.seq) this.adopt(cp);
    else this.checkpoints.keepProof(cp);
    this.out.event({ kind: "state-transfer", fromSeq, toSeq: cp.seq });
    this.hooks.transferred();
    this.drainCommitted();
    if (this.lastExecuted < this.stable.seq) this.out.broadcast(this.statusMsg());
    return true;
  }

  /** Rebuilds the state from storage and replays executed batches after the checkpoint. */
  restore(storage: StorageReader): void {
    const ck = this.transfer.restoreCheckpoint(storage);
    if (ck) {
      this.stable = ck.proof;
      this.lastExecuted = ck.proof.seq;
      this.stateDigest = ck.proof.stateDigest;
      this.clients = ClientTable.restore(this.limits.clientsMax, ck.clients);
    }
    const ahead = storage.get(KEY_STABLE) as CheckpointProof | undefined;
    if (ahead && ahead.seq > this.stable.seq) this.stable = ahead;
    this.checkpoints.restore(storage, this.stable);
    this.transfer.restoreHistory(
      storage,
      () => this.lastExecuted,
      (seq, e) => this.execute(seq, e.view, e.batch, true),
    );
  }
}
