// Replica-level tests of hybrid mode (n = 2f+1 with trusted counters): message validation,
// certificate verification, view change, checkpoints, state transfer, restart and request intake.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type Batch,
  bytesEqual,
  type ChainLink,
  type ClientRequest,
  type CounterCert,
  CounterError,
  certBytes,
  checkEquivocation,
  compareValues,
  GENESIS_CHECKPOINT,
  type HCommit,
  type HNewView,
  type HPrepare,
  type HViewChange,
  type Message,
  ORDER_COUNTER,
  RequestError,
  type StateMsg,
  toHex,
  UsigChecker,
  ZERO_VALUE,
} from "../../src/bft/index.ts";
import { Cluster, type Envelope, type Filter, flipped, holding, isolate, TEST_LIMITS } from "./harness.ts";

const TEXT = new TextEncoder();

function hybrid(f = 1): Cluster {
  return new Cluster({ mode: "hybrid", f });
}

/** Replaces the signature of the chain link at `index` (default: the last one) with a corrupted copy. */
function withBadLinkSig(vc: HViewChange, index = vc.chain.length - 1): HViewChange {
  const chain = vc.chain.map(
    (l, i): ChainLink => (i === index ? { ...l, cert: { ...l.cert, sig: flipped(l.cert.sig) } } : l),
  );
  return { ...vc, chain };
}

/**
 * Replica 0 (leader of view 0) proposes request 1 and reaches only replica 2 with its PREPARE; every
 * other message to or from replica 0 is lost. Replicas 1 and 2 then wait for request 2 until they
 * time out (20 ticks) and change to view 1, whose leader is replica 1. Message types in `hold` are
 * captured instead of delivered.
 */
function silentLeader(hold: Message["type"][] = []) {
  const c = hybrid();
  const base: Filter = (e) => {
    if (e.from === 0) return e.to === 2 && e.msg.type === "h-prepare" ? "deliver" : "drop";
    return e.to === 0 ? "drop" : "deliver";
  };
  c.filter = holding(hold, base);
  const req1 = c.commitRequest(c.request(), [0]);
  assert.equal(c.r(2).lastExecuted, 1, "replica 2 commits seq 1 with the leader's PREPARE and its own vote");
  assert.equal(c.r(1).lastExecuted, 0);
  const req2 = c.commitRequest(c.request(), [1, 2]);
  c.tick(20);
  return { c, req1, req2 };
}

describe("hybrid replica: normal case", () => {
  it("commits proposed requests at all 3 replicas in seq order; the checkpoint becomes stable", () => {
    const c = hybrid();
    const reqs = [c.request(), c.request(), c.request()];
    for (const req of reqs) c.commitRequest(req, [0]);
    for (let i = 0; i < 3; i++) {
      const r = c.r(i);
      assert.equal(r.lastExecuted, 3, `replica ${i}`);
      assert.equal(r.view, 0);
      assert.equal(r.stable.seq, 0, "no checkpoint before checkpointInterval batches");
      assert.deepEqual(c.seqs(i), [1, 2, 3]);
      (c.commits[i] ?? []).forEach((cb, k) => {
        assert.equal(cb.batch.requests.length, 1);
        assert.equal(cb.batch.requests[0]?.reqNo, reqs[k]?.reqNo);
        assert.deepEqual(cb.executed, [true]);
      });
    }
    c.commitRequest();
    const digests = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const r = c.r(i);
      assert.equal(r.lastExecuted, 4);
      assert.equal(r.stable.seq, 4, `replica ${i} has a stable checkpoint at 4`);
      assert.ok(r.stable.sigs.length >= 2, "f+1 signatures");
      assert.equal(toHex(r.stable.stateDigest), toHex(c.commitAt(i, 4)?.stateDigest ?? new Uint8Array()));
      assert.ok(
        c.events[i]?.some((e) => e.kind === "checkpoint-stable" && e.seq === 4),
        'c.events[i]?.some((e) => e.kind === "checkpoint-stable" && e.seq === 4)',
      );
      digests.add(toHex(r.stateDigest));
      assert.equal(r.droppedTotal(), 0, `replica ${i} dropped ${[...r.dropped.keys()]}`);
    }
    assert.equal(digests.size, 1, "all replicas reach the same state digest");
  });

  it("f+1 votes suffice: with replica 2 cut off, the leader and replica 1 commit", () => {
    const c = hybrid();
    c.filter = isolate(2);
    c.commitRequest();
    assert.equal(c.r(0).lastExecuted, 1);
    assert.equal(c.r(1).lastExecuted, 1);
    assert.equal(c.r(2).lastExecuted, 0);
  });

  it("a follower commits only with the leader's PREPARE, not on a COMMIT alone", () => {
    const c = hybrid();
    c.filter = holding(["h-prepare"]);
    c.propose(0, c.request());
    c.deliverAll();
    assert.equal(c.r(1).lastExecuted, 0);
    const p = c.heldOne("h-prepare", (e) => e.to === 1);
    const rd = c.step(1, 0, p.msg);
    assert.deepEqual(
      rd.commit.map((x) => x.seq),
      [1],
      "PREPARE + own COMMIT = f+1 commits at once",
    );
    // Replica 2 got replica 1's COMMIT but no PREPARE: nothing to commit yet.
    c.deliverAll();
    assert.equal(c.r(2).lastExecuted, 0);
    c.release((e) => e.to === 2);
    assert.equal(c.r(2).lastExecuted, 1);
  });

  it("commits out of order are applied in seq order", () => {
    const c = hybrid();
    c.filter = (e) => (e.to === 2 && e.msg.type === "h-prepare" ? "hold" : "deliver");
    c.propose(0, c.request());
    c.deliverAll();
    c.propose(0, c.request()); // not idle: waits for the batch timeout
    c.tick(1, [0]);
    assert.equal(c.sent("h-prepare", (e) => e.to === 2).length, 2, "two PREPAREs for replica 2");
    const p1 = c.heldOne("h-prepare", (e) => e.to === 2 && e.msg.seq === 1).msg;
    const p2 = c.heldOne("h-prepare", (e) => e.to === 2 && e.msg.seq === 2).msg;
    // Seq 2 gets its f+1 votes (PREPARE + replica 1's COMMIT) first but must wait for seq 1.
    const rd2 = c.step(2, 0, p2);
    assert.equal(rd2.commit.length, 0);
    assert.equal(c.r(2).lastExecuted, 0);
    const rd1 = c.step(2, 0, p1);
    assert.deepEqual(
      rd1.commit.map((x) => x.seq),
      [1, 2],
    );
    assert.equal(c.r(2).lastExecuted, 2);
  });
});

describe("hybrid replica: PREPARE validation", () => {
  function setup() {
    const c = hybrid();
    c.filter = holding(["h-prepare"]);
    const req = c.request();
    c.propose(0, req);
    c.deliverAll();
    const p = c.heldOne("h-prepare", (e) => e.to === 1).msg;
    assert.equal(p.seq, 1);
    return { c, p };
  }

  /** Steps a bad PREPARE into replica 1 and checks it changed nothing. */
  function rejected(c: Cluster, from: number, msg: Message, reason: string): void {
    const before = c.dropped(1, reason);
    const rd = c.step(1, from, msg);
    assert.equal(c.dropped(1, reason), before + 1, `dropped as ${reason}`);
    assert.equal(rd.send.length, 0, "no COMMIT sent");
    assert.equal(rd.commit.length, 0);
    assert.equal(rd.persist.length, 0);
    assert.equal(c.r(1).lastExecuted, 0);
    assert.deepEqual(c.trusted[1]?.current(ORDER_COUNTER), ZERO_VALUE, "replica 1 certified nothing");
  }

  it("drops a PREPARE whose certificate signature is altered", () => {
    const { c, p } = setup();
    rejected(c, 0, { ...p, cert: { ...p.cert, sig: flipped(p.cert.sig) } }, "prepare-bad-cert");
    // The genuine one still works, so nothing above was dropped for an unrelated reason.
    const rd = c.step(1, 0, p);
    assert.equal(rd.commit.length, 1);
    assert.equal(c.r(1).droppedTotal(), 1);
  });

  it("drops a PREPARE whose batch differs from the certified one", () => {
    const { c, p } = setup();
    const other: Batch = { requests: [c.request("other")] };
    rejected(c, 0, { ...p, batch: other }, "prepare-bad-cert");
  });

  it("drops a PREPARE whose certificate is for another slot", () => {
    const { c, p } = setup();
    // The genuine certificate (slot 2 = seq 1) on a PREPARE for seq 2.
    rejected(c, 0, { ...p, seq: 2 }, "prepare-bad-cert");
    // A properly signed certificate of the leader's subsystem, but at slot 3, for seq 1.
    const bd = c.digests.batch(p.batch);
    const cert = c
      .subsystem(0)
      .certifyIndependent(ORDER_COUNTER, { view: 0, slot: 3 }, c.digests.hPrepare(0, 1, bd));
    rejected(c, 0, { ...p, cert }, "prepare-bad-cert");
    // ... and one for view 1 on a view-0 PREPARE.
    const cert1 = c
      .subsystem(0)
      .certifyIndependent(ORDER_COUNTER, { view: 1, slot: 2 }, c.digests.hPrepare(0, 1, bd));
    rejected(c, 0, { ...p, cert: cert1 }, "prepare-bad-cert");
  });

  it("drops a PREPARE certified by a subsystem other than the leader's", () => {
    const { c, p } = setup();
    const bd = c.digests.batch(p.batch);
    const cert = c
      .subsystem(2)
      .certifyIndependent(ORDER_COUNTER, { view: 0, slot: 2 }, c.digests.hPrepare(0, 1, bd));
    rejected(c, 2, { ...p, cert }, "prepare-bad-cert");
    rejected(c, 0, { ...p, cert }, "prepare-bad-cert");
  });

  it("drops a PREPARE carrying a continuing (not independent) certificate", () => {
    const { c, p } = setup();
    const bd = c.digests.batch(p.batch);
    const cert = c
      .subsystem(0)
      .certifyContinuing(ORDER_COUNTER, { view: 0, slot: 2 }, c.digests.hPrepare(0, 1, bd));
    assert.ok(cert.prev !== undefined, "cert.prev !== undefined");
    rejected(c, 0, { ...p, cert }, "prepare-bad-cert");
  });

  it("drops a PREPARE for a future view", () => {
    const { c, p } = setup();
    rejected(c, 0, { ...p, view: 1 }, "prepare-future-view");
  });

  it("drops a PREPARE outside the window", () => {
    const { c, p } = setup();
    // window 8, stable checkpoint 0: seq 9 is out.
    rejected(c, 0, { ...p, seq: 9 }, "prepare-outside-window");
  });

  it("ignores a second PREPARE for a seq that already has one", () => {
    const { c, p } = setup();
    c.step(1, 0, p);
    const rd = c.step(1, 0, p);
    assert.equal(rd.send.length, 0);
    assert.equal(rd.commit.length, 0);
    assert.equal(c.r(1).lastExecuted, 1);
    assert.deepEqual(c.trusted[1]?.current(ORDER_COUNTER), { view: 0, slot: 2 });
  });
});

