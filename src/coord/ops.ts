// The coordination service's signed operations and the ledger entries that carry them (browser-safe).
//
// A client signs each write with its session key: ed25519 over OP_DOMAIN ‖ payload, where payload =
//   u8 version(3) ‖ u64 sessionId ‖ u32 cxid ‖ u8 kind ‖ fields of the kind
// so no replica can forge or alter a client's operation. A replica batches signed operations into a
// coordination entry of the ledger:
//   MAGIC(4) ‖ u32 proposer ‖ u64 clockMs ‖ u64 entrySeq ‖ u32 count ‖ count × (bytes payload ‖ sig[64])
// The proposer's wall clock is one input of the tree's agreed time (see tree.ts).
//
// Bundles: a client with several writes ready at once signs them together, once: it builds the RFC 6962
// Merkle tree of the ledger's blocks over their payloads (leaf = H(0x00 ‖ payload), node = H(0x01 ‖ left
// ‖ right), ordering/block.ts) and signs BUNDLE_DOMAIN ‖ root. Each operation then travels alone with that
// signature and its audit path (its index, the bundle's size, the sibling hashes up to the root), so it is
// checked, ordered, retried and applied exactly like a singly signed one; a replica that has verified the
// root's signature once finds the others in its cache of valid signatures. Entries holding such operations use COORD_MAGIC_V2:
//   MAGIC_V2(4) ‖ header as above ‖ count × (bytes payload ‖ sig[64] ‖ u8 depth ‖ [u32 index ‖ u32 size ‖
//   depth × 32])
// where depth 0xff marks an operation signed alone.

import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import { ByteReader, ByteWriter } from "../bft/bytes.ts";
import { type MerkleProof, merkleTree, rootFromProof } from "../ordering/block.ts";
import { OrdererError } from "../util/errors.ts";
import { ACL_FIELD_BYTES_MAX, type Acl, OPEN_ACL } from "./acl.ts";

/** First bytes of a coordination entry; transactions starting with them are refused at intake. */
export const COORD_MAGIC = Uint8Array.of(0x00, 0x5a, 0x4b, 0x01);
/** First bytes of a coordination entry whose operations may carry bundle proofs. */
export const COORD_MAGIC_V2 = Uint8Array.of(0x00, 0x5a, 0x4b, 0x02);
/** What both entry formats start with: the gateway refuses transactions that start with it. */
export const COORD_PREFIX = COORD_MAGIC.subarray(0, 3);
export const OP_DOMAIN = new TextEncoder().encode("orderer/coord/op/v1\0");
export const BUNDLE_DOMAIN = new TextEncoder().encode("orderer/coord/bundle/v2\0");
/** Operations signed together at most (an audit path then has at most BUNDLE_DEPTH_MAX hashes). */
export const BUNDLE_OPS_MAX = 64;
export const BUNDLE_DEPTH_MAX = 6;
const HASH_BYTES = 32;
/** The depth byte of an operation signed alone (no proof) in a COORD_MAGIC_V2 entry. */
const NO_PROOF = 0xff;
/** What a session key signs to resume its session over one connection (v2: bound to the replica's id too). */
export const RESUME_DOMAIN = new TextEncoder().encode("orderer/coord/resume/v2\0");
/**
 * The payload version clients write. Version 2 changed CREATE_SESSION only (it carries the replica's id
 * and the connection's challenge); a version-1 CREATE_SESSION is refused (service-sessions.ts has the
 * argument). Version 3 added ACLs: CREATE carries an ACL list after its TTL, and SET_ACL and ADD_AUTH
 * exist. Older payloads still decode (what the ledger holds is replayed): a version-1/2 CREATE has no
 * list (the tree gives the node OPEN_ACL).
 */
export const PAYLOAD_VERSION = 3;
/** The WebSocket protocol of docs/coord-protocol.md (`hello.protocol`); 2: challenge-bound sessions, 3: ACLs. */
export const COORD_PROTOCOL = 3;
/** Bytes of the random challenge a replica sends in its hello, one per connection. */
export const CHALLENGE_BYTES = 32;
export const SIG_BYTES = 64;
export const KEY_BYTES = 32;
/** Sub-operations of one multi. */
export const MULTI_OPS_MAX = 1024;
/** ACL entries the codec reads at most (the tree refuses more than ACL_ENTRIES_MAX with INVALIDACL). */
export const ACL_CODEC_ENTRIES_MAX = 256;
/** Longest path accepted in an operation (bytes of UTF-8). */
export const PATH_MAX_BYTES = 4096;

