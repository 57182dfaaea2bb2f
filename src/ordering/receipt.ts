// Receipts as the ordering API serves them, and their verification by clients: the transaction hashes
// to the receipt's id, its Merkle proof leads to the header's dataHash, and the header hash carries a
// valid certificate. Also OrderingClientError, which every check of the client throws. Browser-safe.

import { OrdererError } from "../util/errors.ts";
import {
  BlockVerificationError,
  type CertSig,
  fromHexStr,
  type HashFn,
  headerHash,
  type MerkleProof,
  nobleHash,
  toHexStr,
  type VerifyFn,
  verifyCertificate,
  verifyMerkleProof,
} from "./block.ts";

export class OrderingClientError extends OrdererError {
  override readonly name = "OrderingClientError";
  constructor(
    code: string,
    message: string,
    /** The HTTP status the server answered with, when the error is its answer. */
    readonly status?: number,
  ) {
    super(code, message);
  }
}

export interface VerifiedReceipt {
  readonly txId: string;
  readonly block: number;
  readonly position: number;
  readonly duplicate: boolean;
  readonly headerHash: Uint8Array;
  readonly header: { number: number; previousHash: Uint8Array; dataHash: Uint8Array };
  readonly proof: MerkleProof;
  readonly certificate: readonly CertSig[];
}

export interface ReceiptJson {
  txId: string;
  block: number;
  position: number;
  duplicate: boolean;
  header: { number: number; previousHash: string; dataHash: string; headerHash: string };
  proof: { index: number; size: number; path: string[] };
  certificate: { replica: number; sig: string }[];
}

/**
 * Checks a receipt against the transaction it is for: the transaction hashes to the receipt's id, its
 * Merkle proof leads to the header's dataHash, and the header hash carries a valid certificate.
 */
export function verifyReceipt(
  tx: Uint8Array,
  r: ReceiptJson,
  policy: { replicaKeys: readonly Uint8Array[]; quorum: number; hash?: HashFn; verify?: VerifyFn },
): VerifiedReceipt {
  const hash = policy.hash ?? nobleHash;
  const bad = (why: string): never => {
    throw new OrderingClientError("BAD_RECEIPT", `receipt for ${r?.txId}: ${why}`);
  };
  try {
    if (toHexStr(hash(tx)) !== r.txId) bad("the transaction does not hash to its id");
    const header = {
      number: r.header.number,
      previousHash: fromHexStr(r.header.previousHash),
      dataHash: fromHexStr(r.header.dataHash),
    };
    if (header.number !== r.block) bad("block number mismatch");
    const proof = { index: r.proof.index, size: r.proof.size, path: r.proof.path.map(fromHexStr) };
    if (proof.index !== r.position) bad("position mismatch");
    if (!verifyMerkleProof(tx, proof, header.dataHash, hash))
      bad("the Merkle proof does not lead to dataHash");
    const hh = headerHash(header, hash);
    const certificate = r.certificate.map((s) => ({ replica: s.replica, sig: fromHexStr(s.sig) }));
    verifyCertificate(hh, certificate, { ...policy, hash }, header.number);
    return {
      txId: r.txId,
      block: r.block,
      position: r.position,
      duplicate: r.duplicate === true,
      headerHash: hh,
      header,
      proof,
      certificate,
    };
  } catch (err) {
    if (err instanceof OrderingClientError) throw err;
    if (err instanceof BlockVerificationError) bad(err.message);
    return bad(`malformed (${(err as Error).message})`);
  }
}
