// Block format and hashing (DESIGN.md §5), Merkle inclusion proofs, and the block verifier clients run.
// Pure and browser-safe: hashing and signature checks default to @noble; servers pass node:crypto.
//
//   dataHash   = RFC 6962 Merkle root over the entries: leaf = H(0x00 ‖ entry), node = H(0x01 ‖ l ‖ r),
//                the root of no entries is H("")
//   headerHash = H(number as u64 big-endian ‖ previousHash ‖ dataHash)
//   block 0 (genesis) has 32 zero bytes as previousHash and the cluster configuration as its only entry.
// Metadata (view, seq, commit time, certificate) is not hashed; the certificate signs headerHash.

import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";

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

// ------------------------------------------------------------------ hashing

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

export function headerHash(h: BlockHeader, hash: HashFn = nobleHash): Uint8Array {
  return hash(concat([U64(h.number), h.previousHash, h.dataHash]));
}

/** The genesis block of a cluster: its configuration (canonical bytes) as the only entry. */
export function genesisBlock(clusterConfig: Uint8Array, hash: HashFn = nobleHash): Block {
  return {
    header: { number: 0, previousHash: ZERO_HASH, dataHash: merkleRoot([clusterConfig], hash) },
    entries: [clusterConfig],
    metadata: { view: 0, seq: 0, commitTimeMs: 0, certificate: [] },
  };
}

/** Transaction id: hex SHA-256 of the transaction's bytes. */
export function txId(tx: Uint8Array, hash: HashFn = nobleHash): string {
  return hash.hex ? hash.hex(tx) : toHexStr(hash(tx));
}

// ------------------------------------------------------------------ verification

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

export class BlockVerificationError extends Error {
  override readonly name = "BlockVerificationError";
  constructor(
    readonly code: BlockProblem,
    readonly blockNumber: number,
    message: string,
  ) {
    super(`block ${blockNumber}: ${message}`);
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

// ------------------------------------------------------------------ small browser-safe helpers

export function bytesEq(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= (a[i] as number) ^ (b[i] as number);
  return d === 0;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

const NodeBuffer = (globalThis as { Buffer?: typeof Buffer }).Buffer;

export function toHexStr(b: Uint8Array): string {
  // Node's Buffer encodes natively (a tx id per transaction on every replica); elsewhere, by table.
  if (NodeBuffer) return NodeBuffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
  let s = "";
  for (let i = 0; i < b.length; i++) s += HEX[b[i] as number];
  return s;
}

export function fromHexStr(s: string): Uint8Array {
  if (typeof s !== "string" || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) throw new Error("bad hex");
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

// With the length a multiple of 4, this is exactly standard padded base64 (and linear: no groups).
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Standard base64 with padding. Node's Buffer encodes natively (a 1 MiB value costs about a millisecond). */
export function toBase64(b: Uint8Array): string {
  if (NodeBuffer) return NodeBuffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
  return toBase64Portable(b);
}

/** Decodes standard base64 (padding required); throws on anything else. */
export function fromBase64(s: string): Uint8Array {
  if (typeof s !== "string" || s.length % 4 !== 0 || !BASE64.test(s)) throw new Error("bad base64");
  if (NodeBuffer) {
    const buf = NodeBuffer.from(s, "base64");
    // A small result is a slice of Node's shared pool: copy it, so that its .buffer is its own (as
    // the portable path's is); a large one owns its memory already.
    return buf.byteOffset === 0 && buf.buffer.byteLength === buf.byteLength
      ? new Uint8Array(buf.buffer)
      : new Uint8Array(buf);
  }
  return fromBase64Portable(s);
}

/** toBase64 without Buffer (browsers), by chunks: spreading a chunk into fromCharCode is far slower. */
export function toBase64Portable(b: Uint8Array): string {
  const parts: string[] = [];
  for (let i = 0; i < b.length; i += 0x2000)
    parts.push(String.fromCharCode.apply(null, b.subarray(i, i + 0x2000) as unknown as number[]));
  return btoa(parts.join(""));
}

export function fromBase64Portable(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