/** ZooKeeper's CreateMode values. */
export const CreateMode = {
  PERSISTENT: 0,
  EPHEMERAL: 1,
  PERSISTENT_SEQUENTIAL: 2,
  EPHEMERAL_SEQUENTIAL: 3,
  CONTAINER: 4,
  PERSISTENT_WITH_TTL: 5,
  PERSISTENT_SEQUENTIAL_WITH_TTL: 6,
} as const;
export type CreateModeValue = (typeof CreateMode)[keyof typeof CreateMode];

export const isEphemeralMode = (m: number): boolean => m === 1 || m === 3;
export const isSequentialMode = (m: number): boolean => m === 2 || m === 3 || m === 6;
export const isTtlMode = (m: number): boolean => m === 5 || m === 6;

export const OpKind = {
  CREATE_SESSION: 1,
  CLOSE_SESSION: 2,
  PING: 3,
  CREATE: 4,
  DELETE: 5,
  SET_DATA: 6,
  CHECK: 7,
  MULTI: 8,
  SYNC: 9,
  /** Version 3 on. */
  SET_ACL: 10,
  /** Version 3 on. */
  ADD_AUTH: 11,
} as const;

/** Bytes of an addAuth credential at most. */
export const AUTH_CREDENTIAL_BYTES_MAX = 1024;

export type SubOp =
  | {
      readonly kind: 4;
      readonly path: string;
      readonly data: Uint8Array;
      readonly mode: number;
      readonly ttlMs: number;
      /** Absent: OPEN_ACL (ZooKeeper's OPEN_ACL_UNSAFE). */
      readonly acl?: readonly Acl[];
    }
  | { readonly kind: 5; readonly path: string; readonly version: number }
  | { readonly kind: 6; readonly path: string; readonly data: Uint8Array; readonly version: number }
  | { readonly kind: 7; readonly path: string; readonly version: number };

export type OpBody =
  | {
      readonly kind: 1;
      readonly publicKey: Uint8Array;
      readonly timeoutMs: number;
      /** The replica the session is created through: only its entries may carry this operation. */
      readonly replica: number;
      /** That replica's challenge to the connection (its hello): nowhere else is this operation accepted. */
      readonly challenge: Uint8Array;
    }
  | { readonly kind: 2 }
  /** A keep-alive; `cxid` carries the ping sequence number instead of an operation number. */
  | { readonly kind: 3 }
  | SubOp
  | { readonly kind: 8; readonly ops: readonly SubOp[] }
  | { readonly kind: 9; readonly path: string }
  /** `version`: the aversion expected (−1: any). */
  | { readonly kind: 10; readonly path: string; readonly acl: readonly Acl[]; readonly version: number }
  /** scheme "ed25519": credential = raw publicKey[32] ‖ raw sig[64] over addAuthSigningBytes (acl.ts). */
  | { readonly kind: 11; readonly scheme: string; readonly credential: Uint8Array };

export interface Op {
  readonly sessionId: number;
  readonly cxid: number;
  readonly body: OpBody;
}

export class OpCodecError extends OrdererError<
  "TRUNCATED" | "BAD_LENGTH" | "BAD_VALUE" | "TRAILING_BYTES" | "NOT_COORD"
> {
  override readonly name = "OpCodecError";
}

const i32 = (v: number): number => {
  if (!Number.isInteger(v) || v < -0x8000_0000 || v > 0x7fff_ffff) throw new RangeError(`not an int32: ${v}`);
  return v >>> 0;
};

/** A sub-operation's fields after its kind byte. */
function writeSub(w: ByteWriter, op: SubOp): void {
  w.str(op.path);
  if (op.kind === OpKind.CREATE) writeAcl(w.bytes(op.data).u8(op.mode).u64(op.ttlMs), op.acl ?? OPEN_ACL);
  else if (op.kind === OpKind.SET_DATA) w.bytes(op.data).u32(i32(op.version));
  else w.u32(i32(op.version));
}

