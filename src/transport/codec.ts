// Wire codec for every protocol message: compact, versioned binary with a maximum frame size.
// Decoding untrusted bytes never throws: it returns a typed CodecError for anything malformed, and it
// never allocates by an attacker-chosen length (every count and length is checked against the bytes
// that are actually left before anything is built). The encoding is canonical: decode(encode(m))
// equals m, and a frame that decodes re-encodes to the same bytes.

import { ByteReader, ByteWriter } from "../bft/bytes.ts";
import { CERT_SIG_BYTES, type CounterCert, type CounterValue } from "../bft/trusted.ts";
import type {
  Batch,
  ChainLink,
  CheckpointProof,
  ClientAuth,
  ClientRequest,
  HEntry,
  HNewView,
  HNewViewSummary,
  HViewChange,
  Message,
  PPrePrepare,
  PPrePrepareRef,
  PPrepare,
  PPreparedProof,
  PViewChange,
  ReplicaSig,
} from "../bft/types.ts";
import { OrdererError } from "../util/errors.ts";

export const WIRE_VERSION = 5;
/** Default largest frame a peer may send (a STATE message with its batches is the biggest one). */
export const FRAME_MAX_BYTES = 64 * 1024 * 1024;

export type CodecErrorCode =
  | "TRUNCATED"
  | "OVERSIZED"
  | "BAD_VERSION"
  | "UNKNOWN_TYPE"
  | "BAD_LENGTH"
  | "BAD_VALUE"
  | "TRAILING_BYTES";

export class CodecError extends OrdererError<CodecErrorCode> {
  override readonly name = "CodecError";
}

export type DecodeResult =
  | { readonly ok: true; readonly msg: Message }
  | { readonly ok: false; readonly error: CodecError };

/** Every message type, in wire-tag order (tag = index + 1). */
export const MESSAGE_TYPES = [
  "request",
  "status",
  "state",
  "checkpoint",
  "h-prepare",
  "h-commit",
  "h-view-change",
  "h-new-view",
  "h-commit-nv",
  "p-pre-prepare",
  "p-prepare",
  "p-commit",
  "p-view-change",
  "p-new-view",
  "snapshot",
  "h-proof",
  "h-certs",
  "batch-fetch",
  "batch",
] as const satisfies readonly Message["type"][];

const TYPE_TAG = new Map<string, number>(MESSAGE_TYPES.map((t, i) => [t, i + 1]));

// Smallest encodings, used to bound counts before allocating.
const MIN_BYTES = 4; // a length-prefixed empty byte string
const MIN_CERT = 4 + 4 + 16 + 1 + MIN_BYTES;
const MIN_REQUEST = MIN_BYTES + 8 + MIN_BYTES + 1 + MIN_BYTES;
const MIN_SIG = 4 + MIN_BYTES;

// ------------------------------------------------------------------ encoding