describe("hybrid replica: COMMIT validation", () => {
  function setup() {
    const c = hybrid();
    c.filter = holding(["h-commit"]);
    c.propose(0, c.request());
    c.deliverAll();
    // Both followers committed with PREPARE + own vote; the leader waits for a follower's COMMIT.
    assert.equal(c.r(1).lastExecuted, 1);
    assert.equal(c.r(2).lastExecuted, 1);
    assert.equal(c.r(0).lastExecuted, 0);
    const cm = c.heldOne("h-commit", (e) => e.from === 1 && e.to === 0).msg;
    return { c, cm };
  }

  it("drops a COMMIT whose batch digest was swapped (certificate over the real digest)", () => {
    const { c, cm } = setup();
    const bad: HCommit = { ...cm, batchDigest: c.crypto.sha256(TEXT.encode("other batch")) };
    const rd = c.step(0, 1, bad);
    assert.equal(c.dropped(0, "commit-bad-cert"), 1);
    assert.equal(rd.commit.length, 0);
    assert.equal(c.r(0).lastExecuted, 0);
    // The genuine COMMIT commits.
    assert.equal(c.step(0, 1, cm).commit.length, 1);
  });

  it("drops a COMMIT whose certificate signature is altered, or that is for a future view", () => {
    const { c, cm } = setup();
    c.step(0, 1, { ...cm, cert: { ...cm.cert, sig: flipped(cm.cert.sig) } });
    c.step(0, 1, { ...cm, view: 1 });
    assert.equal(c.dropped(0, "commit-bad-cert"), 1);
    assert.equal(c.dropped(0, "commit-future-view"), 1);
    assert.equal(c.r(0).lastExecuted, 0);
  });

  it("drops a COMMIT that comes from the leader", () => {
    const { c, cm } = setup();
    // Replica 1's vote, delivered to replica 2 as if sent by the leader.
    c.step(2, 0, cm);
    assert.equal(c.dropped(2, "commit-from-leader"), 1);
    // A COMMIT certified by the leader's own subsystem (instead of a PREPARE) is refused as well.
    const cert = c
      .subsystem(0)
      .certifyIndependent(ORDER_COUNTER, { view: 0, slot: 2 }, c.digests.hPrepare(0, 1, cm.batchDigest));
    c.step(1, 0, { ...cm, cert });
    assert.equal(c.dropped(1, "commit-from-leader"), 1);
  });

  it("a follower's vote relayed by another peer does not count as that peer's vote", () => {
    const { c, cm } = setup();
    // Replica 1's COMMIT re-sent by replica 2: would complete the leader's f+1 if taken as 2's vote.
    const rd = c.step(0, 2, cm);
    assert.equal(c.dropped(0, "commit-bad-cert"), 1);
    assert.equal(rd.commit.length, 0);
    assert.equal(c.r(0).lastExecuted, 0);
    assert.equal(c.step(0, 1, cm).commit.length, 1);
  });

  it("duplicate COMMITs do not count twice (f = 2, five replicas)", () => {
    const c = hybrid(2);
    c.filter = holding(["h-commit"]);
    c.propose(0, c.request());
    c.deliverAll();
    for (let i = 0; i < 5; i++) assert.equal(c.r(i).lastExecuted, 0, "f+1 = 3 votes needed");
    const from1 = c.heldOne("h-commit", (e) => e.from === 1 && e.to === 0).msg;
    const from2 = c.heldOne("h-commit", (e) => e.from === 2 && e.to === 0).msg;
    c.step(0, 1, from1);
    c.step(0, 1, from1);
    c.step(0, 1, { ...from1 });
    c.step(0, 2, from1);
    c.step(0, 3, from1);
    assert.equal(c.r(0).lastExecuted, 0, "leader + replica 1 are only 2 votes");
    assert.equal(c.dropped(0, "commit-bad-cert"), 2);
    const rd = c.step(0, 2, from2);
    assert.deepEqual(
      rd.commit.map((x) => x.seq),
      [1],
    );
  });
});

describe("hybrid replica: trusted counter", () => {
  it("a Byzantine host cannot get its subsystem to certify the same value twice", () => {
    const c = hybrid();
    const req = c.commitRequest();
    const t0 = c.trusted[0];
    assert.ok(t0, "t0");
    assert.deepEqual(t0.current(ORDER_COUNTER), { view: 0, slot: 2 });
    const otherBatch: Batch = { requests: [c.request("equivocation")] };
    const otherDigest = c.digests.hPrepare(0, 1, c.digests.batch(otherBatch));
    const isCounterError = (code: string) => (e: unknown) => {
      assert.ok(e instanceof CounterError, String(e));
      assert.equal(e.code, code);
      return true;
    };
    assert.throws(
      () => t0.certifyIndependent(ORDER_COUNTER, { view: 0, slot: 2 }, otherDigest),
      isCounterError("NOT_INCREASING"),
    );
    assert.throws(
      () => t0.certifyContinuing(ORDER_COUNTER, { view: 0, slot: 1 }, otherDigest),
      isCounterError("GOES_BACK"),
    );
    // The best it can do is a higher slot, which no follower accepts for seq 1.
    const cert = t0.certifyIndependent(ORDER_COUNTER, { view: 0, slot: 3 }, otherDigest);
    const eq: HPrepare = { type: "h-prepare", view: 0, seq: 1, batch: otherBatch, cert };
    for (const i of [1, 2]) {
      c.step(i, 0, eq);
      assert.equal(c.dropped(i, "prepare-bad-cert"), 1);
      assert.equal(c.commits[i]?.length, 1);
      assert.equal(c.commitAt(i, 1)?.batch.requests[0]?.reqNo, req.reqNo);
    }
  });
});

