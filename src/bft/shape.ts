// The structural check of a peer message: every field of the right type, nested records included, as
// the wire codec (src/transport/codec.ts) guarantees for a decoded frame. ReplicaCore.step() drops what
// fails it as "malformed" before any handler runs, so a handler may rely on the types and an exception
// it throws is a bug, not a misbehaving peer. Only types are checked here: quorums, signatures, digest
// lengths and ranges stay with the handlers, which drop what they refuse with a reason of their own.

import type { MessageType } from "./types.ts";

type Rec = { readonly [key: string]: unknown };
type Check = (m: Rec) => boolean;

const obj = (x: unknown): x is Rec => typeof x === "object" && x !== null && !Array.isArray(x);
/** A non-negative safe integer (the codec's u64). */
const nat = (x: unknown): boolean => Number.isSafeInteger(x) && (x as number) >= 0;
/** The codec's u32 (replica and subsystem ids, counter numbers). */
const u32 = (x: unknown): boolean => nat(x) && (x as number) <= 0xffff_ffff;
const bytes = (x: unknown): boolean => x instanceof Uint8Array;
/** An array whose every element passes `ok` (holes of a sparse array too, which every() would skip). */
function list(x: unknown, ok: (e: unknown) => boolean): boolean {
  if (!Array.isArray(x)) return false;
  for (let i = 0; i < x.length; i++) if (!ok(x[i])) return false;
  return true;
}
const record =
  (ok: Check) =>
  (x: unknown): boolean =>
    obj(x) && ok(x);

// ------------------------------------------------------------------ shared records

const auth = record((a) =>
  a.scheme === "ed25519" ? bytes(a.sig) : a.scheme === "mac" && list(a.macs, bytes),
);
const request = record((r) => typeof r.clientId === "string" && nat(r.reqNo) && bytes(r.op) && auth(r.auth));
const batch = record((b) => list(b.requests, request));
const value = record((v) => nat(v.view) && nat(v.slot));
const cert = record(
  (c) =>
    u32(c.subsystem) &&
    u32(c.counter) &&
    value(c.value) &&
    (c.prev === undefined || value(c.prev)) &&
    bytes(c.sig),
);
const certified = record((e) => cert(e.cert) && bytes(e.digest));
const replicaSig = record((s) => u32(s.replica) && bytes(s.sig));
const checkpointProof = record(
  (p) => nat(p.seq) && bytes(p.stateDigest) && bytes(p.clientsDigest) && list(p.sigs, replicaSig),
);
const reply = (x: unknown): boolean => x === null || (obj(x) && nat(x.reqNo) && bytes(x.data));
/** One entry of a ClientTableSnapshot: [clientId, low, seen, lastSeq, reply]. */
const clientEntry = (x: unknown): boolean =>
  Array.isArray(x) &&
  x.length === 5 &&
  typeof x[0] === "string" &&
  nat(x[1]) &&
  list(x[2], nat) &&
  nat(x[3]) &&
  reply(x[4]);

// ------------------------------------------------------------------ hybrid records

const summary = record(
  (s) =>
    nat(s.view) &&
    nat(s.checkpointSeq) &&
    bytes(s.checkpointDigest) &&
    nat(s.maxSeq) &&
    list(s.batchDigests, bytes) &&
    bytes(s.vcSetDigest) &&
    list(s.certs, cert),
);
const entry = record((e) => nat(e.seq) && nat(e.view) && bytes(e.batchDigest) && cert(e.cert));
const link = record((l) => cert(l.cert) && bytes(l.digest));

/**
 * A VIEW-CHANGE; `insideProof`: one inside a NEW-VIEW that is itself a proof, which carries no proofs
 * of its own (so the nesting is at most two NEW-VIEWs deep, as the codec reads it).
 */
function hViewChange(m: unknown, insideProof: boolean): boolean {
  return (
    obj(m) &&
    m.type === "h-view-change" &&
    u32(m.replica) &&
    nat(m.newView) &&
    checkpointProof(m.checkpoint) &&
    (m.nv === null || summary(m.nv)) &&
    list(m.entries, entry) &&
    list(m.chain, link) &&
    Array.isArray(m.proofs) &&
    (insideProof ? m.proofs.length === 0 : list(m.proofs, (p) => hNewView(p, true)))
  );
}

