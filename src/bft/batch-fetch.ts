// Batches by digest for view changes. VIEW-CHANGE and NEW-VIEW messages name the batches they carry
// forward by digest only, so their size does not grow with the batches' (a window of 10 MiB batches
// would not fit one frame). A replica that must hold a batch it lacks (a new leader before it sends
// its NEW-VIEW, a follower before it accepts one) asks the peer most likely to hold it (BATCH-FETCH),
// after a retransmit period every peer, and keeps the first BATCH whose digest matches. Whoever named a
// digest in a message it certified or signed keeps that batch until its stable checkpoint passes it.

import { toHex } from "./bytes.ts";
import type { Digests } from "./digests.ts";
import type { Batch, BatchFetchMsg, BatchMsg, Limits, Message, ReplicaId } from "./types.ts";

export interface BatchFetchDeps {
  readonly id: ReplicaId;
  readonly n: number;
  readonly limits: Limits;
  readonly digests: Digests;
  /** A batch the replica's protocol state holds (slots, its NEW-VIEW), by digest. */
  readonly find: (digest: Uint8Array) => Batch | undefined;
  readonly batchShapeOk: (b: Batch) => boolean;
  readonly send: (to: ReplicaId, msg: Message) => void;
  readonly drop: (from: ReplicaId, reason: string) => void;
  readonly now: () => number;
  /** Some batch this replica asked for arrived: whatever waited for batches may go on. */
  readonly arrived: () => void;
}

interface Wanted {
  readonly digest: Uint8Array;
  seq: number;
  /** When it was last asked for. */
  at: number;
}

function opBytes(b: Batch): number {
  let bytes = 0;
  for (const r of b.requests) bytes += r.op.length;
  return bytes;
}

/** The batch every replica can make itself: PBFT's null batch that fills a gap in a NEW-VIEW. */
export const NULL_BATCH: Batch = Object.freeze({ requests: Object.freeze([]) });

export class BatchFetch {
  /** Batches kept beyond the slots that brought them (through a view change, or fetched), by digest. */
  private readonly kept = new Map<string, { batch: Batch; seq: number }>();
  private readonly wanted = new Map<string, Wanted>();
  /** When each (peer, digest) was last served: a peer asking again within a period gets nothing. */
  private readonly served = new Map<string, number>();
  private readonly nullDigest: Uint8Array;
  /** Since when this replica, as the leader of `target`, has held enough VIEW-CHANGEs. */
  private waiting: { target: number; since: number } | null = null;

  constructor(private readonly d: BatchFetchDeps) {
    this.nullDigest = d.digests.batch(NULL_BATCH);
  }

  /** The batch with this digest, when this replica holds it. */
  get(digest: Uint8Array): Batch | undefined {
    const hex = toHex(digest);
    const k = this.kept.get(hex);
    if (k) return k.batch;
    if (hex === toHex(this.nullDigest)) return NULL_BATCH;
    return this.d.find(digest);
  }

  /** Keeps a batch (for `seq`) beyond the slot that holds it today, until the stable checkpoint passes seq. */
  keep(seq: number, batch: Batch): void {
    const hex = toHex(this.d.digests.batch(batch));
    const k = this.kept.get(hex);
    if (!k || k.seq < seq) this.kept.set(hex, { batch, seq });
  }

  /**
   * The batches named, in order, when all are held; otherwise asks `hint` for the missing ones (later,
   * everyone: retry) and returns null.
   */
  resolve(named: readonly { seq: number; digest: Uint8Array }[], hint: ReplicaId): Batch[] | null {
    const out: Batch[] = [];
    const ask: Uint8Array[] = [];
    for (const { seq, digest } of named) {
      const b = this.get(digest);
      if (b) {
        out.push(b);
        continue;
      }
      const hex = toHex(digest);
      const w = this.wanted.get(hex);
      if (w) w.seq = Math.max(w.seq, seq);
      else if (this.wanted.size < this.wantedMax()) {
        this.wanted.set(hex, { digest, seq, at: this.d.now() });
        ask.push(digest);
      }
    }
    if (ask.length === 0 && out.length === named.length) return out;
    if (ask.length > 0) this.ask(hint === this.d.id ? (hint + 1) % this.d.n : hint, ask);
    return null;
  }

  /**
   * A new leader sends the batches of its NEW-VIEW right behind it when together they are small (at
   * most batchMaxBytes of operations): followers that lack some then have them one message later
   * instead of one round trip later. Larger ones they fetch.
   */
  offer(batches: readonly Batch[]): void {
    let bytes = 0;
    for (const b of batches) bytes += opBytes(b);
    if (bytes > this.d.limits.batchMaxBytes) return;
    for (const batch of batches)
      if (batch.requests.length > 0)
        for (let peer = 0; peer < this.d.n; peer++)
          if (peer !== this.d.id) this.d.send(peer, { type: "batch", batch });
  }

