// The counter socket's frames: a 4-byte big-endian length, then a body whose first byte is its type.
//
//   server → client  HELLO  version u8, subsystem u32, counter public key (32), nonce (32)
//   client → server  AUTH   ed25519 signature by the replica's key over authBytes(subsystem, nonce)
//   server → client  READY  count u32, (counter u32, view u64, slot u64)*
//   client → server  REQ    reqId u32, op u8 (1 independent, 2 continuing), counter u32, view u64,
//                           slot u64, digest (u32 length + bytes)
//   server → client  CERT   reqId u32, view u64, slot u64, hasPrev u8 [, view u64, slot u64], sig (64)
//   server → client  ERR    reqId u32, code, message (strings)
//
// Only the replica whose key the counter is configured with gets past AUTH: another replica's process
// (an attacker's) cannot make this counter certify anything.

import { ByteReader, ByteWriter } from "../bft/bytes.ts";
import { CERT_SIG_BYTES, COUNTERS_MAX, type CounterValue, validValue } from "../bft/trusted.ts";
import { CounterLinkError } from "./errors.ts";

export const PROTOCOL_VERSION = 1;
/** No frame of this protocol is larger. */
export const FRAME_BYTES_MAX = 2048;
export const NONCE_BYTES = 32;

export const T_HELLO = 1;
export const T_AUTH = 2;
export const T_READY = 3;
export const T_REQ = 4;
export const T_CERT = 5;
export const T_ERR = 6;

export const OP_INDEPENDENT = 1;
export const OP_CONTINUING = 2;

const AUTH_DOMAIN = "orderer-counter-auth-v1";

export function authBytes(subsystem: number, nonce: Uint8Array): Uint8Array {
  return new ByteWriter(64).str(AUTH_DOMAIN).u32(subsystem).bytes(nonce).finish();
}

export interface Hello {
  readonly version: number;
  readonly subsystem: number;
  readonly publicKey: Uint8Array;
  readonly nonce: Uint8Array;
}

export interface CertRequest {
  readonly reqId: number;
  readonly op: typeof OP_INDEPENDENT | typeof OP_CONTINUING;
  readonly counter: number;
  readonly value: CounterValue;
  readonly digest: Uint8Array;
}

export type CertReply =
  | {
      readonly type: "cert";
      readonly reqId: number;
      readonly value: CounterValue;
      readonly prev?: CounterValue;
      readonly sig: Uint8Array;
    }
  | { readonly type: "err"; readonly reqId: number; readonly code: string; readonly message: string };

const reader = (body: Uint8Array) =>
  new ByteReader(body, (code, message) => new CounterLinkError("BAD_FRAME", `${code}: ${message}`));

