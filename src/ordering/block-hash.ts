// How blocks are hashed and signed (DESIGN.md §5, block.ts): the hash and signature functions, their
// browser-safe @noble defaults (servers pass node:crypto), the header hash and transaction ids.

import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import type { BlockHeader } from "./block.ts";
import { toHexStr } from "./bytes.ts";

/** SHA-256. A server's may also hash straight to hex (`hex`), which skips a digest array for ids. */
export type HashFn = ((data: Uint8Array) => Uint8Array) & { readonly hex?: (data: Uint8Array) => string };
export type VerifyFn = (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean;

export const HASH_BYTES = 32;
export const SIGNATURE_BYTES = 64;
export const ZERO_HASH: Uint8Array = new Uint8Array(HASH_BYTES);

export const nobleHash: HashFn = (d) => nobleSha256(d);
export const nobleVerify: VerifyFn = (pk, msg, sig) => {
  try {
    return ed25519.verify(sig, msg, pk);
  } catch {
    return false;
  }
};

// ------------------------------------------------------------------ header hash and transaction id

const U64 = (n: number): Uint8Array => {
  const out = new Uint8Array(8);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, Math.floor(n / 0x1_0000_0000));
  dv.setUint32(4, n >>> 0);
  return out;
};

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export function headerHash(h: BlockHeader, hash: HashFn = nobleHash): Uint8Array {
  return hash(concat([U64(h.number), h.previousHash, h.dataHash]));
}

/** Transaction id: hex SHA-256 of the transaction's bytes. */
export function txId(tx: Uint8Array, hash: HashFn = nobleHash): string {
  return hash.hex ? hash.hex(tx) : toHexStr(hash(tx));
}