export function encodeMessage(msg: Message): Uint8Array {
  const tag = TYPE_TAG.get(msg.type);
  if (tag === undefined)
    throw new CodecError("UNKNOWN_TYPE", `cannot encode message type ${String(msg.type)}`);
  const w = new ByteWriter(256).u8(WIRE_VERSION).u8(tag);
  switch (msg.type) {
    case "request":
      writeRequest(w, msg.request);
      break;
    case "status":
      w.u64(msg.view).u64(msg.target).u64(msg.lastExecuted).u64(msg.stableSeq);
      break;
    case "state":
      writeCheckpointProof(w, msg.checkpoint);
      w.u64(msg.fromSeq).u32(msg.batches.length);
      for (const b of msg.batches) writeBatch(w, b);
      break;
    case "checkpoint":
      w.u64(msg.seq).bytes(msg.stateDigest).bytes(msg.clientsDigest).bytes(msg.sig);
      break;
    case "h-prepare":
      w.u64(msg.view).u64(msg.seq);
      writeBatch(w, msg.batch);
      writeCert(w, msg.cert);
      break;
    case "h-commit":
      w.u64(msg.view).u64(msg.seq).bytes(msg.batchDigest);
      writeCert(w, msg.cert);
      writeCert(w, msg.prepareCert);
      break;
    case "h-view-change":
      writeHViewChange(w, msg);
      break;
    case "h-new-view":
      writeHNewView(w, msg);
      break;
    case "h-commit-nv":
      w.u64(msg.view).bytes(msg.nvDigest);
      writeCert(w, msg.cert);
      break;
    case "h-proof":
      w.u32(msg.culprit);
      for (const side of [msg.proof.a, msg.proof.b]) {
        writeCert(w, side.cert);
        w.bytes(side.digest);
      }
      break;
    case "h-certs":
      w.u32(msg.certs.length);
      for (const e of msg.certs) {
        writeCert(w, e.cert);
        w.bytes(e.digest);
      }
      break;
    case "p-pre-prepare":
      writePrePrepare(w, msg);
      break;
    case "p-prepare":
    case "p-commit":
      w.u64(msg.view).u64(msg.seq).bytes(msg.batchDigest).u32(msg.replica).bytes(msg.sig);
      break;
    case "p-view-change":
      writePViewChange(w, msg);
      break;
    case "p-new-view":
      w.u64(msg.view).u32(msg.vcs.length);
      for (const vc of msg.vcs) writePViewChange(w, vc);
      w.u32(msg.prePrepares.length);
      for (const pp of msg.prePrepares) writePrePrepareRef(w, pp);
      w.bytes(msg.sig);
      break;
    case "batch-fetch":
      w.u32(msg.digests.length);
      for (const d of msg.digests) w.bytes(d);
      break;
    case "batch":
      writeBatch(w, msg.batch);
      break;
    case "snapshot":
      writeCheckpointProof(w, msg.checkpoint);
      w.u32(msg.clients.length);
      for (const [id, low, seen, lastSeq, reply] of msg.clients) {
        w.str(id).u64(low).u64(lastSeq).u32(seen.length);
        for (const s of seen) w.u64(s);
        if (reply) w.u8(1).u64(reply.reqNo).bytes(reply.data);
        else w.u8(0);
      }
      break;
  }
  return w.finish();
}

function writeRequest(w: ByteWriter, r: ClientRequest): void {
  w.str(r.clientId).u64(r.reqNo).bytes(r.op);
  if (r.auth.scheme === "ed25519") w.u8(1).bytes(r.auth.sig);
  else {
    w.u8(2).u32(r.auth.macs.length);
    for (const m of r.auth.macs) w.bytes(m);
  }
}

function writeBatch(w: ByteWriter, b: Batch): void {
  w.u32(b.requests.length);
  for (const r of b.requests) writeRequest(w, r);
}

function writeValue(w: ByteWriter, v: CounterValue): void {
  w.u64(v.view).u64(v.slot);
}

function writeCert(w: ByteWriter, c: CounterCert): void {
  w.u32(c.subsystem).u32(c.counter);
  writeValue(w, c.value);
  if (c.prev) {
    w.u8(1);
    writeValue(w, c.prev);
  } else w.u8(0);
  w.bytes(c.sig);
}

function writeCheckpointProof(w: ByteWriter, p: CheckpointProof): void {
  w.u64(p.seq).bytes(p.stateDigest).bytes(p.clientsDigest).u32(p.sigs.length);
  for (const s of p.sigs) w.u32(s.replica).bytes(s.sig);
}

function writeHNewView(w: ByteWriter, nv: HNewView): void {
  w.u64(nv.view).u32(nv.vcs.length);
  for (const vc of nv.vcs) writeHViewChange(w, vc);
  writeCert(w, nv.cert);
}

