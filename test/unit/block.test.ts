import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { ed25519PublicKeyOf, signEd25519, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import {
  type Block,
  BlockVerificationError,
  blockFromJson,
  blockToJson,
  ChainVerifier,
  genesisBlock,
  headerHash,
  merkleProof,
  merkleProofs,
  merkleRoot,
  verifyBlock,
  verifyMerkleProof,
  ZERO_HASH,
} from "../../src/ordering/block.ts";

const H = (...parts: Uint8Array[]) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};
const enc = (s: string) => new TextEncoder().encode(s);

/** RFC 6962 §2.1 MTH, written recursively as in the RFC (an independent reference). */
function mth(d: Uint8Array[]): Uint8Array {
  if (d.length === 0) return H();
  if (d.length === 1) return H(Uint8Array.of(0), d[0]!);
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return H(Uint8Array.of(1), mth(d.slice(0, k)), mth(d.slice(k)));
}

const entries = (n: number) => Array.from({ length: n }, (_, i) => enc(`tx-${i}`));

describe("block hashing", () => {
  it("the Merkle root is RFC 6962's for sizes 0..40", () => {
    for (let n = 0; n <= 40; n++) assert.deepEqual(merkleRoot(entries(n)), mth(entries(n)), `n=${n}`);
    assert.deepEqual(merkleRoot([]), H(), "root of no entries is SHA-256 of the empty string");
  });

  it("every audit path verifies, and a changed entry, index or sibling does not", () => {
    for (let n = 1; n <= 33; n++) {
      const es = entries(n);
      const root = merkleRoot(es);
      const all = merkleProofs(es);
      for (let i = 0; i < n; i++) {
        const p = merkleProof(es, i);
        assert.deepEqual(p, all[i]);
        assert.ok(verifyMerkleProof(es[i]!, p, root), `n=${n} i=${i}`);
        assert.ok(!verifyMerkleProof(enc("other"), p, root), '!verifyMerkleProof(enc("other"), p, root)');
        if (n > 1)
          assert.ok(
            !verifyMerkleProof(es[i]!, { ...p, index: (i + 1) % n }, root),
            "!verifyMerkleProof(es[i]!, { ...p, index: (i + 1) % n }, root)",
          );
        if (p.path.length > 0) {
          const path = p.path.map((x) => x.slice());
          const first = path[0]!;
          first[0] = (first[0] ?? 0) ^ 1;
          assert.ok(
            !verifyMerkleProof(es[i]!, { ...p, path }, root),
            "!verifyMerkleProof(es[i]!, { ...p, path }, root)",
          );
        }
      }
    }
  });

  it("headerHash is SHA-256(number u64be ‖ previousHash ‖ dataHash)", () => {
    const prev = H(enc("p"));
    const data = merkleRoot([enc("a"), enc("b")]);
    const num = new Uint8Array(8);
    new DataView(num.buffer).setUint32(4, 7);
    assert.deepEqual(headerHash({ number: 7, previousHash: prev, dataHash: data }), H(num, prev, data));
  });

  it("genesis holds the config as its only entry and a zero previous hash", () => {
    const g = genesisBlock(enc('{"mode":"hybrid"}'));
    assert.deepEqual(g.header.previousHash, ZERO_HASH);
    assert.equal(g.entries.length, 1);
    assert.deepEqual(g.header.dataHash, H(Uint8Array.of(0), enc('{"mode":"hybrid"}')));
  });
});

