// Checkpoint agreement: this replica's signed CHECKPOINT, its peers' votes until a quorum signs one state
// (the stable checkpoint proof), the states it executed at checkpoint seqs, and the proofs it keeps for
// state transfer. ReplicaCore adopts what agrees here and decides what a disagreement means.

import { bytesEqual } from "./bytes.ts";
import type { ClientTableSnapshot } from "./client-table.ts";
import type { ReplicaAuthenticator } from "./crypto.ts";
import type { Digests } from "./digests.ts";
import type { Effects } from "./effects.ts";
import { assert } from "./errors.ts";
import { agreedDigestQuorum, type Quorums } from "./quorum.ts";
import { type StorageReader, seqKey } from "./storage.ts";
import type { CheckpointMsg, CheckpointProof, Limits, ReplicaId } from "./types.ts";

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

/** Stable checkpoint proofs kept with the history, so a restarted replica can still serve state. */
const PREFIX_PROOF = "proof/";

interface Vote {
  digest: Uint8Array;
  stateDigest: Uint8Array;
  clientsDigest: Uint8Array;
  sig: Uint8Array;
}

/** This replica's state after executing a checkpoint seq. */
export interface ExecutedCheckpoint {
  digest: Uint8Array;
  clientsDigest: Uint8Array;
  clients: ClientTableSnapshot;
}

export class CheckpointTracker {
  /** State digest and client table after each executed checkpoint seq not yet stable. */
  readonly executed = new Map<number, ExecutedCheckpoint>();
  /** Stable checkpoint proofs within the retained history (state transfer ends at one of them). */
  private readonly proofs = new Map<number, CheckpointProof>();
  private readonly votes = new Map<number, Map<ReplicaId, Vote>>();
  /** This replica's CHECKPOINT for its latest executed checkpoint seq (null once that is stable). */
  mine: CheckpointMsg | null = null;

  constructor(
    private readonly n: number,
    private readonly q: Quorums,
    private readonly limits: Limits,
    private readonly digests: Digests,
    private readonly auth: ReplicaAuthenticator,
    private readonly out: Effects,
  ) {}

