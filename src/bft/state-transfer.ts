// What a replica keeps to bring a peer up to date, and takes in when it is the one behind: the executed
// batches since before the stable checkpoint (served as STATE), the persisted checkpoint with its client
// table (served as a SNAPSHOT when the batches are gone) and a verified snapshot offered to this replica.
// ReplicaCore executes what arrives here and adopts the checkpoints it proves.

import { bytesEqual } from "./bytes.ts";
import type { ClientTableSnapshot } from "./client-table.ts";
import type { Digests } from "./digests.ts";
import type { Effects } from "./effects.ts";
import { ConfigError } from "./errors.ts";
import { batchShapeOk } from "./request-intake.ts";
import { type StorageReader, seqKey } from "./storage.ts";
import type { Batch, CheckpointProof, Limits, ReplicaId, SnapshotMsg, StateMsg } from "./types.ts";

/** Ops in one STATE message at most (a transport frame holds 64 MiB; batches reach requestMaxBytes). */
export const STATE_CHUNK_BYTES = 16 * 1024 * 1024;
/** A peer is sent a snapshot at most once per this many STATUS periods. */
const SNAPSHOT_RESEND_STATUS_PERIODS = 8;

const KEY_CKPT = "ckpt";
const PREFIX_EXEC = "exec/";

export interface Executed {
  readonly view: number;
  readonly batch: Batch;
}

export interface PersistedCheckpoint {
  readonly proof: CheckpointProof;
  readonly clients: ClientTableSnapshot;
}

/** Bytes of a batch's ops. */
function opBytes(batch: Batch): number {
  let n = 0;
  for (const r of batch.requests) n += r.op.length;
  return n;
}

export class StateTransfer {
  /** Executed batches from stable.seq - retainBatches on (state transfer source), in seq order. */
  readonly history = new Map<number, Executed>();
  /** Bytes of the ops in `history` (kept within retainMaxBytes, see prune). */
  private historyBytes = 0;
  /** Seq of the checkpoint (with client table) a restart resumes from. */
  private persistedSeq = 0;
  /** That checkpoint with its client table: what this replica serves as a snapshot. */
  private persisted: PersistedCheckpoint | null = null;
  /** A verified snapshot ahead of execution, waiting for the application to reach it (installSnapshot). */
  private offer: PersistedCheckpoint | null = null;
  /** When each peer was last sent a snapshot (ticks). */
  private readonly snapshotSentAt = new Map<ReplicaId, number>();

  constructor(
    private readonly limits: Limits,
    private readonly digests: Digests,
    private readonly out: Effects,
  ) {}

  /** Keeps an executed batch (persisted unless it is being replayed from storage). */
  record(seq: number, view: number, batch: Batch, replay: boolean): void {
    this.history.set(seq, { view, batch });
    this.historyBytes += opBytes(batch);
    if (!replay) this.out.persist(seqKey(PREFIX_EXEC, seq), { view, batch } satisfies Executed);
  }

  /** Persists a stable checkpoint reached here with its client table: a restart resumes from it. */
  persistCheckpoint(proof: CheckpointProof, clients: ClientTableSnapshot): void {
    this.persisted = { proof, clients };
    this.out.persist(KEY_CKPT, this.persisted);
    this.persistedSeq = proof.seq;
  }

  /** Replay reached the stable checkpoint: serve it as a snapshot unless one was on file. */
  replayedCheckpoint(proof: CheckpointProof, clients: ClientTableSnapshot): void {
    this.persisted ??= { proof, clients };
  }

  /**
   * The checkpoint at `stableSeq` became stable. Executed batches stay until a persisted checkpoint covers
   * them (a restart replays from there); at most retainBatches of them below that, and the oldest go while
   * all hold over retainMaxBytes. Returns the seq up to which batches were let go.
   */
  prune(stableSeq: number): number {
    const covered = Math.min(stableSeq, this.persistedSeq);
    let keepFrom = covered - this.limits.retainBatches;
    for (const [s, e] of this.history) {
      if (s > covered || (s > keepFrom && this.historyBytes <= this.limits.retainMaxBytes)) break;
      this.history.delete(s);
      this.historyBytes -= opBytes(e.batch);
      this.out.unpersist(seqKey(PREFIX_EXEC, s));
      keepFrom = Math.max(keepFrom, s);
    }
    return keepFrom;
  }

  /** Execution jumped over the batches (a snapshot): the history must be contiguous, so all of it goes. */
  dropHistory(): void {
    for (const s of [...this.history.keys()]) {
      this.history.delete(s);
      this.out.unpersist(seqKey(PREFIX_EXEC, s));
    }
    this.historyBytes = 0;
  }

  /**
   * The batches fromSeq.. up to the highest retained stable checkpoint within one chunk: at most
   * stateChunkBatches batches and STATE_CHUNK_BYTES of ops. "too-large" when even the nearest checkpoint
   * is beyond the bytes (the peer then gets a snapshot and fetches the blocks itself).
   */
  stateFor(
    fromSeq: number,
    lastExecuted: number,
    proofAt: (seq: number) => CheckpointProof | undefined,
  ): StateMsg | "none" | "too-large" {
    const last = Math.min(lastExecuted, fromSeq + this.limits.stateChunkBatches - 1);
    const batches: Batch[] = [];
    let target: CheckpointProof | undefined;
    let sent = 0;
    let bytes = 0;
    for (let seq = fromSeq; seq <= last; seq++) {
      const e = this.history.get(seq);
      if (!e) break;
      bytes += opBytes(e.batch);
      if (bytes > STATE_CHUNK_BYTES) return target ? stateMsg(target, fromSeq, batches, sent) : "too-large";
      batches.push(e.batch);
      const p = proofAt(seq);
      if (p) {
        target = p;
        sent = batches.length;
      }
    }
    return target ? stateMsg(target, fromSeq, batches, sent) : "none";
  }

