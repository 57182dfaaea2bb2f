// Session establishment bound to the replica and the connection (issue 25): what a replay of a
// createSession, a resume or a ping from the chain can still do — nothing — in the tree (deterministic),
// at a replica's intake, and in the client's reading of a hello.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ClientRequest } from "../../src/bft/index.ts";
import { helloOf } from "../../src/coord/client-connection.ts";
import {
  COORD_PROTOCOL,
  decodeOp,
  encodeOp,
  OpCodecError,
  OpKind,
  resumeSigningBytes,
} from "../../src/coord/ops.ts";
import { CoordService } from "../../src/coord/service.ts";
import { bindingProblem } from "../../src/coord/service-sessions.ts";
import { signEd25519, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { create, TestSession, TreeHarness } from "../util/coord-harness.ts";

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("createSession replays in the tree", () => {
  it("a createSession ordered again refreshes nothing: the session and its ephemeral expire on time", () => {
    const h = new TreeHarness();
    const s = new TestSession();
    const open = s.open(2000);
    const [r] = h.run(open);
    s.id = r?.sessionId as number;
    h.run(s.op(create("/lock", "", 1)));
    assert.ok(h.tree.get("/lock"), "the lock node exists");
    // The crashed holder's createSession is ordered again every 200 ms of agreed time (a Byzantine
    // proposer copying it from the chain).
    let goneAfter = -1;
    for (let t = 200; t <= 6000 && goneAfter < 0; t += 200) {
      h.now += 200;
      const fx = h.apply([open]);
      const res = fx.find((e) => e.kind === "result");
      assert.ok(res?.kind === "result" && res.duplicate, "the copy is answered as a duplicate");
      if (!h.tree.get("/lock")) goneAfter = t;
    }
    assert.ok(
      goneAfter > 0 && goneAfter <= 2400,
      `the lock node went after ${goneAfter} ms (timeout 2000 ms)`,
    );
    assert.equal(h.tree.session(s.id), undefined, "the session expired");
  });

  it("counts a createSession only in an entry of the replica it names", () => {
    const h = new TreeHarness();
    const s = new TestSession();
    // Addressed to replica 1, ordered in replica 0's entry (the harness's entries of operations).
    const fx = h.apply([s.open(10_000, 1)]);
    assert.equal(fx.filter((e) => e.kind === "result").length, 0, "no answer");
    assert.equal(h.tree.sessionCount, 0, "no session");
    assert.equal(h.tree.stats.misdirected, 1, "counted as misdirected");
    // The same key through replica 0, for a challenge of replica 0's: the session is made.
    const [r] = h.run(s.open(10_000, 0));
    assert.equal(r?.code, "OK", "created through the replica it names");
  });

  it("an honest second createSession (a new connection) finds the session without refreshing it", () => {
    const h = new TreeHarness();
    const s = new TestSession();
    const id = h.open(s, 2000);
    const deadline = JSON.parse(h.tree.dump()).sessions[0][5];
    h.now += 500;
    const [r] = h.run(s.open(2000));
    assert.equal(r?.sessionId, id, "the same session");
    assert.equal(JSON.parse(h.tree.dump()).sessions[0][5], deadline, "its deadline did not move");
  });
});

describe("payload versions", () => {
  it("refuses a version-1 createSession with a typed error and still reads other version-1 operations", () => {
    const s = new TestSession();
    const v2 = s.open().payload;
    const v1 = Uint8Array.of(
      1,
      ...v2.subarray(1, 1 + 8 + 4 + 1),
      ...new Uint8Array(32),
      0,
      0,
      0x27,
      0x10,
      0,
      0,
      0,
      0,
    );
    assert.throws(
      () => decodeOp(v1),
      (e: unknown) =>
        e instanceof OpCodecError && e.code === "BAD_VALUE" && /version-1 createSession/.test(e.message),
    );
    const write = encodeOp({ sessionId: 7, cxid: 1, body: { kind: OpKind.SYNC, path: "/" } });
    assert.equal(write[0], 3, "clients write version 3");
    for (const v of [1, 2]) {
      const old = Uint8Array.from(write);
      old[0] = v;
      assert.deepEqual(decodeOp(old), decodeOp(write), `a version-${v} write reads as before`);
    }
  });
});

describe("binding a connect to its connection", () => {
  const s = new TestSession();
  const challenge = new Uint8Array(32).fill(9);
  it("names what is wrong: another replica, another challenge", () => {
    assert.equal(bindingProblem(decodeOp(s.open(10_000, 0, challenge).payload), 0, challenge), null);
    assert.match(
      String(bindingProblem(decodeOp(s.open(10_000, 1, challenge).payload), 0, challenge)),
      /replica 1/,
    );
    const other = new Uint8Array(32).fill(8);
    assert.match(
      String(bindingProblem(decodeOp(s.open(10_000, 0, other).payload), 0, challenge)),
      /challenge/,
    );
  });
});

/** A replica's service over a harness tree; its proposals are collected, never ordered by themselves. */
function replica(h: TreeHarness, self: number) {
  const proposed: ClientRequest[] = [];
  const svc = new CoordService({
    tree: h.tree,
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
    verify: verifyEd25519,
    entryMaxBytes: 10 * 1024 * 1024,
  });
  const conn = (challenge: Uint8Array) => {
    const sent: Record<string, unknown>[] = [];
    const c = svc.open({ send: (m) => sent.push(m), close: () => sent.push({ type: "closed" }) }, challenge);
    assert.ok(c, "connection opened");
    return { c, sent };
  };
  let block = 0;
  const apply = (entries: Uint8Array[]) =>
    svc.written(svc.prepare([{ number: ++block, entries, requests: [] }], `coord-${self}`));
  return { svc, conn, apply, proposed };
}

describe("a replica's intake", () => {
  it("refuses a createSession not bound to the connection, and answers one only to its own connection", async () => {
    const h = new TreeHarness();
    const r0 = replica(h, 0);
    const s = new TestSession();
    const mine = new Uint8Array(32).fill(1);
    const a = r0.conn(mine);
    const hello = a.sent[0] as Record<string, unknown>;
    assert.equal(hello.protocol, COORD_PROTOCOL, "hello names the protocol");
    assert.equal(hello.nonce, hex(mine), "hello carries the challenge");
    // A copy made for another connection (another challenge) or another replica is refused at once.
    const replay = r0.conn(new Uint8Array(32).fill(2));
    const op = s.open(10_000, 0, mine);
    r0.svc.message(
      replay.c,
      JSON.stringify({ type: "connect", id: 0, op: b64(op.payload), sig: b64(op.sig) }),
    );
    assert.equal(replay.sent.at(-1)?.code, "AUTHFAILED", "a replayed createSession is refused");
    const wrongReplica = s.open(10_000, 1, mine);
    r0.svc.message(
      a.c,
      JSON.stringify({ type: "connect", id: 0, op: b64(wrongReplica.payload), sig: b64(wrongReplica.sig) }),
    );
    assert.equal(a.sent.at(-1)?.code, "AUTHFAILED", "a createSession for another replica is refused");
    assert.equal(r0.svc.queued, 0, "nothing is queued for the order");
    assert.equal(r0.svc.stats.unbound, 2, "both counted");
    // The owner's own createSession is taken; a result from another replica's entry does not answer it.
    r0.svc.message(a.c, JSON.stringify({ type: "connect", id: 0, op: b64(op.payload), sig: b64(op.sig) }));
    assert.equal(r0.svc.queued, 1, "the bound createSession is queued");
    r0.apply([h.entry(1, [s.open(10_000, 1, mine)])]);
    assert.equal(h.tree.sessionCount, 1, "replica 1's copy made the session");
    assert.ok(!a.sent.some((m) => m.type === "connected"), "another replica's result attaches nothing here");
    r0.apply([h.entry(0, [op])]);
    const connected = a.sent.find((m) => m.type === "connected");
    assert.equal(connected?.sessionId, h.tree.sessionIds()[0], "its own result attaches the session");
    r0.svc.stop();
  });

  it("takes a resume signed for this replica and this connection only", () => {
    const h = new TreeHarness();
    const s = new TestSession();
    s.id = h.open(s);
    const r1 = replica(h, 1);
    const challenge = new Uint8Array(32).fill(5);
    const resume = (replicaId: number, ch: Uint8Array) =>
      JSON.stringify({
        type: "resume",
        id: 0,
        sessionId: s.id,
        sig: b64(signEd25519(s.key.privateKey, resumeSigningBytes(s.id, replicaId, ch))),
      });
    const a = r1.conn(challenge);
    r1.svc.message(a.c, resume(0, challenge));
    assert.equal(a.sent.at(-1)?.code, "AUTHFAILED", "signed for replica 0: refused at replica 1");
    const b = r1.conn(new Uint8Array(32).fill(6));
    r1.svc.message(b.c, resume(1, challenge));
    assert.equal(b.sent.at(-1)?.code, "AUTHFAILED", "signed for another connection: refused");
    const c = r1.conn(new Uint8Array(32).fill(7));
    r1.svc.message(c.c, resume(1, new Uint8Array(32).fill(7)));
    assert.equal(c.sent.at(-1)?.type, "connected", "signed for this replica and connection: attached");
    // A ping from the chain (already applied) keeps nothing alive.
    const ping = s.keepAlive();
    h.apply([ping]);
    const before = JSON.parse(h.tree.dump()).sessions[0][5];
    h.now += 1000;
    h.apply([ping]);
    assert.equal(JSON.parse(h.tree.dump()).sessions[0][5], before, "a replayed ping refreshes nothing");
    r1.svc.stop();
  });
});

describe("the client's reading of a hello", () => {
  it("takes the replica id and the challenge, and refuses another protocol or a missing challenge", () => {
    const nonce = "ab".repeat(32);
    const ok = helloOf({ type: "hello", protocol: COORD_PROTOCOL, replica: 2, nonce });
    assert.ok(typeof ok !== "string" && ok.replica === 2 && hex(ok.challenge) === nonce, "parsed");
    assert.match(String(helloOf({ protocol: 1, replica: 2, nonce })), /protocol 1/);
    assert.match(String(helloOf({ protocol: COORD_PROTOCOL, replica: 2, nonce: "ab" })), /challenge/);
    assert.match(String(helloOf({ protocol: COORD_PROTOCOL, nonce })), /replica id/);
  });
});
