// The ledger's recent blocks kept decoded in memory (receipts and deliver read them), with their header
// hashes and, once asked for, their entries' Merkle proofs; and the Merkle trees of the latest blocks
// built here, so that a receipt's proof does not hash the block again.

import {
  type Block,
  type CertSig,
  type HashFn,
  type MerkleProof,
  merkleProofs,
  type merkleTree,
} from "./block.ts";

/** Blocks kept decoded in memory (recent ones: receipts and deliver read them)... */
export const BLOCK_CACHE_MAX = 512;
/** ...and their entries' bytes at most this many: large blocks are read from LevelDB again when needed. */
export const BLOCK_CACHE_BYTES = 16 * 1024 * 1024;
/** Merkle trees kept for receipts' proofs (the latest blocks built here; older ones are built again). */
const TREES_KEPT = 64;

export interface CachedBlock {
  block: Block;
  readonly hh: Uint8Array;
  readonly bytes: number;
  proofs?: MerkleProof[];
}

export class BlockCache {
  private readonly blocks = new Map<number, CachedBlock>();
  private bytes = 0;
  /** Merkle trees of the latest blocks built here: receipts' proofs come from them without hashing again. */
  private readonly trees = new Map<number, ReturnType<typeof merkleTree>>();

  get(n: number): CachedBlock | undefined {
    return this.blocks.get(n);
  }

  remember(n: number, block: Block, hh: Uint8Array): void {
    let bytes = 0;
    for (const e of block.entries) bytes += e.length;
    if (bytes > BLOCK_CACHE_BYTES / 4) return;
    const old = this.blocks.get(n);
    if (old) this.bytes -= old.bytes;
    this.blocks.set(n, { block, hh, bytes });
    this.bytes += bytes;
    while (this.blocks.size > BLOCK_CACHE_MAX || this.bytes > BLOCK_CACHE_BYTES) {
      const oldest = this.blocks.entries().next();
      if (oldest.done) break;
      this.blocks.delete(oldest.value[0]);
      this.bytes -= oldest.value[1].bytes;
    }
  }

  /** Block n's certificate completed: a cached copy carries it from now on. */
  certify(n: number, cert: readonly CertSig[]): void {
    const c = this.blocks.get(n);
    if (c) c.block = withCert(c.block, cert);
  }

  /** Keeps the tree of a block built here (the latest TREES_KEPT). */
  keepTree(n: number, tree: ReturnType<typeof merkleTree>): void {
    this.trees.set(n, tree);
    if (this.trees.size > TREES_KEPT) this.trees.delete(this.trees.keys().next().value as number);
  }

  /** The Merkle proofs of block n's entries, `b` (computed once per cached block). */
  proofs(n: number, b: Block, hash: HashFn): MerkleProof[] {
    const c = this.blocks.get(n);
    if (c?.proofs) return c.proofs;
    // A block too large for the cache keeps its tree (hashes only) until TREES_KEPT newer ones.
    const tree = this.trees.get(n);
    const proofs = tree ? tree.proofs() : merkleProofs(b.entries, hash);
    if (c) {
      this.trees.delete(n);
      c.proofs = proofs;
    }
    return proofs;
  }
}

export function withCert(b: Block, certificate: readonly CertSig[]): Block {
  return { ...b, metadata: { ...b.metadata, certificate } };
}