describe("hybrid replica: equivocation by a compromised counter", () => {
  /**
   * Replica 0's counter key is stolen (its own code never proposes): the attacker certifies two PREPAREs
   * for seq 1 at the one value (0, 2), batch A to replica 1 and batch B to replica 2. COMMITs are held.
   */
  function equivocatingLeader() {
    const c = hybrid();
    c.filter = holding(["h-commit"]);
    const batchA: Batch = { requests: [c.request("A")] };
    const batchB: Batch = { requests: [c.request("B")] };
    const digestA = c.digests.hPrepare(0, 1, c.digests.batch(batchA));
    const digestB = c.digests.hPrepare(0, 1, c.digests.batch(batchB));
    const value = { view: 0, slot: 2 };
    // A second counter with the stolen key certifies (0, 2) again ...
    const certA = c.subsystem(0).certifyIndependent(ORDER_COUNTER, value, digestA);
    // ... as does the key applied directly to the bytes a certificate covers.
    const fields = { subsystem: 0, counter: ORDER_COUNTER, value };
    const key = c.counterSecrets[0] as Uint8Array;
    const certB: CounterCert = { ...fields, sig: c.crypto.sign(key, certBytes(fields, digestB)) };
    const checker = c.checker();
    assert.ok(checker.verifyCert(certA, digestA), "certificate A verifies");
    assert.ok(checker.verifyCert(certB, digestB), "certificate B verifies");
    c.step(1, 0, { type: "h-prepare", view: 0, seq: 1, batch: batchA, cert: certA });
    c.step(2, 0, { type: "h-prepare", view: 0, seq: 1, batch: batchB, cert: certB });
    c.deliverAll();
    return { c, batchA, batchB, digestA, digestB };
  }

  it("each honest follower proves the equivocation from the other's COMMIT, and halts", () => {
    const { c, batchA, batchB, digestA, digestB } = equivocatingLeader();
    // The fork a stolen key buys: PREPARE + own vote are f+1, each follower committed its own batch.
    assert.equal(c.batchDigestHex(c.commitAt(1, 1)?.batch ?? { requests: [] }), c.batchDigestHex(batchA));
    assert.equal(c.batchDigestHex(c.commitAt(2, 1)?.batch ?? { requests: [] }), c.batchDigestHex(batchB));
    for (const i of [1, 2]) {
      assert.equal(c.equivocations(i).length, 0, `replica ${i} has seen one certificate only`);
      assert.equal(c.r(i).halted, null);
    }
    // Each COMMIT carries the leader's certificate of the PREPARE it votes for.
    c.release((e) => e.from !== 0 && e.to !== 0);
    const publicOnly = new UsigChecker(c.counterPublicKeys, c.crypto);
    for (const i of [1, 2]) {
      const found = c.equivocations(i);
      assert.equal(found.length, 1, `replica ${i} raises one proof`);
      const ev = found[0]!;
      assert.equal(ev.culprit, 0);
      // Anyone with the subsystems' public keys is convinced (the checker holds nothing else).
      assert.equal(checkEquivocation(ev.proof, publicOnly), null, `replica ${i}'s proof holds`);
      assert.deepEqual(
        new Set([toHex(ev.proof.a.digest), toHex(ev.proof.b.digest)]),
        new Set([toHex(digestA), toHex(digestB)]),
      );
      assert.equal(ev.proof.a.cert.subsystem, 0);
      assert.deepEqual(ev.proof.a.cert.value, { view: 0, slot: 2 });
      // Checked under another subsystem's key, the same proof is not one.
      const wrongKeys = [c.counterPublicKeys[1], ...c.counterPublicKeys.slice(1)] as Uint8Array[];
      assert.equal(checkEquivocation(ev.proof, new UsigChecker(wrongKeys, c.crypto)), "bad-signature");
      const r = c.r(i);
      assert.match(r.halted ?? "", /replica 0/, `replica ${i} halted`);
      // A halted replica drops every message, does nothing on tick, and refuses requests.
      const before = r.dropped.get("halted") ?? 0;
      const rd = c.step(i, 3 - i, { type: "status", view: 0, target: 0, lastExecuted: 5, stableSeq: 0 });
      assert.equal(c.dropped(i, "halted"), before + 1);
      assert.equal(rd.send.length, 0);
      assert.throws(
        () => r.propose(c.request()),
        (e: unknown) => e instanceof RequestError && e.code === "HALTED",
      );
    }
    const mark = c.log.length;
    // The culprit's own software halts too once the proof reaches it; while it has not, it proposes.
    if (c.r(0).halted === null) c.propose(0, c.request("after"));
    c.tick(3 * (TEST_LIMITS.viewChangeTimeoutTicks as number));
    for (const i of [1, 2]) {
      assert.equal(c.sent("h-view-change", (e) => e.from === i, c.log.slice(mark)).length, 0, `replica ${i}`);
      assert.equal(c.log.slice(mark).filter((e) => e.from === i).length, 0, `replica ${i} sent nothing`);
      assert.equal(c.r(i).lastExecuted, 1, `replica ${i} executes nothing more`);
      assert.equal(c.r(i).view, 0);
      assert.equal(c.equivocations(i).length, 1, "one proof is raised once");
    }
  });

  it("a replica that saw one side only halts on its peer's proof (h-proof); a forged proof is dropped", () => {
    const { c } = equivocatingLeader();
    c.filter = holding(["h-commit", "h-proof"]);
    // Replica 1 alone gets replica 2's COMMIT: it proves the equivocation and broadcasts the proof.
    c.release((e) => e.from === 2 && e.to === 1 && e.msg.type === "h-commit");
    assert.equal(c.equivocations(1).length, 1, "replica 1 proves it");
    const proofs = c.log.filter((e) => e.from === 1 && e.to === 2 && e.msg.type === "h-proof");
    assert.equal(proofs.length, 1, "replica 1 tells replica 2 once");
    const relayed = proofs[0]?.msg as Extract<Message, { type: "h-proof" }>;
    // A forged proof (one signature flipped) convinces no one.
    const bad = {
      ...relayed,
      proof: {
        ...relayed.proof,
        b: {
          ...relayed.proof.b,
          cert: {
            ...relayed.proof.b.cert,
            sig: relayed.proof.b.cert.sig.map((x, i) => (i === 0 ? x ^ 1 : x)),
          },
        },
      },
    };
    c.step(2, 1, bad);
    assert.equal(c.dropped(2, "proof-invalid"), 1);
    assert.equal(c.r(2).halted, null, "a forged proof halts nothing");
    // The real one does: replica 2 never saw replica 1's COMMIT.
    c.step(2, 1, relayed);
    assert.equal(c.equivocations(2).length, 1, "replica 2 raises the relayed proof");
    assert.match(c.r(2).halted ?? "", /replica 0/);
    assert.equal(checkEquivocation(c.equivocations(2)[0]!.proof, c.checker()), null);
  });

  it("the replica whose counter was used learns it too from the two COMMITs", () => {
    const { c } = equivocatingLeader();
    c.release((e) => e.to === 0);
    const found = c.equivocations(0);
    assert.equal(found.length, 1);
    assert.equal(found[0]?.culprit, 0);
    assert.equal(checkEquivocation(found[0]!.proof, c.checker()), null);
    assert.notEqual(c.r(0).halted, null);
  });

  /**
   * The leader's stolen key certifies (0, 5) twice, seq 4 (a checkpoint): batch A to replica 1, B to
   * replica 2; the COMMITs that would reveal it are held. Replica 2's checkpoint and the attacker's make
   * f+1 for B's state at replica 1, whose state then diverges.
   */
  function forkAtCheckpoint() {
    const c = hybrid();
    for (let k = 0; k < 3; k++) c.commitRequest(c.request(), [0]);
    // The COMMITs that would reveal the equivocation are lost; the checkpoint at seq 4 is ours to deliver.
    c.filter = holding(["h-commit", "checkpoint", "h-certs"]);
    const batchA: Batch = { requests: [c.request("A")] };
    const batchB: Batch = { requests: [c.request("B")] };
    const digestA = c.digests.hPrepare(0, 4, c.digests.batch(batchA));
    const digestB = c.digests.hPrepare(0, 4, c.digests.batch(batchB));
    const value = { view: 0, slot: 5 };
    const certA = c.subsystem(0).certifyIndependent(ORDER_COUNTER, value, digestA);
    const certB = c.subsystem(0).certifyIndependent(ORDER_COUNTER, value, digestB);
    c.step(1, 0, { type: "h-prepare", view: 0, seq: 4, batch: batchA, cert: certA });
    c.step(2, 0, { type: "h-prepare", view: 0, seq: 4, batch: batchB, cert: certB });
    c.deliverAll();
    assert.equal(c.batchDigestHex(c.commitAt(1, 4)?.batch ?? { requests: [] }), c.batchDigestHex(batchA));
    assert.equal(c.batchDigestHex(c.commitAt(2, 4)?.batch ?? { requests: [] }), c.batchDigestHex(batchB));
    // Replica 2's checkpoint and the attacker's (its own replica key) make f+1 for B's state at replica 1.
    const cp2 = c.heldOne("checkpoint", (e) => e.from === 2 && e.to === 1).msg;
    const sig0 = c.signAs(0, c.digests.checkpoint(4, cp2.stateDigest, cp2.clientsDigest));
    c.step(1, 0, { ...cp2, sig: sig0 });
    c.release((e) => e.from === 2 && e.to === 1 && e.msg.type === "checkpoint");
    return { c, certA, digestA, cp2, sig0 };
  }

  it("a replica whose state diverged from a stable checkpoint sends what it accepted (h-certs); a peer with the other side proves it", () => {
    const { c, certA, digestA } = forkAtCheckpoint();
    assert.ok(
      c.events[1]?.some((e) => e.kind === "state-diverged" && e.seq === 4),
      "replica 1 finds its state diverged at 4",
    );
    assert.match(c.r(1).halted ?? "", /diverged/);
    assert.equal(c.equivocations(1).length, 0, "replica 1 holds one side only: it cannot prove it");
    const ev = c.heldOne("h-certs", (e) => e.from === 1 && e.to === 2).msg;
    assert.ok(
      ev.certs.some((e) => bytesEqual(e.cert.sig, certA.sig) && bytesEqual(e.digest, digestA)),
      "the h-certs carry the leader's certificate of the PREPARE replica 1 committed at 4",
    );
    // A forged copy (A's signature flipped) costs replica 2 a signature check and proves nothing.
    const forged = {
      ...ev,
      certs: ev.certs.map((e) =>
        bytesEqual(e.cert.sig, certA.sig) ? { ...e, cert: { ...e.cert, sig: flipped(e.cert.sig) } } : e,
      ),
    };
    c.step(2, 1, forged);
    assert.equal(c.dropped(2, "certs-invalid"), 1);
    c.step(2, 1, { type: "h-certs", certs: "x" as unknown as [] });
    assert.equal(c.dropped(2, "malformed"), 1, "not a list: malformed");
    assert.equal(c.r(2).halted, null, "neither halts replica 2");
    c.release((e) => e.from === 1 && e.to === 2 && e.msg.type === "h-certs");
    const found = c.equivocations(2);
    assert.equal(found.length, 1, "replica 2 proves the equivocation from replica 1's certificates");
    assert.equal(found[0]?.culprit, 0);
    assert.equal(checkEquivocation(found[0]!.proof, new UsigChecker(c.counterPublicKeys, c.crypto)), null);
    assert.notEqual(c.r(2).halted, null);
    // Halted, replica 1 answers a peer that keeps talking to it with the certificates again, backing off.
    const status: Message = { type: "status", view: 0, target: 0, lastExecuted: 4, stableSeq: 4 };
    const again = (rd: { send: readonly { msg: Message }[] }) =>
      rd.send.filter((o) => o.msg.type === "h-certs").length;
    assert.equal(again(c.step(1, 0, status)), 0, "not within a retransmission period of the first");
    c.tick(TEST_LIMITS.retransmitTicks as number, [1]);
    assert.equal(again(c.step(1, 0, status)), 1, "a period later, once");
    assert.equal(again(c.step(1, 0, status)), 0, "then backing off");
  });

  it("the certificate of a committed PREPARE outlives the checkpoint that collects its slot, and a restart", () => {
    const { c, certA } = forkAtCheckpoint();
    // Replica 2's side becomes stable there too (the attacker signs it): its slot 4 is collected ...
    const cp2 = c.heldOne("checkpoint", (e) => e.from === 2 && e.to === 0).msg;
    c.step(2, 0, { ...cp2, sig: c.signAs(0, c.digests.checkpoint(4, cp2.stateDigest, cp2.clientsDigest)) });
    assert.equal(c.r(2).stable.seq, 4);
    // ... and it restarts, forgetting every certificate it verified.
    c.restart(2);
    c.release((e) => e.from === 1 && e.to === 2 && e.msg.type === "h-certs");
    const found = c.equivocations(2);
    assert.equal(found.length, 1, "replica 2 still proves it from the certificate of what it committed");
    assert.ok(
      [found[0]!.proof.a.cert.sig, found[0]!.proof.b.cert.sig].some((sig) => bytesEqual(sig, certA.sig)),
      "one side of the proof is replica 1's certificate",
    );
    assert.equal(checkEquivocation(found[0]!.proof, new UsigChecker(c.counterPublicKeys, c.crypto)), null);
  });

  it("a COMMIT whose prepareCert is forged or does not fit is dropped and proves nothing", () => {
    const c = hybrid();
    c.filter = holding(["h-commit"]);
    const req = c.request();
    c.propose(0, req);
    c.deliverAll();
    assert.equal(c.r(0).lastExecuted, 0, "the leader waits for a COMMIT");
    const other = c.digests.hPrepare(0, 1, c.digests.batch({ requests: [c.request("other")] }));
    for (const to of [0, 2]) {
      const cm = c.heldOne("h-commit", (e) => e.from === 1 && e.to === to).msg;
      const pc = cm.prepareCert;
      const bad: [string, HCommit][] = [
        ["a flipped signature", { ...cm, prepareCert: { ...pc, sig: flipped(pc.sig) } }],
        ["the last signature byte flipped", { ...cm, prepareCert: { ...pc, sig: flipped(pc.sig, 63) } }],
        [
          "a certificate of the leader's (stolen) key over another batch",
          { ...cm, prepareCert: c.subsystem(0).certifyIndependent(ORDER_COUNTER, pc.value, other) },
        ],
        ["the COMMIT's own certificate", { ...cm, prepareCert: cm.cert }],
        ["a certificate for another slot", { ...cm, prepareCert: { ...pc, value: { view: 0, slot: 3 } } }],
        ["a continuing certificate", { ...cm, prepareCert: { ...pc, prev: ZERO_VALUE } }],
      ];
      for (const [what, msg] of bad) {
        const before = c.dropped(to, "commit-bad-prepare-cert");
        const rd = c.step(to, 1, msg);
        assert.equal(c.dropped(to, "commit-bad-prepare-cert"), before + 1, `${what} at ${to}`);
        assert.equal(rd.commit.length, 0, what);
      }
      // None at all is not a COMMIT's shape (shape.ts).
      c.step(to, 1, { ...cm, prepareCert: undefined as unknown as CounterCert });
      assert.equal(c.dropped(to, "malformed"), 1, `none at ${to}`);
      assert.equal(c.equivocations(to).length, 0, `replica ${to} proves nothing`);
      assert.equal(c.r(to).halted, null);
      assert.equal(c.r(to).droppedTotal(), bad.length + 1);
    }
    assert.equal(c.r(0).lastExecuted, 0);
    // The genuine COMMITs are taken.
    c.filter = () => "deliver";
    c.release();
    for (let i = 0; i < 3; i++) assert.equal(c.r(i).lastExecuted, 1, `replica ${i}`);
    for (let i = 0; i < 3; i++) assert.equal(c.equivocations(i).length, 0);
  });

  it("honest runs with view changes and restarts raise no equivocation", () => {
    const runs: Cluster[] = [];
    const plain = hybrid();
    for (let k = 0; k < 9; k++) plain.commitRequest(plain.request(), [k % 3]);
    plain.restart(1);
    plain.commitRequest();
    runs.push(plain);
    const { c } = silentLeader(["h-view-change"]);
    c.restart(1);
    c.release();
    c.tick(30);
    c.filter = () => "deliver";
    c.commitRequest(c.request(), [2]);
    runs.push(c);
    for (const cl of runs) {
      for (let i = 0; i < cl.n; i++) {
        assert.deepEqual(cl.equivocations(i), [], `replica ${i}`);
        assert.equal(cl.r(i).halted, null, `replica ${i}`);
        assert.equal(cl.dropped(i, "commit-bad-prepare-cert"), 0, `replica ${i}`);
      }
    }
    assert.equal(plain.r(2).lastExecuted, 10);
    assert.ok(c.r(1).view >= 1 && c.r(2).lastExecuted >= 3, `view ${c.r(1).view}, ${c.r(2).lastExecuted}`);
  });
});

