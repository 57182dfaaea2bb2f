// The certification of the ledger's blocks: this replica signs each block's header hash and exchanges
// signatures with its peers (signature frames) until the commit quorum certifies the block; then the
// certified height advances (contiguous) and listeners hear of it. Peers' signatures for blocks not
// built here yet are buffered (SIG_AHEAD_MAX ahead); uncertified blocks are announced again (retry).

import { type Block, bytesEq, type CertSig, HASH_BYTES, SIGNATURE_BYTES } from "./block.ts";
import { type BlockCache, withCert } from "./block-cache.ts";
import type { CertWrites } from "./cert-writes.ts";
import type { LedgerOptions } from "./ledger.ts";

/** Peer signatures are buffered for blocks at most this far ahead of our chain. */
export const SIG_AHEAD_MAX = 4096;
/** Uncertified blocks re-announced per retransmission round. */
export const SIG_RETRY_MAX = 256;

/** Tag of the ledger's frames between replicas (HostApp): signature frames here, block sync frames. */
export const APP_FRAME_TAG = 0xb1;
const SIG = 1;
const SIG_REQ = 2;
const SIG_FRAME_BYTES = 2 + 8 + HASH_BYTES + SIGNATURE_BYTES;

/** A block this replica wrote, as announced to listeners once certified. */
export interface CertifiedBlock {
  readonly block: Block;
  readonly headerHash: Uint8Array;
  /** Tx ids of the entries, in order. */
  readonly txIds: readonly string[];
  /** Tx ids in the batch's executed requests that are not entries (already in the chain, or refused). */
  readonly skipped: readonly string[];
}

export interface Built extends CertifiedBlock {
  readonly batchClients: readonly { clientId: string; reqNo: number }[];
}

interface Pending {
  /** Valid signatures over our header hash. */
  readonly sigs: Map<number, Uint8Array>;
  readonly builtAtMs: number;
}

export interface CertificationDeps {
  readonly o: LedgerOptions;
  readonly now: () => number;
  /** The ledger's counters (badSigs, lateSigs, sigRequestsServed are counted here). */
  readonly stats: { badSigs: number; lateSigs: number; sigRequestsServed: number };
  readonly cache: BlockCache;
  readonly writes: CertWrites;
  /** Number of blocks in the chain. */
  readonly height: () => number;
  /** Header hash of block n as read from the database. */
  readonly headerOf: (n: number) => Promise<Uint8Array | undefined>;
}

export class Certification {
  private readonly o: LedgerOptions;
  private readonly now: () => number;
  private readonly stats: CertificationDeps["stats"];
  private readonly cache: BlockCache;
  private readonly writes: CertWrites;
  private readonly chainHeight: () => number;
  private readonly headerOf: (n: number) => Promise<Uint8Array | undefined>;
  private certifiedN = 0;
  /** Built blocks not yet certified, by number. */
  private readonly pending = new Map<number, Pending & { hh: Uint8Array }>();
  /** Certificates complete but not contiguous with certifiedN yet. */
  private readonly certifiedAhead = new Set<number>();
  /** Our signatures over blocks being written, sent already (writing()). */
  private readonly signedAhead = new Map<number, Uint8Array>();
  /** Peer signatures for blocks we have not built yet. */
  private readonly early = new Map<number, Map<number, { hh: Uint8Array; sig: Uint8Array }>>();
  private readonly builtInfo = new Map<number, Built>();
  private readonly certListeners = new Set<(b: CertifiedBlock) => void>();
  /** Resolvers waiting for a block number to be certified, by number. */
  private readonly heightWaiters = new Map<number, (() => void)[]>();
  private readonly progressListeners = new Set<(certifiedHeight: number) => void>();

  constructor(d: CertificationDeps) {
    this.o = d.o;
    this.now = d.now;
    this.stats = d.stats;
    this.cache = d.cache;
    this.writes = d.writes;
    this.chainHeight = d.height;
    this.headerOf = d.headerOf;
  }

  /** Number of blocks in the chain (the ledger's height). */
  private get heightN(): number {
    return this.chainHeight();
  }

  /** Every block below this number holds a certificate. */
  get height(): number {
    return this.certifiedN;
  }

  /** After a restart: the certified height on disk. */
  restore(certifiedHeight: number): void {
    this.certifiedN = certifiedHeight;
  }

