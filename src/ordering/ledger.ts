// The hash-chained ledger of one replica, in LevelDB: every committed batch becomes one block, written
// in the same atomic batch as the core's state for that Ready (so a crash can never leave the chain
// behind the replica's own state); then the replica signs the block's header hash and exchanges
// signatures with its peers until the block holds a commit certificate.
//
// Keys (sharing the replica's database; the core keeps "s/" and "t/"):
//   b/<number>  block (header, entries, view/seq/time)     c/<number>  its certificate
//   x/<tx id>   [block number, position]                    m/head      [height, head hash]
//   m/certified the height up to which every block is certified (contiguous)

import { deserialize, serialize } from "node:v8";
import type { Level } from "level";
import type { CommittedBatch } from "../bft/types.ts";
import { type RawOp, writeBatch } from "../storage/level-store.ts";
import {
  type Block,
  bytesEq,
  type CertSig,
  genesisBlock,
  HASH_BYTES,
  type HashFn,
  headerHash,
  type MerkleProof,
  merkleProofs,
  merkleTree,
  SIGNATURE_BYTES,
  txId,
  type VerifyFn,
} from "./block.ts";
import {
  BLOCKS,
  BLOCKS_REQ,
  BlockSync,
  decodeSyncFrame,
  encodeBlocks,
  SYNC_BLOCKS_MAX,
  SYNC_REPLY_BYTES,
  SyncFrameError,
} from "./block-sync.ts";

const BLOCK = "b/";
const CERT = "c/";
const TX = "x/";
const HEAD = "m/head";
const CERTIFIED = "m/certified";

/** Blocks kept decoded in memory (recent ones: receipts and deliver read them)... */
export const BLOCK_CACHE_MAX = 512;
/** ...and their entries' bytes at most this many: large blocks are read from LevelDB again when needed. */
export const BLOCK_CACHE_BYTES = 16 * 1024 * 1024;
/** Merkle trees kept for receipts' proofs (the latest blocks built here; older ones are built again). */
const TREES_KEPT = 64;
/** Peer signatures are buffered for blocks at most this far ahead of our chain. */
export const SIG_AHEAD_MAX = 4096;
/** Uncertified blocks re-announced per retransmission round. */
export const SIG_RETRY_MAX = 256;
/** Certificate puts wait at most this long for a block's batch to carry them (then they go alone). */
export const DEFER_MS = 20;
/**
 * Up to this many transaction ids, a block's duplicate check reads the database in place (getSync: the
 * memtable, or an SST's Bloom filter and a cached block), a few microseconds each. A larger block's ids
 * go to the thread pool in one getMany, which costs a hand-off and a wake-up each way (about 0.8 ms on
 * this machine's loaded cores, more than the reads) but keeps a long lookup off the event loop.
 */
export const SYNC_LOOKUP_MAX = 64;

export const APP_FRAME_TAG = 0xb1;
const SIG = 1;
const SIG_REQ = 2;
const SIG_FRAME_BYTES = 2 + 8 + HASH_BYTES + SIGNATURE_BYTES;

export class LedgerError extends Error {
  override readonly name = "LedgerError";
  constructor(
    readonly code: "GENESIS_MISMATCH" | "CORRUPT" | "GAP",
    message: string,
  ) {
    super(message);
  }
}

export const blockKey = (n: number): string => BLOCK + n.toString().padStart(16, "0");
const certKey = (n: number): string => CERT + n.toString().padStart(16, "0");

export interface LedgerOptions {
  readonly db: Level<string, Uint8Array>;
  /** Canonical bytes of the cluster configuration: the genesis block's only entry. */
  readonly genesisConfig: Uint8Array;
  readonly self: number;
  readonly n: number;
  /** Signatures a block needs to be certified (the commit quorum). */
  readonly quorum: number;
  readonly replicaKeys: readonly Uint8Array[];
  readonly hash: HashFn;
  readonly verify: VerifyFn;
  /** Signs a header hash with this replica's ed25519 key. */
  readonly sign: (hh: Uint8Array) => Uint8Array;
  /** Sends an app frame to one peer, or to every peer. */
  readonly send: (to: number | "all", frame: Uint8Array) => void;
  readonly sync?: boolean;
  readonly now?: () => number;
  /**
   * The entries an executed request carries (default: its op, one entry); null when the op is malformed
   * and carries none. A gateway's request carries a batch of transactions (tx-batch.ts).
   */
  readonly entriesOf?: (op: Uint8Array, clientId: string) => readonly Uint8Array[] | null;
  /** An entry is kept only if this accepts it (coordination entries of the wrong client). */
  readonly acceptEntry?: (entry: Uint8Array, clientId: string) => boolean;
}

