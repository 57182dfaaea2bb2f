// The core asserts its invariants (docs/architecture.md): a call only a bug could make throws AssertionFailed.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ClientTable } from "../../src/bft/client-table.ts";
import { AssertionFailed } from "../../src/bft/errors.ts";
import type { Batch, CheckpointProof } from "../../src/bft/types.ts";
import { Cluster } from "./harness.ts";

interface ExecutionInternals {
  lastExecuted: number;
  stable: CheckpointProof;
  execute(seq: number, view: number, batch: Batch): void;
  adopt(proof: CheckpointProof): void;
  commit(seq: number, view: number, batch: Batch): void;
}

function execOf(c: Cluster): ExecutionInternals {
  return (c.replicas[0] as unknown as { exec: ExecutionInternals }).exec;
}

const EMPTY: Batch = { requests: [] } as unknown as Batch;

describe("core invariants", () => {
  it("executing out of order is caught, and changes nothing", () => {
    const exec = execOf(new Cluster({ mode: "pbft", f: 1 }));
    assert.throws(() => exec.execute(exec.lastExecuted + 2, 0, EMPTY), AssertionFailed);
    assert.throws(() => exec.execute(exec.lastExecuted, 0, EMPTY), AssertionFailed);
    assert.ok(exec.lastExecuted === 0, "a refused execute must not move lastExecuted");
  });

  it("adopting a checkpoint at a seq no checkpoint can have is caught", () => {
    const exec = execOf(new Cluster({ mode: "hybrid", f: 1 }));
    const bogus = { ...exec.stable, seq: exec.stable.seq + 1 };
    assert.throws(() => exec.adopt(bogus), AssertionFailed);
    assert.ok(exec.stable.seq === 0, "a refused adoption must not move the stable checkpoint");
  });

  it("committing a seq that is not a positive integer is caught", () => {
    const exec = execOf(new Cluster({ mode: "pbft", f: 1 }));
    assert.throws(() => exec.commit(0, 0, EMPTY), AssertionFailed);
    assert.throws(() => exec.commit(1.5, 0, EMPTY), AssertionFailed);
  });

  it("recording a request twice is caught (exactly once)", () => {
    const t = new ClientTable(10);
    t.record("a", 1, 1);
    assert.throws(() => t.record("a", 1, 2), AssertionFailed);
    assert.ok(t.isExecuted("a", 1), "the first execution is still recorded");
  });
});