describe("hybrid replica: view change", () => {
  it("a replica alone in a view change is joined after the request timeout, not before, and commits again", () => {
    // Its VIEW-CHANGE, lost while it was cut off, is retransmitted.
    const c = new Cluster({ mode: "hybrid", f: 1, limits: { retransmitTicks: 10 } });
    c.commitRequest();
    // Replica 2, cut off, suspects the leader alone; its counter leaves view 0 for good.
    c.filter = isolate(2);
    const timeout = TEST_LIMITS.requestTimeoutTicks as number;
    c.propose(2, c.request());
    c.tick(timeout + 1, [2]);
    assert.equal(c.r(2).vcTarget, 1, "replica 2 is changing view");
    // Healed: the others keep committing in view 0 and only join after a request timeout.
    c.filter = () => "deliver";
    c.tick(1);
    assert.equal(c.r(0).view, 0);
    c.commitRequest();
    c.tick(timeout - 5);
    assert.equal(c.r(0).vcTarget, null, "not before a request timeout");
    assert.equal(c.r(1).vcTarget, null);
    c.tick(timeout);
    for (let i = 0; i < 3; i++) {
      assert.equal(c.r(i).view, 1, `replica ${i} is in view 1`);
      assert.equal(c.r(i).vcTarget, null, `replica ${i} is not changing view`);
    }
    assert.ok(
      c.events[0]?.some((e) => e.kind === "view-change-started" && /alone/.test(e.reason)),
      "the leader joined replica 2's view change",
    );
    const req = c.commitRequest(c.request(), [2]);
    for (let i = 0; i < 3; i++)
      assert.ok(
        c.commits[i]?.some((cb) => cb.batch.requests.some((r) => r.reqNo === req.reqNo)),
        `replica ${i} commits a request submitted at replica 2`,
      );
  });

  it("a replica with nothing pending joins a peer alone in a view change, which its checkpoint needs", () => {
    const c = hybrid();
    // Replica 1 is gone; replica 2's COMMITs never reach the leader: replica 2 executes 1..4, the leader not.
    const cut: Filter = (e) =>
      e.from === 1 || e.to === 1 || (e.from === 2 && e.to === 0 && e.msg.type === "h-commit")
        ? "drop"
        : "deliver";
    c.filter = cut;
    for (let k = 0; k < 4; k++) {
      c.propose(0, c.request());
      c.tick(2);
    }
    assert.equal(c.r(2).lastExecuted, 4);
    assert.equal(c.r(0).lastExecuted, 0);
    // The leader's proposals do not commit: it changes view. Replica 2 has nothing pending (all executed).
    c.filter = isolate(1);
    const timeout = TEST_LIMITS.requestTimeoutTicks as number;
    c.tick(timeout + 1);
    assert.notEqual(c.r(0).vcTarget, null, "the leader is changing view");
    c.tick(12 * timeout);
    for (const i of [0, 2]) {
      assert.equal(c.r(i).stable.seq, 4, `replica ${i} has checkpoint 4 stable`);
      assert.equal(c.r(i).vcTarget, null, `replica ${i} is in a view again`);
    }
    assert.equal(c.r(0).view, c.r(2).view);
    assert.ok(
      c.events[2]?.some(
        (e) => e.kind === "view-change-started" && /a peer changes view alone/.test(e.reason),
      ),
      "replica 2 joined the leader, alone in its view change",
    );
  });

  it("followers of a silent leader change view; the prepared batch is re-issued; new requests commit", () => {
    const { c, req2 } = silentLeader();
    for (const i of [1, 2]) {
      const r = c.r(i);
      assert.equal(r.view, 1, `replica ${i} in view 1`);
      assert.equal(r.vcTarget, null);
      assert.ok(
        c.events[i]?.some((e) => e.kind === "new-view" && e.view === 1 && e.leader === 1),
        'c.events[i]?.some((e) => e.kind === "new-view" && e.view === 1 && e.leader === 1)',
      );
      assert.ok(
        c.events[i]?.some((e) => e.kind === "view-change-started" && e.view === 1),
        'c.events[i]?.some((e) => e.kind === "view-change-started" && e.view === 1)',
      );
    }
    // Seq 1 was committed in view 0 by replica 2 only; the NEW-VIEW re-issued it for replica 1.
    const old = c.commitAt(2, 1);
    const reissued = c.commitAt(1, 1);
    assert.equal(old?.view, 0);
    assert.equal(reissued?.view, 1);
    assert.equal(
      c.batchDigestHex(reissued?.batch ?? { requests: [] }),
      c.batchDigestHex(old?.batch ?? { requests: [] }),
    );
    assert.equal(
      toHex(reissued?.stateDigest ?? new Uint8Array()),
      toHex(old?.stateDigest ?? new Uint8Array()),
    );
    // Request 2, pending at both followers, is proposed by the new leader once seq 1 executed there.
    assert.deepEqual(c.seqs(2), [1, 2], "replica 2 does not apply seq 1 twice");
    for (const i of [1, 2]) {
      const cb = c.commitAt(i, 2);
      assert.equal(cb?.view, 1);
      assert.equal(cb?.batch.requests[0]?.reqNo, req2.reqNo);
    }
    // A fresh request sent to a follower is forwarded to the new leader and commits.
    const req3 = c.commitRequest(c.request(), [2]);
    for (const i of [1, 2]) {
      assert.equal(c.r(i).lastExecuted, 3);
      assert.equal(c.commitAt(i, 3)?.batch.requests[0]?.reqNo, req3.reqNo);
      assert.deepEqual(c.seqs(i), [1, 2, 3]);
    }
  });

  function heldVcs() {
    const s = silentLeader(["h-view-change"]);
    const { c } = s;
    for (const i of [1, 2]) {
      assert.equal(c.r(i).vcTarget, 1);
      assert.equal(c.r(i).view, 0);
    }
    const vc2 = c.heldOne("h-view-change", (e) => e.from === 2 && e.to === 1).msg;
    assert.equal(vc2.entries.length, 1, "replica 2 certified a COMMIT for seq 1 in view 0");
    assert.equal(vc2.chain.length, 1);
    return { ...s, vc2 };
  }

  it("drops a VIEW-CHANGE that omits an entry its sender certified", () => {
    const { c, vc2 } = heldVcs();
    const rd = c.step(1, 2, { ...vc2, entries: [] });
    const reasons = ["vc-incomplete", "vc-bad-chain-head"].map((r) => c.dropped(1, r));
    assert.equal(reasons[0]! + reasons[1]!, 1, `dropped: ${[...c.r(1).dropped.keys()]}`);
    assert.equal(rd.send.length, 0);
    assert.equal(c.r(1).view, 0, "no NEW-VIEW from a bad VIEW-CHANGE");
    // The genuine one completes the view change, once replica 1 has fetched the batch it names.
    c.step(1, 2, vc2);
    assert.equal(c.r(1).view, 0, "the NEW-VIEW waits for the batch");
    c.deliverAll();
    assert.equal(c.r(1).view, 1);
  });

  it("drops VIEW-CHANGEs its (Byzantine) sender re-certified with content that hides its history", () => {
    const { c, vc2 } = heldVcs();
    const t2 = c.trusted[2];
    assert.ok(t2, "t2");
    // The real subsystem can only continue the real chain: chain[0].prev keeps exposing (0, 2), i.e.
    // that replica 2 voted on seq 1 in view 0.
    const links: ChainLink[] = [...vc2.chain];
    const forge = (
      newView: number,
      content: Omit<HViewChange, "type" | "chain" | "newView" | "proofs">,
      whole = true,
    ): HViewChange => {
      const full = { ...content, newView };
      const digest = c.digests.hViewChange(full);
      const link: ChainLink = {
        cert: t2.certifyContinuing(ORDER_COUNTER, { view: newView, slot: 0 }, digest),
        digest,
      };
      links.push(link);
      return { type: "h-view-change", ...full, chain: whole ? [...links] : [link], proofs: [] };
    };
    const base = { replica: 2, checkpoint: GENESIS_CHECKPOINT, nv: null, entries: vc2.entries };
    // A checkpoint proof with its own signature only (f+1 are needed).
    const stateDigest = new Uint8Array(32).fill(7);
    const clientsDigest = new Uint8Array(32).fill(8);
    const sig = c.signAs(2, c.digests.checkpoint(4, stateDigest, clientsDigest));
    c.step(
      1,
      2,
      forge(2, { ...base, checkpoint: { seq: 4, stateDigest, clientsDigest, sigs: [{ replica: 2, sig }] } }),
    );
    assert.equal(c.dropped(1, "vc-bad-checkpoint"), 1);
    // The entry for seq 1 left out.
    c.step(1, 2, forge(3, { ...base, entries: [] }));
    assert.equal(c.dropped(1, "vc-incomplete"), 1);
    // The old links left out: the chain no longer starts from a value outside view changes.
    c.step(1, 2, forge(4, { ...base, entries: [] }, false));
    assert.equal(c.dropped(1, "vc-chain-not-anchored"), 1);
    assert.equal(c.r(1).view, 0);
    assert.equal(c.r(1).vcTarget, 1);
    // Control: honest content over the whole chain is a valid VIEW-CHANGE (for view 5).
    c.step(1, 2, forge(5, base));
    assert.equal(c.r(1).droppedTotal(), 3);
  });

  it("drops a VIEW-CHANGE whose chain link signature is altered", () => {
    const { c, vc2 } = heldVcs();
    c.step(1, 2, withBadLinkSig(vc2));
    assert.equal(c.dropped(1, "vc-bad-cert"), 1);
    assert.equal(c.r(1).view, 0);
    c.step(1, 2, vc2);
    c.deliverAll(); // replica 1 fetches the batch the VIEW-CHANGE names
    assert.equal(c.r(1).view, 1);
  });

  it("drops a VIEW-CHANGE whose replica field is not its sender", () => {
    const { c, vc2 } = heldVcs();
    c.step(1, 0, vc2);
    assert.equal(c.dropped(1, "vc-wrong-sender"), 1);
    assert.equal(c.r(1).view, 0);
  });

  it("drops a VIEW-CHANGE altered after certification, or whose entry certificate is forged", () => {
    const { c, vc2 } = heldVcs();
    const e = vc2.entries[0];
    assert.ok(e, "e");
    const badEntry = { ...e, cert: { ...e.cert, sig: flipped(e.cert.sig) } };
    const otherBatch: Batch = { requests: [c.request("other")] };
    // Content changed after the chain head certified it.
    c.step(1, 2, { ...vc2, entries: [badEntry] });
    c.step(1, 2, {
      ...vc2,
      checkpoint: { seq: 4, stateDigest: new Uint8Array(32), clientsDigest: new Uint8Array(32), sigs: [] },
    });
    assert.equal(c.dropped(1, "vc-bad-chain-head"), 2);
    // Re-certified by the (Byzantine) sender: the entry must still carry the old leader's certificate.
    const t2 = c.trusted[2];
    assert.ok(t2, "t2");
    let chain = [...vc2.chain];
    const recertified = (newView: number, entries: HViewChange["entries"]): HViewChange => {
      const content = { replica: 2, newView, checkpoint: vc2.checkpoint, nv: null, entries };
      const digest = c.digests.hViewChange(content);
      chain = [
        ...chain,
        { cert: t2.certifyContinuing(ORDER_COUNTER, { view: newView, slot: 0 }, digest), digest },
      ];
      return { type: "h-view-change", ...content, chain, proofs: [] };
    };
    c.step(1, 2, recertified(2, [badEntry]));
    c.step(1, 2, recertified(3, [{ ...e, batchDigest: c.digests.batch(otherBatch) }]));
    assert.equal(c.dropped(1, "vc-bad-entry-cert"), 2);
    c.step(1, 2, recertified(4, [{ ...e, seq: 2 }]));
    assert.equal(c.dropped(1, "vc-bad-entry"), 1);
    assert.equal(c.r(1).view, 0);
    // Control: the same procedure with the genuine entry is accepted.
    c.step(1, 2, recertified(5, vc2.entries));
    assert.equal(c.r(1).droppedTotal(), 5);
  });

  it("drops a NEW-VIEW whose VIEW-CHANGE set was tampered with", () => {
    const { c } = silentLeader(["h-new-view"]);
    assert.equal(c.r(1).view, 1, "the new leader entered view 1");
    assert.equal(c.r(2).view, 0);
    const nv = c.heldOne("h-new-view", (e) => e.to === 2).msg;
    assert.equal(nv.vcs.length, 2);
    const vcOf = (r: number) => nv.vcs.find((v) => v.replica === r) as HViewChange;
    const vc0 = c.sent("h-view-change", (e) => e.from === 0 && e.msg.newView === 1)[0]?.msg;
    assert.ok(vc0, "replica 0 sent a (lost) VIEW-CHANGE of its own");
    const bad: [string, HNewView][] = [
      ["one VIEW-CHANGE dropped", { ...nv, vcs: [vcOf(1)] }],
      ["a VIEW-CHANGE for another view", { ...nv, vcs: [vcOf(1), { ...vcOf(2), newView: 2 }] }],
      ["the same VIEW-CHANGE twice", { ...nv, vcs: [vcOf(1), vcOf(1)] }],
      ["another valid VIEW-CHANGE swapped in", { ...nv, vcs: [vc0, vcOf(1)] }],
      ["a VIEW-CHANGE with a bad chain signature", { ...nv, vcs: [vcOf(1), withBadLinkSig(vcOf(2))] }],
      ["the NEW-VIEW certificate altered", { ...nv, cert: { ...nv.cert, sig: flipped(nv.cert.sig) } }],
    ];
    for (const [what, msg] of bad) {
      const before = c.r(2).droppedTotal();
      const rd = c.step(2, 1, msg);
      assert.equal(c.r(2).droppedTotal(), before + 1, what);
      const reason = c.events[2]?.at(-1);
      assert.ok(
        reason?.kind === "dropped" && reason.reason.startsWith("nv-"),
        `${what}: ${JSON.stringify(reason)}`,
      );
      assert.equal(rd.send.length, 0, what);
      assert.equal(c.r(2).view, 0, what);
    }
    assert.equal(c.dropped(2, "nv-bad-vcs"), 3);
    assert.equal(c.dropped(2, "nv-bad-cert"), 2);
    assert.equal(c.dropped(2, "nv-vc-bad-cert"), 1);
    // The genuine NEW-VIEW is accepted and the re-issued seq 1 commits at the new leader.
    c.step(2, 1, nv);
    assert.equal(c.r(2).view, 1);
    c.deliverAll();
    assert.equal(c.commitAt(1, 1)?.view, 1);
  });
});

