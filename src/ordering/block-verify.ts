// The block verifier clients run: one block on its own terms (shape, Merkle root, certificate) and a
// stream of blocks as a hash chain. Pure and browser-safe.

import { OrdererError } from "../util/errors.ts";
import type { Block, CertSig } from "./block.ts";
import {
  HASH_BYTES,
  type HashFn,
  headerHash,
  nobleHash,
  nobleVerify,
  SIGNATURE_BYTES,
  type VerifyFn,
  ZERO_HASH,
} from "./block-hash.ts";
import { bytesEq } from "./bytes.ts";
import { merkleRoot } from "./merkle.ts";

export type BlockProblem =
  | "MALFORMED"
  | "BAD_NUMBER"
  | "BAD_DATA_HASH"
  | "BROKEN_CHAIN"
  | "BAD_GENESIS"
  | "BAD_SIGNATURE"
  | "DUPLICATE_SIGNER"
  | "UNKNOWN_SIGNER"
  | "INSUFFICIENT_SIGNATURES";

export class BlockVerificationError extends OrdererError<BlockProblem> {
  override readonly name = "BlockVerificationError";
  constructor(
    code: BlockProblem,
    readonly blockNumber: number,
    message: string,
  ) {
    super(code, `block ${blockNumber}: ${message}`);
  }
}

export interface CertificatePolicy {
  /** ed25519 public keys of the replicas, by replica id. */
  readonly replicaKeys: readonly Uint8Array[];
  /** Valid signatures from distinct replicas a block needs (the cluster's commit quorum). */
  readonly quorum: number;
}

export interface VerifyOptions extends CertificatePolicy {
  readonly hash?: HashFn;
  readonly verify?: VerifyFn;
}

/**
 * Checks one block on its own terms: shape, Merkle root, and certificate. Returns the header hash.
 * Throws BlockVerificationError naming the first problem.
 */
export function verifyBlock(block: Block, opts: VerifyOptions): Uint8Array {
  const hash = opts.hash ?? nobleHash;
  const n = typeof block?.header?.number === "number" ? block.header.number : -1;
  const fail = (code: BlockProblem, msg: string): never => {
    throw new BlockVerificationError(code, n, msg);
  };
  const h = block?.header;
  if (!h || !Number.isSafeInteger(h.number) || h.number < 0) fail("BAD_NUMBER", "bad block number");
  if (!(h.previousHash instanceof Uint8Array) || h.previousHash.length !== HASH_BYTES)
    fail("MALFORMED", "previousHash must be 32 bytes");
  if (!(h.dataHash instanceof Uint8Array) || h.dataHash.length !== HASH_BYTES)
    fail("MALFORMED", "dataHash must be 32 bytes");
  if (!Array.isArray(block.entries) || !block.entries.every((e) => e instanceof Uint8Array))
    fail("MALFORMED", "entries must be byte strings");
  if (!bytesEq(merkleRoot(block.entries, hash), h.dataHash))
    fail("BAD_DATA_HASH", "dataHash is not the Merkle root of the entries");
  const hh = headerHash(h, hash);
  verifyCertificate(hh, block.metadata?.certificate, opts, n);
  return hh;
}

/** Checks that `cert` holds at least `quorum` valid signatures over `hh` from distinct known replicas. */
export function verifyCertificate(
  hh: Uint8Array,
  cert: readonly CertSig[] | undefined,
  opts: VerifyOptions,
  blockNumber: number,
): void {
  const verify = opts.verify ?? nobleVerify;
  const fail = (code: BlockProblem, msg: string): never => {
    throw new BlockVerificationError(code, blockNumber, msg);
  };
  if (!Array.isArray(cert)) return fail("MALFORMED", "no certificate");
  const seen = new Set<number>();
  for (const s of cert) {
    if (!s || !Number.isInteger(s.replica) || !(s.sig instanceof Uint8Array))
      fail("MALFORMED", "malformed certificate signature");
    const key = opts.replicaKeys[s.replica];
    if (!key) fail("UNKNOWN_SIGNER", `signature by unknown replica ${s.replica}`);
    if (seen.has(s.replica)) fail("DUPLICATE_SIGNER", `two signatures by replica ${s.replica}`);
    if (s.sig.length !== SIGNATURE_BYTES || !verify(key as Uint8Array, hh, s.sig))
      fail("BAD_SIGNATURE", `bad signature by replica ${s.replica}`);
    seen.add(s.replica);
  }
  if (seen.size < opts.quorum)
    fail("INSUFFICIENT_SIGNATURES", `${seen.size} signatures, the commit quorum is ${opts.quorum}`);
}

/**
 * Verifies a stream of blocks in order: each block on its own terms, plus the hash chain (previousHash
 * of block n is the header hash of block n-1). Start it from genesis or from a trusted header hash.
 */
export class ChainVerifier {
  private nextNumber: number;
  private prevHash: Uint8Array | null;

  constructor(
    private readonly opts: VerifyOptions & { readonly genesisHash?: Uint8Array },
    start?: { readonly number: number; readonly previousHash: Uint8Array },
  ) {
    this.nextNumber = start?.number ?? 0;
    this.prevHash = start ? start.previousHash : null;
  }

  /** The number of the block expected next. */
  get expected(): number {
    return this.nextNumber;
  }

  /** Header hash of the last verified block (null before the first one). */
  get head(): Uint8Array | null {
    return this.nextNumber === 0 ? null : this.prevHash;
  }

  /** Verifies the next block; throws BlockVerificationError with the reason. Returns its header hash. */
  next(block: Block): Uint8Array {
    const n = block?.header?.number;
    const h = block?.header;
    if (!h || !(h.previousHash instanceof Uint8Array) || !(h.dataHash instanceof Uint8Array))
      throw new BlockVerificationError("MALFORMED", typeof n === "number" ? n : -1, "malformed header");
    if (n !== this.nextNumber)
      throw new BlockVerificationError("BAD_NUMBER", n ?? -1, `expected block ${this.nextNumber}`);
    if (n === 0) {
      const hh = headerHash(block.header, this.opts.hash ?? nobleHash);
      if (!bytesEq(block.header.previousHash, ZERO_HASH) || block.entries?.length !== 1)
        throw new BlockVerificationError(
          "BAD_GENESIS",
          0,
          "genesis must have a zero previousHash and one entry",
        );
      if (this.opts.genesisHash && !bytesEq(hh, this.opts.genesisHash))
        throw new BlockVerificationError("BAD_GENESIS", 0, "genesis is not the configured one");
    } else if (this.prevHash && !bytesEq(block.header.previousHash, this.prevHash)) {
      throw new BlockVerificationError(
        "BROKEN_CHAIN",
        n,
        "previousHash is not the previous block's header hash",
      );
    }
    const hh = verifyBlock(block, this.opts);
    this.prevHash = hh;
    this.nextNumber = n + 1;
    return hh;
  }
}
