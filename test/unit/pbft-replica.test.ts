// Replica-level tests of PBFT mode (n = 3f+1, signed messages): message validation, signature
// checks, equivocation, view change with prepared certificates and null batches, restart.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { bytesEqual } from "../../src/bft/bytes.ts";
import {
  type Batch,
  type Message,
  type PCommit,
  type PNewView,
  type PPrePrepare,
  type PPrePrepareRef,
  type PPrepare,
  type PViewChange,
  RequestError,
  toHex,
} from "../../src/bft/index.ts";
import { Cluster, type Filter, flipped, holding, isolate, TEST_LIMITS } from "./harness.ts";

const TEXT = new TextEncoder();

function pbft(): Cluster {
  return new Cluster({ mode: "pbft", f: 1 });
}

/** A pre-prepare signed with replica `signer`'s key. */
function signedPrePrepare(c: Cluster, signer: number, view: number, seq: number, batch: Batch): PPrePrepare {
  const sig = c.signAs(signer, c.digests.pPrePrepare(view, seq, c.digests.batch(batch)));
  return { type: "p-pre-prepare", view, seq, batch, sig };
}

/** The same named by digest, as VIEW-CHANGEs and NEW-VIEWs carry it. */
function signedRef(c: Cluster, signer: number, view: number, seq: number, batch: Batch): PPrePrepareRef {
  const batchDigest = c.digests.batch(batch);
  return { view, seq, batchDigest, sig: c.signAs(signer, c.digests.pPrePrepare(view, seq, batchDigest)) };
}

/** A VIEW-CHANGE re-signed by its own sender (what a Byzantine replica can do with its content). */
function resignedVc(c: Cluster, vc: PViewChange): PViewChange {
  return { ...vc, sig: c.signAs(vc.replica, c.digests.pViewChange(vc)) };
}

/** A NEW-VIEW re-signed by the leader of its view. */
function resignedNv(c: Cluster, nv: PNewView): PNewView {
  return { ...nv, sig: c.signAs(nv.view % c.n, c.digests.pNewView(nv.view, nv.vcs, nv.prePrepares)) };
}

/**
 * Request 1 is pre-prepared and prepared everywhere in view 0 but every view-0 COMMIT is lost, so nothing
 * commits. The request waits at every backup, which times out and changes to view 1 (leader: replica 1).
 */
function preparedNotCommitted(hold: Message["type"][] = []) {
  const c = pbft();
  const base: Filter = (e) => (e.msg.type === "p-commit" && e.msg.view === 0 ? "drop" : "deliver");
  c.filter = holding(hold, base);
  const req1 = c.request();
  c.commitRequest(req1, [0, 1, 2, 3]);
  for (let i = 0; i < 4; i++) assert.equal(c.r(i).lastExecuted, 0);
  c.tick(20);
  return { c, req1 };
}

describe("pbft replica: normal case", () => {
  it("commits proposed requests at all 4 replicas in seq order; the checkpoint becomes stable", () => {
    const c = pbft();
    const reqs = [c.request(), c.request(), c.request()];
    for (const req of reqs) c.commitRequest(req);
    for (let i = 0; i < 4; i++) {
      assert.equal(c.r(i).lastExecuted, 3, `replica ${i}`);
      assert.equal(c.r(i).stable.seq, 0);
      assert.deepEqual(c.seqs(i), [1, 2, 3]);
      assert.deepEqual(
        (c.commits[i] ?? []).map((x) => x.batch.requests[0]?.reqNo),
        reqs.map((r) => r.reqNo),
      );
    }
    c.commitRequest(c.request(), [2]); // via a backup, forwarded to the leader
    const states = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const r = c.r(i);
      assert.equal(r.lastExecuted, 4);
      assert.equal(r.stable.seq, 4);
      assert.ok(r.stable.sigs.length >= 3, "2f+1 signatures");
      assert.equal(r.view, 0);
      assert.equal(r.droppedTotal(), 0, `replica ${i} dropped ${[...r.dropped.keys()]}`);
      states.add(toHex(r.stateDigest));
    }
    assert.equal(states.size, 1);
  });

  it("2f+1 replicas suffice: with one backup cut off, the other three commit", () => {
    const c = pbft();
    c.filter = isolate(3);
    c.commitRequest();
    for (const i of [0, 1, 2]) assert.equal(c.r(i).lastExecuted, 1);
    assert.equal(c.r(3).lastExecuted, 0);
  });

  it("nothing commits with two backups cut off", () => {
    const c = pbft();
    c.filter = isolate(2, 3);
    c.commitRequest();
    for (let i = 0; i < 4; i++) assert.equal(c.r(i).lastExecuted, 0);
  });
});