function writeHViewChange(w: ByteWriter, vc: HViewChange): void {
  w.u32(vc.replica).u64(vc.newView);
  writeCheckpointProof(w, vc.checkpoint);
  if (vc.nv) {
    const nv = vc.nv;
    w.u8(1)
      .u64(nv.view)
      .u64(nv.checkpointSeq)
      .bytes(nv.checkpointDigest)
      .u64(nv.maxSeq)
      .u32(nv.batchDigests.length);
    for (const d of nv.batchDigests) w.bytes(d);
    w.bytes(nv.vcSetDigest).u32(nv.certs.length);
    for (const c of nv.certs) writeCert(w, c);
  } else w.u8(0);
  w.u32(vc.entries.length);
  for (const e of vc.entries) {
    w.u64(e.seq).u64(e.view).bytes(e.batchDigest);
    writeCert(w, e.cert);
  }
  w.u32(vc.chain.length);
  for (const link of vc.chain) {
    writeCert(w, link.cert);
    w.bytes(link.digest);
  }
  w.u32(vc.proofs.length);
  for (const p of vc.proofs) writeHNewView(w, p);
}

function writePrePrepare(w: ByteWriter, pp: PPrePrepare): void {
  w.u64(pp.view).u64(pp.seq);
  writeBatch(w, pp.batch);
  w.bytes(pp.sig);
}

function writePrePrepareRef(w: ByteWriter, pp: PPrePrepareRef): void {
  w.u64(pp.view).u64(pp.seq).bytes(pp.batchDigest).bytes(pp.sig);
}

function writePViewChange(w: ByteWriter, vc: PViewChange): void {
  w.u32(vc.replica).u64(vc.newView);
  writeCheckpointProof(w, vc.checkpoint);
  w.u32(vc.prepared.length);
  for (const p of vc.prepared) {
    writePrePrepareRef(w, p.prePrepare);
    w.u32(p.prepares.length);
    for (const x of p.prepares) w.u64(x.view).u64(x.seq).bytes(x.batchDigest).u32(x.replica).bytes(x.sig);
  }
  w.bytes(vc.sig);
}

// ------------------------------------------------------------------ decoding

/** The shared reader, failing with CodecError (decodeMessage turns those into results). */
class Reader extends ByteReader {
  constructor(buf: Uint8Array) {
    super(buf, (code, message) => new CodecError(code, message));
  }
}

/** Decodes one frame. Never throws. */
export function decodeMessage(frame: Uint8Array, maxBytes = FRAME_MAX_BYTES): DecodeResult {
  try {
    if (!(frame instanceof Uint8Array)) throw new CodecError("BAD_VALUE", "frame is not bytes");
    if (frame.length > maxBytes)
      throw new CodecError("OVERSIZED", `frame of ${frame.length} bytes exceeds ${maxBytes}`);
    const r = new Reader(frame);
    const version = r.u8();
    if (version !== WIRE_VERSION)
      throw new CodecError("BAD_VERSION", `wire version ${version}, expected ${WIRE_VERSION}`);
    const tag = r.u8();
    const type = MESSAGE_TYPES[tag - 1];
    if (type === undefined) throw new CodecError("UNKNOWN_TYPE", `message type tag ${tag}`);
    const msg = readBody(r, type);
    if (r.left !== 0) throw new CodecError("TRAILING_BYTES", `${r.left} bytes after the message`);
    return { ok: true, msg };
  } catch (err) {
    if (err instanceof CodecError) return { ok: false, error: err };
    // Defensive: anything else is still reported as malformed input, never thrown.
    return { ok: false, error: new CodecError("BAD_VALUE", `malformed frame: ${(err as Error).message}`) };
  }
}

