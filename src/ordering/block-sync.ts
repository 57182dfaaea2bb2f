// Block catch-up between replicas. A replica whose core is offered a checkpoint snapshot (its peers no
// longer keep the batches it missed) fills its chain from the peers' ledgers: it asks one peer at a time
// for a range of certified blocks, checks each one like a client would (Merkle root, commit certificate,
// hash chain from its own head) and hands contiguous verified blocks to the ledger. A peer that answers
// with anything else, or not at all, is dropped for the next one. Nothing a peer sends is trusted.
//
// Frames (after the ledger's tag byte):
//   BLOCKS_REQ  kind=3  from u64, count u32
//   BLOCKS      kind=4  from u64, blocks: u32 count, then per block
//               number u64, previousHash, dataHash, entries (u32 count, byte strings), view u64, seq u64,
//               commitTimeMs u64, certificate (u32 count, then replica u32, signature)
// Byte strings are u32-length-prefixed.

import { ByteReader, ByteWriter } from "../bft/bytes.ts";
import { type WithDefaults, withDefaults } from "../util/defaults.ts";
import { OrdererError } from "../util/errors.ts";
import { type Block, BlockVerificationError, ChainVerifier, type VerifyOptions } from "./block.ts";

export const BLOCKS_REQ = 3;
export const BLOCKS = 4;
/** Blocks asked for per request (a reply may hold fewer). */
export const SYNC_BLOCKS_MAX = 64;
/** A reply stops adding blocks past this size (it always holds at least one). */
export const SYNC_REPLY_BYTES = 8 * 1024 * 1024;

export class SyncFrameError extends OrdererError {
  override readonly name = "SyncFrameError";
}

// ------------------------------------------------------------------ wire format

export function encodeBlocksRequest(tag: number, from: number, count: number): Uint8Array {
  return new ByteWriter(16).u8(tag).u8(BLOCKS_REQ).u64(from).u32(count).finish();
}

export function encodeBlocks(tag: number, from: number, blocks: readonly Block[]): Uint8Array {
  const w = new ByteWriter(1024).u8(tag).u8(BLOCKS).u64(from).u32(blocks.length);
  for (const b of blocks) {
    const h = b.header;
    const m = b.metadata;
    w.u64(h.number).bytes(h.previousHash).bytes(h.dataHash).u32(b.entries.length);
    for (const e of b.entries) w.bytes(e);
    w.u64(m.view).u64(m.seq).u64(m.commitTimeMs).u32(m.certificate.length);
    for (const s of m.certificate) w.u32(s.replica).bytes(s.sig);
  }
  return w.finish();
}

/** Decodes a BLOCKS_REQ or BLOCKS frame; throws SyncFrameError on anything malformed. */
export function decodeSyncFrame(
  frame: Uint8Array,
):
  | { kind: typeof BLOCKS_REQ; from: number; count: number }
  | { kind: typeof BLOCKS; from: number; blocks: Block[] } {
  const r = new ByteReader(frame, (code, msg) => new SyncFrameError(code, msg));
  r.u8();
  const kind = r.u8();
  const from = r.u64();
  if (kind === BLOCKS_REQ) {
    const count = r.u32();
    if (r.left !== 0) throw new SyncFrameError("TRAILING_BYTES", "bytes after the request");
    return { kind, from, count };
  }
  if (kind !== BLOCKS) throw new SyncFrameError("UNKNOWN_KIND", `sync frame kind ${kind}`);
  const blocks = r.list(8 + 4 + 4 + 4 + 24 + 4, (): Block => {
    const number = r.u64();
    const previousHash = r.bytes(64);
    const dataHash = r.bytes(64);
    const entries = r.list(4, () => r.bytes());
    const view = r.u64();
    const seq = r.u64();
    const commitTimeMs = r.u64();
    const certificate = r.list(8, () => ({ replica: r.u32(), sig: r.bytes(128) }));
    return {
      header: { number, previousHash, dataHash },
      entries,
      metadata: { view, seq, commitTimeMs, certificate },
    };
  });
  if (r.left !== 0) throw new SyncFrameError("TRAILING_BYTES", "bytes after the blocks");
  return { kind, from, blocks };
}