describe("pbft replica: PRE-PREPARE validation", () => {
  function setup() {
    const c = pbft();
    c.filter = holding(["p-pre-prepare"]);
    const req = c.request();
    c.propose(0, req);
    c.deliverAll();
    const pp = c.heldOne("p-pre-prepare", (e) => e.to === 1).msg;
    return { c, pp };
  }

  it("drops PRE-PREPAREs with a bad signature; the genuine one is accepted", () => {
    const { c, pp } = setup();
    const other: Batch = { requests: [c.request("other")] };
    const bad: PPrePrepare[] = [
      { ...pp, sig: flipped(pp.sig) },
      { ...pp, batch: other }, // signature over the real batch
      { ...pp, seq: 2 },
      signedPrePrepare(c, 1, 0, 1, pp.batch), // signed by a backup, not the leader
      signedPrePrepare(c, 2, 0, 1, pp.batch),
    ];
    for (const m of bad) {
      const rd = c.step(1, 0, m);
      assert.equal(rd.send.length, 0, "no PREPARE");
    }
    assert.equal(c.dropped(1, "pre-prepare-bad-sig"), bad.length);
    assert.equal(c.r(1).vcTarget, null);
    const rd = c.step(1, 0, pp);
    assert.deepEqual(
      rd.send.map((o) => o.msg.type),
      ["p-prepare"],
    );
  });

  it("drops a PRE-PREPARE for a future view", () => {
    const { c, pp } = setup();
    c.step(1, 0, { ...pp, view: 1 });
    assert.equal(c.dropped(1, "pre-prepare-future-view"), 1);
  });

  it("an equivocating leader (two signed pre-prepares for one seq) triggers a view change", () => {
    const { c, pp } = setup();
    c.step(1, 0, pp);
    c.step(1, 0, pp); // the same one again is harmless
    assert.equal(c.r(1).droppedTotal(), 0);
    assert.equal(c.r(1).vcTarget, null);
    const pp2 = signedPrePrepare(c, 0, 0, 1, { requests: [c.request("second")] });
    const rd = c.step(1, 0, pp2);
    assert.equal(c.dropped(1, "pre-prepare-equivocation"), 1);
    assert.equal(c.r(1).vcTarget, 1);
    assert.ok(
      rd.events.some((e) => e.kind === "view-change-started" && e.view === 1),
      'rd.events.some((e) => e.kind === "view-change-started" && e.view === 1)',
    );
    const vc = rd.send.find((o) => o.msg.type === "p-view-change");
    assert.ok(vc && vc.to === "all", 'vc && vc.to === "all"');
  });
});

