// Block cutting with Fabric's BatchSize/BatchTimeout semantics, as the leader applies them:
// MaxMessageCount (batchMaxCount), PreferredMaxBytes (batchMaxBytes), AbsoluteMaxBytes (requestMaxBytes,
// refused at intake) and BatchTimeout (batchTimeoutTicks). A leader with nothing in flight cuts at once;
// the rules below apply while earlier batches are in flight (no message is delivered in these tests).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ORDER_COUNTER } from "../../src/bft/hybrid.ts";
import { type Batch, type ClientRequest, type HPrepare, RequestError } from "../../src/bft/index.ts";
import { batchLimits, DEFAULT_BATCH } from "../../src/node/config.ts";
import { TX_BATCH_OVERHEAD_BYTES } from "../../src/ordering/tx-batch.ts";
import { Cluster, holding } from "./harness.ts";

const limits = { batchMaxCount: 3, batchMaxBytes: 100, requestMaxBytes: 300, batchTimeoutTicks: 5 };

function leaderCluster(requestWeight?: (r: ClientRequest) => number) {
  const c = new Cluster({ mode: "hybrid", f: 1, limits, requestWeight });
  c.filter = () => "hold"; // keep every batch in flight
  return c;
}

/** Batches the leader (replica 0) proposed so far, as lists of op lengths. */
function proposals(c: Cluster): number[][] {
  const seen = new Map<number, Batch>();
  for (const e of c.log)
    if (e.from === 0 && e.msg.type === "h-prepare") seen.set(e.msg.seq, (e.msg as HPrepare).batch);
  return [...seen.entries()].sort((a, b) => a[0] - b[0]).map(([, b]) => b.requests.map((r) => r.op.length));
}

const op = (len: number, tag: number) => `${tag}`.padEnd(len, "x");
/** An op of exactly `len` bytes. */
const exact = (len: number, tag: number) => op(len, tag).slice(0, len);