  /**
   * The peer is behind the batches we keep: our persisted checkpoint with its client table, or null
   * (rate limited per peer; the peer's application fetches the blocks in between by itself).
   */
  snapshotFor(
    to: ReplicaId,
    peerExecuted: number,
    batchesTooLarge: boolean,
    stableSeq: number,
    now: number,
  ): SnapshotMsg | null {
    const p = this.persisted;
    if (!p || p.proof.seq <= peerExecuted || p.proof.seq > stableSeq) return null;
    // The batches exist: state transfer will come (unless they are too large for one STATE message).
    if (this.history.has(peerExecuted + 1) && !batchesTooLarge) return null;
    const last = this.snapshotSentAt.get(to);
    const period = SNAPSHOT_RESEND_STATUS_PERIODS * this.limits.statusTicks;
    if (last !== undefined && now - last < period) return null;
    this.snapshotSentAt.set(to, now);
    return { type: "snapshot", checkpoint: p.proof, clients: p.clients };
  }

  /** A peer's SNAPSHOT: kept as the offer when it is verified and ahead of us (else dropped or ignored). */
  receiveSnapshot(
    from: ReplicaId,
    m: SnapshotMsg,
    lastExecuted: number,
    verify: (p: CheckpointProof) => boolean,
  ): CheckpointProof | null {
    const cp = m.checkpoint;
    // Cheap checks first: a repeated or stale snapshot costs no signature check.
    if (!cp || !Number.isSafeInteger(cp.seq)) return this.refuse(from, "snapshot-bad-proof");
    if (cp.seq <= lastExecuted || (this.offer && this.offer.proof.seq >= cp.seq)) return null;
    if (!verify(cp) || cp.seq === 0) return this.refuse(from, "snapshot-bad-proof");
    if (!Array.isArray(m.clients) || m.clients.length > this.limits.clientsMax)
      return this.refuse(from, "snapshot-bad-clients");
    if (!bytesEqual(this.digests.clients(m.clients), cp.clientsDigest))
      return this.refuse(from, "snapshot-bad-clients");
    this.offer = { proof: cp, clients: m.clients };
    return cp;
  }

  /** The seq of the snapshot offered, when it is ahead of `lastExecuted`. */
  offerAhead(lastExecuted: number): number | null {
    return this.offer && this.offer.proof.seq > lastExecuted ? this.offer.proof.seq : null;
  }

  /** Takes the offered snapshot (null when there is none). */
  takeOffer(): PersistedCheckpoint | null {
    const o = this.offer;
    this.offer = null;
    return o;
  }

  /**
   * Checks a STATE chunk that continues our execution: its size and range, its checkpoint proof, and that
   * its batches lead from our state to the proven one. False when not for us now, or dropped.
   */
  checkState(
    from: ReplicaId,
    m: StateMsg,
    lastExecuted: number,
    stateDigest: Uint8Array,
    verify: (p: CheckpointProof) => boolean,
  ): boolean {
    const cp = m.checkpoint;
    if (m.fromSeq !== lastExecuted + 1) return false; // stale or not for us now
    if (
      !Array.isArray(m.batches) ||
      m.batches.length === 0 ||
      m.batches.length > this.limits.stateChunkBatches
    ) {
      return this.reject(from, "state-bad-size");
    }
    if (cp.seq !== m.fromSeq + m.batches.length - 1) return this.reject(from, "state-bad-range");
    if (!verify(cp)) return this.reject(from, "state-bad-proof");
    let digest = stateDigest;
    for (let i = 0; i < m.batches.length; i++) {
      const b = m.batches[i] as Batch;
      if (!batchShapeOk(b, this.limits)) return this.reject(from, "state-bad-batch");
      digest = this.digests.nextState(digest, m.fromSeq + i, this.digests.batch(b));
    }
    if (!bytesEqual(digest, cp.stateDigest)) return this.reject(from, "state-bad-digest");
    return true;
  }

  /** Restart: the persisted checkpoint to resume from, if any (kept to serve as a snapshot). */
  restoreCheckpoint(storage: StorageReader): PersistedCheckpoint | undefined {
    const ck = storage.get(KEY_CKPT) as PersistedCheckpoint | undefined;
    if (ck) {
      if (!(ck.proof.clientsDigest instanceof Uint8Array))
        throw new ConfigError("BAD_STORAGE", "the stored checkpoint predates client-table digests");
      this.persisted = ck;
      this.persistedSeq = ck.proof.seq;
    }
    return ck;
  }

  /**
   * Restart: takes back the executed batches on file up to `lastExecuted()` and hands the one right after
   * to `replay` (which executes it, moving lastExecuted on), until a gap.
   */
  restoreHistory(
    storage: StorageReader,
    lastExecuted: () => number,
    replay: (seq: number, e: Executed) => void,
  ): void {
    for (const key of storage.keys(PREFIX_EXEC)) {
      const seq = Number(key.slice(PREFIX_EXEC.length));
      const e = storage.get(key) as Executed;
      if (seq <= lastExecuted()) {
        this.history.set(seq, e);
        this.historyBytes += opBytes(e.batch);
      } else if (seq === lastExecuted() + 1) replay(seq, e);
      else break;
    }
  }

  private refuse(from: ReplicaId, reason: string): null {
    this.out.drop(from, reason);
    return null;
  }

  private reject(from: ReplicaId, reason: string): false {
    this.out.drop(from, reason);
    return false;
  }
}

function stateMsg(checkpoint: CheckpointProof, fromSeq: number, batches: Batch[], count: number): StateMsg {
  return { type: "state", checkpoint, fromSeq, batches: batches.slice(0, count) };
}
