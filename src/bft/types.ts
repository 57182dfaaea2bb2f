// Messages, configuration and the Ready contract of the BFT core.

import type { ClientTableSnapshot } from "./client-table.ts";
import type { CertifiedDigest, CounterCert, EquivocationProof } from "./trusted.ts";

export type ReplicaId = number;
export type Mode = "hybrid" | "pbft";

// ---------------------------------------------------------------- client requests

export type ClientAuth =
  /** ed25519 signature over the request digest (transferable, verifiable by anyone). */
  | { readonly scheme: "ed25519"; readonly sig: Uint8Array }
  /** PBFT-style authenticator: macs[i] = HMAC(sessionKey(client, replica i), request digest). */
  | { readonly scheme: "mac"; readonly macs: readonly Uint8Array[] };

export interface ClientRequest {
  readonly clientId: string;
  /** Strictly increasing per client, starting at 1; a request is executed at most once. */
  readonly reqNo: number;
  readonly op: Uint8Array;
  readonly auth: ClientAuth;
}

export interface Batch {
  readonly requests: readonly ClientRequest[];
}

// ---------------------------------------------------------------- checkpoints (both modes)

export interface ReplicaSig {
  readonly replica: ReplicaId;
  readonly sig: Uint8Array;
}

/**
 * A stable checkpoint: seq, the state digest after executing it, the digest of the client table at that
 * point (so a snapshot of the table can be checked against the proof), and a quorum of signatures.
 */
export interface CheckpointProof {
  readonly seq: number;
  readonly stateDigest: Uint8Array;
  readonly clientsDigest: Uint8Array;
  readonly sigs: readonly ReplicaSig[];
}

export interface CheckpointMsg {
  readonly type: "checkpoint";
  readonly seq: number;
  readonly stateDigest: Uint8Array;
  readonly clientsDigest: Uint8Array;
  readonly sig: Uint8Array;
}

// ---------------------------------------------------------------- hybrid mode messages

/** Leader's proposal for `seq` in `view`, certified by its order counter at (view, seq + 1). */
export interface HPrepare {
  readonly type: "h-prepare";
  readonly view: number;
  readonly seq: number;
  readonly batch: Batch;
  readonly cert: CounterCert;
}

/** A follower's vote for the leader's PREPARE, certified by its own order counter at (view, seq + 1). */
export interface HCommit {
  readonly type: "h-commit";
  readonly view: number;
  readonly seq: number;
  readonly batchDigest: Uint8Array;
  readonly cert: CounterCert;
  /**
   * The leader's certificate of the PREPARE this COMMIT votes for (over the same digest). Every replica
   * thus sees what the leader certified to the others: a leader whose counter certified two PREPAREs at
   * one value is caught with both certificates, a proof anyone can check (EquivocationProof).
   */
  readonly prepareCert: CounterCert;
}

/** What a VIEW-CHANGE carries of the NEW-VIEW its sender last accepted (enough to verify its cert). */
export interface HNewViewSummary {
  readonly view: number;
  readonly checkpointSeq: number;
  readonly checkpointDigest: Uint8Array;
  readonly maxSeq: number;
  /** Digests of the batches re-issued for seqs checkpointSeq+1 .. maxSeq (the batches: BatchFetch). */
  readonly batchDigests: readonly Uint8Array[];
  readonly vcSetDigest: Uint8Array;
  /**
   * Proof that a correct replica accepted this NEW-VIEW, so that a Byzantine leader cannot make one up
   * for a view nobody else entered: exactly f+1 certificates at (view, 1) over the summary's digest
   * from distinct replicas (the leader's NEW-VIEW and COMMIT-NVs); or none, and then the enclosing
   * VIEW-CHANGE's `proofs` holds the NEW-VIEW itself, which the receiver re-checks.
   */
  readonly certs: readonly CounterCert[];
}

/**
 * A PREPARE the sender accepted in its last active view: its batch's digest and the leader's certificate
 * (which covers only the digest). The sender keeps the batch and serves it to peers that ask (BATCH-FETCH).
 */
export interface HEntry {
  readonly seq: number;
  readonly view: number;
  readonly batchDigest: Uint8Array;
  readonly cert: CounterCert;
}