/** Where a transaction is in the chain. */
export interface TxLocation {
  readonly number: number;
  readonly position: number;
}

/** A block this replica wrote, as announced to listeners once certified. */
export interface CertifiedBlock {
  readonly block: Block;
  readonly headerHash: Uint8Array;
  /** Tx ids of the entries, in order. */
  readonly txIds: readonly string[];
  /** Tx ids in the batch's executed requests that are not entries (already in the chain, or refused). */
  readonly skipped: readonly string[];
}

interface Built extends CertifiedBlock {
  readonly batchClients: readonly { clientId: string; reqNo: number }[];
}

interface Pending {
  /** Valid signatures over our header hash. */
  readonly sigs: Map<number, Uint8Array>;
  readonly builtAtMs: number;
}

export class Ledger {
  private readonly o: LedgerOptions;
  private readonly now: () => number;
  private heightN = 0;
  private headHashV: Uint8Array = new Uint8Array(HASH_BYTES);
  private certifiedN = 0;
  /** Built blocks not yet certified, by number. */
  private readonly pending = new Map<number, Pending & { hh: Uint8Array }>();
  /** Certificates complete but not contiguous with certifiedN yet. */
  private readonly certifiedAhead = new Set<number>();
  /** Our signatures over blocks being written, sent already (writing()). */
  private readonly signedAhead = new Map<number, Uint8Array>();
  /** Peer signatures for blocks we have not built yet. */
  private readonly early = new Map<number, Map<number, { hh: Uint8Array; sig: Uint8Array }>>();
  private readonly cache = new Map<
    number,
    { block: Block; hh: Uint8Array; bytes: number; proofs?: MerkleProof[] }
  >();
  private cacheBytes = 0;
  /** Merkle trees of the latest blocks built here: receipts' proofs come from them without hashing again. */
  private readonly trees = new Map<number, ReturnType<typeof merkleTree>>();
  private readonly builtInfo = new Map<number, Built>();
  /** Certificates completed and not yet durable (c/ being written): readers must see them. */
  private readonly freshCerts = new Map<number, CertSig[]>();
  private readonly certListeners = new Set<(b: CertifiedBlock) => void>();
  private readonly builtListeners = new Set<(b: Built) => void>();
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
  /** Resolvers waiting for a block number to be certified, by number. */
  private readonly heightWaiters = new Map<number, (() => void)[]>();
  private readonly progressListeners = new Set<(certifiedHeight: number) => void>();
  readonly stats = {
    badSigs: 0,
    lateSigs: 0,
    sigRequestsServed: 0,
    badSyncFrames: 0,
    blocksServed: 0,
    serveErrors: 0,
  };
  /** Tag of the ledger's frames between replicas (HostApp). */
  readonly frameTag = APP_FRAME_TAG;
  /** Fetches certified blocks from peers when this replica's core jumped past what it built. */
  readonly sync: BlockSync;
  /** Peers whose block request is being served (one at a time each). */
  private readonly serving = new Set<number>();

  private constructor(o: LedgerOptions) {
    this.o = o;
    this.now = o.now ?? Date.now;
    this.sync = new BlockSync({
      self: o.self,
      n: o.n,
      frameTag: APP_FRAME_TAG,
      verify: { replicaKeys: o.replicaKeys, quorum: o.quorum, hash: o.hash, verify: o.verify },
      send: (to, frame) => o.send(to, frame),
      head: () => ({ height: this.heightN, headHash: this.headHashV }),
      now: this.now,
    });
  }

