// An idle cluster orders nothing: with no sessions, the replicas propose their clocks only when a TTL
// node's expiry or an emptied container is due (not every coordClockPeriodMs, which grew the ledger by
// ten empty blocks a second while one TTL node existed). A due TTL still expires.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CreateMode } from "../../src/coord/client.ts";
import type { OrdererNode } from "../../src/node/orderer-node.ts";
import { InProcessCluster } from "../util/coord-cluster.ts";
import { waitFor, waitForValue } from "../util/wait.ts";

/** The replicas' clock period (injected): while a session lives, each proposes its clock this often. */
const CLOCK_MS = 100;
/** The negative checks: ten clock periods, ten blocks if the clock were proposed every period. */
const QUIET_MS = 10 * CLOCK_MS;

const heights = (nodes: readonly OrdererNode[]) => nodes.map((n) => n.ledger.height);

/**
 * The replicas have settled: no session in the tree, every replica at the same height, and that height
 * held for three clock periods (what was in flight is ordered). Resolves to the heights.
 */
async function settled(nodes: readonly OrdererNode[]): Promise<number[]> {
  let last = "";
  let since = Date.now();
  return waitForValue("the replicas to settle at one height", () => {
    const h = heights(nodes);
    if (h.join() !== last) {
      last = h.join();
      since = Date.now();
    }
    const quiet = nodes.every((n) => n.coord.tree.sessionCount === 0) && h.every((x) => x === h[0]);
    return quiet && Date.now() - since >= 3 * CLOCK_MS ? h : undefined;
  });
}

describe(`idle cluster (3 hybrid replicas in-process, coordClockPeriodMs ${CLOCK_MS})`, () => {
  let cl: InProcessCluster;

  before(async () => {
    cl = await InProcessCluster.start("orderer-idle-", CLOCK_MS);
  });

  after(async () => {
    await cl?.stop();
  });

  it("writes no blocks while it holds only a TTL node and no session; the TTL still expires", async () => {
    const TTL_MS = 3000;
    const zk = await cl.connect(0);
    // The session makes every replica report its clock: once the agreed time is current, the TTL is due
    // TTL_MS after its creation in real time (the replicas' clocks are this process's).
    await waitFor("a current agreed time", () =>
      cl.nodes.every((n) => n.coord.tree.timeMs >= Date.now() - 3 * CLOCK_MS),
    );
    await zk.create("/idle-ttl", "x", { mode: CreateMode.PERSISTENT_WITH_TTL, ttlMs: TTL_MS });
    await zk.create("/idle-keep", "y");
    await zk.close();
    const before = await settled(cl.nodes);
    const dueInMs = Math.min(...cl.nodes.map((n) => n.coord.tree.timeDeadlineMs())) - Date.now();
    // Negative check: QUIET_MS (10 clock periods) ends before the TTL is due (asserted below).
    await sleep(QUIET_MS);
    assert.deepEqual(heights(cl.nodes), before, "no block while nothing is due");
    assert.ok(dueInMs > QUIET_MS + CLOCK_MS, `the TTL was due in ${dueInMs} ms: no room for the quiet check`);
    // The TTL passes: the replicas propose their clocks and the node goes (the reader's session makes
    // time due again too).
    const reader = await cl.connect(1);
    await waitFor("the TTL node to expire", async () => (await reader.exists("/idle-ttl")) === null, {
      timeoutMs: TTL_MS + 10_000,
      intervalMs: 50,
    });
    assert.notEqual(await reader.exists("/idle-keep"), null);
    await reader.close();
  });

  it("expires a TTL node with nobody connected", async () => {
    const TTL_MS = 2000;
    const zk = await cl.connect(0);
    await zk.create("/lonely-ttl", "x", { mode: CreateMode.PERSISTENT_WITH_TTL, ttlMs: TTL_MS });
    await zk.close();
    const h0 = heights(cl.nodes)[0] as number;
    // Watched in each replica's tree, not through a session (which would make time due by itself).
    await waitFor(
      "the TTL node to expire at every replica",
      () => cl.nodes.every((n) => n.coord.tree.get("/lonely-ttl") === undefined),
      { timeoutMs: TTL_MS + 10_000, intervalMs: 20 },
    );
    const h1 = await settled(cl.nodes);
    const grew = (h1[0] as number) - h0;
    assert.ok(grew >= 1 && grew <= 10, `${grew} blocks: the clock entries that expire the TTL, no more`);
    // Negative check: nothing is due any more, so QUIET_MS (10 clock periods) adds no block.
    await sleep(QUIET_MS);
    assert.deepEqual(heights(cl.nodes), h1, "no block once the TTL node is gone");
    const reader = await cl.connect(2);
    assert.equal(await reader.exists("/lonely-ttl"), null, "the TTL node is gone for clients too");
  });
});