describe("hybrid replica: checkpoints and state transfer", () => {
  it("drops CHECKPOINTs with a bad signature; mismatching digests do not make a quorum", () => {
    const c = hybrid();
    c.filter = holding(["checkpoint"]);
    for (let k = 0; k < 4; k++) c.commitRequest();
    for (let i = 0; i < 3; i++) {
      assert.equal(c.r(i).lastExecuted, 4);
      assert.equal(c.r(i).stable.seq, 0, "own vote only");
    }
    const cp1 = c.heldOne("checkpoint", (e) => e.from === 1 && e.to === 0).msg;
    const cp2 = c.heldOne("checkpoint", (e) => e.from === 2 && e.to === 0).msg;
    c.step(0, 1, { ...cp1, sig: flipped(cp1.sig) });
    c.step(0, 2, cp1); // replica 1's signature relayed as replica 2's
    assert.equal(c.dropped(0, "checkpoint-bad-sig"), 2);
    assert.equal(c.r(0).stable.seq, 0);
    // Properly signed by replica 1, but for a different state: a vote that matches nothing.
    const wrong = c.crypto.sha256(TEXT.encode("wrong state"));
    const sig = c.signAs(1, c.digests.checkpoint(4, wrong, cp1.clientsDigest));
    const rd = c.step(0, 1, {
      type: "checkpoint",
      seq: 4,
      stateDigest: wrong,
      clientsDigest: cp1.clientsDigest,
      sig,
    });
    assert.equal(c.r(0).stable.seq, 0);
    // A signed state other than ours at a seq we executed: counted, and answered with our certificates.
    assert.equal(c.dropped(0, "checkpoint-conflict"), 1);
    assert.deepEqual(
      rd.send.map((o) => [o.to, o.msg.type]),
      [[1, "h-certs"]],
    );
    assert.equal(c.r(0).droppedTotal(), 3);
    c.step(0, 2, cp2);
    assert.equal(c.r(0).stable.seq, 4);
    assert.deepEqual(
      c.r(0).stable.sigs.map((s) => s.replica),
      [0, 2],
    );
  });

  it("a restarted replica still serves state in chunks ending at older stable checkpoints", () => {
    const c = new Cluster({ mode: "hybrid", f: 1, limits: { stateChunkBatches: 4, statusTicks: 5 } });
    c.filter = isolate(2);
    for (let k = 0; k < 12; k++) c.commitRequest();
    assert.equal(c.r(0).stable.seq, 12);
    // Both up-to-date replicas restart: only their persisted proofs let them serve 1..4, 5..8, 9..12.
    c.restart(0);
    c.restart(1);
    c.filter = () => "deliver";
    c.tick(30);
    assert.equal(c.r(2).lastExecuted, 12);
    assert.equal(toHex(c.r(2).stateDigest), toHex(c.r(0).stateDigest));
  });

  it("executed batches are kept within retainMaxBytes too: a replica behind them gets a snapshot", () => {
    // 16 requests of 1000 bytes with room for 4000 bytes: like retainBatches 4 above, by bytes.
    const c = new Cluster({
      mode: "hybrid",
      f: 1,
      limits: { retainMaxBytes: 4000, statusTicks: 5, requestMaxBytes: 2000, batchMaxBytes: 2000 },
    });
    c.filter = isolate(2);
    for (let k = 0; k < 16; k++) c.commitRequest(c.request(`${k}`.padEnd(1000, "r")));
    assert.equal(c.r(0).stable.seq, 16);
    const kept = (c.r(0) as unknown as { history: Map<number, unknown> }).history;
    assert.deepEqual([...kept.keys()], [13, 14, 15, 16], "the newest 4000 bytes of batches");
    c.filter = (e) => (e.msg.type === "snapshot" ? "hold" : "deliver");
    c.tick(5);
    assert.equal(c.sent("state", (e) => e.to === 2).length, 0, "no STATE: the batches are gone");
    assert.equal(c.heldOne("snapshot", (e) => e.to === 2).msg.checkpoint.seq, 16);
  });

  it("batches too large for one STATE message (16 MiB) reach a laggard as a snapshot", () => {
    const big = 6 * 1024 * 1024;
    const c = new Cluster({
      mode: "hybrid",
      f: 1,
      limits: { statusTicks: 5, requestMaxBytes: big, batchMaxBytes: big, batchMaxCount: 1 },
    });
    c.filter = isolate(2);
    for (let k = 0; k < 4; k++) c.commitRequest(c.request(`${k}`.padEnd(big, "b")));
    assert.equal(c.r(0).stable.seq, 4);
    c.filter = (e) => (e.msg.type === "snapshot" ? "hold" : "deliver");
    c.tick(5);
    assert.equal(c.sent("state", (e) => e.to === 2).length, 0, "24 MiB to the checkpoint: no STATE");
    assert.equal(c.heldOne("snapshot", (e) => e.to === 2).msg.checkpoint.seq, 4);
  });

  it("a replica behind the batches its peers keep gets a verified snapshot, installs it, commits again", () => {
    const c = new Cluster({ mode: "hybrid", f: 1, limits: { retainBatches: 4, statusTicks: 5 } });
    c.filter = isolate(2);
    const first = c.commitRequest();
    for (let k = 1; k < 16; k++) c.commitRequest();
    assert.equal(c.r(0).stable.seq, 16);
    // The peers keep batches 13..16 only: replica 2's STATUS (lastExecuted 0) is answered with a snapshot.
    c.filter = (e) => (e.msg.type === "snapshot" ? "hold" : "deliver");
    c.tick(5);
    assert.equal(c.sent("state", (e) => e.to === 2).length, 0);
    const snap = c.heldOne("snapshot", (e) => e.to === 2).msg;
    assert.equal(snap.checkpoint.seq, 16);
    // A client table that does not hash to the certified digest (it would let a request run twice).
    const loosened = snap.clients.map(
      ([id, low, seen, lastSeq, reply]) => [id, low - 1, seen, lastSeq, reply] as const,
    );
    c.step(2, 0, { ...snap, clients: loosened });
    c.step(2, 0, { ...snap, checkpoint: { ...snap.checkpoint, sigs: snap.checkpoint.sigs.slice(0, 1) } });
    assert.equal(c.dropped(2, "snapshot-bad-clients"), 1);
    assert.equal(c.dropped(2, "snapshot-bad-proof"), 1);
    assert.equal(c.r(2).snapshotOffer, null);
    const offered = c.step(2, 0, snap);
    assert.ok(
      offered.events.some((e) => e.kind === "snapshot-offered" && e.seq === 16),
      'offered.events.some((e) => e.kind === "snapshot-offered" && e.seq === 16)',
    );
    // Nothing runs until the application reached the checkpoint and installs it.
    assert.equal(c.r(2).snapshotOffer, 16);
    assert.equal(c.r(2).lastExecuted, 0);
    assert.ok(c.r(2).installSnapshot(), "c.r(2).installSnapshot()");
    assert.equal(c.r(2).installSnapshot(), false, "installed once");
    const rd = c.drain(2);
    assert.equal(rd.commit.length, 0, "no batch is executed: the application holds the state");
    assert.ok(
      rd.events.some((e) => e.kind === "state-transfer" && e.fromSeq === 1 && e.toSeq === 16),
      'rd.events.some((e) => e.kind === "state-transfer" && e.fromSeq === 1 && e.toSeq === 16)',
    );
    assert.equal(c.r(2).lastExecuted, 16);
    assert.equal(toHex(c.r(2).stateDigest), toHex(c.r(0).stateDigest));
    assert.ok(c.r(2).wasExecuted(first.clientId, first.reqNo), "exactly-once state came with the snapshot");
    c.filter = () => "deliver";
    c.held.length = 0;
    c.commitRequest();
    for (let i = 0; i < 3; i++) assert.equal(c.r(i).lastExecuted, 17);
    c.restart(2);
    assert.equal(c.r(2).lastExecuted, 17, "the jump is durable");
    assert.equal(toHex(c.r(2).stateDigest), toHex(c.r(0).stateDigest));
  });

  it("a replica that installs a snapshot first tells its peers the leader certificates it accepted", () => {
    // What it executed is about to be replaced by a state it cannot compare with its own: were the
    // cluster forked, a peer holding the other side could prove the cause from these (onCerts).
    const c = new Cluster({ mode: "hybrid", f: 1, limits: { retainBatches: 4, statusTicks: 5 } });
    c.commitRequest();
    c.commitRequest();
    assert.equal(c.r(2).lastExecuted, 2);
    c.filter = isolate(2);
    for (let k = 2; k < 16; k++) c.commitRequest();
    c.filter = (e) => (e.msg.type === "snapshot" ? "hold" : "deliver");
    c.tick(5);
    c.step(2, 0, c.heldOne("snapshot", (e) => e.to === 2).msg);
    assert.ok(c.r(2).installSnapshot(), "installed");
    const certs = c
      .drain(2)
      .send.filter((o) => o.to === "all" && o.msg.type === "h-certs")
      .flatMap(
        (o) =>
          (o.msg as unknown as { certs: { cert: { subsystem: number; value: { slot: number } } }[] }).certs,
      );
    for (const slot of [2, 3])
      assert.ok(
        certs.some((e) => e.cert.subsystem === 0 && e.cert.value.slot === slot),
        `the leader's certificate of seq ${slot - 1} is among what replica 2 tells its peers`,
      );
    // Its peers hold the same certificates: lookups, no conviction, ordering goes on.
    c.filter = () => "deliver";
    c.held.length = 0;
    c.deliverAll();
    for (let i = 0; i < 3; i++) assert.equal(c.equivocations(i).length, 0, `replica ${i} convicts nobody`);
    c.commitRequest();
    for (let i = 0; i < 3; i++) assert.equal(c.r(i).lastExecuted, 17);
  });

  function lagging() {
    const c = hybrid();
    c.filter = isolate(2);
    for (let k = 0; k < 4; k++) c.commitRequest();
    assert.equal(c.r(0).stable.seq, 4);
    assert.equal(c.r(2).lastExecuted, 0);
    c.filter = () => "deliver";
    const proof = c.r(0).stable;
    const batches = (c.commits[0] ?? []).map((x) => x.batch);
    const good: StateMsg = { type: "state", checkpoint: proof, fromSeq: 1, batches };
    return { c, good };
  }

  it("drops a STATE whose batches do not hash to the checkpoint digest", () => {
    const { c, good } = lagging();
    const [b1, b2, b3, b4] = good.batches as Batch[];
    const swapped = [b2, b1, b3, b4] as Batch[];
    const replaced = [b1, b2, b3, { requests: [] }] as Batch[];
    c.step(2, 0, { ...good, batches: swapped });
    c.step(2, 0, { ...good, batches: replaced });
    assert.equal(c.dropped(2, "state-bad-digest"), 2);
    assert.equal(c.r(2).lastExecuted, 0);
    assert.equal(c.commits[2]?.length, 0);
  });

  it("drops a STATE whose checkpoint proof has too few or forged signatures", () => {
    const { c, good } = lagging();
    const proof = good.checkpoint;
    assert.equal(proof.sigs.length, 2);
    c.step(2, 0, { ...good, checkpoint: { ...proof, sigs: proof.sigs.slice(0, 1) } });
    const forged = proof.sigs.map((s, i) => (i === 1 ? { ...s, sig: flipped(s.sig) } : s));
    c.step(2, 0, { ...good, checkpoint: { ...proof, sigs: forged } });
    const twice = [proof.sigs[0], proof.sigs[0]] as typeof proof.sigs;
    c.step(2, 0, { ...good, checkpoint: { ...proof, sigs: twice } });
    assert.equal(c.dropped(2, "state-bad-proof"), 3);
    c.step(2, 0, { ...good, batches: good.batches.slice(0, 3) });
    assert.equal(c.dropped(2, "state-bad-range"), 1);
    assert.equal(c.r(2).lastExecuted, 0);
    assert.equal(c.r(2).stable.seq, 0);
  });

  it("accepts a valid STATE and catches up to the checkpoint", () => {
    const { c, good } = lagging();
    const rd = c.step(2, 0, good);
    assert.deepEqual(
      rd.commit.map((x) => x.seq),
      [1, 2, 3, 4],
    );
    assert.equal(c.r(2).lastExecuted, 4);
    assert.equal(c.r(2).stable.seq, 4);
    assert.equal(toHex(c.r(2).stateDigest), toHex(c.r(0).stateDigest));
    assert.ok(
      rd.events.some((e) => e.kind === "state-transfer" && e.fromSeq === 1 && e.toSeq === 4),
      'rd.events.some((e) => e.kind === "state-transfer" && e.fromSeq === 1 && e.toSeq === 4)',
    );
    // And it takes part in agreement again.
    c.commitRequest();
    assert.equal(c.r(2).lastExecuted, 5);
  });
  it("a replica behind a stable checkpoint asks for STATE, keeps the checkpoint across a restart", () => {
    const c = hybrid();
    c.filter = (e) => {
      if (e.to === 2 && (e.msg.type === "h-prepare" || e.msg.type === "h-commit")) return "drop";
      return e.msg.type === "state" ? "hold" : "deliver";
    };
    for (let k = 0; k < 4; k++) c.commitRequest();
    // Replica 2 saw the CHECKPOINTs of 0 and 1 but none of the batches.
    assert.equal(c.r(2).stable.seq, 4);
    assert.equal(c.r(2).lastExecuted, 0);
    assert.ok(c.sent("status", (e) => e.from === 2).length > 0, "it asked the signers for the batches");
    const st = c.heldOne("state", (e) => e.to === 2).msg;
    assert.equal(st.fromSeq, 1);
    assert.equal(st.batches.length, 4);
    c.restart(2);
    assert.equal(c.r(2).stable.seq, 4, "the stable checkpoint survives the restart");
    assert.equal(c.r(2).lastExecuted, 0);
    c.filter = () => "deliver";
    const rd = c.step(2, 0, st);
    assert.deepEqual(
      rd.commit.map((x) => x.seq),
      [1, 2, 3, 4],
    );
    c.held.length = 0;
    c.commitRequest();
    for (let i = 0; i < 3; i++) assert.equal(c.r(i).lastExecuted, 5);
  });
});

