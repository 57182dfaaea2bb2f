import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import type { CounterCert, HCommit, HNewView, HViewChange, Message } from "../../src/bft/index.ts";
import {
  CodecError,
  decodeMessage,
  encodeMessage,
  FRAME_MAX_BYTES,
  MESSAGE_TYPES,
  WIRE_VERSION,
} from "../../src/transport/codec.ts";
import { collectCorpus } from "../fuzz/corpus.ts";

const ALL_TYPES: readonly Message["type"][] = MESSAGE_TYPES;

describe("wire codec", () => {
  let corpus: Map<Message["type"], Message[]>;
  before(() => {
    corpus = collectCorpus(20);
  });

  it("round-trips real messages of every type, canonically", () => {
    for (const type of ALL_TYPES) {
      const msgs = corpus.get(type) ?? [];
      assert.ok(msgs.length > 0, `the simulator produced no ${type}`);
      for (const m of msgs) {
        const bytes = encodeMessage(m);
        const res = decodeMessage(bytes);
        assert.ok(res.ok, `${type}: ${res.ok ? "" : res.error.message}`);
        assert.deepEqual(res.msg, m);
        assert.deepEqual(encodeMessage(res.msg), bytes);
        if (res.msg.type === "h-commit") assert.equal(res.msg.prepareCert.sig.length, 64, "prepareCert kept");
      }
    }
  });

  it("refuses a truncated frame at every cut (TRUNCATED), never throws", () => {
    const m = (corpus.get("h-new-view") ?? corpus.get("h-view-change") ?? [])[0] as Message;
    const bytes = encodeMessage(m);
    for (let cut = 0; cut < bytes.length; cut++) {
      const res = decodeMessage(bytes.subarray(0, cut));
      assert.equal(res.ok, false, `cut at ${cut}`);
      if (!res.ok) assert.ok(res.error instanceof CodecError, "res.error instanceof CodecError");
    }
  });

  it("round-trips VIEW-CHANGEs with proofs; one inside a proof may carry none (BAD_VALUE)", () => {
    const nv0 = (corpus.get("h-new-view") ?? [])[0] as HNewView;
    const vc0 = nv0.vcs[0] as HViewChange;
    const proof: HNewView = { ...nv0, vcs: nv0.vcs.map((vc) => ({ ...vc, proofs: [] })) };
    const withProofs: HViewChange = { ...vc0, proofs: [proof, { ...proof, view: proof.view + 1 }] };
    const res = decodeMessage(encodeMessage(withProofs));
    assert.ok(res.ok, "res.ok");
    assert.deepEqual(res.msg, withProofs);
    const nested: HViewChange = { ...vc0, proofs: [{ ...proof, vcs: [withProofs] }] };
    const bad = decodeMessage(encodeMessage(nested));
    assert.equal(bad.ok ? "ok" : bad.error.code, "BAD_VALUE");
  });

  it("carries a COMMIT's prepareCert beside its own certificate; signatures are at most 64 bytes", () => {
    const cert = (subsystem: number, fill: number, prev?: boolean): CounterCert => ({
      subsystem,
      counter: 0,
      value: { view: 3, slot: 8 },
      ...(prev ? { prev: { view: 2, slot: 5 } } : {}),
      sig: new Uint8Array(64).fill(fill),
    });
    const commit: HCommit = {
      type: "h-commit",
      view: 3,
      seq: 7,
      batchDigest: new Uint8Array(32).fill(9),
      cert: cert(1, 1),
      prepareCert: cert(0, 2),
    };
    for (const m of [commit, { ...commit, prepareCert: cert(0, 2, true) }]) {
      const bytes = encodeMessage(m);
      const res = decodeMessage(bytes);
      assert.ok(res.ok, `decodes: ${res.ok ? "" : res.error.message}`);
      assert.deepEqual(res.msg, m);
      assert.deepEqual(encodeMessage(res.msg), bytes);
    }
    // The prepareCert is the frame's tail: cut anywhere in it, the frame is short.
    const full = encodeMessage(commit);
    for (const cut of [1, 64, 80]) {
      const short = decodeMessage(full.subarray(0, full.length - cut));
      assert.equal(short.ok ? "ok" : short.error.code, "TRUNCATED", `cut ${cut}`);
    }
    // A 65-byte signature is refused before it is read, in either certificate.
    for (const over of [
      { cert: { ...commit.cert, sig: new Uint8Array(65) } },
      { prepareCert: { ...commit.prepareCert, sig: new Uint8Array(65) } },
    ]) {
      const r = decodeMessage(encodeMessage({ ...commit, ...over }));
      assert.equal(r.ok ? "ok" : r.error.code, "BAD_LENGTH");
    }
    // A frame of the previous wire version (COMMITs without prepareCert) is refused as such.
    const old = full.slice();
    old[0] = WIRE_VERSION - 1;
    const r = decodeMessage(old);
    assert.equal(r.ok ? "ok" : r.error.code, "BAD_VERSION");
  });

  it("refuses trailing bytes, unknown versions and types, and oversized frames", () => {
    const bytes = encodeMessage({ type: "status", view: 1, target: 2, lastExecuted: 3, stableSeq: 0 });
    const code = (b: Uint8Array, max?: number) => {
      const r = decodeMessage(b, max);
      return r.ok ? "ok" : r.error.code;
    };
    assert.equal(code(bytes), "ok");
    assert.equal(code(Uint8Array.of(...bytes, 0)), "TRAILING_BYTES");
    assert.equal(code(Uint8Array.of(WIRE_VERSION + 1, ...bytes.subarray(1))), "BAD_VERSION");
    assert.equal(code(Uint8Array.of(WIRE_VERSION, 99, ...bytes.subarray(2))), "UNKNOWN_TYPE");
    assert.equal(code(Uint8Array.of(WIRE_VERSION, 0)), "UNKNOWN_TYPE");
    assert.equal(code(bytes, bytes.length - 1), "OVERSIZED");
    assert.ok(FRAME_MAX_BYTES >= 1 << 20, "FRAME_MAX_BYTES >= 1 << 20");
  });

  it("never allocates by an attacker-chosen count or length (BAD_LENGTH)", () => {
    // A STATE that claims 2^32-1 batches, and a REQUEST whose op claims 4 GiB.
    const state = Uint8Array.of(
      WIRE_VERSION,
      3,
      ...new Uint8Array(8),
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      ...new Uint8Array(8),
      0xff,
      0xff,
      0xff,
      0xff,
    );
    const res = decodeMessage(state);
    assert.equal(res.ok, false);
    if (!res.ok) assert.ok(["BAD_LENGTH", "TRUNCATED"].includes(res.error.code), res.error.code);
    const req = Uint8Array.of(
      WIRE_VERSION,
      1,
      0,
      0,
      0,
      1,
      0x61,
      ...new Uint8Array(8),
      0xff,
      0xff,
      0xff,
      0xff,
    );
    const r2 = decodeMessage(req);
    assert.equal(r2.ok, false);
    if (!r2.ok) assert.equal(r2.error.code, "TRUNCATED");
  });

  it("refuses integers above 2^53 - 1, bad flags, bad auth schemes and invalid UTF-8 (BAD_VALUE)", () => {
    const status = encodeMessage({ type: "status", view: 0, target: 0, lastExecuted: 0, stableSeq: 0 });
    const big = status.slice();
    big[2] = 0xff;
    const r1 = decodeMessage(big);
    assert.ok(!r1.ok && r1.error.code === "BAD_VALUE", '!r1.ok && r1.error.code === "BAD_VALUE"');
    const req: Message = {
      type: "request",
      request: {
        clientId: "a",
        reqNo: 1,
        op: new Uint8Array(0),
        auth: { scheme: "ed25519", sig: new Uint8Array(0) },
      },
    };
    const bytes = encodeMessage(req);
    const badScheme = bytes.slice();
    badScheme[2 + 4 + 1 + 8 + 4] = 3;
    const r2 = decodeMessage(badScheme);
    assert.ok(!r2.ok && r2.error.code === "BAD_VALUE", '!r2.ok && r2.error.code === "BAD_VALUE"');
    const badUtf8 = bytes.slice();
    badUtf8[6] = 0xff;
    const r3 = decodeMessage(badUtf8);
    assert.ok(!r3.ok && r3.error.code === "BAD_VALUE", '!r3.ok && r3.error.code === "BAD_VALUE"');
  });
});