/** u32 count ‖ count × (u8 perms ‖ str scheme ‖ str id). */
function writeAcl(w: ByteWriter, acl: readonly Acl[]): ByteWriter {
  if (acl.length > ACL_CODEC_ENTRIES_MAX)
    throw new RangeError(`an ACL list of over ${ACL_CODEC_ENTRIES_MAX}`);
  w.u32(acl.length);
  for (const a of acl) {
    if (!Number.isInteger(a.perms) || a.perms < 0 || a.perms > 0xff)
      throw new RangeError("perms are one byte");
    w.u8(a.perms).str(a.scheme).str(a.id);
  }
  return w;
}

function readAcl(r: ByteReader): Acl[] {
  const n = r.count(9);
  if (n > ACL_CODEC_ENTRIES_MAX) throw fail("BAD_LENGTH", `an ACL list of ${n} entries`);
  const acl: Acl[] = [];
  for (let i = 0; i < n; i++)
    acl.push({ perms: r.u8(), scheme: r.str(ACL_FIELD_BYTES_MAX), id: r.str(ACL_FIELD_BYTES_MAX) });
  return acl;
}

/** The bytes a client signs (and a replica verifies) for one operation. */
export function encodeOp(op: Op): Uint8Array {
  const w = new ByteWriter(64);
  w.u8(PAYLOAD_VERSION).u64(op.sessionId).u32(op.cxid).u8(op.body.kind);
  const b = op.body;
  switch (b.kind) {
    case OpKind.CREATE_SESSION:
      if (b.publicKey.length !== KEY_BYTES) throw new RangeError("an ed25519 public key is 32 bytes");
      if (b.challenge.length !== CHALLENGE_BYTES) throw new RangeError("a challenge is 32 bytes");
      w.raw(b.publicKey).u32(b.timeoutMs).u32(b.replica).raw(b.challenge);
      break;
    case OpKind.CLOSE_SESSION:
    case OpKind.PING:
      break;
    case OpKind.MULTI:
      w.u32(b.ops.length);
      for (const s of b.ops) writeSub(w.u8(s.kind), s);
      break;
    case OpKind.SYNC:
      w.str(b.path);
      break;
    case OpKind.SET_ACL:
      writeAcl(w.str(b.path), b.acl).u32(i32(b.version));
      break;
    case OpKind.ADD_AUTH:
      w.str(b.scheme).bytes(b.credential);
      break;
    default:
      writeSub(w, b);
  }
  return w.finish();
}

const fail = (code: "TRUNCATED" | "BAD_LENGTH" | "BAD_VALUE", message: string) =>
  new OpCodecError(code, message);

function readSub(r: ByteReader, kind: number, dataMax: number, version: number): SubOp {
  const path = r.str(PATH_MAX_BYTES);
  switch (kind) {
    case OpKind.CREATE: {
      const data = r.bytes(dataMax);
      const mode = r.u8();
      if (mode > 6) throw fail("BAD_VALUE", `unknown create mode ${mode}`);
      const ttlMs = r.u64();
      return version >= 3
        ? { kind, path, data, mode, ttlMs, acl: readAcl(r) }
        : { kind, path, data, mode, ttlMs };
    }
    case OpKind.SET_DATA:
      return { kind, path, data: r.bytes(dataMax), version: r.u32() | 0 };
    case OpKind.DELETE:
    case OpKind.CHECK:
      return { kind, path, version: r.u32() | 0 };
    default:
      throw fail("BAD_VALUE", `operation kind ${kind} is not allowed here`);
  }
}

/**
 * Decodes a signed payload. `dataMax` bounds the bytes read for one data field (a larger one is a
 * codec error here; the tree's own, smaller data limit gives BADARGUMENTS).
 */