function readBody(r: Reader, type: (typeof MESSAGE_TYPES)[number]): Message {
  switch (type) {
    case "request":
      return { type, request: readRequest(r) };
    case "status": {
      const view = r.u64();
      const target = r.u64();
      return { type, view, target, lastExecuted: r.u64(), stableSeq: r.u64() };
    }
    case "state": {
      const checkpoint = readCheckpointProof(r);
      const fromSeq = r.u64();
      return { type, checkpoint, fromSeq, batches: r.list(4, () => readBatch(r)) };
    }
    case "checkpoint": {
      const seq = r.u64();
      const stateDigest = r.bytes();
      const clientsDigest = r.bytes();
      return { type, seq, stateDigest, clientsDigest, sig: r.bytes() };
    }
    case "h-prepare": {
      const view = r.u64();
      const seq = r.u64();
      const batch = readBatch(r);
      return { type, view, seq, batch, cert: readCert(r) };
    }
    case "h-commit": {
      const view = r.u64();
      const seq = r.u64();
      const batchDigest = r.bytes();
      const cert = readCert(r);
      return { type, view, seq, batchDigest, cert, prepareCert: readCert(r) };
    }
    case "h-view-change":
      return readHViewChange(r, false);
    case "h-new-view":
      return readHNewView(r, false);
    case "h-commit-nv": {
      const view = r.u64();
      const nvDigest = r.bytes();
      return { type, view, nvDigest, cert: readCert(r) };
    }
    case "h-proof": {
      const culprit = r.u32();
      const aCert = readCert(r);
      const a = { cert: aCert, digest: r.bytes(64) };
      const bCert = readCert(r);
      return { type, culprit, proof: { a, b: { cert: bCert, digest: r.bytes(64) } } };
    }
    case "h-certs":
      return {
        type,
        certs: r.list(MIN_CERT + MIN_BYTES, () => ({ cert: readCert(r), digest: r.bytes(64) })),
      };
    case "p-pre-prepare":
      return readPrePrepare(r);
    case "p-prepare":
    case "p-commit": {
      const view = r.u64();
      const seq = r.u64();
      const batchDigest = r.bytes();
      const replica = r.u32();
      return { type, view, seq, batchDigest, replica, sig: r.bytes() } as PPrepare;
    }
    case "p-view-change":
      return readPViewChange(r);
    case "p-new-view": {
      const view = r.u64();
      const vcs = r.list(4 + 8, () => readPViewChange(r));
      const prePrepares = r.list(16 + 2 * MIN_BYTES, () => readPrePrepareRef(r));
      return { type, view, vcs, prePrepares, sig: r.bytes() };
    }
    case "batch-fetch":
      return { type, digests: r.list(MIN_BYTES, () => r.bytes(64)) };
    case "batch":
      return { type, batch: readBatch(r) };
    case "snapshot": {
      const checkpoint = readCheckpointProof(r);
      const clients = r.list(MIN_BYTES + 8 + 8 + 4 + 1, () => {
        const id = r.str();
        const low = r.u64();
        const lastSeq = r.u64();
        const seen = r.list(8, () => r.u64());
        const reply = r.flag() ? { reqNo: r.u64(), data: r.bytes() } : null;
        return [id, low, seen, lastSeq, reply] as const;
      });
      return { type, checkpoint, clients };
    }
  }
}

function readRequest(r: Reader): ClientRequest {
  const clientId = r.str();
  const reqNo = r.u64();
  const op = r.bytes();
  const scheme = r.u8();
  let auth: ClientAuth;
  if (scheme === 1) auth = { scheme: "ed25519", sig: r.bytes() };
  else if (scheme === 2) auth = { scheme: "mac", macs: r.list(MIN_BYTES, () => r.bytes()) };
  else throw new CodecError("BAD_VALUE", `client auth scheme ${scheme}`);
  return { clientId, reqNo, op, auth };
}

function readBatch(r: Reader): Batch {
  return { requests: r.list(MIN_REQUEST, () => readRequest(r)) };
}

function readValue(r: Reader): CounterValue {
  const view = r.u64();
  return { view, slot: r.u64() };
}

