// The hash-chained ledger of one replica, in LevelDB: every committed batch becomes one block, written
// in the same atomic batch as the core's state for that Ready (so a crash can never leave the chain
// behind the replica's own state); then the replica signs the block's header hash and exchanges
// signatures with its peers until the block holds a commit certificate.
//
// Beside it: ledger-store.ts (keys and values in LevelDB), tx-index.ts, block-cache.ts (recent blocks and
// their Merkle proofs), certification.ts (the signature exchange) and cert-writes.ts (certificate writes).

import { serialize } from "node:v8";
import type { Level } from "level";
import type { CommittedBatch } from "../bft/types.ts";
import { type RawOp, writeBatch } from "../storage/level-store.ts";
import { withDefaults } from "../util/defaults.ts";
import {
  type Block,
  bytesEq,
  genesisBlock,
  HASH_BYTES,
  type HashFn,
  headerHash,
  type MerkleProof,
  merkleTree,
  txId,
  type VerifyFn,
} from "./block.ts";
import { BlockCache, withCert } from "./block-cache.ts";
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
import { CertWrites } from "./cert-writes.ts";
import { APP_FRAME_TAG, type Built, Certification, type CertifiedBlock } from "./certification.ts";
import {
  blockKey,
  CERTIFIED,
  certKey,
  encodeBlock,
  encodeCert,
  HEAD,
  LedgerError,
  readBlock,
  readValue,
} from "./ledger-store.ts";
import { encodeTxLocation, TxIndex, type TxLocation, txKey } from "./tx-index.ts";

export { BLOCK_CACHE_BYTES, BLOCK_CACHE_MAX } from "./block-cache.ts";
export { DEFER_MS } from "./cert-writes.ts";
export type { CertifiedBlock } from "./certification.ts";
export { APP_FRAME_TAG, SIG_AHEAD_MAX, SIG_RETRY_MAX } from "./certification.ts";
export { blockKey, LedgerError } from "./ledger-store.ts";
export type { TxLocation } from "./tx-index.ts";
export { SYNC_LOOKUP_MAX } from "./tx-index.ts";

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
  /** fsync every write batch (default true). */
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

/** The ledger's option defaults: the one place they are written. */
export const LEDGER_DEFAULTS = Object.freeze({ sync: true }) satisfies Partial<LedgerOptions>;

