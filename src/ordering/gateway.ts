// The replica's client gateway: collects submitted transactions into signed requests of the replica's own
// client identity (every transaction that arrived since its last request, up to the batch bounds: one
// signature for all of them), hands them to the core with a few requests in flight, and answers each
// transaction once it is in a certified block, with a receipt the client can check on its own (Merkle
// proof + header + certificate).
//
// A transaction is its bytes; its id is their SHA-256. A transaction already in the chain is not put in
// the chain again: submitting it again returns the existing receipt (`duplicate: true`), and the same
// transaction submitted concurrently (here or through another replica) ends up in the chain once. The
// check is the one every replica makes when it builds a block (the tx index): a submission is proposed
// without a lookup of its own, and one found in the chain then is answered with the existing receipt.

import type { Digests } from "../bft/digests.ts";
import { RequestError } from "../bft/errors.ts";
import type { ClientRequest } from "../bft/types.ts";
import { type WithDefaults, withDefaults } from "../util/defaults.ts";
import { dropTaken } from "../util/queue.ts";
import type { StageTrace } from "../util/trace.ts";
import { type CertSig, type HashFn, type MerkleProof, toHexStr, txId } from "./block.ts";
import { ApiError } from "./errors.ts";
import type { CertifiedBlock, Ledger } from "./ledger.ts";
import { encodeTxBatch, txBatchBytes } from "./tx-batch.ts";

export interface Receipt {
  readonly txId: string;
  readonly block: number;
  readonly position: number;
  /** True when the transaction was already in the chain before this submission. */
  readonly duplicate: boolean;
  readonly header: {
    readonly number: number;
    readonly previousHash: Uint8Array;
    readonly dataHash: Uint8Array;
  };
  readonly proof: MerkleProof;
  readonly certificate: readonly CertSig[];
}

/** A request of a replica's own client identity (gateway or coordination proposer), signed with its key. */
export function signedRequest(
  clientId: string,
  reqNo: number,
  op: Uint8Array,
  digests: Digests,
  sign: (digest: Uint8Array) => Uint8Array,
): ClientRequest {
  const unsigned = { clientId, reqNo, op };
  const digest = digests.request({ ...unsigned, auth: { scheme: "ed25519", sig: new Uint8Array(64) } });
  return { ...unsigned, auth: { scheme: "ed25519", sig: sign(digest) } };
}

export interface GatewayOptions {
  readonly ledger: Ledger;
  /** Hands a request to the core (ReplicaHost.submit); throws RequestError when refused. */
  readonly propose: (req: ClientRequest) => string;
  readonly clientId: string;
  readonly sign: (digest: Uint8Array) => Uint8Array;
  readonly digests: Digests;
  readonly hash: HashFn;
  /** AbsoluteMaxBytes: larger transactions are refused at intake. */
  readonly txMaxBytes: number;
  /** Transactions per request (MaxMessageCount: a request never holds more than a block may). */
  readonly batchMaxCount: number;
  /** Bytes of a request's batch (PreferredMaxBytes); a larger transaction goes alone. */
  readonly batchMaxBytes: number;
  /** Submissions waiting for their receipt (in flight plus queued). */
  readonly pendingMax: number;
  /** ...and at most this many bytes of their transactions (default 256 MiB: GATEWAY_DEFAULTS). */
  readonly pendingMaxBytes?: number;
  /** A submission not certified within this time is answered with TIMEOUT (it may still commit). */
  readonly timeoutMs: number;
  /** Transactions starting with these bytes are refused (the coordination service's entries). */
  readonly reservedPrefix?: Uint8Array;
  /** False while this replica cannot reach a commit quorum of peers. */
  readonly quorumOk: () => boolean;
  /** Stage marks for the latency breakdown (off when absent). */
  readonly trace?: StageTrace;
}

/**
 * Requests of this gateway in the core at once. A few, so that batches overlap in the pipeline (one is
 * ordered while the next fills); not many, so that under load each request carries many transactions.
 */
export const GATEWAY_IN_FLIGHT_MAX = 4;
/** The gateway's option defaults: the one place they are written. */
export const GATEWAY_DEFAULTS = Object.freeze({
  /** Bytes of transactions waiting for their receipt at one gateway. */
  pendingMaxBytes: 256 * 1024 * 1024,
}) satisfies Partial<GatewayOptions>;
/** Taken entries of the queue kept before the array is compacted (see dispatch). */
const QUEUE_COMPACT_MIN = 64;
/** Times a request the core did not execute is proposed again with a fresh request number. */
const REPROPOSE_MAX = 3;
/** A waiting submission times out at most this late (its deadline is checked by a periodic sweep). */
const SWEEP_MAX_MS = 100;

interface Waiter {
  readonly id: string;
  readonly tx: Uint8Array;
  readonly promise: Promise<Receipt>;
  resolve(r: Receipt): void;
  reject(e: Error): void;
  /** performance.now() after which the submitter gets TIMEOUT. */
  readonly deadline: number;
  reqNo: number;
  attempts: number;
  /** The chain's height when the transaction was submitted: found below it, it was a duplicate. */
  readonly heightAtSubmit: number;
}