describe("hybrid replica: malformed input", () => {
  const cases: [string, unknown, string][] = [
    ["null", null, "malformed"],
    ["undefined", undefined, "malformed"],
    ["a number", 42, "malformed"],
    ["no type", {}, "malformed"],
    ["unknown type", { type: "bogus" }, "malformed"],
    [
      "a PBFT message",
      { type: "p-pre-prepare", view: 0, seq: 1, batch: { requests: [] }, sig: new Uint8Array(64) },
      "wrong-mode",
    ],
    ["PREPARE, fractional seq", { type: "h-prepare", view: 0, seq: 1.5 }, "malformed"],
    ["PREPARE, null cert", { type: "h-prepare", view: 0, seq: 1, batch: null, cert: null }, "malformed"],
    [
      "PREPARE, cert with string fields",
      { type: "h-prepare", view: 0, seq: 1, batch: {}, cert: { subsystem: "0", counter: 0, value: "x" } },
      "malformed",
    ],
    ["COMMIT, null cert", { type: "h-commit", view: 0, seq: 1, batchDigest: "x", cert: null }, "malformed"],
    ["COMMIT, string seq", { type: "h-commit", view: 0, seq: "1" }, "malformed"],
    [
      "VIEW-CHANGE, null chain",
      { type: "h-view-change", replica: 2, newView: 1, checkpoint: null, nv: null, entries: [], chain: null },
      "malformed",
    ],
    [
      "VIEW-CHANGE, null checkpoint",
      {
        type: "h-view-change",
        replica: 2,
        newView: 1,
        checkpoint: null,
        nv: null,
        entries: [],
        chain: [{ cert: null, digest: null }],
      },
      "malformed",
    ],
    ["VIEW-CHANGE, string view", { type: "h-view-change", replica: 2, newView: "1" }, "malformed"],
    ["NEW-VIEW, string view", { type: "h-new-view", view: "1", vcs: [], cert: null }, "malformed"],
    ["NEW-VIEW, null cert", { type: "h-new-view", view: 1, vcs: null, cert: null }, "malformed"],
    ["COMMIT-NV, null view", { type: "h-commit-nv", view: null }, "malformed"],
    ["COMMIT-NV, null cert", { type: "h-commit-nv", view: 1, nvDigest: null, cert: null }, "malformed"],
    ["CHECKPOINT, string seq", { type: "checkpoint", seq: "4" }, "malformed"],
    ["CHECKPOINT, null digest", { type: "checkpoint", seq: 4, stateDigest: null, sig: null }, "malformed"],
    [
      "STATUS, null view",
      { type: "status", view: null, target: 0, lastExecuted: 0, stableSeq: 0 },
      "malformed",
    ],
    ["STATE, null batches", { type: "state", checkpoint: null, fromSeq: 1, batches: null }, "malformed"],
    [
      "STATE, null checkpoint",
      { type: "state", checkpoint: null, fromSeq: 1, batches: [{ requests: [] }] },
      "malformed",
    ],
    ["REQUEST to a follower, no request", { type: "request", request: null }, "malformed"],
  ];

  for (const [what, msg, reason] of cases) {
    it(`drops ${what} as ${reason}`, () => {
      const c = hybrid();
      const r = c.r(1);
      assert.doesNotThrow(() => r.step(2, msg as Message));
      assert.deepEqual(Object.fromEntries(r.dropped), { [reason]: 1 });
      const rd = r.ready();
      assert.equal(rd.send.length, 0);
      assert.equal(rd.commit.length, 0);
    });
  }

  it("a follower relays an uncommitted request to every replica half-way; with a dead leader all suspect it", () => {
    const c = new Cluster({ mode: "hybrid", f: 1, limits: { retransmitTicks: 5 } });
    c.filter = (e) => (e.from === 0 || e.to === 0 ? "drop" : "deliver"); // the leader is gone
    const req = c.request();
    c.propose(1, req);
    c.deliverAll();
    assert.equal(c.sent("request", (e) => e.from === 1 && e.to === 2).length, 0, "not relayed at first");
    c.tick(TEST_LIMITS.requestTimeoutTicks as number);
    assert.equal(c.sent("request", (e) => e.from === 1 && e.to === 2).length, 1, "relayed once, half-way");
    assert.equal(
      c.sent("request", (e) => e.from === 2 && e.to === 0).length,
      1,
      "replica 2 hands it to the leader once",
    );
    // Both followers suspect the leader: the view change reaches f+1 and the request commits in view 1.
    c.tick(TEST_LIMITS.viewChangeTimeoutTicks as number);
    for (const i of [1, 2]) {
      assert.equal(c.r(i).view, 1);
      assert.ok(c.r(i).wasExecuted(req.clientId, req.reqNo), `replica ${i} executed it`);
    }
    // A relayed request that is unauthenticated is dropped, not watched.
    c.step(2, 1, { type: "request", request: { ...c.request(), clientId: "stranger" } });
    assert.equal(c.dropped(2, "request-unauthenticated"), 1);
  });

  it("drops requests the leader cannot use and messages from invalid senders", () => {
    const c = hybrid();
    const r = c.r(0);
    r.step(1, { type: "request", request: null } as unknown as Message);
    const stranger = { ...c.request(), clientId: "stranger" };
    r.step(1, { type: "request", request: stranger });
    r.step(0, { type: "status", view: 0, target: 0, lastExecuted: 0, stableSeq: 0 });
    r.step(3, { type: "status", view: 0, target: 0, lastExecuted: 0, stableSeq: 0 });
    r.step(-1, { type: "status", view: 0, target: 0, lastExecuted: 0, stableSeq: 0 });
    assert.deepEqual(Object.fromEntries(r.dropped), {
      malformed: 1,
      "request-unauthenticated": 1,
      "bad-sender": 3,
    });
    assert.equal(r.ready().send.length, 0, "nothing was proposed");
  });

  it("survives every top-level field of genuine messages replaced by junk", () => {
    const c = hybrid();
    c.filter = holding(["checkpoint"]);
    for (let k = 0; k < 4; k++) c.commitRequest();
    const samples: Envelope[] = [
      ...c.held.filter((e) => e.msg.type === "checkpoint"),
      ...c.sent("h-prepare").slice(-1),
      ...c.sent("h-commit").slice(-1),
    ];
    // View-change messages of a completed run, fuzzed into an identical run stuck in its view change.
    const done = silentLeader().c;
    const vcSamples: Envelope[] = [
      ...done.sent("h-view-change", (e) => e.from === 2 && e.to === 1),
      ...done.sent("h-new-view", (e) => e.to === 2),
      ...done.sent("h-commit-nv", (e) => e.to === 1),
    ];
    assert.equal(vcSamples.length, 3);
    const { c: vcCluster } = silentLeader(["h-view-change"]);
    const junk: unknown[] = [null, undefined, "x", -1, 1.5, 2 ** 60, {}, [], [null], new Uint8Array(3)];
    const fuzz = (cl: Cluster, envs: Envelope[]) => {
      let n = 0;
      for (const e of envs) {
        for (const key of Object.keys(e.msg)) {
          if (key === "type") continue;
          for (const j of junk) {
            const m = { ...e.msg, [key]: j } as unknown as Message;
            for (let to = 0; to < cl.n; to++) {
              if (to === e.from) continue;
              assert.doesNotThrow(() => cl.r(to).step(e.from, m), `${e.msg.type}.${key} = ${String(j)}`);
              cl.drain(to);
              n++;
            }
          }
        }
      }
      return n;
    };
    assert.ok(fuzz(c, samples) > 100, "fuzz(c, samples) > 100");
    assert.ok(fuzz(vcCluster, vcSamples) > 100, "fuzz(vcCluster, vcSamples) > 100");
    // The clusters still work afterwards.
    c.filter = () => "deliver";
    c.release();
    c.commitRequest();
    for (let i = 0; i < 3; i++) assert.equal(c.r(i).lastExecuted, 5);
    vcCluster.release();
    for (const i of [1, 2]) {
      assert.equal(vcCluster.r(i).view, 1);
      assert.equal(vcCluster.r(i).lastExecuted, 2);
    }
  });
});