// ------------------------------------------------------------------ the fetching side

export interface BlockSyncOptions {
  readonly self: number;
  readonly n: number;
  readonly frameTag: number;
  readonly verify: VerifyOptions;
  readonly send: (to: number, frame: Uint8Array) => void;
  /** The chain this replica holds: next block number and the head's header hash. */
  readonly head: () => { height: number; headHash: Uint8Array };
  readonly now?: () => number;
  /** A peer that does not answer within this time is replaced by the next one (default 3 s). */
  readonly timeoutMs?: number;
}

/** Block sync's option defaults (see BlockSyncOptions): the one place they are written. */
export const BLOCK_SYNC_DEFAULTS = Object.freeze({ timeoutMs: 3000 }) satisfies Partial<BlockSyncOptions>;

/**
 * Fetches certified blocks up to a target from one peer at a time. Holds at most one verified range
 * (what one reply carried) until the ledger takes it.
 */
export class BlockSync {
  private readonly o: WithDefaults<BlockSyncOptions, typeof BLOCK_SYNC_DEFAULTS>;
  private readonly now: () => number;
  private target = -1;
  private peer: number;
  private asked: { peer: number; from: number; at: number } | null = null;
  private ready: Block[] | null = null;
  readonly stats = { requests: 0, blocks: 0, rejected: 0, timeouts: 0, unsolicited: 0 };
  /** The last reason a peer's reply was refused (for logs and tests). */
  lastRejection = "";

  constructor(o: BlockSyncOptions) {
    this.o = withDefaults(BLOCK_SYNC_DEFAULTS, o);
    this.now = o.now ?? Date.now;
    this.peer = (o.self + 1) % o.n;
  }

  /** Blocks up to `target` (inclusive) are wanted: asks for the next range unless a request is out. */
  want(target: number): void {
    if (target > this.target) this.target = target;
    const { height } = this.o.head();
    if (height > this.target || this.ready) return;
    if (this.asked && this.now() - this.asked.at < this.o.timeoutMs) return;
    if (this.asked) {
      this.stats.timeouts++;
      this.nextPeer();
    }
    const count = Math.min(SYNC_BLOCKS_MAX, this.target - height + 1);
    this.asked = { peer: this.peer, from: height, at: this.now() };
    this.stats.requests++;
    this.o.send(this.peer, encodeBlocksRequest(this.o.frameTag, height, count));
  }

  /** Takes the verified blocks that continue the chain (or undefined); the caller appends them. */
  take(): Block[] | undefined {
    const r = this.ready;
    this.ready = null;
    if (!r || r.length === 0) return undefined;
    // The chain moved meanwhile (the core committed blocks itself): the range no longer fits.
    if ((r[0] as Block).header.number !== this.o.head().height) return undefined;
    return r;
  }

  /** A BLOCKS reply from `from`. */
  onBlocks(from: number, start: number, blocks: readonly Block[]): void {
    const a = this.asked;
    if (!a || a.peer !== from || a.from !== start) {
      this.stats.unsolicited++;
      return;
    }
    this.asked = null;
    const head = this.o.head();
    if (head.height !== start) return; // stale: ask again from the new height
    const verifier = new ChainVerifier(this.o.verify, { number: start, previousHash: head.headHash });
    const good: Block[] = [];
    try {
      if (blocks.length === 0) throw new SyncFrameError("EMPTY", "the peer sent no block");
      for (const b of blocks) {
        if (b.header.number > this.target) break;
        verifier.next(b);
        good.push(b);
      }
    } catch (err) {
      this.stats.rejected++;
      this.lastRejection =
        err instanceof BlockVerificationError || err instanceof SyncFrameError
          ? `${err.code}: ${err.message}`
          : String(err);
      this.nextPeer();
      return;
    }
    this.stats.blocks += good.length;
    this.ready = good;
  }

  private nextPeer(): void {
    this.peer = (this.peer + 1) % this.o.n;
    if (this.peer === this.o.self) this.peer = (this.peer + 1) % this.o.n;
  }
}