function readCert(r: Reader): CounterCert {
  const subsystem = r.u32();
  const counter = r.u32();
  const value = readValue(r);
  const prev = r.flag() ? readValue(r) : undefined;
  const sig = r.bytes(CERT_SIG_BYTES);
  return prev ? { subsystem, counter, value, prev, sig } : { subsystem, counter, value, sig };
}

function readCheckpointProof(r: Reader): CheckpointProof {
  const seq = r.u64();
  const stateDigest = r.bytes();
  const clientsDigest = r.bytes();
  const sigs: ReplicaSig[] = r.list(MIN_SIG, () => {
    const replica = r.u32();
    return { replica, sig: r.bytes() };
  });
  return { seq, stateDigest, clientsDigest, sigs };
}

/** `asProof`: a NEW-VIEW inside a VIEW-CHANGE's proofs, whose VIEW-CHANGEs carry no proofs. */
function readHNewView(r: Reader, asProof: boolean): HNewView {
  const view = r.u64();
  const vcs = r.list(4 + 8, () => readHViewChange(r, asProof));
  return { type: "h-new-view", view, vcs, cert: readCert(r) };
}

function readHViewChange(r: Reader, insideProof: boolean): HViewChange {
  const replica = r.u32();
  const newView = r.u64();
  const checkpoint = readCheckpointProof(r);
  let nv: HNewViewSummary | null = null;
  if (r.flag()) {
    const view = r.u64();
    const checkpointSeq = r.u64();
    const checkpointDigest = r.bytes();
    const maxSeq = r.u64();
    const batchDigests = r.list(MIN_BYTES, () => r.bytes(64));
    const vcSetDigest = r.bytes();
    const certs = r.list(MIN_CERT, () => readCert(r));
    nv = { view, checkpointSeq, checkpointDigest, maxSeq, batchDigests, vcSetDigest, certs };
  }
  const entries: HEntry[] = r.list(16 + MIN_BYTES + MIN_CERT, () => {
    const seq = r.u64();
    const view = r.u64();
    const batchDigest = r.bytes(64);
    return { seq, view, batchDigest, cert: readCert(r) };
  });
  const chain: ChainLink[] = r.list(MIN_CERT + MIN_BYTES, () => {
    const cert = readCert(r);
    return { cert, digest: r.bytes() };
  });
  const proofs = r.list(8 + 4 + MIN_CERT, () => readHNewView(r, true));
  if (insideProof && proofs.length > 0)
    throw new CodecError("BAD_VALUE", "a VIEW-CHANGE inside a proof carries proofs of its own");
  return { type: "h-view-change", replica, newView, checkpoint, nv, entries, chain, proofs };
}

function readPrePrepare(r: Reader): PPrePrepare {
  const view = r.u64();
  const seq = r.u64();
  const batch = readBatch(r);
  return { type: "p-pre-prepare", view, seq, batch, sig: r.bytes() };
}

function readPrePrepareRef(r: Reader): PPrePrepareRef {
  const view = r.u64();
  const seq = r.u64();
  const batchDigest = r.bytes(64);
  return { view, seq, batchDigest, sig: r.bytes() };
}

function readPViewChange(r: Reader): PViewChange {
  const replica = r.u32();
  const newView = r.u64();
  const checkpoint = readCheckpointProof(r);
  const prepared: PPreparedProof[] = r.list(16 + 2 * MIN_BYTES + 4, () => {
    const prePrepare = readPrePrepareRef(r);
    const prepares: PPrepare[] = r.list(16 + MIN_BYTES + 4 + MIN_BYTES, () => {
      const view = r.u64();
      const seq = r.u64();
      const batchDigest = r.bytes();
      const rep = r.u32();
      return { type: "p-prepare", view, seq, batchDigest, replica: rep, sig: r.bytes() };
    });
    return { prePrepare, prepares };
  });
  return { type: "p-view-change", replica, newView, checkpoint, prepared, sig: r.bytes() };
}
