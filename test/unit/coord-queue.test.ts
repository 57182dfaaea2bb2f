// The coordination service holds at most queueMaxBytes of operations for proposal (queued, in the core,
// deferred): beyond, a write is refused with THROTTLEDOP at once; its bytes come back when its result
// does. The core here never orders anything, so every accepted write stays held.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ClientRequest } from "../../src/bft/index.ts";
import { encodeOp, OpKind, opSigningBytes, resumeSigningBytes } from "../../src/coord/ops.ts";
import { CoordService } from "../../src/coord/service.ts";
import { signEd25519, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { TestSession, TreeHarness } from "../util/coord-harness.ts";

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

describe("coordination queue bound", () => {
  it("refuses writes beyond queueMaxBytes with THROTTLEDOP and accepts them again once results come", async () => {
    const h = new TreeHarness();
    const s = new TestSession();
    s.id = h.open(s);
    const proposed: ClientRequest[] = [];
    const svc = new CoordService({
      tree: h.tree,
      self: 0,
      propose: (req) => {
        proposed.push(req);
      },
      signRequest: (reqNo, op) => ({
        clientId: "coord-0",
        reqNo,
        op,
        auth: { scheme: "ed25519", sig: new Uint8Array(64) },
      }),
      verify: verifyEd25519,
      entryMaxBytes: 10 * 1024 * 1024,
      queueMaxBytes: 5000,
    });
    const sent: Record<string, unknown>[] = [];
    const nonce = new Uint8Array(32).fill(7);
    const c = svc.open({ send: (m) => sent.push(m), close: () => {} }, nonce);
    assert.ok(c, "connection opened");
    const resumeSig = signEd25519(s.key.privateKey, resumeSigningBytes(s.id, 0, nonce));
    svc.message(c, JSON.stringify({ type: "resume", id: 1, sessionId: s.id, zxid: 0, sig: b64(resumeSig) }));
    assert.equal(sent.at(-1)?.type, "connected", "the session is attached");
    const write = (id: number, cxid: number) => {
      const payload = encodeOp({
        sessionId: s.id,
        cxid,
        body: { kind: OpKind.CREATE, path: `/n${cxid}`, data: new Uint8Array(1500), mode: 0, ttlMs: 0 },
      });
      const sig = signEd25519(s.key.privateKey, opSigningBytes(payload));
      svc.message(c, JSON.stringify({ type: "write", id, op: b64(payload), sig: b64(sig) }));
    };
    // Three writes of about 1.5 kB fit in 5000 bytes; the fourth does not.
    for (let i = 1; i <= 3; i++) write(10 + i, i);
    assert.equal(sent.filter((m) => m.type === "error").length, 0, "three writes held");
    assert.ok(svc.queuedBytes > 4500 && svc.queuedBytes <= 5000, `${svc.queuedBytes} bytes held`);
    write(14, 4);
    const refused = sent.at(-1);
    assert.equal(refused?.type, "error", "the fourth is refused at once");
    assert.equal(refused?.code, "THROTTLEDOP", "with THROTTLEDOP");
    assert.equal(refused?.id, 14, "answering the fourth write");
    // The three are proposed (one entry), ordered and applied: their results give the bytes back.
    await new Promise((r) => setImmediate(r));
    assert.equal(proposed.length, 1, "one entry proposed");
    const applied = svc.prepare(
      [
        {
          number: ++h.block,
          entries: proposed.map((r) => r.op),
          requests: proposed.map((r) => ({ clientId: r.clientId, reqNo: r.reqNo })),
        },
      ],
      "coord-0",
    );
    svc.written(applied);
    assert.deepEqual(
      sent.filter((m) => m.type === "result").map((m) => m.id),
      [11, 12, 13],
      "the three writes are answered",
    );
    assert.equal(svc.queuedBytes, 0, "nothing held");
    write(15, 4);
    assert.notEqual(sent.at(-1)?.type, "error", "the fourth is accepted now");
    assert.ok(svc.queuedBytes > 1500, "and held");
    svc.stop();
  });
});