describe("pbft replica: PREPARE and COMMIT validation", () => {
  it("drops PREPAREs with bad signatures; a backup without 2f valid PREPAREs sends no COMMIT", () => {
    const c = pbft();
    // COMMITs to replica 3 are held too: 2f+1 of them would let it learn the commit without preparing.
    c.filter = (e) =>
      e.to === 3 && (e.msg.type === "p-prepare" || e.msg.type === "p-commit") ? "hold" : "deliver";
    c.commitRequest();
    for (const i of [0, 1, 2]) assert.equal(c.r(i).lastExecuted, 1);
    assert.equal(c.r(3).lastExecuted, 0);
    const p1 = c.heldOne("p-prepare", (e) => e.from === 1).msg;
    const p2 = c.heldOne("p-prepare", (e) => e.from === 2).msg;
    const bad: PPrepare[] = [
      { ...p1, sig: flipped(p1.sig) },
      { ...p2, sig: flipped(p2.sig) },
      { ...p1, replica: 2 }, // replica 1's signature claimed for replica 2
      { ...p1, batchDigest: c.crypto.sha256(TEXT.encode("other")) },
    ];
    for (const m of bad) {
      const rd = c.step(3, 1, m);
      assert.equal(rd.send.length, 0, "no COMMIT");
      assert.equal(rd.commit.length, 0);
    }
    assert.equal(c.dropped(3, "prepare-bad-sig"), bad.length);
    c.step(3, 1, { ...p1, replica: 0 });
    assert.equal(c.dropped(3, "prepare-bad-sender"), 1, "the leader does not send PREPAREs");
    assert.equal(c.r(3).lastExecuted, 0);
    c.filter = () => "deliver";
    c.release();
    assert.equal(c.r(3).lastExecuted, 1);
  });

  it("drops COMMITs with bad signatures; they do not count towards 2f+1", () => {
    const c = pbft();
    c.filter = (e) => (e.to === 3 && e.msg.type === "p-commit" ? "hold" : "deliver");
    c.commitRequest();
    assert.equal(c.r(3).lastExecuted, 0);
    const c0 = c.heldOne("p-commit", (e) => e.from === 0).msg;
    const c1 = c.heldOne("p-commit", (e) => e.from === 1).msg;
    const bad: PCommit[] = [
      { ...c0, sig: flipped(c0.sig) },
      { ...c1, sig: flipped(c1.sig) },
      { ...c1, replica: 0 },
      { ...c1, batchDigest: c.crypto.sha256(TEXT.encode("other")) },
      { ...c1, seq: 2 },
    ];
    for (const m of bad) assert.equal(c.step(3, 1, m).commit.length, 0);
    assert.equal(c.dropped(3, "commit-bad-sig"), bad.length);
    // One valid COMMIT (+ its own) is 2 < 2f+1: still nothing.
    c.step(3, 2, c.heldOne("p-commit", (e) => e.from === 2).msg);
    assert.equal(c.r(3).lastExecuted, 0);
    // A COMMIT relayed by another replica is fine (it is signed) and completes the quorum.
    const rd = c.step(3, 2, c0);
    assert.deepEqual(
      rd.commit.map((x) => x.seq),
      [1],
    );
  });
});