export class Gateway {
  private readonly o: WithDefaults<GatewayOptions, typeof GATEWAY_DEFAULTS>;
  private readonly waiting = new Map<string, Waiter>();
  /** Bytes of the transactions in `waiting`. */
  private waitingBytes = 0;
  /** reqNo -> the ids of its transactions, for requests of ours in the core. */
  private readonly inFlight = new Map<number, string[]>();
  private queue: Waiter[] = [];
  private queueHead = 0;
  private nextReqNo: number;
  private closed = false;
  private sweeper: ReturnType<typeof setInterval> | null = null;
  readonly stats = { submitted: 0, duplicates: 0, timeouts: 0, reproposed: 0, requests: 0 };

  constructor(o: GatewayOptions) {
    this.o = withDefaults(GATEWAY_DEFAULTS, o);
    // Request numbers must grow across restarts: start above anything an earlier run could have used.
    this.nextReqNo = Date.now() * 1000;
    o.ledger.onBuilt((b) => this.onBuilt(b));
    o.ledger.onCertified((b) => this.onCertified(b));
  }

  get pending(): number {
    return this.waiting.size;
  }

  /** Submits one transaction; resolves with its receipt once it is in a certified block. */
  async submit(tx: Uint8Array): Promise<Receipt> {
    if (this.closed) throw new ApiError("SHUTTING_DOWN", "the node is shutting down");
    if (!(tx instanceof Uint8Array) || tx.length === 0) throw new ApiError("EMPTY_TX", "empty transaction");
    if (tx.length > this.o.txMaxBytes)
      throw new ApiError(
        "TX_TOO_LARGE",
        `transaction of ${tx.length} bytes exceeds absoluteMaxBytes ${this.o.txMaxBytes}`,
      );
    const rp = this.o.reservedPrefix;
    if (rp && tx.length >= rp.length && rp.every((b, i) => tx[i] === b))
      throw new ApiError(
        "RESERVED_PREFIX",
        `transactions may not start with the bytes ${toHexStr(rp)} (they mark coordination entries)`,
      );
    const id = txId(tx, this.o.hash);
    this.o.trace?.mark("received", id);
    const same = this.waiting.get(id);
    if (same) return same.promise;
    if (!this.o.quorumOk())
      throw new ApiError("NO_QUORUM", "this replica cannot reach a commit quorum of peers");
    if (this.waiting.size >= this.o.pendingMax)
      throw new ApiError("OVERLOADED", `${this.waiting.size} submissions pending; retry later`);
    const maxBytes = this.o.pendingMaxBytes;
    if (this.waitingBytes + tx.length > maxBytes)
      throw new ApiError(
        "OVERLOADED",
        `${this.waitingBytes} bytes of submissions pending (pendingMaxBytes ${maxBytes}); retry later`,
      );
    let resolve!: (r: Receipt) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<Receipt>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const w: Waiter = {
      id,
      tx,
      promise,
      resolve,
      reject,
      reqNo: 0,
      attempts: 0,
      heightAtSubmit: this.o.ledger.height,
      deadline: performance.now() + this.o.timeoutMs,
    };
    this.waiting.set(id, w);
    this.waitingBytes += tx.length;
    this.sweepSoon();
    this.stats.submitted++;
    this.queue.push(w);
    this.dispatch();
    return promise;
  }

  /** The receipt of a transaction already in the chain (waits for its block's certificate). */
  async receipt(id: string): Promise<Receipt | undefined> {
    const loc = await this.o.ledger.findTx(id);
    if (!loc) return undefined;
    return this.receiptWhenCertified(id, loc.number, loc.position, false);
  }

  /** Refuses new submissions and fails the waiting ones. */
  close(): void {
    this.closed = true;
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
    for (const w of this.waiting.values())
      this.fail(w, new ApiError("SHUTTING_DOWN", "the node is shutting down"));
    this.queue = [];
    this.queueHead = 0;
  }

  /** Proposes what is queued, one request per batch, while fewer than GATEWAY_IN_FLIGHT_MAX are in the core. */
  private dispatch(): void {
    while (this.queueHead < this.queue.length && this.inFlight.size < GATEWAY_IN_FLIGHT_MAX) {
      const batch: Waiter[] = [];
      let bytes = 0;
      while (this.queueHead < this.queue.length && batch.length < this.o.batchMaxCount) {
        const w = this.queue[this.queueHead] as Waiter;
        if (this.waiting.get(w.id) !== w || this.inFlight.has(w.reqNo)) {
          this.queueHead++;
          continue;
        }
        if (batch.length > 0 && txBatchBytes(bytes + w.tx.length, batch.length + 1) > this.o.batchMaxBytes)
          break;
        this.queueHead++;
        batch.push(w);
        bytes += w.tx.length;
      }
      const kept = dropTaken(this.queue, this.queueHead, QUEUE_COMPACT_MIN);
      if (kept !== null) {
        this.queue = kept;
        this.queueHead = 0;
      }
      if (batch.length > 0) this.propose(batch);
    }
  }