  /**
   * Called by the leader of `target` each time it holds enough VIEW-CHANGEs: whether a retransmit
   * period has passed since the first time (see pickViewChanges).
   */
  waitedFor(target: number): boolean {
    const now = this.d.now();
    if (this.waiting?.target !== target) this.waiting = { target, since: now };
    return now - this.waiting.since >= this.d.limits.retransmitTicks;
  }

  /** Whether a digest is still asked for. */
  isWanted(digest: Uint8Array): boolean {
    return this.wanted.has(toHex(digest));
  }

  /**
   * On the retransmit period: asks every peer for what the one asked first did not send (a message
   * was lost, or that peer is faulty); a digest's batch is checked, so any copy will do.
   */
  retry(): void {
    const now = this.d.now();
    const again: Uint8Array[] = [];
    for (const w of this.wanted.values()) {
      if (now - w.at < this.d.limits.retransmitTicks) continue;
      w.at = now;
      again.push(w.digest);
    }
    if (again.length === 0) return;
    for (let peer = 0; peer < this.d.n; peer++) if (peer !== this.d.id) this.ask(peer, again);
  }

  /** Forgets what the stable checkpoint at `seq` made useless. */
  collect(seq: number): void {
    for (const [hex, k] of this.kept) if (k.seq <= seq) this.kept.delete(hex);
    for (const [hex, w] of this.wanted) if (w.seq <= seq) this.wanted.delete(hex);
    this.served.clear();
  }

  /** Stops asking for everything (a new view was entered: what is needed now is asked anew). */
  forgetWanted(): void {
    this.wanted.clear();
  }

  onFetch(from: ReplicaId, msg: BatchFetchMsg): void {
    if (!Array.isArray(msg.digests) || msg.digests.length > this.d.limits.window)
      return this.d.drop(from, "batch-fetch-bad");
    const now = this.d.now();
    for (const digest of msg.digests) {
      if (!(digest instanceof Uint8Array) || digest.length !== 32)
        return this.d.drop(from, "batch-fetch-bad");
      const key = `${from}/${toHex(digest)}`;
      const last = this.served.get(key);
      if (last !== undefined && now - last < this.d.limits.retransmitTicks) continue;
      const batch = this.get(digest);
      if (!batch) continue;
      if (this.served.size >= this.wantedMax() * this.d.n) this.served.clear();
      this.served.set(key, now);
      this.d.send(from, { type: "batch", batch });
    }
  }

  onBatch(from: ReplicaId, msg: BatchMsg): void {
    // Nothing asked for: not even hashed (an unasked sender costs us no digest of its batch).
    if (this.wanted.size === 0) return;
    const batch = msg.batch;
    if (!this.d.batchShapeOk(batch)) return this.d.drop(from, "batch-bad");
    const hex = toHex(this.d.digests.batch(batch));
    const w = this.wanted.get(hex);
    if (!w) return;
    this.wanted.delete(hex);
    this.kept.set(hex, { batch, seq: w.seq });
    this.d.arrived();
  }

  private ask(peer: ReplicaId, digests: Uint8Array[]): void {
    const max = this.d.limits.window;
    for (let i = 0; i < digests.length; i += max)
      this.d.send(peer, { type: "batch-fetch", digests: digests.slice(i, i + max) });
  }

  /** A view change names at most a window of batches per VIEW-CHANGE, n of them per NEW-VIEW. */
  private wantedMax(): number {
    return this.d.n * this.d.limits.window;
  }
}

/**
 * The VIEW-CHANGEs a new leader builds its NEW-VIEW from (`candidates` in replica order, the result
 * too): its own (`own`, when it has one) and the first others, `q` in all, once it holds their batches
 * (`held` asks for missing ones); after it has `waited` a period for them, its own and any others whose
 * batches it holds, so that a peer that names a batch and withholds it cannot stall the view change.
 * With its own VIEW-CHANGE among them, the NEW-VIEW starts at or above the leader's checkpoint, so
 * `held` need not ask for batches at or below it. Null while neither is possible.
 */
export function pickViewChanges<T>(
  candidates: readonly T[],
  q: number,
  held: (x: T) => boolean,
  waited: boolean,
  own?: T,
): T[] | null {
  if (candidates.length < q) return null;
  const mine = own === undefined ? -1 : candidates.indexOf(own);
  const all = candidates.map((_, i) => i);
  const order = mine >= 0 ? [mine, ...all.filter((i) => i !== mine)] : all;
  const ready = candidates.map(held);
  const pick = (idx: number[]) => idx.sort((a, b) => a - b).map((i) => candidates[i] as T);
  const first = order.slice(0, q);
  if (first.every((i) => ready[i])) return pick(first);
  if (!waited || (mine >= 0 && !ready[mine])) return null;
  const any = order.filter((i) => ready[i]);
  return any.length >= q ? pick(any.slice(0, q)) : null;
}