describe("pbft replica: view change", () => {
  it("a replica alone in a view change is joined after the request timeout, not before, and commits again", () => {
    const c = new Cluster({ mode: "pbft", f: 1, limits: { retransmitTicks: 10 } });
    c.commitRequest();
    c.filter = isolate(3);
    const timeout = TEST_LIMITS.requestTimeoutTicks as number;
    c.propose(3, c.request());
    c.tick(timeout + 1, [3]);
    assert.equal(c.r(3).vcTarget, 1, "replica 3 is changing view");
    c.filter = () => "deliver";
    c.commitRequest();
    c.tick(timeout - 5);
    for (const i of [0, 1, 2])
      assert.equal(c.r(i).vcTarget, null, `replica ${i}: not before a request timeout`);
    c.tick(timeout);
    for (let i = 0; i < 4; i++) {
      assert.equal(c.r(i).view, 1, `replica ${i} is in view 1`);
      assert.equal(c.r(i).vcTarget, null, `replica ${i} is not changing view`);
    }
    const req = c.commitRequest(c.request(), [3]);
    for (let i = 0; i < 4; i++)
      assert.ok(
        c.commits[i]?.some((cb) => cb.batch.requests.some((r) => r.reqNo === req.reqNo)),
        `replica ${i} commits a request submitted at replica 3`,
      );
  });

  it("backups of a silent leader change view and commit in view 1", () => {
    const c = pbft();
    c.filter = isolate(0);
    const req = c.commitRequest(c.request(), [1, 2, 3]);
    c.tick(20);
    for (const i of [1, 2, 3]) {
      const r = c.r(i);
      assert.equal(r.view, 1, `replica ${i}`);
      assert.equal(r.vcTarget, null);
      assert.equal(r.lastExecuted, 1);
      assert.equal(c.commitAt(i, 1)?.view, 1);
      assert.equal(c.commitAt(i, 1)?.batch.requests[0]?.reqNo, req.reqNo);
    }
    const req2 = c.commitRequest(c.request(), [3]);
    for (const i of [1, 2, 3]) {
      assert.equal(c.r(i).lastExecuted, 2);
      assert.equal(c.commitAt(i, 2)?.batch.requests[0]?.reqNo, req2.reqNo);
    }
    assert.equal(c.r(0).view, 0, "the cut-off leader knows nothing");
  });

  it("a prepared batch survives the view change and commits in view 1", () => {
    const { c, req1 } = preparedNotCommitted();
    const nv = c.sent("p-new-view")[0]?.msg;
    assert.ok(nv, "nv");
    assert.equal(nv.view, 1);
    assert.deepEqual(
      nv.prePrepares.map((p) => p.seq),
      [1],
    );
    for (let i = 0; i < 4; i++) {
      assert.equal(c.r(i).view, 1);
      assert.equal(c.r(i).lastExecuted, 1);
      const cb = c.commitAt(i, 1);
      assert.equal(cb?.view, 1);
      assert.equal(cb?.batch.requests[0]?.reqNo, req1.reqNo);
    }
  });

  it("drops a VIEW-CHANGE whose prepared certificate has only 2f-1 PREPAREs", () => {
    const { c } = preparedNotCommitted(["p-view-change"]);
    for (let i = 0; i < 4; i++) assert.equal(c.r(i).vcTarget, 1);
    const vc2 = c.heldOne("p-view-change", (e) => e.from === 2 && e.to === 1).msg;
    const proof = vc2.prepared[0];
    assert.ok(proof, "proof");
    assert.equal(proof.prepares.length, 2);
    const short = resignedVc(c, { ...vc2, prepared: [{ ...proof, prepares: proof.prepares.slice(0, 1) }] });
    const dup = resignedVc(c, {
      ...vc2,
      prepared: [{ ...proof, prepares: [proof.prepares[0], proof.prepares[0]] as PPrepare[] }],
    });
    const otherBatch = resignedVc(c, {
      ...vc2,
      prepared: [{ ...proof, prePrepare: signedRef(c, 0, 0, 1, { requests: [c.request("x")] }) }],
    });
    for (const m of [short, dup, otherBatch]) assert.equal(c.step(1, 2, m).send.length, 0);
    assert.equal(c.dropped(1, "vc-bad-prepared"), 3);
    // A checkpoint proof with the sender's own signature only (2f+1 are needed).
    const stateDigest = new Uint8Array(32).fill(7);
    const clientsDigest = new Uint8Array(32).fill(8);
    const sig = c.signAs(2, c.digests.checkpoint(4, stateDigest, clientsDigest));
    c.step(
      1,
      2,
      resignedVc(c, {
        ...vc2,
        checkpoint: { seq: 4, stateDigest, clientsDigest, sigs: [{ replica: 2, sig }] },
      }),
    );
    assert.equal(c.dropped(1, "vc-bad-checkpoint"), 1);
    c.step(1, 2, { ...vc2, prepared: [] }); // content changed without re-signing
    assert.equal(c.dropped(1, "vc-bad-sig"), 1);
    c.step(1, 0, vc2);
    assert.equal(c.dropped(1, "vc-wrong-sender"), 1);
    assert.equal(c.r(1).view, 0);
    c.release();
    assert.equal(c.r(1).view, 1);
    for (let i = 0; i < 4; i++) assert.equal(c.r(i).lastExecuted, 1);
  });

  it("drops a NEW-VIEW whose pre-prepares differ from what its VIEW-CHANGEs imply", () => {
    const { c } = preparedNotCommitted(["p-new-view"]);
    assert.equal(c.r(1).view, 1);
    assert.equal(c.r(2).view, 0);
    const nv = c.heldOne("p-new-view", (e) => e.to === 2).msg;
    assert.equal(nv.prePrepares.length, 1);
    const nullPp = signedRef(c, 1, 1, 1, { requests: [] });
    const bad: [string, PNewView][] = [
      ["nv-wrong-pre-prepares", resignedNv(c, { ...nv, prePrepares: [nullPp] })],
      ["nv-wrong-pre-prepares", resignedNv(c, { ...nv, prePrepares: [] })],
      [
        "nv-wrong-pre-prepares",
        resignedNv(c, {
          ...nv,
          prePrepares: [...nv.prePrepares, signedRef(c, 1, 1, 2, { requests: [] })],
        }),
      ],
      ["nv-bad-sig", { ...nv, prePrepares: [nullPp] }],
      ["nv-bad-vcs", resignedNv(c, { ...nv, vcs: nv.vcs.slice(1) })],
      ["nv-bad-vcs", resignedNv(c, { ...nv, vcs: [nv.vcs[0], nv.vcs[0], nv.vcs[1]] as PViewChange[] })],
    ];
    for (const [reason, m] of bad) {
      const before = c.dropped(2, reason);
      const rd = c.step(2, 1, m);
      assert.equal(c.dropped(2, reason), before + 1, reason);
      assert.equal(rd.send.length, 0);
      assert.equal(c.r(2).view, 0);
    }
    c.release();
    for (let i = 0; i < 4; i++) {
      assert.equal(c.r(i).view, 1);
      assert.equal(c.r(i).lastExecuted, 1);
    }
  });

  it("null batches fill the gaps of a NEW-VIEW (seq 2 prepared, seq 1 not)", () => {
    const c = pbft();
    // Seq 1's pre-prepare and every view-0 COMMIT are lost.
    c.filter = (e) => {
      const m = e.msg;
      if (m.type === "p-pre-prepare" && m.view === 0 && m.seq === 1) return "drop";
      if (m.type === "p-commit" && m.view === 0) return "drop";
      return "deliver";
    };
    const req1 = c.request();
    const req2 = c.request();
    c.propose(0, req1);
    c.propose(0, req2); // waits for the batch timeout: seq 1 is outstanding
    for (const i of [1, 2, 3]) {
      c.propose(i, req1);
      c.propose(i, req2);
    }
    c.deliverAll();
    c.tick(1, [0]);
    assert.equal(c.sent("p-pre-prepare", (e) => e.msg.seq === 2).length, 3);
    c.tick(20);
    const nv = c.sent("p-new-view")[0]?.msg;
    assert.ok(nv, "a NEW-VIEW was sent");
    assert.deepEqual(
      nv.vcs.map((v) => v.prepared.map((p) => p.prePrepare.seq)),
      [[2], [2], [2]],
    );
    assert.deepEqual(
      nv.prePrepares.map((p) => [p.seq, bytesEqual(p.batchDigest, c.digests.batch({ requests: [] }))]),
      [
        [1, true],
        [2, false],
      ],
    );
    c.tick(2);
    for (let i = 0; i < 4; i++) {
      const r = c.r(i);
      assert.equal(r.view, 1);
      assert.deepEqual(c.seqs(i), [1, 2, 3], `replica ${i}`);
      assert.deepEqual(c.commitAt(i, 1)?.batch.requests, []);
      assert.equal(c.commitAt(i, 2)?.batch.requests[0]?.reqNo, req2.reqNo);
      assert.equal(c.commitAt(i, 3)?.batch.requests[0]?.reqNo, req1.reqNo, "request 1 is proposed again");
    }
  });
});