describe("hybrid replica: restart", () => {
  it("a restarted replica keeps lastExecuted, view and stable checkpoint and keeps committing", () => {
    const c = hybrid();
    for (let k = 0; k < 5; k++) c.commitRequest();
    for (const i of [1, 0]) {
      const rd = c.restart(i);
      const r = c.r(i);
      assert.equal(r.lastExecuted, 5, `replica ${i}`);
      assert.equal(r.view, 0);
      assert.equal(r.vcTarget, null);
      assert.equal(r.stable.seq, 4);
      assert.equal(toHex(r.stateDigest), toHex(c.r(2).stateDigest));
      // Batches after the checkpoint are replayed to the application (it skips what it applied).
      assert.deepEqual(
        rd.commit.map((x) => x.seq),
        [5],
      );
      assert.equal(rd.send.length, 0);
    }
    c.commitRequest(c.request(), [1]);
    for (let i = 0; i < 3; i++) assert.equal(c.r(i).lastExecuted, 6, `replica ${i}`);
    assert.deepEqual(c.trusted[0]?.current(ORDER_COUNTER), { view: 0, slot: 7 });
    // After the next checkpoint, a restart picks it up.
    for (let k = 0; k < 2; k++) c.commitRequest();
    c.restart(2);
    assert.equal(c.r(2).stable.seq, 8);
    assert.equal(c.r(2).lastExecuted, 8);
    c.commitRequest();
    for (let i = 0; i < 3; i++) assert.equal(c.r(i).lastExecuted, 9);
  });

  it("a replica restarted during a view change resumes it and completes it", () => {
    const { c } = silentLeader(["h-view-change"]);
    c.restart(1);
    assert.equal(c.r(1).vcTarget, 1);
    assert.equal(c.r(1).view, 0);
    assert.ok(
      compareValues(c.trusted[1]?.current(ORDER_COUNTER) ?? ZERO_VALUE, { view: 1, slot: 0 }) === 0,
      "compareValues(c.trusted[1]?.current(ORDER_COUNTER) ?? ZERO_VALUE, { view: 1, slot: 0 })...",
    );
    c.release((e) => e.from === 2 && e.to === 1);
    assert.equal(c.r(1).view, 1, "the restarted new leader builds the NEW-VIEW");
    c.release();
    c.deliverAll();
    assert.equal(c.r(2).view, 1);
    c.tick(1);
    assert.equal(c.r(1).lastExecuted, 2);
    assert.equal(c.r(2).lastExecuted, 2);
  });
});

