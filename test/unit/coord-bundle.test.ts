// Bundled writes: a client signs the writes it issues together once, over a Merkle root (coord/ops.ts).
// The entry format that carries their proofs, and the cost and the refusals at two replicas: the one the
// client talks to (intake, then apply) and another one (apply only), each with its own signature cache.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ClientRequest } from "../../src/bft/index.ts";
import {
  BUNDLE_OPS_MAX,
  type BundleProof,
  bundle,
  COORD_MAGIC,
  COORD_MAGIC_V2,
  COORD_PREFIX,
  decodeEntry,
  encodeEntry,
  isCoordEntry,
  OpKind,
  resumeSigningBytes,
  type SignedOp,
  signedMessage,
} from "../../src/coord/ops.ts";
import { CoordService } from "../../src/coord/service.ts";
import { ZTree } from "../../src/coord/tree.ts";
import { cachingVerifier, sha256, signEd25519, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { merkleRoot, verifyMerkleProof } from "../../src/ordering/block.ts";
import { create, TestSession } from "../util/coord-harness.ts";

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

describe("bundle proofs", () => {
  it("every operation of a bundle folds to the root; node:crypto and @noble/hashes agree", () => {
    for (const k of [2, 3, 5, 8, BUNDLE_OPS_MAX]) {
      const payloads = Array.from({ length: k }, (_, i) => Uint8Array.of(i, k));
      const { root, proofs } = bundle(payloads);
      const viaNode = bundle(payloads, sha256);
      assert.deepEqual(viaNode.root, root, `root of ${k}`);
      for (let i = 0; i < k; i++) {
        const m = signedMessage({
          payload: payloads[i] as Uint8Array,
          sig: new Uint8Array(64),
          proof: proofs[i],
        });
        assert.deepEqual(m?.subarray(-32), root, `operation ${i} of ${k}`);
      }
    }
    assert.throws(() => bundle([]), RangeError);
    assert.throws(
      () => bundle(Array.from({ length: BUNDLE_OPS_MAX + 1 }, () => new Uint8Array(1))),
      RangeError,
    );
  });

  it("is the ledger's RFC 6962 tree: the root of a bundle is the Merkle root of a block of its payloads", () => {
    for (const k of [1, 2, 3, 5, 6, 7, 33, BUNDLE_OPS_MAX]) {
      const payloads = Array.from({ length: k }, (_, i) => Uint8Array.of(i, k, 7));
      const { root, proofs } = bundle(payloads);
      assert.deepEqual(root, merkleRoot(payloads), `root of ${k}`);
      for (let i = 0; i < k; i++) {
        assert.equal(proofs[i]?.size, k, `size in proof ${i} of ${k}`);
        assert.ok(
          verifyMerkleProof(payloads[i] as Uint8Array, proofs[i] as BundleProof, root),
          `proof ${i} of ${k}`,
        );
      }
    }
  });

  it("refuses proofs that are too deep, point past their bundle, misstate its size or carry bad hashes", () => {
    const so = (index: number, path: Uint8Array[], size = 2 ** path.length): SignedOp => ({
      payload: Uint8Array.of(1),
      sig: new Uint8Array(64),
      proof: { index, size, path },
    });
    const hashes = (n: number) => Array.from({ length: n }, () => new Uint8Array(32));
    assert.notEqual(signedMessage(so(0, hashes(6))), null, "a well-formed proof of a full bundle folds");
    assert.equal(signedMessage(so(0, hashes(7))), null, "deeper than any bundle");
    assert.equal(signedMessage(so(0, hashes(7), 100)), null, "a bundle larger than BUNDLE_OPS_MAX");
    assert.equal(signedMessage(so(2, hashes(1))), null, "index past the size");
    assert.equal(signedMessage(so(-1, hashes(1))), null, "negative index");
    assert.equal(signedMessage(so(0, [new Uint8Array(31)])), null, "a 31-byte hash");
    assert.equal(signedMessage(so(0, hashes(3), 3)), null, "a path too long for the size");
    assert.equal(signedMessage(so(0, hashes(1), 3)), null, "a path too short for the size");
    // The last of 3 has a path of one hash (its subtree is carried up): folding it as a bundle of 4
    // (two hashes) or of 2 (index out of range) fails.
    const payloads = [Uint8Array.of(1), Uint8Array.of(2), Uint8Array.of(3)];
    const { root, proofs } = bundle(payloads);
    const last = proofs[2] as BundleProof;
    assert.equal(last.path.length, 1);
    const m = signedMessage({ payload: Uint8Array.of(3), sig: new Uint8Array(64), proof: last });
    assert.deepEqual(m?.subarray(-32), root);
    assert.equal(
      signedMessage({ payload: Uint8Array.of(3), sig: new Uint8Array(64), proof: { ...last, size: 4 } }),
      null,
      "the same path claimed for a bundle of 4",
    );
  });
});

describe("coordination entries with bundle proofs", () => {
  const s = new TestSession();
  s.id = 5;

  it("are recognised in both formats, and the reserved prefix covers both", () => {
    for (const magic of [COORD_MAGIC, COORD_MAGIC_V2]) {
      assert.equal(isCoordEntry(Uint8Array.of(...magic, 0)), true);
      assert.deepEqual(magic.subarray(0, COORD_PREFIX.length), COORD_PREFIX);
    }
    assert.equal(isCoordEntry(Uint8Array.of(0x00, 0x5a, 0x4b, 0x03, 0)), false);
  });

  it("keep the first format when no operation has a proof", () => {
    const e = encodeEntry({ proposer: 1, clockMs: 7, entrySeq: 3, ops: [s.op({ kind: OpKind.PING })] });
    assert.deepEqual(e.subarray(0, 4), COORD_MAGIC);
  });

  it("round-trip operations with and without proofs", () => {
    const ops = [...s.bundle([create("/a"), create("/b"), create("/c")]), s.op(create("/d"))];
    const e = encodeEntry({ proposer: 2, clockMs: 9, entrySeq: 4, ops });
    assert.deepEqual(e.subarray(0, 4), COORD_MAGIC_V2);
    const d = decodeEntry(e);
    assert.equal(d.ops.length, 4);
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(d.ops[i]?.payload, ops[i]?.payload);
      assert.deepEqual(d.ops[i]?.sig, ops[i]?.sig);
      assert.deepEqual(d.ops[i]?.proof, ops[i]?.proof);
    }
  });
});