describe("pbft replica: checkpoints and malformed input", () => {
  it("drops CHECKPOINTs with bad signatures", () => {
    const c = pbft();
    c.filter = holding(["checkpoint"]);
    for (let k = 0; k < 4; k++) c.commitRequest();
    const cp1 = c.heldOne("checkpoint", (e) => e.from === 1 && e.to === 0).msg;
    const cp2 = c.heldOne("checkpoint", (e) => e.from === 2 && e.to === 0).msg;
    c.step(0, 1, { ...cp1, sig: flipped(cp1.sig) });
    c.step(0, 2, cp1);
    assert.equal(c.dropped(0, "checkpoint-bad-sig"), 2);
    c.step(0, 1, cp1);
    assert.equal(c.r(0).stable.seq, 0, "2 of 2f+1");
    c.step(0, 2, cp2);
    assert.equal(c.r(0).stable.seq, 4);
  });

  const cert = { subsystem: 0, counter: 0, value: { view: 1, slot: 1 }, sig: new Uint8Array(64) };
  const cases: [string, unknown, string][] = [
    ["null", null, "malformed"],
    ["a hybrid message", { type: "h-commit-nv", view: 1, nvDigest: new Uint8Array(32), cert }, "wrong-mode"],
    [
      "PRE-PREPARE, null batch",
      { type: "p-pre-prepare", view: 0, seq: 1, batch: null, sig: null },
      "malformed",
    ],
    ["PREPARE, string replica", { type: "p-prepare", view: 0, seq: 1, replica: "2" }, "malformed"],
    [
      "PREPARE, null digest",
      { type: "p-prepare", view: 0, seq: 1, replica: 2, batchDigest: null },
      "malformed",
    ],
    ["COMMIT, bad replica", { type: "p-commit", view: 0, seq: 1, replica: 9 }, "malformed"],
    [
      "VIEW-CHANGE, null prepared",
      { type: "p-view-change", replica: 2, newView: 1, checkpoint: null, prepared: null, sig: null },
      "malformed",
    ],
    [
      "VIEW-CHANGE, null checkpoint",
      {
        type: "p-view-change",
        replica: 2,
        newView: 1,
        checkpoint: null,
        prepared: [],
        sig: new Uint8Array(64),
      },
      "malformed",
    ],
    [
      "NEW-VIEW, null vcs",
      { type: "p-new-view", view: 1, vcs: null, prePrepares: [], sig: null },
      "malformed",
    ],
  ];
  for (const [what, msg, reason] of cases) {
    it(`drops ${what} as ${reason}`, () => {
      const c = pbft();
      const r = c.r(1);
      assert.doesNotThrow(() => r.step(2, msg as Message));
      assert.deepEqual(Object.fromEntries(r.dropped), { [reason]: 1 });
      assert.equal(r.ready().send.length, 0);
    });
  }

  it("survives every top-level field of genuine messages replaced by junk", () => {
    const { c } = preparedNotCommitted();
    const samples = [
      ...c.sent("p-pre-prepare").slice(0, 1),
      ...c.sent("p-prepare").slice(0, 1),
      ...c.sent("p-commit").slice(0, 1),
      ...c.sent("p-view-change").slice(0, 1),
      ...c.sent("p-new-view").slice(0, 1),
    ];
    assert.equal(samples.length, 5);
    // Replay them into a fresh run stuck in its view change, so that they are examined in depth.
    const { c: target } = preparedNotCommitted(["p-view-change"]);
    const junk: unknown[] = [null, undefined, "x", -1, 1.5, 2 ** 60, {}, [], [null], new Uint8Array(3)];
    for (const e of samples) {
      for (const key of Object.keys(e.msg)) {
        if (key === "type") continue;
        for (const j of junk) {
          const m = { ...e.msg, [key]: j } as unknown as Message;
          for (let to = 0; to < 4; to++) {
            if (to === e.from) continue;
            assert.doesNotThrow(() => target.r(to).step(e.from, m), `${e.msg.type}.${key} = ${String(j)}`);
            target.drain(to);
          }
        }
      }
    }
    target.release();
    for (let i = 0; i < 4; i++) {
      assert.equal(target.r(i).view, 1);
      assert.equal(target.r(i).lastExecuted, 1);
    }
  });
});

