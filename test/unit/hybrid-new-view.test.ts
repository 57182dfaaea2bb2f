// NEW-VIEW handling in the hybrid core: its state across restarts, and summaries that must be proven.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  GENESIS_CHECKPOINT,
  type HNewView,
  type HNewViewSummary,
  type HViewChange,
  ORDER_COUNTER,
  toHex,
} from "../../src/bft/index.ts";
import { Cluster } from "./harness.ts";

describe("hybrid replica: NEW-VIEW state across restarts", () => {
  it("a NEW-VIEW that committed before a restart still executes its batches afterwards", () => {
    // Hybrid, f=1: a follower (replica 2) accepts a NEW-VIEW whose checkpoint is ahead of its execution,
    // so the NEW-VIEW commits (leader + own vote) but its batches wait for state transfer. It restarts.
    // restore() rebuilds nv.votes = {leader, self} (f+1) but never calls checkNvCommit(), and no further
    // COMMIT-NV can arrive (replica 0 is the crashed/faulty one; the leader sends none). After state
    // transfer to the checkpoint, replica 2 never executes the re-issued batches nor anything after them.

    const c = new Cluster({ mode: "hybrid", f: 1, limits: { statusTicks: 5, retransmitTicks: 10 } });
    // Phase 1: replica 2 cut off; 0 and 1 commit seqs 1..6 (checkpoint 4 stable at 0 and 1).
    c.filter = (e) => (e.to === 2 || e.from === 2 ? "drop" : "deliver");
    for (let i = 0; i < 6; i++) c.commitRequest(c.request(), [0]);
    // Phase 2: replica 0 goes silent; 1 and 2 time out and move to view 1 (leader 1). No STATE to replica 2.
    c.filter = (e) =>
      e.to === 0 || e.from === 0 ? "drop" : e.to === 2 && e.msg.type === "state" ? "drop" : "deliver";
    const z = c.request("Z");
    c.propose(1, z);
    c.propose(2, z);
    for (let t = 0; t < 200 && !(c.r(1).view === 1 && c.r(2).view === 1); t++) c.tick(1, [1, 2]);
    // Crash and restart replica 2 before its state transfer completes.
    c.restart(2);
    // Phase 3: replica 0 stays down (the one fault). Everything else is delivered.
    c.filter = (e) => (e.to === 0 || e.from === 0 ? "drop" : "deliver");
    for (let k = 0; k < 20; k++) {
      c.propose(1, c.request());
      c.tick(10, [1, 2]);
    }
    c.tick(2000, [1, 2]);
    assert.ok(c.r(2).lastExecuted > 4, `replica 2 stuck at ${c.r(2).lastExecuted}`);
    assert.equal(c.r(2).lastExecuted, c.r(1).lastExecuted);
  });

  it("a restarted leader does not re-broadcast an executed NEW-VIEW forever", () => {
    // Hybrid: after a restart, restore() rebuilds the NEW-VIEW state with committed=false even though its
    // batches were long executed. The leader then re-broadcasts the whole NEW-VIEW (f+1 VCs) every
    // retransmit round for the rest of the view (nobody sends it COMMIT-NVs any more).
    const c = new Cluster({ mode: "hybrid", f: 1, limits: { retransmitTicks: 10 } });
    c.filter = (e) => (e.from === 0 || e.to === 0 ? "drop" : "deliver");
    c.propose(1, c.request());
    c.propose(2, c.request());
    for (let t = 0; t < 200 && c.r(1).view !== 1; t++) c.tick(1);
    c.filter = () => "deliver";
    for (let k = 0; k < 3; k++) c.commitRequest(c.request(), [1]);
    const before = c.log.length;
    c.tick(100);
    c.restart(1);
    const mid = c.log.length;
    c.tick(100);
    assert.equal(c.sent("h-new-view", (e) => e.from === 1, c.log.slice(mid)).length, 0);
    assert.ok(before >= 0, "before >= 0");
  });
});

