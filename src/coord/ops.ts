// The coordination service's signed operations and the ledger entries that carry them (browser-safe).
//
// A client signs each write with its session key: ed25519 over OP_DOMAIN ‖ payload, where payload =
//   u8 version(1) ‖ u64 sessionId ‖ u32 cxid ‖ u8 kind ‖ fields of the kind
// so no replica can forge or alter a client's operation. A replica batches signed operations into a
// coordination entry of the ledger:
//   MAGIC(4) ‖ u32 proposer ‖ u64 clockMs ‖ u64 entrySeq ‖ u32 count ‖ count × (bytes payload ‖ sig[64])
// The proposer's wall clock is one input of the tree's agreed time (see tree.ts).

import { ByteReader, ByteWriter } from "../bft/bytes.ts";

/** First bytes of a coordination entry; transactions starting with them are refused at intake. */
export const COORD_MAGIC = Uint8Array.of(0x00, 0x5a, 0x4b, 0x01);
export const OP_DOMAIN = new TextEncoder().encode("orderer/coord/op/v1\0");
export const RESUME_DOMAIN = new TextEncoder().encode("orderer/coord/resume/v1\0");
export const PAYLOAD_VERSION = 1;
export const SIG_BYTES = 64;
export const KEY_BYTES = 32;
/** Sub-operations of one multi. */
export const MULTI_OPS_MAX = 1024;
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
} as const;

export type SubOp =
  | {
      readonly kind: 4;
      readonly path: string;
      readonly data: Uint8Array;
      readonly mode: number;
      readonly ttlMs: number;
    }
  | { readonly kind: 5; readonly path: string; readonly version: number }
  | { readonly kind: 6; readonly path: string; readonly data: Uint8Array; readonly version: number }
  | { readonly kind: 7; readonly path: string; readonly version: number };

export type OpBody =
  | {
      readonly kind: 1;
      readonly publicKey: Uint8Array;
      readonly timeoutMs: number;
      readonly nonce: Uint8Array;
    }
  | { readonly kind: 2 }
  /** A keep-alive; `cxid` carries the ping sequence number instead of an operation number. */
  | { readonly kind: 3 }
  | SubOp
  | { readonly kind: 8; readonly ops: readonly SubOp[] }
  | { readonly kind: 9; readonly path: string };

export interface Op {
  readonly sessionId: number;
  readonly cxid: number;
  readonly body: OpBody;
}

export class OpCodecError extends Error {
  override readonly name = "OpCodecError";
  constructor(
    readonly code: "TRUNCATED" | "BAD_LENGTH" | "BAD_VALUE" | "TRAILING_BYTES" | "NOT_COORD",
    message: string,
  ) {
    super(message);
  }
}

const i32 = (v: number): number => {
  if (!Number.isInteger(v) || v < -0x8000_0000 || v > 0x7fff_ffff) throw new RangeError(`not an int32: ${v}`);
  return v >>> 0;
};

/** A sub-operation's fields after its kind byte. */
function writeSub(w: ByteWriter, op: SubOp): void {
  w.str(op.path);
  if (op.kind === OpKind.CREATE) w.bytes(op.data).u8(op.mode).u64(op.ttlMs);
  else if (op.kind === OpKind.SET_DATA) w.bytes(op.data).u32(i32(op.version));
  else w.u32(i32(op.version));
}

/** The bytes a client signs (and a replica verifies) for one operation. */
export function encodeOp(op: Op): Uint8Array {
  const w = new ByteWriter(64);
  w.u8(PAYLOAD_VERSION).u64(op.sessionId).u32(op.cxid).u8(op.body.kind);
  const b = op.body;
  switch (b.kind) {
    case OpKind.CREATE_SESSION:
      if (b.publicKey.length !== KEY_BYTES) throw new RangeError("an ed25519 public key is 32 bytes");
      w.raw(b.publicKey).u32(b.timeoutMs).bytes(b.nonce);
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
    default:
      writeSub(w, b);
  }
  return w.finish();
}

const fail = (code: "TRUNCATED" | "BAD_LENGTH" | "BAD_VALUE", message: string) =>
  new OpCodecError(code, message);

function readSub(r: ByteReader, kind: number, dataMax: number): SubOp {
  const path = r.str(PATH_MAX_BYTES);
  switch (kind) {
    case OpKind.CREATE: {
      const data = r.bytes(dataMax);
      const mode = r.u8();
      if (mode > 6) throw fail("BAD_VALUE", `unknown create mode ${mode}`);
      return { kind, path, data, mode, ttlMs: r.u64() };
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
  if (version !== PAYLOAD_VERSION) throw fail("BAD_VALUE", `payload version ${version}`);
  const sessionId = r.u64();
  const cxid = r.u32();
  const kind = r.u8();
  let body: OpBody;
  switch (kind) {
    case OpKind.CREATE_SESSION: {
      const publicKey = r.raw(KEY_BYTES);
      const timeoutMs = r.u32();
      body = { kind, publicKey, timeoutMs, nonce: r.bytes(64) };
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
      for (let i = 0; i < n; i++) ops.push(readSub(r, r.u8(), dataMax));
      body = { kind, ops };
      break;
    }
    case OpKind.SYNC:
      body = { kind, path: r.str(PATH_MAX_BYTES) };
      break;
    default:
      body = readSub(r, kind, dataMax);
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

/** The message a session key signs to resume its session on a replica (bound to that replica's nonce). */
export function resumeSigningBytes(sessionId: number, nonce: Uint8Array): Uint8Array {
  return new ByteWriter(64).raw(RESUME_DOMAIN).u64(sessionId).bytes(nonce).finish();
}

export interface SignedOp {
  readonly payload: Uint8Array;
  readonly sig: Uint8Array;
}

export interface CoordEntry {
  readonly proposer: number;
  readonly clockMs: number;
  readonly entrySeq: number;
  readonly ops: readonly SignedOp[];
}

export function isCoordEntry(bytes: Uint8Array): boolean {
  if (bytes.length < COORD_MAGIC.length) return false;
  for (let i = 0; i < COORD_MAGIC.length; i++) if (bytes[i] !== COORD_MAGIC[i]) return false;
  return true;
}

/** Bytes an entry adds per operation besides its payload. */
export const ENTRY_OP_OVERHEAD = 4 + SIG_BYTES;
/** Bytes of an entry without operations. */
export const ENTRY_HEADER_BYTES = COORD_MAGIC.length + 4 + 8 + 8 + 4;

export function encodeEntry(e: CoordEntry): Uint8Array {
  const w = new ByteWriter(
    ENTRY_HEADER_BYTES + e.ops.reduce((s, o) => s + o.payload.length + ENTRY_OP_OVERHEAD, 0),
  );
  w.raw(COORD_MAGIC)
    .u32(e.proposer)
    .u64(Math.max(0, Math.floor(e.clockMs)))
    .u64(e.entrySeq)
    .u32(e.ops.length);
  for (const o of e.ops) {
    if (o.sig.length !== SIG_BYTES) throw new RangeError("an ed25519 signature is 64 bytes");
    w.bytes(o.payload).raw(o.sig);
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
  const ops = r.list(4 + SIG_BYTES, () => ({ payload: r.bytes(), sig: r.raw(SIG_BYTES) }));
  if (r.left !== 0) throw new OpCodecError("TRAILING_BYTES", `${r.left} bytes after the entry`);
  return { proposer, clockMs, entrySeq, ops };
}