export class Ledger {
  private readonly o: LedgerOptions;
  private readonly now: () => number;
  private heightN = 0;
  private headHashV: Uint8Array = new Uint8Array(HASH_BYTES);
  private readonly cache = new BlockCache();
  /** Certificate and certified-height puts, deferred to ride in block batches. */
  private readonly writes: CertWrites;
  private readonly txIndex: TxIndex;
  /** Signatures exchanged with the peers until blocks are certified; the certified height. */
  private readonly certification: Certification;
  private readonly builtListeners = new Set<(b: Built) => void>();
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
    this.writes = new CertWrites(o.db);
    this.txIndex = new TxIndex(o.db);
    this.certification = new Certification({
      o,
      now: this.now,
      stats: this.stats,
      cache: this.cache,
      writes: this.writes,
      height: () => this.heightN,
      headerOf: (n) => this.headerOf(n),
    });
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
  static async open(options: LedgerOptions): Promise<Ledger> {
    const o = withDefaults(LEDGER_DEFAULTS, options);
    const l = new Ledger(o);
    const head = await readValue(o.db, HEAD);
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
        o.sync,
      );
      l.heightN = 1;
      l.headHashV = hh;
    } else {
      const [height, hh] = head as [number, Uint8Array];
      if (!Number.isSafeInteger(height) || !(hh instanceof Uint8Array))
        throw new LedgerError("CORRUPT", "bad chain head");
      l.heightN = height;
      l.headHashV = hh;
      const g = await readBlock(o.db, 0);
      if (!g || !bytesEq(g.entries[0] ?? new Uint8Array(0), o.genesisConfig))
        throw new LedgerError(
          "GENESIS_MISMATCH",
          "the data directory holds the chain of another cluster configuration",
        );
    }
    const certified = (await readValue(o.db, CERTIFIED)) as number | undefined;
    l.certification.restore(typeof certified === "number" ? certified : 0);
    // Blocks written but not certified before a restart: collect signatures again.
    for (let n = l.certification.height; n < l.heightN; n++) {
      if ((await readValue(o.db, certKey(n))) !== undefined) {
        l.certification.certifiedAlready(n);
        continue;
      }
      const b = await readBlock(o.db, n);
      if (!b) throw new LedgerError("CORRUPT", `block ${n} is missing below the head ${l.heightN}`);
      const hh = headerHash(b.header, o.hash);
      l.certification.startCollecting(n, hh, o.sign(hh));
    }
    l.certification.advanceCertified();
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
    return this.certification.height;
  }

  /** Resolves once block n is certified (every block up to it is); false on timeout. */
  waitCertified(n: number, timeoutMs: number): Promise<boolean> {
    return this.certification.waitCertified(n, timeoutMs);
  }

  /** Called whenever the certified height grows. */
  onProgress(fn: (certifiedHeight: number) => void): () => void {
    return this.certification.onProgress(fn);
  }

  onCertified(fn: (b: CertifiedBlock) => void): () => void {
    return this.certification.onCertified(fn);
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
      this.writes.carry(null);
      return { ops, built };
    }
    this.writes.carry(ops);
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
    const known = await this.txIndex.lookUp(split.flat(2).map((x) => txKey(x.id)));
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
          ops.push({ type: "put", key: txKey(id), value: encodeTxLocation(c.seq, entries.length) });
          entries.push(e);
          txIds.push(id);
        }
      const tree = merkleTree(entries, this.o.hash);
      this.cache.keepTree(c.seq, tree);
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
        ops.push({ type: "put", key: txKey(id), value: encodeTxLocation(n, i) });
      });
      ops.push({ type: "put", key: blockKey(n), value: encodeBlock(block) });
      const cert = block.metadata.certificate;
      ops.push({ type: "put", key: certKey(n), value: encodeCert(cert) });
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
      this.cache.remember(b.block.header.number, b.block, b.headerHash);
      this.certification.synced(b);
    }
    this.certification.advanceCertified();
  }

  /**
   * The writes of prepare() are on their way to the disk: sign the blocks and send the signatures now,
   * so that the peers' signing round overlaps our write. A signature does not make a block count as
   * certified here: that waits for the write (written()). After a crash before the write, the same
   * batches build the same headers again (execution is deterministic), so a signature sent stays the
   * one this replica gives for that height.
   */
  writing(built: readonly Built[]): void {
    this.certification.writing(built);
  }

  /** The writes of prepare() are durable: collect the peers' signatures (ours went out at writing()). */
  written(built: readonly Built[]): void {
    this.writes.landed();
    for (const b of built) {
      this.cache.remember(b.block.header.number, b.block, b.headerHash);
      this.certification.built(b);
      for (const fn of this.builtListeners) fn(b);
      this.certification.collect(b);
    }
  }

  // ------------------------------------------------------------------ frames from peers

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
    this.certification.onSigFrame(from, frame);
    return false;
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
    if (this.serving.has(to) || from < 1 || from >= this.certification.height) return;
    this.serving.add(to);
    try {
      const end = Math.min(from + Math.min(count, SYNC_BLOCKS_MAX), this.certification.height);
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

  private async headerOf(n: number): Promise<Uint8Array | undefined> {
    const b = await readBlock(this.o.db, n);
    return b ? headerHash(b.header, this.o.hash) : undefined;
  }

  /** Periodically: ask peers again for signatures of blocks that are still uncertified. */
  retry(olderThanMs: number): number {
    return this.certification.retry(olderThanMs);
  }

  // ------------------------------------------------------------------ reading

  /** A block with its certificate as far as collected (complete below certifiedHeight). */
  async getBlock(n: number): Promise<Block | undefined> {
    if (!Number.isSafeInteger(n) || n < 0 || n >= this.heightN) return undefined;
    const c = this.cache.get(n);
    if (c) return c.block;
    // Taken before reading: a certificate written (and dropped from writes.fresh) during the reads is
    // then found by one or the other.
    const fresh = this.writes.fresh(n);
    const b = await readBlock(this.o.db, n);
    if (!b) return undefined;
    const raw = (await readValue(this.o.db, certKey(n))) as [number, Uint8Array][] | undefined;
    const cert = raw
      ? raw.map(([replica, sig]) => ({ replica, sig }))
      : (fresh ?? this.writes.fresh(n) ?? []);
    const full = withCert(b, cert);
    // Cache only complete blocks: a certificate completing meanwhile must not be hidden by a stale copy.
    const cached = this.cache.get(n);
    if (cached) return cached.block;
    if (cert.length >= this.o.quorum) this.cache.remember(n, full, headerHash(b.header, this.o.hash));
    return full;
  }

  /**
   * Where a transaction is in the chain. Lookups asked for in the same turn of the event loop go to the
   * database together (one getMany): a gateway under load asks for every submission.
   */
  findTx(id: string): Promise<TxLocation | undefined> {
    return this.txIndex.find(id);
  }

  /** The Merkle proof of entry `position` of block `n` (computed once per block). */
  async proof(n: number, position: number): Promise<MerkleProof | undefined> {
    const b = await this.getBlock(n);
    if (!b || position < 0 || position >= b.entries.length) return undefined;
    return this.cache.proofs(n, b, this.o.hash)[position];
  }

  headerHashOf(n: number): Uint8Array | undefined {
    return this.cache.get(n)?.hh;
  }

  /** Writes what is deferred and waits for pending certificate writes (for a clean shutdown). */
  flush(): Promise<void> {
    return this.writes.flush();
  }
}
