// Block format and hashing (DESIGN.md §5), Merkle inclusion proofs, and the block verifier clients run.
// Pure and browser-safe: hashing and signature checks default to @noble; servers pass node:crypto.
//
//   dataHash   = RFC 6962 Merkle root over the entries: leaf = H(0x00 ‖ entry), node = H(0x01 ‖ l ‖ r),
//                the root of no entries is H("")
//   headerHash = H(number as u64 big-endian ‖ previousHash ‖ dataHash)
//   block 0 (genesis) has 32 zero bytes as previousHash and the cluster configuration as its only entry.
// Metadata (view, seq, commit time, certificate) is not hashed; the certificate signs headerHash.
//
// The pieces live beside it (all re-exported here): block-hash.ts (hash and signature functions, header
// hash, tx id), merkle.ts (the Merkle tree and audit paths), block-verify.ts (the verifier), bytes.ts.

import { type HashFn, headerHash, nobleHash, ZERO_HASH } from "./block-hash.ts";
import { BlockVerificationError } from "./block-verify.ts";
import { fromBase64, fromHexStr, toBase64, toHexStr } from "./bytes.ts";
import { merkleRoot } from "./merkle.ts";

export type { HashFn, VerifyFn } from "./block-hash.ts";
export {
  HASH_BYTES,
  headerHash,
  nobleHash,
  nobleVerify,
  SIGNATURE_BYTES,
  txId,
  ZERO_HASH,
} from "./block-hash.ts";
export type { BlockProblem, CertificatePolicy, VerifyOptions } from "./block-verify.ts";
export { BlockVerificationError, ChainVerifier, verifyBlock, verifyCertificate } from "./block-verify.ts";
export {
  bytesEq,
  fromBase64,
  fromBase64Portable,
  fromHexStr,
  toBase64,
  toBase64Portable,
  toHexStr,
} from "./bytes.ts";
export type { MerkleProof } from "./merkle.ts";
export {
  leafHash,
  merkleProof,
  merkleProofs,
  merkleRoot,
  merkleTree,
  rootFromProof,
  verifyMerkleProof,
} from "./merkle.ts";

export interface BlockHeader {
  readonly number: number;
  readonly previousHash: Uint8Array;
  readonly dataHash: Uint8Array;
}

export interface CertSig {
  readonly replica: number;
  readonly sig: Uint8Array;
}

export interface BlockMetadata {
  /** View and sequence number of the ordered batch (seq = block number). */
  readonly view: number;
  readonly seq: number;
  /** Wall-clock time at which the serving replica wrote the block (informational, not agreed). */
  readonly commitTimeMs: number;
  /** Signatures of replicas over headerHash: at least the commit quorum in a complete block. */
  readonly certificate: readonly CertSig[];
}

export interface Block {
  readonly header: BlockHeader;
  readonly entries: readonly Uint8Array[];
  readonly metadata: BlockMetadata;
}

/** The genesis block of a cluster: its configuration (canonical bytes) as the only entry. */
export function genesisBlock(clusterConfig: Uint8Array, hash: HashFn = nobleHash): Block {
  return {
    header: { number: 0, previousHash: ZERO_HASH, dataHash: merkleRoot([clusterConfig], hash) },
    entries: [clusterConfig],
    metadata: { view: 0, seq: 0, commitTimeMs: 0, certificate: [] },
  };
}

// ------------------------------------------------------------------ JSON form (HTTP / WebSocket)

export interface BlockJson {
  readonly number: number;
  readonly previousHash: string;
  readonly dataHash: string;
  readonly headerHash: string;
  /** Entries, base64. */
  readonly entries: readonly string[];
  readonly metadata: {
    readonly view: number;
    readonly seq: number;
    readonly commitTimeMs: number;
    readonly certificate: readonly { readonly replica: number; readonly sig: string }[];
  };
}

export function blockToJson(b: Block, hh?: Uint8Array, hash: HashFn = nobleHash): BlockJson {
  return {
    number: b.header.number,
    previousHash: toHexStr(b.header.previousHash),
    dataHash: toHexStr(b.header.dataHash),
    headerHash: toHexStr(hh ?? headerHash(b.header, hash)),
    entries: b.entries.map(toBase64),
    metadata: {
      view: b.metadata.view,
      seq: b.metadata.seq,
      commitTimeMs: b.metadata.commitTimeMs,
      certificate: b.metadata.certificate.map((s) => ({ replica: s.replica, sig: toHexStr(s.sig) })),
    },
  };
}

/** Parses a block from its JSON form; throws BlockVerificationError("MALFORMED") on bad shapes. */
export function blockFromJson(j: unknown): Block {
  const o = j as BlockJson;
  const n = typeof o?.number === "number" ? o.number : -1;
  try {
    if (!o || typeof o !== "object" || !Array.isArray(o.entries) || !o.metadata) throw new Error("shape");
    const cert = o.metadata.certificate;
    if (!Array.isArray(cert)) throw new Error("certificate");
    return {
      header: {
        number: o.number,
        previousHash: fromHexStr(o.previousHash),
        dataHash: fromHexStr(o.dataHash),
      },
      entries: o.entries.map(fromBase64),
      metadata: {
        view: o.metadata.view,
        seq: o.metadata.seq,
        commitTimeMs: o.metadata.commitTimeMs,
        certificate: cert.map((s) => ({ replica: s.replica, sig: fromHexStr(s.sig) })),
      },
    };
  } catch (err) {
    throw new BlockVerificationError("MALFORMED", n, `malformed block JSON (${(err as Error).message})`);
  }
}