/** A NEW-VIEW; `asProof`: one inside a VIEW-CHANGE's proofs. */
function hNewView(m: unknown, asProof: boolean): boolean {
  return (
    obj(m) &&
    m.type === "h-new-view" &&
    nat(m.view) &&
    list(m.vcs, (vc) => hViewChange(vc, asProof)) &&
    cert(m.cert)
  );
}

// ------------------------------------------------------------------ PBFT records

const prePrepareRef = record((p) => nat(p.view) && nat(p.seq) && bytes(p.batchDigest) && bytes(p.sig));
/** A PREPARE or COMMIT (they have the same fields). */
const vote = (type: "p-prepare" | "p-commit") =>
  record(
    (m) =>
      m.type === type && nat(m.view) && nat(m.seq) && bytes(m.batchDigest) && u32(m.replica) && bytes(m.sig),
  );
const pPrepare = vote("p-prepare");
const preparedProof = record((p) => prePrepareRef(p.prePrepare) && list(p.prepares, pPrepare));
const pViewChange = record(
  (m) =>
    m.type === "p-view-change" &&
    u32(m.replica) &&
    nat(m.newView) &&
    checkpointProof(m.checkpoint) &&
    list(m.prepared, preparedProof) &&
    bytes(m.sig),
);

// ------------------------------------------------------------------ messages

/** The check of each message type (the record it is given is the message, with that type). */
const CHECKS = new Map<MessageType, Check>([
  ["request", (m) => request(m.request)],
  ["status", (m) => nat(m.view) && nat(m.target) && nat(m.lastExecuted) && nat(m.stableSeq)],
  ["state", (m) => checkpointProof(m.checkpoint) && nat(m.fromSeq) && list(m.batches, batch)],
  ["checkpoint", (m) => nat(m.seq) && bytes(m.stateDigest) && bytes(m.clientsDigest) && bytes(m.sig)],
  ["snapshot", (m) => checkpointProof(m.checkpoint) && list(m.clients, clientEntry)],
  ["h-prepare", (m) => nat(m.view) && nat(m.seq) && batch(m.batch) && cert(m.cert)],
  [
    "h-commit",
    (m) => nat(m.view) && nat(m.seq) && bytes(m.batchDigest) && cert(m.cert) && cert(m.prepareCert),
  ],
  ["h-view-change", (m) => hViewChange(m, false)],
  ["h-new-view", (m) => hNewView(m, false)],
  ["h-commit-nv", (m) => nat(m.view) && bytes(m.nvDigest) && cert(m.cert)],
  ["h-proof", (m) => u32(m.culprit) && obj(m.proof) && certified(m.proof.a) && certified(m.proof.b)],
  ["h-certs", (m) => list(m.certs, certified)],
  ["p-pre-prepare", (m) => nat(m.view) && nat(m.seq) && batch(m.batch) && bytes(m.sig)],
  ["p-prepare", pPrepare],
  ["p-commit", vote("p-commit")],
  ["p-view-change", pViewChange],
  [
    "p-new-view",
    (m) => nat(m.view) && list(m.vcs, pViewChange) && list(m.prePrepares, prePrepareRef) && bytes(m.sig),
  ],
  ["batch-fetch", (m) => list(m.digests, bytes)],
  ["batch", (m) => batch(m.batch)],
]);

/** The message types the check knows (every member of the Message union). */
export const SHAPE_CHECKED_TYPES: readonly MessageType[] = [...CHECKS.keys()];

/**
 * Why `msg` is not structurally a Message ("not-an-object", "unknown-type" or "bad-<type>"), or null
 * when every field has its type. Never throws (on acyclic input).
 */
export function messageShapeProblem(msg: unknown): string | null {
  if (!obj(msg)) return "not-an-object";
  const check = typeof msg.type === "string" ? CHECKS.get(msg.type as MessageType) : undefined;
  if (check === undefined) return "unknown-type";
  return check(msg) ? null : `bad-${msg.type as string}`;
}