describe("pbft replica: restart and propose()", () => {
  it("a restarted replica keeps its state and keeps committing", () => {
    const c = pbft();
    for (let k = 0; k < 5; k++) c.commitRequest();
    for (const i of [2, 0]) {
      const rd = c.restart(i);
      assert.equal(c.r(i).lastExecuted, 5);
      assert.equal(c.r(i).stable.seq, 4);
      assert.equal(c.r(i).view, 0);
      assert.deepEqual(
        rd.commit.map((x) => x.seq),
        [5],
      );
    }
    c.commitRequest();
    for (let i = 0; i < 4; i++) assert.equal(c.r(i).lastExecuted, 6, `replica ${i}`);
  });

  it("a replica restarted after a view change stays in the new view", () => {
    const c = pbft();
    c.filter = isolate(0);
    c.commitRequest(c.request(), [1, 2, 3]);
    c.tick(20);
    c.restart(2);
    assert.equal(c.r(2).view, 1);
    assert.equal(c.r(2).vcTarget, null);
    assert.equal(c.r(2).lastExecuted, 1);
    c.commitRequest(c.request(), [2]);
    for (const i of [1, 2, 3]) assert.equal(c.r(i).lastExecuted, 2);
  });

  it("refuses unauthenticated requests and reports duplicates", () => {
    const c = pbft();
    const req = c.request();
    assert.throws(
      () => c.r(0).propose({ ...req, op: TEXT.encode("tampered") }),
      (e: unknown) => e instanceof RequestError && e.code === "BAD_SIGNATURE",
    );
    assert.equal(c.r(0).hasReady(), false);
    c.commitRequest(req);
    for (let i = 0; i < 4; i++) assert.equal(c.r(i).propose(req), "duplicate");
  });
});