export function decodeOp(payload: Uint8Array, dataMax = 64 * 1024 * 1024): Op {
  const r = new ByteReader(payload, fail);
  const version = r.u8();
  if (version < 1 || version > PAYLOAD_VERSION) throw fail("BAD_VALUE", `payload version ${version}`);
  const sessionId = r.u64();
  const cxid = r.u32();
  const kind = r.u8();
  let body: OpBody;
  switch (kind) {
    case OpKind.CREATE_SESSION: {
      if (version < 2)
        throw fail("BAD_VALUE", "a version-1 createSession is bound to no challenge: no longer accepted");
      const publicKey = r.raw(KEY_BYTES);
      const timeoutMs = r.u32();
      const replica = r.u32();
      body = { kind, publicKey, timeoutMs, replica, challenge: r.raw(CHALLENGE_BYTES) };
      break;
    }
    case OpKind.CLOSE_SESSION:
    case OpKind.PING:
      body = { kind };
      break;
    case OpKind.MULTI: {
      const n = r.count(6);
      if (n > MULTI_OPS_MAX) throw fail("BAD_LENGTH", `multi of ${n} operations exceeds ${MULTI_OPS_MAX}`);
      const ops: SubOp[] = [];
      for (let i = 0; i < n; i++) ops.push(readSub(r, r.u8(), dataMax, version));
      body = { kind, ops };
      break;
    }
    case OpKind.SYNC:
      body = { kind, path: r.str(PATH_MAX_BYTES) };
      break;
    case OpKind.SET_ACL: {
      if (version < 3) throw fail("BAD_VALUE", "setACL exists from payload version 3 on");
      const path = r.str(PATH_MAX_BYTES);
      const acl = readAcl(r);
      body = { kind, path, acl, version: r.u32() | 0 };
      break;
    }
    case OpKind.ADD_AUTH:
      if (version < 3) throw fail("BAD_VALUE", "addAuth exists from payload version 3 on");
      body = { kind, scheme: r.str(ACL_FIELD_BYTES_MAX), credential: r.bytes(AUTH_CREDENTIAL_BYTES_MAX) };
      break;
    default:
      body = readSub(r, kind, dataMax, version);
  }
  if (r.left !== 0) throw new OpCodecError("TRAILING_BYTES", `${r.left} bytes after the operation`);
  return { sessionId, cxid, body };
}

/** The message a session key signs for an operation. */
export function opSigningBytes(payload: Uint8Array): Uint8Array {
  const m = new Uint8Array(OP_DOMAIN.length + payload.length);
  m.set(OP_DOMAIN);
  m.set(payload, OP_DOMAIN.length);
  return m;
}

/**
 * The message a session key signs to resume its session over one connection: bound to the replica's id
 * and its challenge to that connection (its hello).
 */
export function resumeSigningBytes(sessionId: number, replica: number, challenge: Uint8Array): Uint8Array {
  return new ByteWriter(96).raw(RESUME_DOMAIN).u64(sessionId).u32(replica).bytes(challenge).finish();
}

/**
 * Where an operation sits in the bundle its signature covers: an RFC 6962 audit path (index, size of
 * the bundle, sibling hashes from the leaf up), the one the ledger's blocks use (ordering/block.ts).
 */
export type BundleProof = MerkleProof;

export interface SignedOp {
  readonly payload: Uint8Array;
  readonly sig: Uint8Array;
  /** Absent: the signature covers this operation alone (opSigningBytes). */
  readonly proof?: BundleProof;
}

export type HashFn = (data: Uint8Array) => Uint8Array;
const nobleHash: HashFn = (d) => nobleSha256(d);

/** The root a client signs for `payloads` (1..BUNDLE_OPS_MAX of them) and each one's proof. */
export function bundle(
  payloads: readonly Uint8Array[],
  h: HashFn = nobleHash,
): { root: Uint8Array; proofs: BundleProof[] } {
  if (payloads.length < 1 || payloads.length > BUNDLE_OPS_MAX)
    throw new RangeError(`a bundle holds 1 to ${BUNDLE_OPS_MAX} operations`);
  const tree = merkleTree(payloads, h);
  return { root: tree.root, proofs: tree.proofs() };
}

/** The message whose signature authenticates `so`: the operation alone, or the root of its bundle. */
export function signedMessage(so: SignedOp, h: HashFn = nobleHash): Uint8Array | null {
  if (so.proof === undefined) return opSigningBytes(so.payload);
  if (so.proof.size > BUNDLE_OPS_MAX || so.proof.path.length > BUNDLE_DEPTH_MAX) return null;
  const root = rootFromProof(so.payload, so.proof, h);
  return root === null ? null : bundleSigningBytes(root);
}

/** The bundle root's signing bytes (what a client signs for a bundle). */
export function bundleSigningBytes(root: Uint8Array): Uint8Array {
  const m = new Uint8Array(BUNDLE_DOMAIN.length + HASH_BYTES);
  m.set(BUNDLE_DOMAIN);
  m.set(root, BUNDLE_DOMAIN.length);
  return m;
}