export interface HViewChange {
  readonly type: "h-view-change";
  readonly replica: ReplicaId;
  readonly newView: number;
  readonly checkpoint: CheckpointProof;
  /** The NEW-VIEW of the sender's last active view (absent when that view is 0). */
  readonly nv: HNewViewSummary | null;
  /** Accepted PREPAREs of the last active view after max(nv.maxSeq, checkpoint.seq), contiguous. */
  readonly entries: readonly HEntry[];
  /**
   * Continuing certificates of the sender's order counter, oldest first: chain[0].prev is the last
   * value it certified outside view changes; each link continues the one before; the last one is at
   * (newView, 0) over this message's digest.
   */
  readonly chain: readonly ChainLink[];
  /**
   * NEW-VIEWs proving summaries that carry no certificates: this message's own and those of the
   * VIEW-CHANGEs inside these NEW-VIEWs, at most one per view, ascending by view. Their VIEW-CHANGEs
   * carry no proofs of their own (they refer to this list). Not covered by the message digest: any
   * valid proof of the same summary will do.
   */
  readonly proofs: readonly HNewView[];
}

/** One continuing certificate of a VIEW-CHANGE chain and the digest it certifies. */
export interface ChainLink {
  readonly cert: CounterCert;
  readonly digest: Uint8Array;
}

export interface HNewView {
  readonly type: "h-new-view";
  readonly view: number;
  readonly vcs: readonly HViewChange[];
  /** Leader's certificate at (view, 1) over the NEW-VIEW digest. */
  readonly cert: CounterCert;
}

/** A follower's vote for a NEW-VIEW (commits every re-issued batch at once), at (view, 1). */
export interface HCommitNv {
  readonly type: "h-commit-nv";
  readonly view: number;
  readonly nvDigest: Uint8Array;
  readonly cert: CounterCert;
}

// ---------------------------------------------------------------- PBFT mode messages

export interface PPrePrepare {
  readonly type: "p-pre-prepare";
  readonly view: number;
  readonly seq: number;
  readonly batch: Batch;
  readonly sig: Uint8Array;
}

export interface PPrepare {
  readonly type: "p-prepare";
  readonly view: number;
  readonly seq: number;
  readonly batchDigest: Uint8Array;
  readonly replica: ReplicaId;
  readonly sig: Uint8Array;
}

export interface PCommit {
  readonly type: "p-commit";
  readonly view: number;
  readonly seq: number;
  readonly batchDigest: Uint8Array;
  readonly replica: ReplicaId;
  readonly sig: Uint8Array;
}

/**
 * A PRE-PREPARE named by its batch's digest (the leader's signature covers only the digest), as
 * VIEW-CHANGEs and NEW-VIEWs carry them: a view change moves digests, and batches follow on request.
 */
export interface PPrePrepareRef {
  readonly view: number;
  readonly seq: number;
  readonly batchDigest: Uint8Array;
  readonly sig: Uint8Array;
}

export interface PPreparedProof {
  readonly prePrepare: PPrePrepareRef;
  /** 2f PREPAREs from distinct replicas other than the leader, matching the pre-prepare. */
  readonly prepares: readonly PPrepare[];
}

export interface PViewChange {
  readonly type: "p-view-change";
  readonly replica: ReplicaId;
  readonly newView: number;
  readonly checkpoint: CheckpointProof;
  readonly prepared: readonly PPreparedProof[];
  readonly sig: Uint8Array;
}

export interface PNewView {
  readonly type: "p-new-view";
  readonly view: number;
  readonly vcs: readonly PViewChange[];
  /** Re-issued pre-prepares for every seq after the new checkpoint (null batches fill gaps). */
  readonly prePrepares: readonly PPrePrepareRef[];
  readonly sig: Uint8Array;
}

// ---------------------------------------------------------------- shared messages

/** A client request forwarded to the leader by the replica the client talks to. */
export interface RequestMsg {
  readonly type: "request";
  readonly request: ClientRequest;
}

/** Periodic gossip that lets peers help a replica that fell behind (view or state). */
export interface StatusMsg {
  readonly type: "status";
  /** The sender's current (last entered) view. */
  readonly view: number;
  /** The view it is changing to, or `view` when it is not changing view. */
  readonly target: number;
  readonly lastExecuted: number;
  readonly stableSeq: number;
}

/** State transfer: batches after the receiver's lastExecuted up to a stable checkpoint. */
export interface StateMsg {
  readonly type: "state";
  readonly checkpoint: CheckpointProof;
  readonly fromSeq: number;
  readonly batches: readonly Batch[];
}