  /** Opens the ledger, writing genesis on first use; refuses a database from another cluster. */
  static async open(o: LedgerOptions): Promise<Ledger> {
    const l = new Ledger(o);
    const head = await l.get(HEAD);
    if (head === undefined) {
      const g = genesisBlock(o.genesisConfig, o.hash);
      const hh = headerHash(g.header, o.hash);
      await writeBatch(
        o.db,
        [
          { type: "put", key: blockKey(0), value: encodeBlock(g) },
          { type: "put", key: HEAD, value: serialize([1, hh]) },
          { type: "put", key: CERTIFIED, value: serialize(0) },
        ],
        o.sync ?? true,
      );
      l.heightN = 1;
      l.headHashV = hh;
    } else {
      const [height, hh] = head as [number, Uint8Array];
      if (!Number.isSafeInteger(height) || !(hh instanceof Uint8Array))
        throw new LedgerError("CORRUPT", "bad chain head");
      l.heightN = height;
      l.headHashV = hh;
      const g = await l.readBlock(0);
      if (!g || !bytesEq(g.entries[0] ?? new Uint8Array(0), o.genesisConfig))
        throw new LedgerError(
          "GENESIS_MISMATCH",
          "the data directory holds the chain of another cluster configuration",
        );
    }
    const certified = (await l.get(CERTIFIED)) as number | undefined;
    l.certifiedN = typeof certified === "number" ? certified : 0;
    // Blocks written but not certified before a restart: collect signatures again.
    for (let n = l.certifiedN; n < l.heightN; n++) {
      if ((await l.get(certKey(n))) !== undefined) {
        l.certifiedAhead.add(n);
        continue;
      }
      const b = await l.readBlock(n);
      if (!b) throw new LedgerError("CORRUPT", `block ${n} is missing below the head ${l.heightN}`);
      const hh = headerHash(b.header, o.hash);
      l.startCollecting(n, hh, o.sign(hh));
    }
    l.advanceCertified();
    return l;
  }

  /** Number of blocks (the next block's number). */
  get height(): number {
    return this.heightN;
  }

  get headHash(): Uint8Array {
    return this.headHashV;
  }