/** Whether `so` is signed by `publicKey` (alone or through its bundle proof). */
export function verifySignedOp(
  verify: (publicKey: Uint8Array, message: Uint8Array, sig: Uint8Array) => boolean,
  publicKey: Uint8Array,
  so: SignedOp,
  h: HashFn = nobleHash,
): boolean {
  const m = signedMessage(so, h);
  return m !== null && verify(publicKey, m, so.sig);
}

/** Bytes a proof adds to an operation in an entry. */
export function proofBytes(so: SignedOp): number {
  return so.proof === undefined ? 0 : 4 + 4 + HASH_BYTES * so.proof.path.length;
}

export interface CoordEntry {
  readonly proposer: number;
  readonly clockMs: number;
  readonly entrySeq: number;
  readonly ops: readonly SignedOp[];
}

export function isCoordEntry(bytes: Uint8Array): boolean {
  if (bytes.length < COORD_MAGIC.length) return false;
  for (let i = 0; i < COORD_PREFIX.length; i++) if (bytes[i] !== COORD_PREFIX[i]) return false;
  return bytes[3] === COORD_MAGIC[3] || bytes[3] === COORD_MAGIC_V2[3];
}

/** Bytes an entry adds per operation besides its payload and proof (proofBytes). */
export const ENTRY_OP_OVERHEAD = 4 + SIG_BYTES + 1;
/** Bytes of an entry without operations. */
export const ENTRY_HEADER_BYTES = COORD_MAGIC.length + 4 + 8 + 8 + 4;

export function encodeEntry(e: CoordEntry): Uint8Array {
  const v2 = e.ops.some((o) => o.proof !== undefined);
  const w = new ByteWriter(
    ENTRY_HEADER_BYTES + e.ops.reduce((s, o) => s + o.payload.length + ENTRY_OP_OVERHEAD + proofBytes(o), 0),
  );
  w.raw(v2 ? COORD_MAGIC_V2 : COORD_MAGIC)
    .u32(e.proposer)
    .u64(Math.max(0, Math.floor(e.clockMs)))
    .u64(e.entrySeq)
    .u32(e.ops.length);
  for (const o of e.ops) {
    if (o.sig.length !== SIG_BYTES) throw new RangeError("an ed25519 signature is 64 bytes");
    w.bytes(o.payload).raw(o.sig);
    if (!v2) continue;
    if (o.proof === undefined) {
      w.u8(NO_PROOF);
      continue;
    }
    if (o.proof.path.length > BUNDLE_DEPTH_MAX) throw new RangeError("a bundle proof is too deep");
    w.u8(o.proof.path.length).u32(o.proof.index).u32(o.proof.size);
    for (const p of o.proof.path) {
      if (p.length !== HASH_BYTES) throw new RangeError("a bundle proof hash is 32 bytes");
      w.raw(p);
    }
  }
  return w.finish();
}

/** Decodes an entry (its operations stay encoded: the tree decodes and verifies each one). */
export function decodeEntry(bytes: Uint8Array): CoordEntry {
  if (!isCoordEntry(bytes)) throw new OpCodecError("NOT_COORD", "not a coordination entry");
  const r = new ByteReader(bytes.subarray(COORD_MAGIC.length), fail);
  const proposer = r.u32();
  const clockMs = r.u64();
  const entrySeq = r.u64();
  const v2 = bytes[3] === COORD_MAGIC_V2[3];
  const ops = r.list(4 + SIG_BYTES + (v2 ? 1 : 0), (): SignedOp => {
    const payload = r.bytes();
    const sig = r.raw(SIG_BYTES);
    if (!v2) return { payload, sig };
    const depth = r.u8();
    if (depth === NO_PROOF) return { payload, sig };
    if (depth > BUNDLE_DEPTH_MAX) throw new OpCodecError("BAD_VALUE", `bundle proof of depth ${depth}`);
    const index = r.u32();
    const size = r.u32();
    const path = Array.from({ length: depth }, () => r.raw(HASH_BYTES));
    return { payload, sig, proof: { index, size, path } };
  });
  if (r.left !== 0) throw new OpCodecError("TRAILING_BYTES", `${r.left} bytes after the entry`);
  return { proposer, clockMs, entrySeq, ops };
}