describe("pbft replica: learning a commit without preparing", () => {
  it("a backup that saw no PREPAREs still executes once 2f+1 matching COMMITs arrive, and sends no COMMIT", () => {
    const c = pbft();
    c.filter = (e) => (e.to === 3 && e.msg.type === "p-prepare" ? "drop" : "deliver");
    c.commitRequest();
    assert.equal(c.r(3).lastExecuted, 1);
    assert.equal(c.sent("p-commit", (e) => e.from === 3).length, 0);
  });
});

describe("pbft replica: retransmission of messages that carry batches", () => {
  const quietLimits = {
    retransmitTicks: 2,
    statusTicks: 10_000,
    requestTimeoutTicks: 10_000,
    viewChangeTimeoutTicks: 10_000,
    viewChangeTimeoutMaxTicks: 10_000,
  };

  it("the leader resends a PRE-PREPARE only to the backup whose PREPARE it lacks, after 1, 2, 4, then every 8 periods", () => {
    const c = new Cluster({ mode: "pbft", f: 1, limits: quietLimits });
    // Replica 3 hears nothing; no COMMIT is delivered, so seq 1 stays uncommitted at the leader.
    c.filter = (e) => (e.to === 3 || e.from === 3 || e.msg.type === "p-commit" ? "drop" : "deliver");
    c.commitRequest();
    assert.equal(c.r(0).lastExecuted, 0, "nothing committed");
    c.tick(64);
    const pps = (to: number) => c.sent("p-pre-prepare", (e) => e.from === 0 && e.to === to).length;
    // Sent at tick 0; resent at ticks 2, 6, 14, 30, 46 and 62 (every 16 = 8 periods after the third resend).
    assert.equal(pps(3), 7, "the original and six resends to replica 3");
    assert.equal(pps(1), 1, "replica 1 sent its PREPARE: no resend");
    assert.equal(pps(2), 1, "replica 2 sent its PREPARE: no resend");
    // Backups resend their (small) PREPAREs to every replica whose COMMIT they lack, every period.
    assert.ok(
      c.sent("p-prepare", (e) => e.from === 1 && e.to === 2).length > 20,
      "PREPAREs are not backed off",
    );
  });

  it("a VIEW-CHANGE (it carries prepared batches) is resent with the same backoff", () => {
    const c = new Cluster({ mode: "pbft", f: 1, limits: { ...quietLimits, requestTimeoutTicks: 4 } });
    // The leader is cut off and no VIEW-CHANGE arrives anywhere: replica 1 keeps asking for view 1.
    c.filter = (e) => (e.to === 0 || e.from === 0 || e.msg.type === "p-view-change" ? "drop" : "deliver");
    c.commitRequest(c.request(), [1]);
    c.tick(4);
    assert.equal(c.r(1).vcTarget, 1, "replica 1 started a view change");
    const before = c.sent("p-view-change", (e) => e.from === 1 && e.to === 2).length;
    c.tick(64);
    const after = c.sent("p-view-change", (e) => e.from === 1 && e.to === 2).length;
    assert.equal(before, 1, "the VIEW-CHANGE went out once when it started");
    // Resent 2, 6, 14, 30, 46 and 62 ticks after it started (not 32 times, once per period).
    assert.equal(after - before, 6, `resends to replica 2: ${after - before}`);
  });
});