/**
 * State transfer beyond the batches peers still keep: a stable checkpoint with the client table at it.
 * The receiver's application must reach the checkpoint by itself (the ledger fetches certified blocks)
 * before the core installs the snapshot.
 */
export interface SnapshotMsg {
  readonly type: "snapshot";
  readonly checkpoint: CheckpointProof;
  readonly clients: ClientTableSnapshot;
}

/**
 * A proof that replica `culprit`'s trusted counter certified two messages with one value, sent once by
 * the replica that found it to every other: each checks it with public keys and stops ordering too.
 */
export interface HProof {
  readonly type: "h-proof";
  readonly culprit: ReplicaId;
  readonly proof: EquivocationProof;
}

/**
 * The fresh counter certificates of its peers a replica accepted (and of the PREPAREs it committed), the
 * evidence of a fork it cannot prove alone: a peer that accepted another digest under one of these values
 * turns the pair into an h-proof. Sent when its executed state differs from a stable checkpoint (to all
 * as it halts, then again, backing off, to a peer that keeps talking to it), and to the signer of a
 * CHECKPOINT whose digests differ from ours (backing off per peer). At most certsEvidenceMax(n, window).
 */
export interface HCerts {
  readonly type: "h-certs";
  readonly certs: readonly CertifiedDigest[];
}

/**
 * Asks a peer for batches named by digest in a VIEW-CHANGE or NEW-VIEW that this replica lacks (at most
 * `window` digests). The peer answers with one BATCH per digest it holds.
 */
export interface BatchFetchMsg {
  readonly type: "batch-fetch";
  readonly digests: readonly Uint8Array[];
}

/** One batch, sent in answer to a BATCH-FETCH; the receiver keeps it only if it asked for its digest. */
export interface BatchMsg {
  readonly type: "batch";
  readonly batch: Batch;
}

export type HybridMessage = HPrepare | HCommit | HViewChange | HNewView | HCommitNv | HProof | HCerts;
export type PbftMessage = PPrePrepare | PPrepare | PCommit | PViewChange | PNewView;
export type Message =
  | HybridMessage
  | PbftMessage
  | CheckpointMsg
  | RequestMsg
  | StatusMsg
  | StateMsg
  | SnapshotMsg
  | BatchFetchMsg
  | BatchMsg;
export type MessageType = Message["type"];

// ---------------------------------------------------------------- configuration

export interface Limits {
  /** Requests per batch. */
  readonly batchMaxCount: number;
  /** Sum of op sizes per batch. */
  readonly batchMaxBytes: number;
  /** A leader cuts a non-full batch after this many ticks. */
  readonly batchTimeoutTicks: number;
  /** Largest op a client may submit. */
  readonly requestMaxBytes: number;
  readonly clientIdMaxBytes: number;
  /** Requests waiting to be proposed (leader) or to commit (follower timers). */
  readonly pendingMax: number;
  /** ...and at most this many bytes of their ops, each (the leader's queue, a follower's timers). */
  readonly pendingMaxBytes: number;
  /** Instances in flight: a seq is proposed only while seq <= stable checkpoint + window. */
  readonly window: number;
  /** A checkpoint every this many seqs; window must be >= 2 * interval. */
  readonly checkpointInterval: number;
  /** Committed batches kept below the stable checkpoint to serve state transfer... */
  readonly retainBatches: number;
  /** ...and at most this many bytes of their ops (older ones: a laggard catches up by snapshot). */
  readonly retainMaxBytes: number;
  /** Batches in one state-transfer message. */
  readonly stateChunkBatches: number;
  /** Largest reply kept per client for retransmitted requests. */
  readonly replyMaxBytes: number;
  /** Entries of the per-client table (last executed request); the least recent is evicted. */
  readonly clientsMax: number;
  /** A forwarded request not committed within this many ticks starts a view change. */
  readonly requestTimeoutTicks: number;
  /** First view-change timeout; doubles on each consecutive failed view change, up to the max. */
  readonly viewChangeTimeoutTicks: number;
  readonly viewChangeTimeoutMaxTicks: number;
  /** Retransmission of unacknowledged protocol messages. */
  readonly retransmitTicks: number;
  /** STATUS gossip period. */
  readonly statusTicks: number;
  /**
   * A follower whose connection to the leader closed (after having been open in this view) and stays
   * closed this long starts a view change without waiting for a request to time out: a killed leader's
   * sockets close at once, and a live link does not close and reopen by itself (the libp2p transport
   * aborts a stream only after it stalled for seconds). 0 turns it off. Drivers report links with
   * Replica.link().
   */
  readonly leaderLinkGraceTicks: number;
  /**
   * A follower whose forwarded requests wait while the leader's window has room expects a new proposal
   * at least every max(this, batchTimeoutTicks + 2, 2 × its p90 commit time) ticks, at most a quarter of
   * requestTimeoutTicks; three such intervals in a row without one start a view change (leader-pace.ts).
   * 0 turns it off.
   */
  readonly leaderPaceFloorTicks: number;
  /** Links of consecutive view changes a hybrid VIEW-CHANGE may carry. */
  readonly vcChainMax: number;
  /** NEW-VIEWs a hybrid VIEW-CHANGE may carry as proofs of uncertified summaries. */
  readonly vcProofsMax: number;
}