describe("block verification", () => {
  const seeds = [1, 2, 3].map((i) => new Uint8Array(32).fill(i));
  const keys = seeds.map(ed25519PublicKeyOf);
  const opts = { replicaKeys: keys, quorum: 2, verify: verifyEd25519 };

  function chain(len: number): Block[] {
    const out: Block[] = [];
    let prev = ZERO_HASH;
    for (let n = 0; n < len; n++) {
      const es = n === 0 ? [enc("config")] : entries(n);
      const header = { number: n, previousHash: prev, dataHash: merkleRoot(es) };
      const hh = headerHash(header);
      const certificate = [0, 1, 2].map((r) => ({ replica: r, sig: signEd25519(seeds[r]!, hh) }));
      out.push({ header, entries: es, metadata: { view: 0, seq: n, commitTimeMs: 0, certificate } });
      prev = hh;
    }
    return out;
  }

  const code = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof BlockVerificationError, String(err));
      return err.code;
    }
    return "OK";
  };

  it("accepts a well-formed chain, with noble or node:crypto, and survives a JSON round trip", () => {
    const c = chain(6);
    const v = new ChainVerifier(opts);
    for (const b of c) v.next(blockFromJson(JSON.parse(JSON.stringify(blockToJson(b)))));
    const noble = new ChainVerifier({ replicaKeys: keys, quorum: 2 });
    for (const b of c) noble.next(b);
    assert.equal(v.expected, 6);
  });

  it("rejects a changed entry, a changed previous hash, missing or forged signatures", () => {
    const c = chain(4);
    const b = c[2]!;
    const changed = { ...b, entries: [enc("evil"), ...b.entries.slice(1)] };
    assert.equal(
      code(() => verifyBlock(changed, opts)),
      "BAD_DATA_HASH",
    );
    const rechained = { ...b, header: { ...b.header, previousHash: H(enc("x")) } };
    const v = new ChainVerifier(opts);
    v.next(c[0]!);
    v.next(c[1]!);
    assert.equal(
      code(() => v.next(rechained)),
      "BROKEN_CHAIN",
    );
    const oneSig = { ...b, metadata: { ...b.metadata, certificate: b.metadata.certificate.slice(0, 1) } };
    assert.equal(
      code(() => verifyBlock(oneSig, opts)),
      "INSUFFICIENT_SIGNATURES",
    );
    const dup = {
      ...b,
      metadata: { ...b.metadata, certificate: [b.metadata.certificate[0]!, b.metadata.certificate[0]!] },
    };
    assert.equal(
      code(() => verifyBlock(dup, opts)),
      "DUPLICATE_SIGNER",
    );
    const forged = {
      ...b,
      metadata: {
        ...b.metadata,
        certificate: [{ replica: 0, sig: new Uint8Array(64) }, b.metadata.certificate[1]!],
      },
    };
    assert.equal(
      code(() => verifyBlock(forged, opts)),
      "BAD_SIGNATURE",
    );
    const stranger = {
      ...b,
      metadata: { ...b.metadata, certificate: [{ replica: 9, sig: new Uint8Array(64) }] },
    };
    assert.equal(
      code(() => verifyBlock(stranger, opts)),
      "UNKNOWN_SIGNER",
    );
    // A signature valid for another block does not carry over.
    const moved = { ...b, metadata: c[1]!.metadata };
    assert.equal(
      code(() => verifyBlock(moved, opts)),
      "BAD_SIGNATURE",
    );
    assert.equal(
      code(() => verifyBlock(b, opts)),
      "OK",
    );
  });

  it("rejects a wrong genesis and out-of-order blocks", () => {
    const c = chain(3);
    const other = chain(1)[0]!;
    const v = new ChainVerifier({ ...opts, genesisHash: H(enc("not it")) });
    assert.equal(
      code(() => v.next(other)),
      "BAD_GENESIS",
    );
    const w = new ChainVerifier(opts);
    assert.equal(
      code(() => w.next(c[1]!)),
      "BAD_NUMBER",
    );
    assert.equal(
      code(() => blockFromJson({ number: 1, entries: "x" })),
      "MALFORMED",
    );
    const headless = { header: { number: 0 } } as unknown as Block;
    assert.equal(
      code(() => new ChainVerifier(opts).next(headless)),
      "MALFORMED",
    );
  });
});
