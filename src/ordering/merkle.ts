// The RFC 6962 Merkle tree over a block's entries (DESIGN.md §5): leaf = H(0x00 ‖ entry),
// node = H(0x01 ‖ l ‖ r), the root of no entries is H(""); audit paths and their verification.
// Pure and browser-safe; coord bundles use the same tree (coord/ops.ts).

import { HASH_BYTES, type HashFn, nobleHash } from "./block-hash.ts";
import { bytesEq } from "./bytes.ts";

const LEAF = 0;
const NODE = 1;

/**
 * The input of a leaf or node hash is assembled here, not in a fresh array: a typed array over 64
 * bytes gets its own off-heap buffer (about a microsecond each in V8, as much as the hash), and a
 * block hashes two inputs per entry. Hash functions do not keep their input.
 */
const SCRATCH_MAX = 4096;
const scratch = new Uint8Array(SCRATCH_MAX);

export function leafHash(entry: Uint8Array, hash: HashFn = nobleHash): Uint8Array {
  if (entry.length >= SCRATCH_MAX) {
    const input = new Uint8Array(1 + entry.length);
    input[0] = LEAF;
    input.set(entry, 1);
    return hash(input);
  }
  scratch[0] = LEAF;
  scratch.set(entry, 1);
  return hash(scratch.subarray(0, 1 + entry.length));
}

function nodeHash(left: Uint8Array, right: Uint8Array, hash: HashFn): Uint8Array {
  scratch[0] = NODE;
  scratch.set(left, 1);
  scratch.set(right, 1 + left.length);
  return hash(scratch.subarray(0, 1 + left.length + right.length));
}

/**
 * Merkle tree levels from the leaf hashes up. Pairing left to right and carrying an odd last node up
 * unchanged builds exactly RFC 6962's tree (split at the largest power of two below the size).
 */
function levels(leaves: Uint8Array[], hash: HashFn): Uint8Array[][] {
  const out = [leaves];
  let cur = leaves;
  while (cur.length > 1) {
    const next: Uint8Array[] = [];
    for (let i = 0; i + 1 < cur.length; i += 2) next.push(nodeHash(cur[i]!, cur[i + 1]!, hash));
    if (cur.length % 2 === 1) next.push(cur[cur.length - 1]!);
    out.push(next);
    cur = next;
  }
  return out;
}

export function merkleRoot(entries: readonly Uint8Array[], hash: HashFn = nobleHash): Uint8Array {
  if (entries.length === 0) return hash(new Uint8Array(0));
  const lv = levels(
    entries.map((e) => leafHash(e, hash)),
    hash,
  );
  return lv[lv.length - 1]![0]!;
}

/** An RFC 6962 audit path: the sibling hashes from the leaf up. */
export interface MerkleProof {
  readonly index: number;
  readonly size: number;
  readonly path: readonly Uint8Array[];
}

export function merkleProof(
  entries: readonly Uint8Array[],
  index: number,
  hash: HashFn = nobleHash,
): MerkleProof {
  if (!Number.isInteger(index) || index < 0 || index >= entries.length)
    throw new RangeError(`no entry ${index} in a block of ${entries.length}`);
  return merkleProofFromLeaves(
    entries.map((e) => leafHash(e, hash)),
    index,
    hash,
  );
}

/** Audit paths for every leaf of a tree at once (one tree build). */
export function merkleProofs(entries: readonly Uint8Array[], hash: HashFn = nobleHash): MerkleProof[] {
  return merkleTree(entries, hash).proofs();
}

/** A block's Merkle tree built once: its root now, every audit path later from the same levels. */
export function merkleTree(
  entries: readonly Uint8Array[],
  hash: HashFn = nobleHash,
): { readonly root: Uint8Array; proofs(): MerkleProof[] } {
  if (entries.length === 0) return { root: hash(new Uint8Array(0)), proofs: () => [] };
  const lv = levels(
    entries.map((e) => leafHash(e, hash)),
    hash,
  );
  return {
    root: lv[lv.length - 1]![0]!,
    proofs: () => entries.map((_, i) => pathOf(lv, i, entries.length)),
  };
}

function merkleProofFromLeaves(leaves: Uint8Array[], index: number, hash: HashFn): MerkleProof {
  return pathOf(levels(leaves, hash), index, leaves.length);
}

function pathOf(lv: Uint8Array[][], index: number, size: number): MerkleProof {
  const path: Uint8Array[] = [];
  let i = index;
  for (let l = 0; l < lv.length - 1; l++) {
    const level = lv[l]!;
    if (i % 2 === 1) path.push(level[i - 1]!);
    else if (i + 1 < level.length) path.push(level[i + 1]!);
    i = Math.floor(i / 2);
  }
  return { index, size, path };
}

/** RFC 9162 §2.1.3.2: whether a leaf and its audit path lead to `root`. */
export function verifyMerkleProof(
  entry: Uint8Array,
  proof: MerkleProof,
  root: Uint8Array,
  hash: HashFn = nobleHash,
): boolean {
  const r = rootFromProof(entry, proof, hash);
  return r !== null && bytesEq(r, root);
}

/**
 * RFC 9162 §2.1.3.2: the root a leaf and its audit path lead to, or null when the path does not fit
 * the tree its size describes (too short, too long, an index outside it, hashes not 32 bytes).
 */
export function rootFromProof(
  entry: Uint8Array,
  proof: MerkleProof,
  hash: HashFn = nobleHash,
): Uint8Array | null {
  const { index, size, path } = proof;
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return null;
  if (!Array.isArray(path) || path.length > 64) return null;
  let fn = index;
  let sn = size - 1;
  let r = leafHash(entry, hash);
  for (const p of path) {
    if (!(p instanceof Uint8Array) || p.length !== HASH_BYTES || sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r, hash);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p, hash);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}