  /** Block n holds a certificate already (on disk, or fetched with it), maybe above the certified height. */
  certifiedAlready(n: number): void {
    this.certifiedAhead.add(n);
  }

  /** Resolves once block n is certified (every block up to it is); false on timeout. */
  waitCertified(n: number, timeoutMs: number): Promise<boolean> {
    if (n < this.certifiedN) return Promise.resolve(true);
    return new Promise((resolve) => {
      let list = this.heightWaiters.get(n);
      if (!list) {
        list = [];
        this.heightWaiters.set(n, list);
      }
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      list.push(done);
      const timer = setTimeout(() => {
        const l = this.heightWaiters.get(n);
        const i = l ? l.indexOf(done) : -1;
        if (l && i >= 0) l.splice(i, 1);
        if (l && l.length === 0) this.heightWaiters.delete(n);
        resolve(false);
      }, timeoutMs);
    });
  }

  /** Called whenever the certified height grows. */
  onProgress(fn: (certifiedHeight: number) => void): () => void {
    this.progressListeners.add(fn);
    return () => this.progressListeners.delete(fn);
  }

  onCertified(fn: (b: CertifiedBlock) => void): () => void {
    this.certListeners.add(fn);
    return () => this.certListeners.delete(fn);
  }

  /**
   * The writes of prepare() are on their way to the disk: sign the blocks and send the signatures now
   * (see Ledger.writing).
   */
  writing(built: readonly Built[]): void {
    for (const b of built) {
      const n = b.block.header.number;
      const sig = this.o.sign(b.headerHash);
      this.signedAhead.set(n, sig);
      this.o.send("all", sigFrame(SIG, n, b.headerHash, sig));
    }
  }

  /** Block b is durable: listeners hear of it when certified. */
  built(b: Built): void {
    this.builtInfo.set(b.block.header.number, b);
  }

  /** Block b (fetched from peers, with its certificate) is durable: it counts as certified. */
  synced(b: Built): void {
    const n = b.block.header.number;
    this.builtInfo.set(n, b);
    this.early.delete(n);
    this.certifiedAhead.add(n);
  }

  /** Block b is durable: collect the peers' signatures (ours went out at writing(), or goes now). */
  collect(b: Built): void {
    const n = b.block.header.number;
    let sig = this.signedAhead.get(n);
    this.signedAhead.delete(n);
    if (sig === undefined) {
      sig = this.o.sign(b.headerHash);
      this.o.send("all", sigFrame(SIG, n, b.headerHash, sig));
    }
    this.startCollecting(n, b.headerHash, sig);
  }

  /** Collects the peers' signatures of block n, ours (`sig`) first. */
  startCollecting(n: number, hh: Uint8Array, sig: Uint8Array): void {
    const p = { sigs: new Map([[this.o.self, sig]]), builtAtMs: this.now(), hh };
    this.pending.set(n, p);
    const early = this.early.get(n);
    this.early.delete(n);
    // Only until the quorum is in: a signature beyond it would be verified for nothing.
    if (early) for (const [from, s] of early) if (this.pending.has(n)) this.addSig(n, p, from, s.hh, s.sig);
    this.maybeCertified(n, p);
  }

  // ------------------------------------------------------------------ signatures from peers

  /** A signature frame from a peer (SIG, or SIG_REQ: a signature and a request for ours). */
  onSigFrame(from: number, frame: Uint8Array): void {
    if (frame.length !== SIG_FRAME_BYTES || frame[0] !== APP_FRAME_TAG) {
      this.stats.badSigs++;
      return;
    }
    const kind = frame[1];
    const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    const n = dv.getUint32(2) * 0x1_0000_0000 + dv.getUint32(6);
    const hh = frame.slice(10, 10 + HASH_BYTES);
    const sig = frame.slice(10 + HASH_BYTES);
    if ((kind !== SIG && kind !== SIG_REQ) || !Number.isSafeInteger(n) || from === this.o.self) {
      this.stats.badSigs++;
      return;
    }
    if (kind === SIG_REQ && n < this.heightN) void this.answer(from, n);
    const p = this.pending.get(n);
    if (p) {
      this.addSig(n, p, from, hh, sig);
      return;
    }
    if (n < this.certifiedN || this.certifiedAhead.has(n)) {
      this.stats.lateSigs++;
      return;
    }
    // Not collecting yet: a block we have not built, or one whose write is still in progress.
    if (n >= this.heightN + SIG_AHEAD_MAX) return;
    let m = this.early.get(n);
    if (!m) {
      m = new Map();
      this.early.set(n, m);
    }
    m.set(from, { hh, sig });
  }

