// The service's wire formats: a signed operation as a client sends it (checked and decoded), a result as
// a client gets it, and the header of a coordination entry.

import {
  BUNDLE_DEPTH_MAX,
  BUNDLE_OPS_MAX,
  type BundleProof,
  COORD_MAGIC,
  decodeOp,
  ENTRY_HEADER_BYTES,
  ENTRY_OP_OVERHEAD,
  type Op,
  proofBytes,
  type SignedOp,
} from "./ops.ts";
import type { OpResult } from "./tree.ts";

/**
 * The signed operation of a connect, ping or write message ({ op, sig, proof? } in base64), decoded with
 * the tree's data limit; throws when it is malformed or exceeds the largest entry.
 */
export function signedOpOf(
  m: Record<string, unknown>,
  entryMaxBytes: number,
  dataMaxBytes: number,
): { op: Op; signed: SignedOp } {
  if (typeof m.op !== "string" || typeof m.sig !== "string") throw new Error("op and sig are base64 strings");
  const payload = b64(m.op, "op");
  const sig = b64(m.sig, "sig");
  if (sig.length !== 64) throw new Error("sig is 64 bytes");
  const proof = m.proof === undefined ? undefined : bundleProof(m.proof);
  const signed: SignedOp = proof ? { payload, sig, proof } : { payload, sig };
  if (ENTRY_HEADER_BYTES + ENTRY_OP_OVERHEAD + proofBytes(signed) + payload.length > entryMaxBytes)
    throw new Error(`the operation exceeds the largest entry (${entryMaxBytes} bytes)`);
  let op: Op;
  try {
    op = decodeOp(payload, dataMaxBytes);
  } catch (err) {
    throw new Error(`op does not decode: ${(err as Error).message}`);
  }
  return { op, signed };
}

/** The proposer and entry sequence number of a coordination entry, without decoding its operations. */
export function entryHeader(e: Uint8Array): { proposer: number; entrySeq: number } | undefined {
  if (e.length < ENTRY_HEADER_BYTES) return undefined;
  const dv = new DataView(
    e.buffer,
    e.byteOffset + COORD_MAGIC.length,
    ENTRY_HEADER_BYTES - COORD_MAGIC.length,
  );
  return { proposer: dv.getUint32(0), entrySeq: dv.getUint32(12) * 0x1_0000_0000 + dv.getUint32(16) };
}

/** Bytes an operation takes in an entry besides ENTRY_OP_OVERHEAD: its payload and proof. */
export function opBytes(so: SignedOp): number {
  return so.payload.length + proofBytes(so);
}

/** A bundle proof from a message: { i: index, n: bundle size, path: [base64 of 32 bytes, ...] }. */
function bundleProof(v: unknown): BundleProof {
  const p = v as { i?: unknown; n?: unknown; path?: unknown };
  if (
    typeof p !== "object" ||
    p === null ||
    !Array.isArray(p.path) ||
    !Number.isSafeInteger(p.i) ||
    !Number.isSafeInteger(p.n)
  )
    throw new Error("proof is { i, n, path }");
  if (p.path.length > BUNDLE_DEPTH_MAX)
    throw new Error(`a bundle proof has at most ${BUNDLE_DEPTH_MAX} hashes`);
  const path = p.path.map((h) => {
    if (typeof h !== "string") throw new Error("proof hashes are base64 strings");
    const b = b64(h, "proof");
    if (b.length !== 32) throw new Error("a proof hash is 32 bytes");
    return b;
  });
  const index = p.i as number;
  const size = p.n as number;
  if (size < 1 || size > BUNDLE_OPS_MAX) throw new Error(`a bundle holds 1 to ${BUNDLE_OPS_MAX} operations`);
  if (index < 0 || index >= size) throw new Error("proof index out of range");
  return { index, size, path };
}

export function b64(s: string, field: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) throw new Error(`${field} is not base64`);
  return new Uint8Array(Buffer.from(s, "base64"));
}

export function resultJson(r: OpResult): Record<string, unknown> {
  const out: Record<string, unknown> = { code: r.code };
  if (r.path !== undefined) out.path = r.path;
  if (r.stat !== undefined) out.stat = r.stat;
  if (r.results !== undefined) out.results = r.results.map(resultJson);
  return out;
}