  /** Every block below this number holds a certificate. */
  get certifiedHeight(): number {
    return this.certifiedN;
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

  /** Called when a block is durable (before its certificate), with the clients whose requests it holds. */
  onBuilt(fn: (b: Built) => void): () => void {
    this.builtListeners.add(fn);
    return () => this.builtListeners.delete(fn);
  }

  // ------------------------------------------------------------------ writing (driven by the host)

  /**
   * Turns committed batches into block writes for the host's atomic batch. Entries are the executed
   * requests' payloads, minus transactions already in the chain (a tx id appears once in a chain).
   * Batches already in the chain (replayed after a restart) are skipped.
   */
  async prepare(commits: readonly CommittedBatch[]): Promise<{ ops: RawOp[]; built: Built[] }> {
    const ops: RawOp[] = [];
    const built: Built[] = [];
    const fresh = commits.filter((c) => c.seq >= this.heightN);
    if (fresh.length === 0) {
      this.riding.push([]);
      return { ops, built };
    }
    this.riding.push(this.takeDeferred(ops));
    // Every executed request's entries, with their ids (skipped requests carry none).
    const split = fresh.map((c) =>
      c.batch.requests.map((r, i) => {
        if (!c.executed[i]) return [];
        const es = this.o.entriesOf ? (this.o.entriesOf(r.op, r.clientId) ?? []) : [r.op];
        return es.map((e) => ({
          e,
          id: txId(e, this.o.hash),
          ok: this.o.acceptEntry?.(e, r.clientId) ?? true,
        }));
      }),
    );
    const known = await this.lookUp(split.flat(2).map((x) => TX + x.id));
    let k = 0;
    const inThisWrite = new Set<string>();
    for (let ci = 0; ci < fresh.length; ci++) {
      const c = fresh[ci]!;
      if (c.seq !== this.heightN)
        throw new LedgerError("GAP", `batch ${c.seq} committed but the chain ends at ${this.heightN - 1}`);
      const entries: Uint8Array[] = [];
      const txIds: string[] = [];
      const skipped: string[] = [];
      for (const req of split[ci]!)
        for (const { e, id, ok } of req) {
          const inChain = known[k++] !== undefined || inThisWrite.has(id);
          if (inChain || !ok) {
            skipped.push(id);
            continue;
          }
          inThisWrite.add(id);
          ops.push({ type: "put", key: TX + id, value: encodeTxLocation(c.seq, entries.length) });
          entries.push(e);
          txIds.push(id);
        }
      const tree = merkleTree(entries, this.o.hash);
      this.trees.set(c.seq, tree);
      if (this.trees.size > TREES_KEPT) this.trees.delete(this.trees.keys().next().value as number);
      const header = {
        number: c.seq,
        previousHash: this.headHashV,
        dataHash: tree.root,
      };
      const hh = headerHash(header, this.o.hash);
      const block: Block = {
        header,
        entries,
        metadata: { view: c.view, seq: c.seq, commitTimeMs: this.now(), certificate: [] },
      };
      ops.push({ type: "put", key: blockKey(c.seq), value: encodeBlock(block) });
      this.heightN = c.seq + 1;
      this.headHashV = hh;
      ops.push({ type: "put", key: HEAD, value: serialize([this.heightN, hh]) });
      built.push({
        block,
        headerHash: hh,
        txIds,
        skipped,
        batchClients: c.batch.requests.map((r) => ({ clientId: r.clientId, reqNo: r.reqNo })),
      });
    }
    return { ops, built };
  }

  /**
   * Writes for certified blocks fetched from peers (verified by BlockSync against this chain's head):
   * the blocks with their certificates and tx index, for the host's atomic batch.
   */
  prepareSynced(blocks: readonly Block[]): { ops: RawOp[]; built: Built[] } {
    const ops: RawOp[] = [];
    const built: Built[] = [];
    for (const block of blocks) {
      const n = block.header.number;
      if (n !== this.heightN)
        throw new LedgerError("GAP", `fetched block ${n} but the chain ends at ${this.heightN - 1}`);
      const hh = headerHash(block.header, this.o.hash);
      const txIds = block.entries.map((e) => txId(e, this.o.hash));
      txIds.forEach((id, i) => {
        ops.push({ type: "put", key: TX + id, value: encodeTxLocation(n, i) });
      });
      ops.push({ type: "put", key: blockKey(n), value: encodeBlock(block) });
      const cert = block.metadata.certificate;
      ops.push({ type: "put", key: certKey(n), value: serialize(cert.map((s) => [s.replica, s.sig])) });
      this.heightN = n + 1;
      this.headHashV = hh;
      built.push({ block, headerHash: hh, txIds, skipped: [], batchClients: [] });
    }
    if (built.length > 0)
      ops.push({ type: "put", key: HEAD, value: serialize([this.heightN, this.headHashV]) });
    return { ops, built };
  }

  /** The writes of prepareSynced() are durable: the blocks count as certified. */
  writtenSynced(built: readonly Built[]): void {
    for (const b of built) {
      const n = b.block.header.number;
      this.remember(n, b.block, b.headerHash);
      this.builtInfo.set(n, b);
      this.early.delete(n);
      this.certifiedAhead.add(n);
    }
    this.advanceCertified();
  }

  /**
   * The writes of prepare() are on their way to the disk: sign the blocks and send the signatures now,
   * so that the peers' signing round overlaps our write. A signature does not make a block count as
   * certified here: that waits for the write (written()). After a crash before the write, the same
   * batches build the same headers again (execution is deterministic), so a signature sent stays the
   * one this replica gives for that height.
   */
  writing(built: readonly Built[]): void {
    for (const b of built) {
      const n = b.block.header.number;
      const sig = this.o.sign(b.headerHash);
      this.signedAhead.set(n, sig);
      this.o.send("all", sigFrame(SIG, n, b.headerHash, sig));
    }
  }

  /** The writes of prepare() are durable: collect the peers' signatures (ours went out at writing()). */
  written(built: readonly Built[]): void {
    for (const n of this.riding.shift() ?? []) this.freshCerts.delete(n);
    for (const b of built) {
      const n = b.block.header.number;
      this.remember(n, b.block, b.headerHash);
      this.builtInfo.set(n, b);
      for (const fn of this.builtListeners) fn(b);
      let sig = this.signedAhead.get(n);
      this.signedAhead.delete(n);
      if (sig === undefined) {
        sig = this.o.sign(b.headerHash);
        this.o.send("all", sigFrame(SIG, n, b.headerHash, sig));
      }
      this.startCollecting(n, b.headerHash, sig);
    }
  }

  private startCollecting(n: number, hh: Uint8Array, sig: Uint8Array): void {
    const p = { sigs: new Map([[this.o.self, sig]]), builtAtMs: this.now(), hh };
    this.pending.set(n, p);
    const early = this.early.get(n);
    this.early.delete(n);
    // Only until the quorum is in: a signature beyond it would be verified for nothing.
    if (early) for (const [from, s] of early) if (this.pending.has(n)) this.addSig(n, p, from, s.hh, s.sig);
    this.maybeCertified(n, p);
  }

  // ------------------------------------------------------------------ signatures from peers

  /** An app frame from a peer (already authenticated as `from` by the transport). */
  /** Returns true for fetched blocks that wait to be appended (the host then runs its catch-up). */
  onPeerFrame(from: number, frame: Uint8Array): boolean {
    if (
      (frame[1] === BLOCKS_REQ || frame[1] === BLOCKS) &&
      frame[0] === APP_FRAME_TAG &&
      from !== this.o.self
    ) {
      return this.onSyncFrame(from, frame);
    }
    this.onSigFrame(from, frame);
    return false;
  }

  private onSigFrame(from: number, frame: Uint8Array): void {
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
    const c = this.cache.get(n);
    if (c) c.block = withCert(c.block, cert);
    const info = this.builtInfo.get(n);
    if (info) this.builtInfo.set(n, { ...info, block: withCert(info.block, cert) });
    // The block counts as certified at once, not when its certificate's write lands: readers find the
    // certificate in freshCerts until then. The put is deferred (see defer()), and the certified height
    // that advanceCertified() puts goes after it in the same order, so the disk never holds a certified
    // height above the certificates it has.
    this.freshCerts.set(n, cert);
    this.defer({ type: "put", key: certKey(n), value: serialize(cert.map((s) => [s.replica, s.sig])) }, n);
    this.certifiedAhead.add(n);
    this.advanceCertified();
  }

  private advanceCertified(): void {
    const before = this.certifiedN;
    while (this.certifiedAhead.delete(this.certifiedN)) this.certifiedN++;
    if (this.certifiedN === before) return;
    this.defer({ type: "put", key: CERTIFIED, value: serialize(this.certifiedN) });
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

  private onSyncFrame(from: number, frame: Uint8Array): boolean {
    let f: ReturnType<typeof decodeSyncFrame>;
    try {
      f = decodeSyncFrame(frame);
    } catch (err) {
      if (!(err instanceof SyncFrameError)) throw err;
      this.stats.badSyncFrames++;
      return false;
    }
    if (f.kind === BLOCKS) {
      this.sync.onBlocks(from, f.from, f.blocks);
      return true;
    }
    this.serveBlocks(from, f.from, f.count).catch(() => {
      this.stats.serveErrors++; // a block that does not read back: the peer asks another replica
    });
    return false;
  }

  /** Certified blocks from..(at most count) for a peer catching up; one request per peer at a time. */
  private async serveBlocks(to: number, from: number, count: number): Promise<void> {
    if (this.serving.has(to) || from < 1 || from >= this.certifiedN) return;
    this.serving.add(to);
    try {
      const end = Math.min(from + Math.min(count, SYNC_BLOCKS_MAX), this.certifiedN);
      const blocks: Block[] = [];
      let bytes = 0;
      for (let n = from; n < end && (blocks.length === 0 || bytes < SYNC_REPLY_BYTES); n++) {
        const b = await this.getBlock(n);
        if (!b || b.metadata.certificate.length < this.o.quorum) break;
        blocks.push(b);
        for (const e of b.entries) bytes += e.length + 4;
      }
      if (blocks.length === 0) return;
      this.stats.blocksServed += blocks.length;
      this.o.send(to, encodeBlocks(APP_FRAME_TAG, from, blocks));
    } finally {
      this.serving.delete(to);
    }
  }

  /** A peer asks for our signature of block n: sign again (ed25519 is deterministic: the same bytes). */
  private async answer(to: number, n: number): Promise<void> {
    const hh = this.pending.get(n)?.hh ?? this.cache.get(n)?.hh ?? (await this.headerOf(n));
    if (!hh) return;
    this.stats.sigRequestsServed++;
    this.o.send(to, sigFrame(SIG, n, hh, this.o.sign(hh)));
  }

  private async headerOf(n: number): Promise<Uint8Array | undefined> {
    const b = await this.readBlock(n);
    return b ? headerHash(b.header, this.o.hash) : undefined;
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

  // ------------------------------------------------------------------ reading

  /** A block with its certificate as far as collected (complete below certifiedHeight). */
  async getBlock(n: number): Promise<Block | undefined> {
    if (!Number.isSafeInteger(n) || n < 0 || n >= this.heightN) return undefined;
    const c = this.cache.get(n);
    if (c) return c.block;
    // Taken before reading: a certificate written (and dropped from freshCerts) during the reads is
    // then found by one or the other.
    const fresh = this.freshCerts.get(n);
    const b = await this.readBlock(n);
    if (!b) return undefined;
    const raw = (await this.get(certKey(n))) as [number, Uint8Array][] | undefined;
    const cert = raw
      ? raw.map(([replica, sig]) => ({ replica, sig }))
      : (fresh ?? this.freshCerts.get(n) ?? []);
    const full = withCert(b, cert);
    // Cache only complete blocks: a certificate completing meanwhile must not be hidden by a stale copy.
    const cached = this.cache.get(n);
    if (cached) return cached.block;
    if (cert.length >= this.o.quorum) this.remember(n, full, headerHash(b.header, this.o.hash));
    return full;
  }

  /** The values of `keys`, read in place when they are few (SYNC_LOOKUP_MAX). */
  private lookUp(keys: string[]): (Uint8Array | undefined)[] | Promise<(Uint8Array | undefined)[]> {
    const { db } = this.o;
    if (keys.length > SYNC_LOOKUP_MAX || !(db.supports as { getSync?: boolean }).getSync)
      return db.getMany(keys);
    return keys.map((k) => db.getSync(k));
  }

  /**
   * Where a transaction is in the chain. Lookups asked for in the same turn of the event loop go to the
   * database together (one getMany): a gateway under load asks for every submission.
   */
  findTx(id: string): Promise<TxLocation | undefined> {
    if (!/^[0-9a-f]{64}$/.test(id)) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      this.lookups.push({ id, resolve, reject });
      if (this.lookups.length === 1) setImmediate(() => this.runLookups());
    });
  }

  private lookups: {
    id: string;
    resolve: (l: TxLocation | undefined) => void;
    reject: (e: Error) => void;
  }[] = [];

  private runLookups(): void {
    const batch = this.lookups;
    this.lookups = [];
    this.o.db.getMany(batch.map((l) => TX + l.id)).then(
      (values) => {
        batch.forEach((l, i) => {
          const v = values[i];
          try {
            l.resolve(v === undefined ? undefined : decodeTxLocation(v, l.id));
          } catch (err) {
            l.reject(err as Error);
          }
        });
      },
      (err: Error) => {
        for (const l of batch) l.reject(err);
      },
    );
  }

  /** The Merkle proof of entry `position` of block `n` (computed once per block). */
  async proof(n: number, position: number): Promise<MerkleProof | undefined> {
    const b = await this.getBlock(n);
    if (!b || position < 0 || position >= b.entries.length) return undefined;
    const c = this.cache.get(n);
    if (c?.proofs) return c.proofs[position];
    // A block too large for the cache keeps its tree (hashes only) until TREES_KEPT newer ones.
    const tree = this.trees.get(n);
    const proofs = tree ? tree.proofs() : merkleProofs(b.entries, this.o.hash);
    if (c) {
      this.trees.delete(n);
      c.proofs = proofs;
    }
    return proofs[position];
  }

  headerHashOf(n: number): Uint8Array | undefined {
    return this.cache.get(n)?.hh;
  }

  private remember(n: number, block: Block, hh: Uint8Array): void {
    let bytes = 0;
    for (const e of block.entries) bytes += e.length;
    if (bytes > BLOCK_CACHE_BYTES / 4) return;
    const old = this.cache.get(n);
    if (old) this.cacheBytes -= old.bytes;
    this.cache.set(n, { block, hh, bytes });
    this.cacheBytes += bytes;
    while (this.cache.size > BLOCK_CACHE_MAX || this.cacheBytes > BLOCK_CACHE_BYTES) {
      const oldest = this.cache.entries().next();
      if (oldest.done) break;
      this.cache.delete(oldest.value[0]);
      this.cacheBytes -= oldest.value[1].bytes;
    }
  }

  private async readBlock(n: number): Promise<Block | undefined> {
    const v = await this.o.db.get(blockKey(n));
    return v === undefined ? undefined : decodeBlock(v, n);
  }

  private async get(key: string): Promise<unknown> {
    const v = await this.o.db.get(key);
    if (v === undefined) return undefined;
    try {
      return deserialize(v);
    } catch (err) {
      throw new LedgerError("CORRUPT", `corrupt value at ${key}: ${(err as Error).message}`);
    }
  }

  /**
   * Certificates and the certified height, in order, without an fsync of their own: both can be rebuilt
   * (a restart collects the signatures of uncertified blocks again, `open`), and the next synced batch
   * (the next block) makes them durable with it.
   */
  private write(ops: RawOp[]): Promise<void> {
    this.writesInFlight++;
    const next = this.writes
      .then(() => writeBatch(this.o.db, ops, false))
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

/** A tx index value: block number (u64) and position (u32), big-endian. */
function encodeTxLocation(n: number, position: number): Uint8Array {
  // Byte by byte: a DataView would need `.buffer`, which moves this small array off the heap (one per
  // transaction on every replica).
  const out = new Uint8Array(12);
  putU32(out, 0, Math.floor(n / 0x1_0000_0000));
  putU32(out, 4, n >>> 0);
  putU32(out, 8, position);
  return out;
}

function putU32(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 24;
  out[at + 1] = (v >>> 16) & 0xff;
  out[at + 2] = (v >>> 8) & 0xff;
  out[at + 3] = v & 0xff;
}

/** Reads a tx index value: 12 bytes, or the v8-serialized [number, position] of earlier versions. */
function decodeTxLocation(v: Uint8Array, id: string): TxLocation {
  if (v.length === 12 && v[0] !== 0xff) {
    const dv = new DataView(v.buffer, v.byteOffset, 12);
    return { number: dv.getUint32(0) * 0x1_0000_0000 + dv.getUint32(4), position: dv.getUint32(8) };
  }
  let old: unknown;
  try {
    old = deserialize(v);
  } catch {
    old = undefined;
  }
  if (!Array.isArray(old) || !Number.isSafeInteger(old[0]) || !Number.isSafeInteger(old[1]))
    throw new LedgerError("CORRUPT", `unreadable tx index entry for ${id}`);
  return { number: old[0] as number, position: old[1] as number };
}

function withCert(b: Block, certificate: readonly CertSig[]): Block {
  return { ...b, metadata: { ...b.metadata, certificate } };
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

function encodeBlock(b: Block): Uint8Array {
  const h = b.header;
  const m = b.metadata;
  return serialize([h.number, h.previousHash, h.dataHash, b.entries, m.view, m.seq, m.commitTimeMs]);
}

function decodeBlock(v: Uint8Array, n: number): Block {
  try {
    const [number, previousHash, dataHash, entries, view, seq, commitTimeMs] = deserialize(v) as [
      number,
      Uint8Array,
      Uint8Array,
      Uint8Array[],
      number,
      number,
      number,
    ];
    if (number !== n || !(previousHash instanceof Uint8Array) || !Array.isArray(entries))
      throw new Error("shape");
    return {
      header: { number, previousHash, dataHash },
      entries,
      metadata: { view, seq, commitTimeMs, certificate: [] },
    };
  } catch (err) {
    throw new LedgerError("CORRUPT", `block ${n} does not decode: ${(err as Error).message}`);
  }
}