  private addSig(
    n: number,
    p: Pending & { hh: Uint8Array },
    from: number,
    hh: Uint8Array,
    sig: Uint8Array,
  ): void {
    const key = this.o.replicaKeys[from];
    if (!key || !bytesEq(hh, p.hh) || !this.o.verify(key, hh, sig)) {
      this.stats.badSigs++;
      return;
    }
    p.sigs.set(from, sig);
    this.maybeCertified(n, p);
  }

  private maybeCertified(n: number, p: Pending & { hh: Uint8Array }): void {
    if (p.sigs.size < this.o.quorum || !this.pending.has(n)) return;
    this.pending.delete(n);
    const cert: CertSig[] = [...p.sigs]
      .sort((a, b) => a[0] - b[0])
      .map(([replica, sig]) => ({ replica, sig }));
    this.cache.certify(n, cert);
    const info = this.builtInfo.get(n);
    if (info) this.builtInfo.set(n, { ...info, block: withCert(info.block, cert) });
    // The block counts as certified at once, not when its certificate's write lands: readers find the
    // certificate in CertWrites until then. The put is deferred (cert-writes.ts), and the certified height
    // that advanceCertified() puts goes after it in the same order, so the disk never holds a certified
    // height above the certificates it has.
    this.writes.certificate(n, cert);
    this.certifiedAhead.add(n);
    this.advanceCertified();
  }

  /** Moves the certified height past every contiguous certified block, and tells whoever waits. */
  advanceCertified(): void {
    const before = this.certifiedN;
    while (this.certifiedAhead.delete(this.certifiedN)) this.certifiedN++;
    if (this.certifiedN === before) return;
    this.writes.certifiedHeight(this.certifiedN);
    for (const [n, fns] of this.heightWaiters) {
      if (n >= this.certifiedN) continue;
      this.heightWaiters.delete(n);
      for (const fn of fns) fn();
    }
    for (const fn of this.progressListeners) fn(this.certifiedN);
    for (let n = before; n < this.certifiedN; n++) {
      const info = this.builtInfo.get(n);
      this.builtInfo.delete(n);
      if (info) for (const fn of this.certListeners) fn(info);
    }
  }

  /** A peer asks for our signature of block n: sign again (ed25519 is deterministic: the same bytes). */
  private async answer(to: number, n: number): Promise<void> {
    const hh = this.pending.get(n)?.hh ?? this.cache.get(n)?.hh ?? (await this.headerOf(n));
    if (!hh) return;
    this.stats.sigRequestsServed++;
    this.o.send(to, sigFrame(SIG, n, hh, this.o.sign(hh)));
  }

  /** Periodically: ask peers again for signatures of blocks that are still uncertified. */
  retry(olderThanMs: number): number {
    let sent = 0;
    const now = this.now();
    for (const [n, p] of this.pending) {
      if (sent >= SIG_RETRY_MAX) break;
      if (now - p.builtAtMs < olderThanMs) continue;
      const sig = p.sigs.get(this.o.self);
      if (!sig) continue;
      this.o.send("all", sigFrame(SIG_REQ, n, p.hh, sig));
      sent++;
    }
    // Forget early signatures far behind (peers that lied about the future or a chain we skipped).
    for (const n of this.early.keys()) if (n < this.certifiedN) this.early.delete(n);
    return sent;
  }
}

function sigFrame(kind: number, n: number, hh: Uint8Array, sig: Uint8Array): Uint8Array {
  const f = new Uint8Array(SIG_FRAME_BYTES);
  f[0] = APP_FRAME_TAG;
  f[1] = kind;
  const dv = new DataView(f.buffer);
  dv.setUint32(2, Math.floor(n / 0x1_0000_0000));
  dv.setUint32(6, n >>> 0);
  f.set(hh, 10);
  f.set(sig, 10 + HASH_BYTES);
  return f;
}