/** Prefixes a body with its length. */
export function frame(body: Uint8Array): Uint8Array {
  if (body.length > FRAME_BYTES_MAX) throw new CounterLinkError("FRAME_TOO_LARGE", `${body.length} bytes`);
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/** Splits a byte stream into frame bodies; refuses frames over FRAME_BYTES_MAX. */
export class FrameReader {
  private buf = new Uint8Array(0);

  push(chunk: Uint8Array): Uint8Array[] {
    const joined = new Uint8Array(this.buf.length + chunk.length);
    joined.set(this.buf);
    joined.set(chunk, this.buf.length);
    const out: Uint8Array[] = [];
    let pos = 0;
    while (joined.length - pos >= 4) {
      const len = new DataView(joined.buffer, joined.byteOffset + pos, 4).getUint32(0);
      if (len === 0 || len > FRAME_BYTES_MAX)
        throw new CounterLinkError("BAD_FRAME", `frame of ${len} bytes`);
      if (joined.length - pos - 4 < len) break;
      out.push(joined.slice(pos + 4, pos + 4 + len));
      pos += 4 + len;
    }
    this.buf = joined.slice(pos);
    if (this.buf.length > FRAME_BYTES_MAX + 4) throw new CounterLinkError("BAD_FRAME", "too much buffered");
    return out;
  }
}

export function encodeHello(h: Hello): Uint8Array {
  const w = new ByteWriter(80).u8(T_HELLO).u8(h.version).u32(h.subsystem);
  return frame(concat(w.finish(), h.publicKey, h.nonce));
}

export function encodeReady(counters: ReadonlyMap<number, CounterValue>): Uint8Array {
  const w = new ByteWriter(64).u8(T_READY).u32(counters.size);
  for (const [c, v] of counters) w.u32(c).u64(v.view).u64(v.slot);
  return frame(w.finish());
}

export function decodeReady(body: Uint8Array): Map<number, CounterValue> {
  const r = reader(body);
  if (r.u8() !== T_READY) throw new CounterLinkError("BAD_FRAME", "expected READY");
  const n = r.u32();
  if (n > COUNTERS_MAX) throw new CounterLinkError("BAD_FRAME", "too many counters");
  const out = new Map<number, CounterValue>();
  for (let i = 0; i < n; i++) {
    const c = r.u32();
    const v = { view: r.u64(), slot: r.u64() };
    if (c >= COUNTERS_MAX || !validValue(v)) throw new CounterLinkError("BAD_FRAME", "bad counter value");
    out.set(c, v);
  }
  return out;
}

export function encodeRequest(q: CertRequest): Uint8Array {
  return frame(
    new ByteWriter(96)
      .u8(T_REQ)
      .u32(q.reqId)
      .u8(q.op)
      .u32(q.counter)
      .u64(q.value.view)
      .u64(q.value.slot)
      .bytes(q.digest)
      .finish(),
  );
}

export function decodeRequest(body: Uint8Array): CertRequest {
  const r = reader(body);
  if (r.u8() !== T_REQ) throw new CounterLinkError("BAD_FRAME", "expected REQ");
  const reqId = r.u32();
  const op = r.u8();
  if (op !== OP_INDEPENDENT && op !== OP_CONTINUING)
    throw new CounterLinkError("BAD_FRAME", `unknown op ${op}`);
  const counter = r.u32();
  const value = { view: r.u64(), slot: r.u64() };
  const digest = r.bytes(64);
  if (r.left !== 0) throw new CounterLinkError("BAD_FRAME", "trailing bytes");
  return { reqId, op, counter, value, digest };
}

export function encodeCert(
  reqId: number,
  value: CounterValue,
  prev: CounterValue | undefined,
  sig: Uint8Array,
): Uint8Array {
  const w = new ByteWriter(128)
    .u8(T_CERT)
    .u32(reqId)
    .u64(value.view)
    .u64(value.slot)
    .u8(prev ? 1 : 0);
  if (prev) w.u64(prev.view).u64(prev.slot);
  return frame(concat(w.finish(), sig));
}

export function encodeError(reqId: number, code: string, message: string): Uint8Array {
  return frame(
    new ByteWriter(128).u8(T_ERR).u32(reqId).str(code.slice(0, 64)).str(message.slice(0, 512)).finish(),
  );
}

export function decodeReply(body: Uint8Array): CertReply {
  const r = reader(body);
  const t = r.u8();
  const reqId = r.u32();
  if (t === T_ERR) return { type: "err", reqId, code: r.str(64), message: r.str(512) };
  if (t !== T_CERT) throw new CounterLinkError("BAD_FRAME", `unexpected frame type ${t}`);
  const value = { view: r.u64(), slot: r.u64() };
  const prev = r.flag() ? { view: r.u64(), slot: r.u64() } : undefined;
  const sig = r.raw(CERT_SIG_BYTES);
  if (r.left !== 0) throw new CounterLinkError("BAD_FRAME", "trailing bytes");
  return prev ? { type: "cert", reqId, value, prev, sig } : { type: "cert", reqId, value, sig };
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