describe("hybrid replica: propose()", () => {
  it("refuses unauthenticated requests with RequestError BAD_SIGNATURE", () => {
    const c = hybrid();
    const req = c.request();
    const tampered = { ...req, op: TEXT.encode("tampered") };
    const unsigned = { ...req, auth: { scheme: "ed25519" as const, sig: new Uint8Array(64) } };
    for (const i of [0, 1]) {
      for (const bad of [tampered, unsigned]) {
        assert.throws(
          () => c.r(i).propose(bad),
          (e: unknown) => e instanceof RequestError && e.code === "BAD_SIGNATURE",
        );
      }
      assert.throws(
        () => c.r(i).propose({ ...req, clientId: "stranger" }),
        (e: unknown) => e instanceof RequestError && e.code === "UNKNOWN_CLIENT",
      );
      assert.equal(c.r(i).hasReady(), false, "nothing proposed or forwarded");
    }
  });

  it("reports pending and duplicate requests", () => {
    const c = hybrid();
    c.filter = holding(["request"]);
    const req = c.request();
    assert.equal(c.propose(1, req), "accepted");
    assert.equal(c.propose(1, req), "pending");
    c.deliverAll();
    c.filter = () => "deliver";
    c.release();
    for (let i = 0; i < 3; i++) {
      assert.equal(c.r(i).lastExecuted, 1);
      assert.equal(c.r(i).propose(req), "duplicate");
      assert.ok(
        c
          .r(i)
          .ready()
          .events.some((e) => e.kind === "duplicate-request" && e.reqNo === req.reqNo),
        'c .r(i) .ready() .events.some((e) => e.kind === "duplicate-request" && e.reqNo === req....',
      );
    }
    c.tick(1);
    assert.equal(c.r(0).lastExecuted, 1, "the duplicate was not proposed again");
  });
});

describe("hybrid replica: MAC-authenticated requests", () => {
  it("each replica checks only its own entry, with its own session key; a bad entry is refused there only", () => {
    const c = hybrid();
    const good = c.macRequest();
    assert.equal(c.r(0).propose(good), "accepted");
    c.deliverAll();
    for (let i = 0; i < 3; i++) assert.deepEqual(c.commitAt(i, 1)?.executed, [true], `replica ${i}`);
    // Replica 2's entry is wrong: only replica 2 can tell, and refuses it.
    const bad = c.macRequest([2]);
    assert.throws(
      () => c.r(2).propose(bad),
      (e: unknown) => e instanceof RequestError && e.code === "BAD_MAC",
    );
    assert.equal(c.r(2).hasReady(), false, "replica 2 neither forwards nor watches it");
    assert.equal(c.propose(1, bad), "accepted");
    assert.equal(c.propose(0, bad), "accepted");
    c.deliverAll();
    assert.equal(c.dropped(2, "prepare-batch-request-BAD_MAC"), 1, "replica 2 does not vote for it");
    assert.equal(c.sent("h-commit", (e) => e.from === 2 && e.msg.seq === 2).length, 0);
    // The leader's PREPARE and replica 1's COMMIT are f+1 votes: the batch commits everywhere, and replica 2
    // executes the request like the others (it cannot verify their entries, so its own BAD_MAC does not
    // make an ordered request unexecutable; the state digests stay equal).
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(c.commitAt(i, 2)?.executed, [true], `replica ${i}`);
      assert.ok(c.r(i).wasExecuted(bad.clientId, bad.reqNo), `executed at replica ${i}`);
      assert.equal(toHex(c.r(i).stateDigest), toHex(c.r(0).stateDigest), `replica ${i}'s state`);
    }
  });
});

describe("hybrid replica: a certified batch with an unauthenticated request", () => {
  // A Byzantine leader (one replica, within f = 1) certifies a PREPARE whose batch holds a request with an
  // invalid client signature, and reports it in its VIEW-CHANGE, so the new leader re-issues it. If
  // followers refused such a NEW-VIEW, every later NEW-VIEW would carry the batch again and the cluster
  // would change views forever; instead they accept it and execution skips the request everywhere.
  it("a certified batch with an unauthenticated request must not stop the cluster forever", () => {
    const c = hybrid();
    const t0 = c.trusted[0];
    assert.ok(t0, "t0");
    const forged: ClientRequest = {
      ...c.request(),
      auth: { scheme: "ed25519", sig: new Uint8Array(64).fill(1) },
    };
    const batch: Batch = { requests: [forged] };
    const cert = t0.certifyIndependent(
      ORDER_COUNTER,
      { view: 0, slot: 2 },
      c.digests.hPrepare(0, 1, c.digests.batch(batch)),
    );
    // Replica 0's own code is cut off: the test speaks for it.
    c.filter = holding(["h-view-change"], (e) => (e.from === 0 || e.to === 0 ? "drop" : "deliver"));
    const prepare: HPrepare = { type: "h-prepare", view: 0, seq: 1, batch, cert };
    c.step(1, 0, prepare);
    c.step(2, 0, prepare);
    for (const i of [1, 2]) {
      assert.equal(c.dropped(i, "prepare-batch-request-BAD_SIGNATURE"), 1);
      assert.equal(c.r(i).vcTarget, 1);
    }
    c.deliverAll();
    const content = {
      replica: 0,
      newView: 1,
      checkpoint: GENESIS_CHECKPOINT,
      nv: null,
      entries: [{ seq: 1, view: 0, batchDigest: c.digests.batch(batch), cert }],
    };
    const digest = c.digests.hViewChange(content);
    const vc0: HViewChange = {
      type: "h-view-change",
      ...content,
      chain: [{ cert: t0.certifyContinuing(ORDER_COUNTER, { view: 1, slot: 0 }, digest), digest }],
      proofs: [],
    };
    c.step(1, 0, vc0); // arrives before replica 2's VIEW-CHANGE
    // It names its batch by digest; replica 1 asks replica 0 for it, and the test answers.
    c.step(1, 0, { type: "batch", batch });
    c.filter = (e) => (e.from === 0 || e.to === 0 ? "drop" : "deliver");
    c.release();
    // From now on replica 0 is silent; replicas 1 and 2 are correct and connected.
    const good = c.request("good");
    for (const i of [1, 2]) c.propose(i, good);
    c.deliverAll();
    c.tick(300);
    for (const i of [1, 2]) {
      const executed = (c.commits[i] ?? []).some((cb) =>
        cb.batch.requests.some((r, k) => r.reqNo === good.reqNo && cb.executed[k]),
      );
      assert.ok(
        executed,
        `replica ${i} never executed the valid request (view ${c.r(i).view}, ` +
          `${c.dropped(i, "nv-batch-request-BAD_SIGNATURE")} NEW-VIEWs refused)`,
      );
      assert.ok(
        !(c.commits[i] ?? []).some((cb) => cb.batch.requests.some((r, k) => r === forged && cb.executed[k])),
        "!(c.commits[i] ?? []).some((cb) => cb.batch.requests.some((r, k) => r === forged && cb....",
      );
    }
  });
});