  private propose(batch: readonly Waiter[]): void {
    const reqNo = this.nextReqNo++;
    const op = encodeTxBatch(batch.map((w) => w.tx));
    const req = signedRequest(this.o.clientId, reqNo, op, this.o.digests, this.o.sign);
    for (const w of batch) {
      w.reqNo = reqNo;
      w.attempts++;
      this.o.trace?.mark("proposed", w.id);
    }
    this.inFlight.set(
      reqNo,
      batch.map((w) => w.id),
    );
    this.stats.requests++;
    try {
      this.o.propose(req);
    } catch (err) {
      this.inFlight.delete(reqNo);
      const code =
        err instanceof RequestError && (err.code === "OVERLOADED" || err.code === "HALTED")
          ? err.code
          : "INTERNAL";
      for (const w of batch)
        this.fail(w, new ApiError(code, `the replica refused the request: ${(err as Error).message}`));
    }
  }

  /** A block is durable: our requests in it leave the core; transactions not in the chain are proposed again. */
  private onBuilt(
    b: CertifiedBlock & { batchClients: readonly { clientId: string; reqNo: number }[] },
  ): void {
    const entries = new Set(b.txIds);
    for (const c of b.batchClients) {
      if (c.clientId !== this.o.clientId) continue;
      const ids = this.inFlight.get(c.reqNo);
      if (ids === undefined) continue;
      this.inFlight.delete(c.reqNo);
      for (const id of ids) {
        const w = this.waiting.get(id);
        if (!w || w.reqNo !== c.reqNo || entries.has(id)) continue;
        // Not an entry of this block: either already in the chain (resolved on certification) or not
        // executed by the core (e.g. outside the client window): propose it again.
        void this.o.ledger.findTx(id).then((loc) => {
          if (this.waiting.get(id) !== w) return;
          if (loc) {
            const duplicate = loc.number < w.heightAtSubmit;
            if (duplicate) this.stats.duplicates++;
            this.settle(w, loc.number, loc.position, duplicate);
          } else if (w.attempts < REPROPOSE_MAX) {
            this.stats.reproposed++;
            this.queue.push(w);
            this.dispatch();
          } else {
            this.fail(w, new ApiError("NOT_EXECUTED", "the replicas did not execute the transaction"));
          }
        });
      }
    }
    this.dispatch();
  }

  private onCertified(b: CertifiedBlock): void {
    const n = b.block.header.number;
    b.txIds.forEach((id, position) => {
      const w = this.waiting.get(id);
      if (w) this.settle(w, n, position, false);
    });
  }

  private settle(w: Waiter, n: number, position: number, duplicate: boolean): void {
    this.receiptWhenCertified(w.id, n, position, duplicate).then(
      (r) => {
        if (this.waiting.get(w.id) !== w) return;
        this.forget(w);
        this.o.trace?.mark("replied", w.id);
        w.resolve(r);
      },
      (err: Error) => this.fail(w, err),
    );
  }

  private async receiptWhenCertified(
    id: string,
    n: number,
    position: number,
    duplicate: boolean,
  ): Promise<Receipt> {
    if (n >= this.o.ledger.certifiedHeight) await this.certified(n);
    const b = await this.o.ledger.getBlock(n);
    const proof = await this.o.ledger.proof(n, position);
    if (!b || !proof) throw new ApiError("INTERNAL", `block ${n} is not readable`);
    return {
      txId: id,
      block: n,
      position,
      duplicate,
      header: b.header,
      proof,
      certificate: b.metadata.certificate,
    };
  }

  private async certified(n: number): Promise<void> {
    if (!(await this.o.ledger.waitCertified(n, this.o.timeoutMs)))
      throw new ApiError("TIMEOUT", `block ${n} is not certified yet`);
  }

  /**
   * One timer for every waiting submission, not one each: submissions wait in the order they came
   * (a Map keeps insertion order) with the same timeout, so a sweep stops at the first one still in time.
   */
  private sweepSoon(): void {
    if (this.sweeper !== null) return;
    const every = Math.max(10, Math.min(SWEEP_MAX_MS, this.o.timeoutMs / 4));
    this.sweeper = setInterval(() => {
      const now = performance.now();
      for (const w of this.waiting.values()) {
        if (w.deadline > now) break;
        this.expire(w);
      }
      if (this.waiting.size === 0 && this.sweeper !== null) {
        clearInterval(this.sweeper);
        this.sweeper = null;
      }
    }, every);
    this.sweeper.unref?.();
  }

  private expire(w: Waiter): void {
    if (this.waiting.get(w.id) !== w) return;
    this.stats.timeouts++;
    this.fail(
      w,
      new ApiError(
        "TIMEOUT",
        `not committed within ${this.o.timeoutMs} ms; it may still commit (GET /v1/transactions/${w.id})`,
      ),
    );
  }

  private fail(w: Waiter, err: Error): void {
    if (this.waiting.get(w.id) === w) this.forget(w);
    w.reject(err);
  }

  private forget(w: Waiter): void {
    this.waiting.delete(w.id);
    this.waitingBytes -= w.tx.length;
  }

  /** Bytes of the transactions waiting for their receipt. */
  get pendingBytes(): number {
    return this.waitingBytes;
  }
}
