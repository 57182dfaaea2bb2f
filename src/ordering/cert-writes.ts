// The ledger's certificate and certified-height puts. They are deferred to ride in the next block's
// batch (the host's synced write) or go in a write of their own after DEFER_MS; until a certificate is
// durable, readers find it here (fresh). Ordered so that the disk never holds a certified height above
// the certificates it has.

import { serialize } from "node:v8";
import type { Level } from "level";
import { type RawOp, writeBatch } from "../storage/level-store.ts";
import type { CertSig } from "./block.ts";
import { CERTIFIED, certKey, encodeCert } from "./ledger-store.ts";

/** Certificate puts wait at most this long for a block's batch to carry them (then they go alone). */
export const DEFER_MS = 20;

export class CertWrites {
  /** Certificates completed and not yet durable (c/ being written): readers must see them. */
  private readonly freshCerts = new Map<number, CertSig[]>();
  private writes: Promise<void> = Promise.resolve();
  /** Writes of this.write() issued and not finished. */
  private writesInFlight = 0;
  /**
   * Certificate and certified-height puts not written yet. They ride in the next block's batch (the
   * host's synced write) or, if no block comes within DEFER_MS, go in a write of their own; one LevelDB
   * write per block instead of three. `deferredCerts`: the blocks whose certificates they hold.
   */
  private deferred: RawOp[] = [];
  private deferredCerts: number[] = [];
  private deferTimer: ReturnType<typeof setTimeout> | null = null;
  /** Per prepare() not yet written(), in order: the certificates its batch carries. */
  private readonly riding: number[][] = [];

  constructor(private readonly db: Level<string, Uint8Array>) {}

  /** Block n's certificate, complete and not durable yet. */
  fresh(n: number): CertSig[] | undefined {
    return this.freshCerts.get(n);
  }

  /** Block n is certified: readers see its certificate at once, its put is deferred. */
  certificate(n: number, cert: CertSig[]): void {
    this.freshCerts.set(n, cert);
    this.defer({ type: "put", key: certKey(n), value: encodeCert(cert) }, n);
  }

  /** Every block below `height` is certified. */
  certifiedHeight(height: number): void {
    this.defer({ type: "put", key: CERTIFIED, value: serialize(height) });
  }

  /** A block batch is being prepared (prepare()): the deferred puts ride in its `ops` when they can. */
  carry(ops: RawOp[] | null): void {
    this.riding.push(ops === null ? [] : this.takeDeferred(ops));
  }

  /** The batch of the oldest prepare() not written yet is durable, and so are the certificates it carried. */
  landed(): void {
    for (const n of this.riding.shift() ?? []) this.freshCerts.delete(n);
  }

  /**
   * Certificates and the certified height, in order, without an fsync of their own: both can be rebuilt
   * (a restart collects the signatures of uncertified blocks again, `Ledger.open`), and the next synced batch
   * (the next block) makes them durable with it.
   */
  private write(ops: RawOp[]): Promise<void> {
    this.writesInFlight++;
    const next = this.writes
      .then(() => writeBatch(this.db, ops, false))
      .finally(() => {
        this.writesInFlight--;
      });
    this.writes = next.catch(() => undefined);
    return next;
  }

  /**
   * A certificate (of block `n`) or certified-height put, written later (see `deferred`). The disk
   * must never hold a certified height above the certificates it has, so the puts stay in order and
   * two writes that hold them are never in flight at once: a block's batch takes them only when no
   * write of their own is in flight (takeDeferred), and a write of their own waits while a block's
   * batch that took some is (flushDeferred).
   */
  private defer(op: RawOp, n?: number): void {
    if (op.key === CERTIFIED) {
      // Only the highest certified height counts: drop an older one still waiting.
      const i = this.deferred.findIndex((o) => o.key === CERTIFIED);
      if (i >= 0) this.deferred.splice(i, 1);
    }
    this.deferred.push(op);
    if (n !== undefined) this.deferredCerts.push(n);
    if (this.deferTimer === null) this.deferTimer = setTimeout(() => this.flushDeferred(), DEFER_MS);
  }

  /** Moves the deferred puts into a block's batch (`ops`); the certificates they hold. */
  private takeDeferred(ops: RawOp[]): number[] {
    if (this.deferred.length === 0 || this.writesInFlight > 0) return [];
    const certs = this.deferredCerts;
    ops.push(...this.deferred);
    this.deferred = [];
    this.deferredCerts = [];
    if (this.deferTimer !== null) clearTimeout(this.deferTimer);
    this.deferTimer = null;
    return certs;
  }

  /** No block came to carry the deferred puts: they go in a write of their own. */
  private flushDeferred(): void {
    this.deferTimer = null;
    if (this.deferred.length === 0) return;
    if (this.riding.some((r) => r.length > 0)) {
      this.deferTimer = setTimeout(() => this.flushDeferred(), DEFER_MS);
      return;
    }
    const ops = this.deferred;
    const certs = this.deferredCerts;
    this.deferred = [];
    this.deferredCerts = [];
    this.write(ops).then(
      () => {
        for (const n of certs) this.freshCerts.delete(n);
      },
      () => {}, // kept in freshCerts: readers still see them (a failed write fails the next synced batch too)
    );
  }

  /** Writes what is deferred and waits for pending certificate writes (for a clean shutdown). */
  async flush(): Promise<void> {
    if (this.deferTimer !== null) clearTimeout(this.deferTimer);
    this.deferTimer = null;
    while (this.deferred.length > 0 && !this.riding.some((r) => r.length > 0)) this.flushDeferred();
    await this.writes;
  }
}
