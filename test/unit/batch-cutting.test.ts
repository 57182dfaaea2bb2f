// Block cutting with Fabric's BatchSize/BatchTimeout semantics, as the leader applies them:
// MaxMessageCount (batchMaxCount), PreferredMaxBytes (batchMaxBytes), AbsoluteMaxBytes (requestMaxBytes,
// refused at intake) and BatchTimeout (batchTimeoutTicks). A leader with nothing in flight cuts at once;
// the rules below apply while earlier batches are in flight (no message is delivered in these tests).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Batch, type HPrepare, RequestError } from "../../src/bft/index.ts";
import { batchLimits, DEFAULT_BATCH } from "../../src/node/config.ts";
import { Cluster } from "./harness.ts";

const limits = { batchMaxCount: 3, batchMaxBytes: 100, requestMaxBytes: 300, batchTimeoutTicks: 5 };

function leaderCluster() {
  const c = new Cluster({ mode: "hybrid", f: 1, limits });
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

  it("maps the cluster config's Fabric names onto these limits", () => {
    assert.deepEqual(batchLimits({ ...DEFAULT_BATCH, batchTimeoutMs: 25 }, 10), {
      batchMaxCount: DEFAULT_BATCH.maxMessageCount,
      batchMaxBytes: DEFAULT_BATCH.preferredMaxBytes,
      requestMaxBytes: DEFAULT_BATCH.absoluteMaxBytes,
      batchTimeoutTicks: 3,
    });
  });
});
