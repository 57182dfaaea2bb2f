// The counter link's frames: a 4-byte big-endian length, then a body whose first byte is its type.
//
// The UNIX socket carries the handshake and nothing else:
//   server → client  HELLO  version u8, subsystem u32, counter public key (32), nonce (32)
//   client → server  AUTH   ed25519 signature by the replica's key over authBytes(subsystem, nonce)
//   server → client  LINK   session u32, session key (32), count u32, (counter u32, view u64, slot u64)*
//
// Certification runs over two FIFOs beside the socket (fifoPaths): the replica's main thread writes a
// request and blocks in read(2) until the reply is in, and the counter's certifying thread blocks the
// same way on its side: one wake-up each way, no event loop, no thread hand-off (about 0.07 ms a round
// trip here, against 0.25–2 ms over the socket). Every frame there is sealed with the session's key
// (HMAC-SHA256, first MAC_BYTES bytes, over the whole body):
//   client → server  FREQ   session u32, REQ body, mac
//   server → client  FREPLY session u32, CERT or ERR body, mac
//   either side      NUDGE  (no body): wakes a reader blocked on its FIFO; means nothing else
// with the bodies
//   REQ    type, reqId u32, op u8 (1 independent, 2 continuing), counter u32, view u64, slot u64,
//          digest (u32 length + bytes)
//   CERT   type, reqId u32, view u64, slot u64, hasPrev u8 [, view u64, slot u64], sig (64)
//   ERR    type, reqId u32, code, message (strings)
//
// Only the replica whose key the counter is configured with gets past AUTH, and the session key leaves
// the counter only over that authenticated connection: another process that can open the FIFOs (an
// attacker's) cannot make this counter certify anything. It can only disturb the link (steal or
// scramble frames), which the replica sees as a counter that does not answer.

import { timingSafeEqual } from "node:crypto";
import { ByteReader, ByteWriter } from "../bft/bytes.ts";
import { CERT_SIG_BYTES, COUNTERS_MAX, type CounterValue, validValue } from "../bft/trusted.ts";
import { hmacSha256 } from "../crypto/node-crypto.ts";
import { CounterLinkError } from "./errors.ts";

export const PROTOCOL_VERSION = 2;
/** No frame of this protocol is larger. */
export const FRAME_BYTES_MAX = 2048;
export const NONCE_BYTES = 32;

export const T_HELLO = 1;
export const T_AUTH = 2;
export const T_LINK = 3;
export const T_REQ = 4;
export const T_CERT = 5;
export const T_ERR = 6;
export const T_FREQ = 7;
export const T_FREPLY = 8;
export const T_NUDGE = 9;

/** Bytes of a sealed frame's MAC (truncated HMAC-SHA256). */
export const MAC_BYTES = 16;
export const SESSION_KEY_BYTES = 32;
/** What one read(2) of a FIFO asks for: a pipe's whole capacity, so frame boundaries stay aligned. */
export const FIFO_READ_BYTES = 65536;

/** The FIFOs of the counter listening at `socketPath`: requests to it, replies from it. */
export function fifoPaths(socketPath: string): { readonly req: string; readonly rep: string } {
  return { req: `${socketPath}.req`, rep: `${socketPath}.rep` };
}

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

export interface Link {
  readonly session: number;
  readonly key: Uint8Array;
  readonly counters: ReadonlyMap<number, CounterValue>;
}

export function encodeLink(l: Link): Uint8Array {
  const w = new ByteWriter(96).u8(T_LINK).u32(l.session).raw(l.key).u32(l.counters.size);
  for (const [c, v] of l.counters) w.u32(c).u64(v.view).u64(v.slot);
  return frame(w.finish());
}

export function decodeLink(body: Uint8Array): Link {
  const r = reader(body);
  if (r.u8() !== T_LINK) throw new CounterLinkError("BAD_FRAME", "expected LINK");
  const session = r.u32();
  const key = r.raw(SESSION_KEY_BYTES).slice();
  const n = r.u32();
  if (n > COUNTERS_MAX) throw new CounterLinkError("BAD_FRAME", "too many counters");
  const out = new Map<number, CounterValue>();
  for (let i = 0; i < n; i++) {
    const c = r.u32();
    const v = { view: r.u64(), slot: r.u64() };
    if (c >= COUNTERS_MAX || !validValue(v)) throw new CounterLinkError("BAD_FRAME", "bad counter value");
    out.set(c, v);
  }
  if (r.left !== 0) throw new CounterLinkError("BAD_FRAME", "trailing bytes");
  return { session, key, counters: out };
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

/** Frames `type, session, inner, MAC(key)` for a FIFO. */
export function seal(type: number, session: number, inner: Uint8Array, key: Uint8Array): Uint8Array {
  const body = new Uint8Array(5 + inner.length + MAC_BYTES);
  body[0] = type;
  new DataView(body.buffer).setUint32(1, session);
  body.set(inner, 5);
  const macAt = 5 + inner.length;
  body.set(hmacSha256(key, body.subarray(0, macAt)).subarray(0, MAC_BYTES), macAt);
  return frame(body);
}

/**
 * The inner body of a sealed frame of `type` in `session` whose MAC verifies under `key`, or null (a
 * frame of another session, another kind, or not made with the key).
 */
export function unseal(body: Uint8Array, type: number, session: number, key: Uint8Array): Uint8Array | null {
  if (body.length < 5 + 1 + MAC_BYTES || body[0] !== type) return null;
  if (new DataView(body.buffer, body.byteOffset, 5).getUint32(1) !== session) return null;
  const macAt = body.length - MAC_BYTES;
  const want = hmacSha256(key, body.subarray(0, macAt));
  if (!timingSafeEqual(want.subarray(0, MAC_BYTES), body.subarray(macAt))) return null;
  return body.subarray(5, macAt);
}

/** A frame that carries nothing: written to wake a thread blocked reading its FIFO. */
export const NUDGE_FRAME: Uint8Array = frame(Uint8Array.of(T_NUDGE));

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
