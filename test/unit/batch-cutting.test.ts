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
import { Cluster } from "./harness.ts";

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