/** A replica's coordination service over its own tree and signature cache; counts curve verifications. */
function replica(self: number) {
  let curve = 0;
  const verify = cachingVerifier(1024, (pk, m, sig) => {
    curve++;
    return verifyEd25519(pk, m, sig);
  });
  const tree = new ZTree({ n: 3, f: 1 }, verify, sha256);
  const proposed: ClientRequest[] = [];
  const svc = new CoordService({
    tree,
    self,
    propose: (req) => {
      proposed.push(req);
    },
    signRequest: (reqNo, op) => ({
      clientId: `coord-${self}`,
      reqNo,
      op,
      auth: { scheme: "ed25519", sig: new Uint8Array(64) },
    }),
    verify,
    hash: sha256,
    entryMaxBytes: 10 * 1024 * 1024,
  });
  let block = 0;
  const apply = (entries: Uint8Array[], requests: { clientId: string; reqNo: number }[]) => {
    const applied = svc.prepare([{ number: ++block, entries, requests }], `coord-${self}`);
    svc.written(applied);
  };
  return { tree, svc, proposed, apply, curve: () => curve };
}

describe("bundled writes through two replicas", () => {
  it("cost one signature check per bundle at each replica; a forged or altered one is refused at both", async () => {
    const s = new TestSession();
    const entry = replica(0);
    const other = replica(1);
    // The session is created through the order (both replicas apply the same entry).
    const open = encodeEntry({ proposer: 0, clockMs: 1_700_000_000_000, entrySeq: 1, ops: [s.open()] });
    entry.apply([open], []);
    other.apply([open], []);
    s.id = entry.tree.sessionIds()[0] as number;
    assert.ok(s.id > 0, "session open");
    const sent: Record<string, unknown>[] = [];
    const nonce = new Uint8Array(32).fill(3);
    const c = entry.svc.open({ send: (m) => sent.push(m), close: () => {} }, nonce);
    assert.ok(c, "connection opened");
    const resumeSig = signEd25519(s.key.privateKey, resumeSigningBytes(s.id, 0, nonce));
    entry.svc.message(
      c,
      JSON.stringify({ type: "resume", id: 1, sessionId: s.id, zxid: 0, sig: b64(resumeSig) }),
    );
    assert.equal(sent.at(-1)?.type, "connected");

    const ops = s.bundle(Array.from({ length: 8 }, (_, i) => create(`/n${i}`)));
    const msg = (id: number, o: SignedOp) =>
      JSON.stringify({
        type: "write",
        id,
        op: b64(o.payload),
        sig: b64(o.sig),
        proof: { i: o.proof?.index, n: o.proof?.size, path: o.proof?.path.map(b64) },
      });
    const before = { entry: entry.curve(), other: other.curve() };
    // A forged copy of the first (another path under the bundle's signature and proof) is refused at intake.
    const forged = { ...(ops[0] as SignedOp), payload: s.sign(s.id, 1, create("/forged")).payload };
    entry.svc.message(c, msg(99, forged));
    assert.equal(sent.at(-1)?.code, "AUTHFAILED", "a forged bundled write is refused at intake");
    for (const [i, o] of ops.entries()) entry.svc.message(c, msg(10 + i, o));
    assert.equal(sent.filter((m) => m.type === "error").length, 1, "the genuine eight are accepted");
    await new Promise((r) => setImmediate(r));
    assert.equal(entry.proposed.length, 1, "one entry");
    // Ordered: the entry, plus the forged operation slipped in by a faulty proposer (replica 2).
    const slipped = encodeEntry({ proposer: 2, clockMs: 1_700_000_000_000, entrySeq: 9, ops: [forged] });
    const entries = [...entry.proposed.map((r) => r.op), slipped];
    const requests = entry.proposed.map((r) => ({ clientId: r.clientId, reqNo: r.reqNo }));
    entry.apply(entries, requests);
    other.apply(entries, []);
    assert.deepEqual(
      sent.filter((m) => m.type === "result").map((m) => m.id),
      [10, 11, 12, 13, 14, 15, 16, 17],
    );
    for (const t of [entry.tree, other.tree]) {
      for (let i = 0; i < 8; i++) assert.ok(t.get(`/n${i}`), `/n${i} applied`);
      assert.equal(t.get("/forged"), undefined, "the forged operation is refused at apply");
      assert.equal(t.stats.badSignatures, 1);
    }
    // Intake: one check for the forgery (refused, not cached), one for the bundle; apply: none more
    // for the bundle, one for the forgery. The other replica: one for the bundle, one for the forgery.
    assert.equal(entry.curve() - before.entry, 3);
    assert.equal(other.curve() - before.other, 2);
  });
});