export const DEFAULT_LIMITS: Limits = Object.freeze({
  batchMaxCount: 256,
  batchMaxBytes: 1 << 20,
  batchTimeoutTicks: 1,
  requestMaxBytes: 1 << 20,
  clientIdMaxBytes: 128,
  pendingMax: 100_000,
  pendingMaxBytes: 256 * 1024 * 1024,
  window: 64,
  checkpointInterval: 16,
  retainBatches: 1024,
  retainMaxBytes: 64 * 1024 * 1024,
  stateChunkBatches: 128,
  clientsMax: 100_000,
  replyMaxBytes: 64 * 1024,
  requestTimeoutTicks: 200,
  viewChangeTimeoutTicks: 200,
  viewChangeTimeoutMaxTicks: 6400,
  retransmitTicks: 20,
  statusTicks: 25,
  leaderLinkGraceTicks: 5,
  leaderPaceFloorTicks: 5,
  vcChainMax: 1024,
  vcProofsMax: 64,
});

// ---------------------------------------------------------------- Ready contract

export interface Outgoing {
  /** A replica id, or "all" for every other replica. */
  readonly to: ReplicaId | "all";
  readonly msg: Message;
}

/** One durable key/value change; a Ready's ops are applied atomically, in order. */
export type PersistOp =
  | { readonly op: "put"; readonly key: string; readonly value: unknown }
  | { readonly op: "del"; readonly key: string };

export interface CommittedBatch {
  readonly seq: number;
  readonly view: number;
  readonly batch: Batch;
  readonly batchDigest: Uint8Array;
  /** executed[i] is false for requests skipped as duplicates or unauthenticated. */
  readonly executed: readonly boolean[];
  /** Hash chain over batch digests after this batch. */
  readonly stateDigest: Uint8Array;
}

export type ReplicaEvent =
  | { readonly kind: "view-change-started"; readonly view: number; readonly reason: string }
  | { readonly kind: "new-view"; readonly view: number; readonly leader: ReplicaId }
  | { readonly kind: "checkpoint-stable"; readonly seq: number }
  | { readonly kind: "state-transfer"; readonly fromSeq: number; readonly toSeq: number }
  | { readonly kind: "snapshot-offered"; readonly from: ReplicaId; readonly seq: number }
  | { readonly kind: "duplicate-request"; readonly clientId: string; readonly reqNo: number }
  | { readonly kind: "dropped"; readonly from: ReplicaId; readonly reason: string }
  /**
   * Replica `culprit`'s trusted counter certified two messages with one value (hybrid mode): its counter
   * key is compromised. This replica stops ordering (see ReplicaCore.halted); `proof` convinces anyone.
   */
  | { readonly kind: "equivocation"; readonly culprit: ReplicaId; readonly proof: EquivocationProof }
  /** A stable checkpoint disagrees with this replica's executed state: a fork; the replica halted. */
  | { readonly kind: "state-diverged"; readonly seq: number };

export interface Ready {
  /** 1. Make these durable (atomically) ... */
  readonly persist: readonly PersistOp[];
  /** 2. ... then send these ... */
  readonly send: readonly Outgoing[];
  /** 3. ... then apply these, in order. */
  readonly commit: readonly CommittedBatch[];
  /** For logs and metrics only. */
  readonly events: readonly ReplicaEvent[];
}