describe("block cutting (Fabric semantics)", () => {
  it("cuts at MaxMessageCount", () => {
    const c = leaderCluster();
    c.propose(0, c.request(op(10, 0))); // idle leader: cut at once
    for (let i = 1; i <= 3; i++) c.propose(0, c.request(op(10, i)));
    assert.deepEqual(proposals(c), [[10], [10, 10, 10]]);
  });

  it("cuts before a transaction that would exceed PreferredMaxBytes; a larger one goes alone", () => {
    const c = leaderCluster();
    c.propose(0, c.request(op(10, 0)));
    c.propose(0, c.request(op(40, 1)));
    c.propose(0, c.request(op(40, 2)));
    assert.deepEqual(proposals(c), [[10]], "80 bytes pending: below PreferredMaxBytes, not cut yet");
    c.propose(0, c.request(op(40, 3)));
    assert.deepEqual(proposals(c), [[10], [40, 40]], "the third would take the block to 120 > 100");
    c.propose(0, c.request(op(250, 4))); // above PreferredMaxBytes, below AbsoluteMaxBytes
    c.tick(limits.batchTimeoutTicks);
    assert.deepEqual(proposals(c), [[10], [40, 40], [40], [250]]);
  });

  it("cuts a non-full block after BatchTimeout, not before", () => {
    const c = leaderCluster();
    c.propose(0, c.request(op(10, 0)));
    c.propose(0, c.request(op(10, 1)));
    c.tick(limits.batchTimeoutTicks - 1);
    assert.deepEqual(proposals(c), [[10]]);
    c.tick(1);
    assert.deepEqual(proposals(c), [[10], [10]]);
  });

  it("refuses a transaction above AbsoluteMaxBytes at intake", () => {
    const c = leaderCluster();
    assert.throws(
      () => c.propose(0, c.request(op(301, 0))),
      (e: unknown) => e instanceof RequestError && e.code === "OP_TOO_LARGE",
    );
    assert.deepEqual(proposals(c), []);
  });

  it("counts a request carrying k entries (a gateway's batch) as k towards MaxMessageCount", () => {
    // Weight = the op's leading digit: "2xxx" stands for two transactions.
    const c = leaderCluster((r) => Number(String.fromCharCode(r.op[0] as number)));
    c.propose(0, c.request(op(10, 1))); // idle leader: cut at once
    c.propose(0, c.request(op(10, 2)));
    assert.deepEqual(proposals(c), [[10]], "weight 2 pending: below MaxMessageCount 3");
    c.propose(0, c.request(op(11, 2)));
    assert.deepEqual(proposals(c), [[10], [10]], "2 + 2 > 3: the first goes alone, the second waits");
    c.tick(limits.batchTimeoutTicks);
    assert.deepEqual(proposals(c), [[10], [10], [11]]);
    assert.throws(
      () => c.propose(0, c.request(op(10, 4))),
      (e: unknown) => e instanceof RequestError && e.code === "OP_TOO_MANY",
      "a request heavier than a whole batch is refused at intake",
    );
  });

  it("a follower refuses a PREPARE whose requests weigh more than MaxMessageCount", () => {
    const c = new Cluster({
      mode: "hybrid",
      f: 1,
      limits,
      requestWeight: (r) => Number(String.fromCharCode(r.op[0] as number)),
    });
    // Replica 0 proposes two weight-2 requests in one batch, as a leader ignoring the weights would.
    const batch: Batch = { requests: [c.request(op(10, 2)), c.request(op(11, 2))] };
    const digest = c.digests.hPrepare(0, 1, c.digests.batch(batch));
    const cert = c.subsystem(0).certifyIndependent(ORDER_COUNTER, { view: 0, slot: 2 }, digest);
    const prepare: HPrepare = { type: "h-prepare", view: 0, seq: 1, batch, cert };
    const rd = c.step(1, 0, prepare);
    assert.equal(c.dropped(1, "prepare-batch-too-many"), 1);
    assert.equal(rd.send.filter((o) => o.msg.type === "h-commit").length, 0, "no COMMIT for it");
  });

  for (const mode of ["hybrid", "pbft"] as const)
    it(`${mode}: every batch a correct leader cuts is accepted, across every size boundary`, () => {
      // Sizes around PreferredMaxBytes (100) and AbsoluteMaxBytes (300), alone and after a small one,
      // while earlier batches are in flight and when the leader is idle. Followers once refused a lone
      // request above PreferredMaxBytes as "batch-too-large" and deposed the leader for it.
      const sizes = [1, 99, 100, 101, 150, 299, 300];
      const c = new Cluster({ mode, f: 1, limits });
      const submitted: number[] = [];
      for (const idle of [true, false])
        for (const first of [0, 10, 60])
          for (const size of sizes) {
            c.filter = idle ? () => "deliver" : () => "hold";
            if (first > 0) c.propose(0, c.request(exact(first, submitted.length)));
            c.propose(0, c.request(exact(size, submitted.length + 1)));
            submitted.push(...(first > 0 ? [first] : []), size);
            c.tick(limits.batchTimeoutTicks);
            c.filter = () => "deliver";
            c.release();
            c.deliverAll();
          }
      for (let i = 0; i < c.n; i++) {
        assert.equal(c.r(i).view, 0, `replica ${i} never left view 0`);
        for (const [reason, count] of c.r(i).dropped)
          assert.ok(!reason.includes("batch"), `replica ${i} dropped ${count} × ${reason}`);
        const ops = (c.commits[i] ?? []).flatMap((b) => b.batch.requests.map((r) => r.op.length));
        assert.deepEqual(ops, submitted, `replica ${i} executed every request, in order`);
      }
      const batches = (c.commits[0] ?? []).map((b) => b.batch.requests.map((r) => r.op.length));
      for (const b of batches) {
        const bytes = b.reduce((a, x) => a + x, 0);
        assert.ok(b.length <= limits.batchMaxCount, `batch ${b} within MaxMessageCount`);
        assert.ok(b.length === 1 || bytes <= limits.batchMaxBytes, `batch ${b} within PreferredMaxBytes`);
      }
      assert.ok(
        batches.some((b) => b.length === 1 && (b[0] as number) > limits.batchMaxBytes),
        "some request above PreferredMaxBytes went alone",
      );
      assert.throws(() => c.r(0).propose(c.request(op(301, 999))), RequestError, "301 > AbsoluteMaxBytes");
    });

  for (const mode of ["hybrid", "pbft"] as const)
    it(`${mode}: a leader working through a backlog in order is not deposed by the request timer`, () => {
      // Ten requests held at a follower; the leader's proposals reach the followers one per 10 ticks, so
      // the last executes long after requestTimeoutTicks (20). The follower's timer restarts each time
      // the oldest request it waits for executes (PBFT's rule), so no view change; before, the oldest
      // deadline alone decided and the follower deposed a correct, merely busy, leader.
      const c = new Cluster({ mode, f: 1, limits: { batchMaxCount: 1, requestTimeoutTicks: 20 } });
      const proposal = mode === "hybrid" ? "h-prepare" : "p-pre-prepare";
      c.filter = holding([proposal]);
      for (let i = 0; i < 10; i++) c.propose(1, c.request(`backlog-${i}`));
      c.deliverAll();
      for (let round = 0; round < 40 && (c.commits[1]?.length ?? 0) < 10; round++) {
        const seqs = c.held.map((e) => (e.msg as { seq: number }).seq);
        if (seqs.length > 0) {
          const lowest = Math.min(...seqs);
          c.release((e) => (e.msg as { seq: number }).seq === lowest);
        }
        c.tick(10);
      }
      assert.equal(c.commits[1]?.length, 10, "every request executed at the follower");
      for (let i = 0; i < c.n; i++) {
        assert.equal(c.r(i).view, 0, `replica ${i} stayed in view 0`);
        assert.ok(
          !(c.events[i] ?? []).some((e) => e.kind === "view-change-started"),
          `replica ${i}: no view change`,
        );
      }
    });

  it("the leader's queue lets go of the requests it proposed (they may hold megabytes)", () => {
    const c = leaderCluster();
    for (let i = 0; i < 5; i++) c.propose(0, c.request(op(10, i)));
    c.tick(limits.batchTimeoutTicks);
    assert.deepEqual(proposals(c), [[10], [10, 10, 10], [10]]);
    const queue = (c.r(0) as unknown as { queue: unknown[] }).queue;
    assert.equal(queue.length, 0, "no proposed request is still referenced by the queue");
  });

  it("maps the cluster config's Fabric names onto these limits", () => {
    assert.deepEqual(batchLimits({ ...DEFAULT_BATCH, batchTimeoutMs: 25 }, 10), {
      batchMaxCount: DEFAULT_BATCH.maxMessageCount,
      batchMaxBytes: DEFAULT_BATCH.preferredMaxBytes,
      // Room for the largest transaction in a gateway's batch framing.
      requestMaxBytes: DEFAULT_BATCH.absoluteMaxBytes + TX_BATCH_OVERHEAD_BYTES,
      batchTimeoutTicks: 3,
    });
  });
});
