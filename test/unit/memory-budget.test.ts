// Memory bounded by configuration: the queues that grow with traffic refuse beyond their byte bounds
// (the core's pending requests, the gateway's submissions), and a node whose budget (src/node/memory.ts)
// exceeds the machine's memory is refused at start with the terms that make it.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, RequestError } from "../../src/bft/index.ts";
import { type ClusterConfig, DEFAULT_BATCH, type NodeConfig, validateNode } from "../../src/node/config.ts";
import {
  checkMemoryBudget,
  memoryBudget,
  PIPELINE_COPIES,
  PROCESS_BASE_BYTES,
} from "../../src/node/memory.ts";
import { OrdererNode } from "../../src/node/orderer-node.ts";
import { TX_BATCH_OVERHEAD_BYTES } from "../../src/ordering/tx-batch.ts";
import { testCluster, testNode } from "../util/configs.ts";
import { Cluster } from "./harness.ts";

const MiB = 1024 * 1024;

const cluster: ClusterConfig = testCluster("memory-test");

const node: NodeConfig = testNode(0, "memory-test");

const code = (err: unknown) => (err as { code?: string }).code;

describe("memory bounded by configuration", () => {
  it("a follower holds at most limits.pendingMaxBytes of requests; the leader queues at most as much", () => {
    const c = new Cluster({
      mode: "hybrid",
      f: 1,
      limits: { window: 8, checkpointInterval: 4, requestMaxBytes: 300, pendingMaxBytes: 1000 },
    });
    c.filter = () => "hold"; // nothing commits: requests stay pending
    const op = (i: number) => `${i}`.padEnd(300, "x");
    // Follower 1: three requests of 300 bytes fit in 1000, the fourth does not.
    for (let i = 0; i < 3; i++) assert.equal(c.propose(1, c.request(op(i))), "accepted", `request ${i}`);
    assert.throws(
      () => c.propose(1, c.request(op(3))),
      (err: unknown) => err instanceof RequestError && code(err) === "OVERLOADED",
      "the fourth 300-byte request exceeds 1000 bytes held",
    );
    // A small one still fits (the bound is bytes, not a count).
    assert.equal(c.propose(1, c.request("small")), "accepted", "100 bytes left");
    // Leader 0: the first request is proposed at once (nothing in flight); the next ones wait in its
    // queue for a fuller batch, at most 1000 bytes of them.
    for (let i = 10; i < 14; i++) assert.equal(c.propose(0, c.request(op(i))), "accepted", `request ${i}`);
    assert.throws(
      () => c.propose(0, c.request(op(14))),
      (err: unknown) => err instanceof RequestError && code(err) === "OVERLOADED",
      "the leader's queue holds 900 of 1000 bytes",
    );
  });

  it("refuses limits.pendingMaxBytes below requestMaxBytes, and node pendingMaxBytes below absoluteMaxBytes", () => {
    assert.throws(
      () => new Cluster({ mode: "hybrid", f: 1, limits: { requestMaxBytes: 300, pendingMaxBytes: 299 } }),
      (err: unknown) => err instanceof ConfigError && /pendingMaxBytes/.test((err as Error).message),
      "a core that could not hold one request",
    );
    assert.throws(
      () => validateNode({ ...node, pendingMaxBytes: DEFAULT_BATCH.absoluteMaxBytes - 1 }, cluster),
      (err: unknown) => code(err) === "BAD_CONFIG" && /pendingMaxBytes/.test((err as Error).message),
      "a gateway that could not hold one transaction",
    );
    assert.throws(
      () => validateNode({ ...node, memoryCheck: "no" as unknown as boolean }, cluster),
      (err: unknown) => code(err) === "BAD_CONFIG" && /memoryCheck/.test((err as Error).message),
      "memoryCheck is a boolean",
    );
  });

  it("adds up the budget from the settings", () => {
    const b = memoryBudget(cluster, node);
    const term = (name: string) => b.terms.find((t) => t.name === name)?.bytes;
    const largest = DEFAULT_BATCH.absoluteMaxBytes + TX_BATCH_OVERHEAD_BYTES;
    assert.equal(term("process at rest"), PROCESS_BASE_BYTES, "base");
    assert.equal(term("batches being ordered and written"), PIPELINE_COPIES * 64 * largest, "pipeline");
    assert.equal(term("requests waiting in the core"), 2 * 256 * MiB, "the core's pending requests");
    assert.equal(term("frames to and from peers"), 2 * (256 + 64) * MiB, "two peers' queues and frames");
    assert.equal(
      b.totalBytes,
      b.terms.reduce((a, t) => a + t.bytes, 0),
      "the total is the sum of the terms",
    );
    // Smaller settings, smaller budget: the window and the largest transaction drive it.
    const small = memoryBudget(
      { ...cluster, batch: { ...DEFAULT_BATCH, absoluteMaxBytes: 1 * MiB, preferredMaxBytes: 512 * 1024 } },
      { ...node, limits: { window: 32, checkpointInterval: 16 }, pendingMaxBytes: 16 * MiB },
    );
    assert.ok(small.totalBytes < b.totalBytes - 2 * 1024 * MiB, "at least 2 GiB less");
    assert.equal(
      small.terms.find((t) => t.name === "batches being ordered and written")?.bytes,
      PIPELINE_COPIES * 32 * (MiB + TX_BATCH_OVERHEAD_BYTES),
      "window 32 × 1 MiB",
    );
  });

  it("refuses to start a node whose budget exceeds the machine, naming the terms, unless told not to", () => {
    const b = memoryBudget(cluster, node);
    assert.doesNotThrow(() => checkMemoryBudget(cluster, node, b.totalBytes), "a budget that just fits");
    assert.throws(
      () => checkMemoryBudget(cluster, node, b.totalBytes - 1),
      (err: unknown) =>
        err instanceof ConfigError &&
        code(err) === "MEMORY_BUDGET" &&
        /batches being ordered and written/.test((err as Error).message) &&
        /memoryCheck/.test((err as Error).message),
      "one byte short: refused, with the terms and the way out",
    );
    assert.doesNotThrow(
      () => checkMemoryBudget(cluster, { ...node, memoryCheck: false }, 1),
      "memoryCheck: false starts anyway",
    );
  });

  it("OrdererNode.start checks the budget before it opens anything", async () => {
    // A window of a million batches of up to 10 MiB: terabytes.
    const huge: NodeConfig = { ...node, dataDir: "/nonexistent/memory-test", limits: { window: 1_000_000 } };
    await assert.rejects(
      OrdererNode.start(cluster, huge),
      (err: unknown) => code(err) === "MEMORY_BUDGET",
      "refused with MEMORY_BUDGET (not a failure to open its data directory)",
    );
  });
});
