// An idle cluster orders nothing: with no sessions, the replicas propose their clocks only when a TTL
// node's expiry or an emptied container is due (not every coordClockPeriodMs, which grew the ledger by
// ten empty blocks a second while one TTL node existed). A due TTL still expires.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CreateMode } from "../../src/coord/client.ts";
import type { OrdererNode } from "../../src/node/orderer-node.ts";
import { InProcessCluster } from "../util/coord-cluster.ts";

const heights = (nodes: readonly OrdererNode[]) => nodes.map((n) => n.ledger.height);

describe("idle cluster (3 hybrid replicas in-process, coordClockPeriodMs 100)", () => {
  let cl: InProcessCluster;

  before(async () => {
    cl = await InProcessCluster.start("orderer-idle-");
  });

  after(async () => {
    await cl?.stop();
  });

  it("writes no blocks while it holds only a TTL node and no session; the TTL still expires", async () => {
    const zk = await cl.connect(0);
    await zk.create("/idle-ttl", "x", { mode: CreateMode.PERSISTENT_WITH_TTL, ttlMs: 4000 });
    await zk.create("/idle-keep", "y");
    await zk.close();
    // Let the close and any clock entries in flight settle.
    await sleep(800);
    const before = heights(cl.nodes);
    await sleep(1500); // 15 clock periods
    assert.deepEqual(heights(cl.nodes), before, "no block while nothing is due");
    // The TTL (4 s after its creation) passes: the replicas propose their clocks and the node goes.
    const reader = await cl.connect(1);
    const deadline = Date.now() + 10_000;
    // The reader's session makes time due again; wait for the TTL node to be gone.
    while ((await reader.exists("/idle-ttl")) !== null && Date.now() < deadline) await sleep(200);
    assert.equal(await reader.exists("/idle-ttl"), null, "the TTL node expired");
    assert.notEqual(await reader.exists("/idle-keep"), null);
    await reader.close();
  });

  it("expires a TTL node with nobody connected", async () => {
    const zk = await cl.connect(0);
    await zk.create("/lonely-ttl", "x", { mode: CreateMode.PERSISTENT_WITH_TTL, ttlMs: 2000 });
    await zk.close();
    const h0 = heights(cl.nodes)[0] as number;
    await sleep(3500);
    const grew = (heights(cl.nodes)[0] as number) - h0;
    assert.ok(grew >= 1 && grew <= 10, `${grew} blocks: the clock entries that expire the TTL, no more`);
    const reader = await cl.connect(2);
    assert.equal(await reader.exists("/lonely-ttl"), null);
  });
});