  /** Checks a checkpoint proof: genesis, or a quorum of valid distinct signatures over one state. */
  verify(p: CheckpointProof): boolean {
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

  /** Signs this replica's state at checkpoint `seq` (its CHECKPOINT, kept as `mine`). */
  sign(seq: number, stateDigest: Uint8Array, clientsDigest: Uint8Array): CheckpointMsg {
    assert(
      seq > 0 && seq % this.limits.checkpointInterval === 0,
      `sign: expected a checkpoint seq, got ${seq}`,
    );
    assert(
      this.mine === null || this.mine.seq < seq,
      `sign: expected our checkpoints to go up (after ${this.mine?.seq}), got ${seq}`,
    );
    const sig = this.auth.sign(this.digests.checkpoint(seq, stateDigest, clientsDigest));
    this.mine = { type: "checkpoint", seq, stateDigest, clientsDigest, sig };
    return this.mine;
  }

  /**
   * A peer's CHECKPOINT, checked against the stable checkpoint and our own state at its seq: null when
   * dropped (counted) or not news; else whether it conflicts with what we executed, and whether it is a
   * vote for a checkpoint not yet stable.
   */
  receive(
    from: ReplicaId,
    m: CheckpointMsg,
    stable: CheckpointProof,
  ): { conflict: boolean; vote: boolean } | null {
    if (!Number.isSafeInteger(m.seq) || m.seq <= 0 || m.seq % this.limits.checkpointInterval !== 0) {
      this.out.drop(from, "checkpoint-bad-seq");
      return null;
    }
    if (m.seq < stable.seq) return null;
    if (m.seq > stable.seq + this.limits.window) {
      this.out.drop(from, "checkpoint-too-far");
      return null;
    }
    if (
      !(m.stateDigest instanceof Uint8Array) ||
      m.stateDigest.length !== 32 ||
      !(m.clientsDigest instanceof Uint8Array) ||
      m.clientsDigest.length !== 32
    ) {
      this.out.drop(from, "checkpoint-bad");
      return null;
    }
    // Our own state at m.seq, when we executed it (or hold it as the stable checkpoint).
    const executed = this.executed.get(m.seq);
    const mine =
      m.seq === stable.seq
        ? { state: stable.stateDigest, clients: stable.clientsDigest }
        : executed && { state: executed.digest, clients: executed.clientsDigest };
    const agrees =
      mine !== undefined &&
      bytesEqual(mine.state, m.stateDigest) &&
      bytesEqual(mine.clients, m.clientsDigest);
    if (m.seq === stable.seq && agrees) return null;
    if (!this.auth.verify(from, this.digests.checkpoint(m.seq, m.stateDigest, m.clientsDigest), m.sig)) {
      this.out.drop(from, "checkpoint-bad-sig");
      return null;
    }
    return { conflict: mine !== undefined && !agrees, vote: m.seq > stable.seq };
  }

  /** Records a verified vote; once a quorum signs one state, returns its proof and the signers. */
  recordVote(
    from: ReplicaId,
    seq: number,
    stateDigest: Uint8Array,
    clientsDigest: Uint8Array,
    sig: Uint8Array,
  ): { proof: CheckpointProof; voters: readonly ReplicaId[] } | null {
    let votes = this.votes.get(seq);
    if (!votes) {
      votes = new Map();
      this.votes.set(seq, votes);
    }
    // Votes agree when they sign the same digest (state and client table).
    const digest = this.digests.checkpoint(seq, stateDigest, clientsDigest);
    votes.set(from, { digest, stateDigest, clientsDigest, sig });
    const res = agreedDigestQuorum(this.q.checkpoint)(undefined, votes);
    if (!res.done || !res.value) return null;
    const agreed = votes.get(res.value.voters[0] as ReplicaId) as Vote;
    const sigs = res.value.voters.map((r) => ({ replica: r, sig: (votes.get(r) as Vote).sig }));
    assert(
      sigs.length >= this.q.checkpoint,
      `recordVote: expected ${this.q.checkpoint} signatures in an agreed proof, got ${sigs.length}`,
    );
    const proof: CheckpointProof = {
      seq,
      stateDigest: agreed.stateDigest,
      clientsDigest: agreed.clientsDigest,
      sigs,
    };
    return { proof, voters: res.value.voters };
  }

  /** The votes recorded for `seq` (own included), none once it is stable. */
  votesAt(seq: number): Iterable<[ReplicaId, Vote]> {
    return this.votes.get(seq) ?? [];
  }

  /** The checkpoint at `seq` became stable: forget the votes and states it supersedes. */
  stableAt(seq: number): void {
    for (const s of [...this.votes.keys()]) if (s <= seq) this.votes.delete(s);
    for (const s of [...this.executed.keys()]) if (s < seq) this.executed.delete(s);
    if (this.mine && this.mine.seq <= seq) this.mine = null;
  }

  /** Execution jumped to `seq`: the states executed up to it no longer count. */
  jumpedTo(seq: number): void {
    for (const s of [...this.executed.keys()]) if (s <= seq) this.executed.delete(s);
  }

  /** Keeps (and persists) a stable proof, an end point for state transfer. */
  keepProof(proof: CheckpointProof): void {
    if (this.proofs.has(proof.seq)) return;
    this.proofs.set(proof.seq, proof);
    this.out.persist(seqKey(PREFIX_PROOF, proof.seq), proof);
  }

  proofAt(seq: number): CheckpointProof | undefined {
    return this.proofs.get(seq);
  }

  /** Forgets the proofs at or below `seq` (the history before them is gone). */
  dropProofs(seq: number): void {
    for (const s of [...this.proofs.keys()]) {
      if (s <= seq) {
        this.proofs.delete(s);
        this.out.unpersist(seqKey(PREFIX_PROOF, s));
      }
    }
  }

  /** Restart: the stable proof and the older proofs on file. */
  restore(storage: StorageReader, stable: CheckpointProof): void {
    this.proofs.set(stable.seq, stable);
    for (const key of storage.keys(PREFIX_PROOF)) {
      const p = storage.get(key) as CheckpointProof;
      if (p.seq < stable.seq) this.proofs.set(p.seq, p);
    }
  }
}