describe("hybrid replica: NEW-VIEW summaries must be proven", () => {
  // A Byzantine leader of a view the correct replicas never entered could certify a made-up NEW-VIEW
  // summary at (w,1) with its own subsystem and anchor a VIEW-CHANGE on it, hiding its earlier vote
  // (select() prefers the highest w). A summary is now accepted only with f+1 distinct (w,1)
  // certificates or with the NEW-VIEW itself, which the receiver re-checks.
  it("a VIEW-CHANGE built on a fabricated NEW-VIEW summary is refused and cannot override a committed batch", () => {
    const c = new Cluster({ mode: "hybrid", f: 1 });
    const B = 1;
    // Phase 1: replica 2 is cut off; 0 (leader) and 1 commit X at seq 1.
    c.filter = (e) => (e.to === 2 || e.from === 2 ? "drop" : "deliver");
    const X = c.commitRequest(c.request("X"), [0]);
    assert.equal(c.commitAt(0, 1)?.batch.requests[0]?.clientId, X.clientId);

    // Phase 2: B (leader of view 1) certifies a made-up summary of view 1 re-issuing Y at seq 1.
    const sub = c.trusted[B]!;
    const Y = c.request("Y");
    const base = {
      view: 1,
      checkpointSeq: 0,
      checkpointDigest: GENESIS_CHECKPOINT.stateDigest,
      maxSeq: 1,
      batchDigests: [c.digests.batch({ requests: [Y] })],
      vcSetDigest: new Uint8Array(32),
    };
    const nvCert = sub.certifyIndependent(
      ORDER_COUNTER,
      { view: 1, slot: 1 },
      c.digests.hNewViewSummary({ ...base, certs: [] }),
    );
    const chain: HViewChange["chain"][number][] = [];
    const vcWith = (summary: HNewViewSummary, newView: number, proofs: HNewView[] = []): HViewChange => {
      const content = { replica: B, newView, checkpoint: GENESIS_CHECKPOINT, nv: summary, entries: [] };
      const digest = c.digests.hViewChange(content);
      chain.push({ cert: sub.certifyContinuing(ORDER_COUNTER, { view: newView, slot: 0 }, digest), digest });
      return { type: "h-view-change", ...content, chain: [...chain], proofs };
    };
    // Only B's own certificate; B's certificate twice (f+1 entries, one replica); no certificate and a
    // NEW-VIEW "proof" without the VIEW-CHANGEs it needs.
    const lone = vcWith({ ...base, certs: [nvCert] }, 2);
    const twice = vcWith({ ...base, certs: [nvCert, nvCert] }, 3);
    const hollow = vcWith({ ...base, certs: [] }, 4, [
      { type: "h-new-view", view: 1, vcs: [], cert: nvCert },
    ]);
    c.filter = (e) => (e.from === B || e.to === B ? "drop" : e.to === 2 || e.from === 2 ? "drop" : "deliver");

    // Phase 3: replica 2 (correct) times out on a request and receives B's VIEW-CHANGEs: both refused.
    c.propose(2, c.request("Z"));
    c.tick(21, [2]);
    c.step(2, B, lone);
    c.step(2, B, twice);
    c.step(2, B, hollow);
    assert.equal(c.dropped(2, "vc-nv-unproven"), 2);
    assert.equal(c.dropped(2, "vc-bad-proofs"), 1);

    // Phase 4: heal between 0 and 2 (B stays silent). They change view together; seq 1 stays X.
    c.filter = (e) => (e.from === B || e.to === B ? "drop" : "deliver");
    c.propose(0, c.request("W"));
    for (let t = 0; t < 400 && !(c.commitAt(2, 1) && c.r(0).view === c.r(2).view && c.r(0).view > 0); t++)
      c.tick(1, [0, 2]);
    const a = c.commitAt(0, 1);
    const b = c.commitAt(2, 1);
    assert.ok(a && b, "seq 1 committed at 0 and 2");
    assert.equal(toHex(a.batchDigest), toHex(b.batchDigest), "replicas 0 and 2 agree on seq 1");
    assert.equal(b.batch.requests[0]?.clientId, X.clientId);
    assert.equal(new TextDecoder().decode(b.batch.requests[0]?.op), "X");
  });

  /** Forces one view change: PREPAREs are held back so a request proposed to the followers times out. */
  function forceViewChange(c: Cluster, dropCommitNv: boolean): void {
    const v = Math.max(...[0, 1, 2].map((i) => c.r(i).view));
    c.filter = (e) =>
      e.msg.type === "h-prepare" || (dropCommitNv && e.msg.type === "h-commit-nv") ? "drop" : "deliver";
    const req = c.request();
    for (const i of [0, 1, 2]) c.propose(i, req);
    for (let t = 0; t < 400 && [0, 1, 2].some((i) => c.r(i).view <= v); t++) c.tick(1);
    c.filter = (e) => (dropCommitNv && e.msg.type === "h-commit-nv" ? "drop" : "deliver");
    c.tick(30);
  }

  /**
   * Heals the network and commits one more request at f+1 = 2 replicas (one may be left in a view
   * change it cannot leave until the next one); replicas agree on every seq they executed.
   */
  function settles(c: Cluster): void {
    c.filter = () => "deliver";
    const req = c.request();
    for (const i of [0, 1, 2]) c.propose(i, req);
    const target = Math.max(...[0, 1, 2].map((i) => c.r(i).lastExecuted)) + 1;
    const done = () => [0, 1, 2].filter((i) => c.r(i).lastExecuted >= target).length;
    for (let t = 0; t < 2000 && done() < 3; t++) c.tick(1);
    assert.ok(done() >= 2, `executed up to ${[0, 1, 2].map((i) => c.r(i).lastExecuted)}, wanted ${target}`);
    for (const i of [0, 1, 2]) {
      assert.deepEqual(c.equivocations(i), [], `replica ${i} accused someone in an honest run`);
      assert.equal(c.r(i).halted, null, `replica ${i} halted`);
    }
    for (let seq = 1; seq <= target; seq++) {
      const digests = new Set(
        [0, 1, 2].flatMap((i) => {
          const cb = c.commitAt(i, seq);
          return cb ? [toHex(cb.stateDigest)] : [];
        }),
      );
      assert.ok(digests.size <= 1, `replicas disagree at seq ${seq}`);
    }
  }

  it("a follower proves its NEW-VIEW with f+1 certificates; a leader without votes nests the NEW-VIEW", () => {
    const c = new Cluster({ mode: "hybrid", f: 1 });
    c.commitRequest(c.request(), [0]);
    // View 1 (leader 1) without any COMMIT-NV delivered, then view 2.
    forceViewChange(c, true);
    forceViewChange(c, true);
    const vcs = c.sent("h-view-change", (e) => e.msg.newView === 2);
    const vcOf = (r: number) => vcs.find((e) => e.from === r)?.msg;
    const byReplica = (r: number) => vcOf(r)?.nv;
    // Followers of view 1 hold the leader's certificate and their own vote: f+1 = 2 certificates.
    for (const r of [0, 2]) {
      const nv = byReplica(r);
      assert.ok(nv, `replica ${r} sent a VIEW-CHANGE with a summary`);
      assert.equal(nv.view, 1);
      assert.equal(nv.certs.length, 2);
      assert.equal(vcOf(r)?.proofs.length, 0);
    }
    // The leader of view 1 got no COMMIT-NV: it carries the NEW-VIEW itself as the proof.
    assert.equal(byReplica(1)?.certs.length, 0);
    assert.deepEqual(
      vcOf(1)?.proofs.map((p) => p.view),
      [1],
    );
    // Every replica accepted all of them, and NEW-VIEWs built on them.
    for (const i of [0, 1, 2]) {
      assert.equal(c.dropped(i, "vc-nv-unproven"), 0);
      assert.equal(c.dropped(i, "nv-vc-nv-unproven"), 0);
    }
    assert.ok(c.r(0).view >= 2, "c.r(0).view >= 2");
    settles(c);
  });

  it("proofs hold one NEW-VIEW per view: leaders without COMMIT-NVs keep proving view after view", () => {
    // Every replica times out together (the request and progress timers): with the pace rule on, the
    // followers would suspect each leader first and the chain of unproven NEW-VIEWs would not build up.
    const c = new Cluster({ mode: "hybrid", f: 1, limits: { leaderPaceFloorTicks: 0 } });
    // Six view changes without any COMMIT-NV delivered: each leader's VIEW-CHANGE carries its NEW-VIEW,
    // whose VIEW-CHANGEs refer to the previous leaders' NEW-VIEWs, flattened into one list.
    for (let k = 0; k < 6; k++) forceViewChange(c, true);
    assert.ok(c.r(0).view >= 6, "c.r(0).view >= 6");
    const proofCounts = c.sent("h-view-change").map((e) => e.msg.proofs.length);
    assert.ok(Math.max(...proofCounts) >= 3, `proof lists: ${proofCounts}`);
    for (const e of c.sent("h-view-change")) {
      const views = e.msg.proofs.map((p) => p.view);
      assert.deepEqual(
        views,
        [...new Set(views)].sort((a, b) => a - b),
        "ascending, one per view",
      );
      for (const p of e.msg.proofs) for (const vc of p.vcs) assert.equal(vc.proofs.length, 0);
    }
    for (const i of [0, 1, 2]) {
      assert.equal(c.dropped(i, "vc-cannot-prove"), 0);
      assert.equal(c.dropped(i, "vc-nv-unproven"), 0);
      assert.equal(c.dropped(i, "vc-bad-proofs"), 0);
    }
    settles(c);
  });

  it("a leader that lacks COMMIT-NVs re-sends its NEW-VIEW and the followers answer with their votes", () => {
    const c = new Cluster({ mode: "hybrid", f: 1, limits: { retransmitTicks: 10 } });
    c.commitRequest(c.request(), [0]);
    c.filter = (e) => (e.msg.type === "h-prepare" || e.msg.type === "h-commit-nv" ? "drop" : "deliver");
    const req = c.request();
    for (const i of [0, 1, 2]) c.propose(i, req);
    for (let t = 0; t < 400 && [0, 1, 2].some((i) => c.r(i).view < 1); t++) c.tick(1);
    const leader = c.r(0).leader;
    assert.equal(leader, 1);
    const nvOf = (i: number) => (c.r(i) as unknown as { nv: { view: number; committed: boolean } }).nv;
    assert.equal(nvOf(leader).committed, false, "the leader got no COMMIT-NV");
    const mark = c.log.length;
    c.filter = () => "deliver";
    c.tick(12);
    assert.ok(
      c.sent("h-new-view", (e) => e.from === leader, c.log.slice(mark)).length > 0,
      'c.sent("h-new-view", (e) => e.from === leader, c.log.slice(mark)).length > 0',
    );
    assert.ok(
      c.sent("h-commit-nv", (e) => e.to === leader, c.log.slice(mark)).length > 0,
      'c.sent("h-commit-nv", (e) => e.to === leader, c.log.slice(mark)).length > 0',
    );
    assert.equal(nvOf(leader).committed, true);
  });

  it("a replica whose proofs would exceed vcProofsMax sends no VIEW-CHANGE; the others carry on", () => {
    // As above, the replicas time out together (pace rule off).
    const c = new Cluster({
      mode: "hybrid",
      f: 1,
      limits: { vcProofsMax: 1, retransmitTicks: 10, leaderPaceFloorTicks: 0 },
    });
    for (let k = 0; k < 8 && [0, 1, 2].every((i) => c.dropped(i, "vc-too-many-proofs") === 0); k++)
      forceViewChange(c, true);
    assert.ok(
      [0, 1, 2].some((i) => c.dropped(i, "vc-too-many-proofs") > 0),
      '[0, 1, 2].some((i) => c.dropped(i, "vc-too-many-proofs") > 0)',
    );
    assert.ok(
      Math.max(...c.sent("h-view-change").map((e) => e.msg.proofs.length)) <= 1,
      'Math.max(...c.sent("h-view-change").map((e) => e.msg.proofs.length)) <= 1',
    );
    forceViewChange(c, true);
    settles(c);
  });
});
