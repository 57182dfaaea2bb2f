// A hybrid replica sends its PREPARE or COMMIT before its Ready is durable (host.ts: the trusted counter's
// certificate already pins the value). This kills a follower at exactly that point (SIGKILL to itself:
// COMMIT out, its vote, the batch and the block not written), restarts it (behind its counter) and
// checks that it catches up: the same chain as its peers, every acknowledged transaction in it.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { sha256, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { clientOptions } from "../../src/node/config.ts";
import { localCluster, NODE_SCRIPT, NodeProcess } from "../../src/node/local-cluster.ts";
import { OrderingClient } from "../../src/ordering/client.ts";
import { submitWhenReady } from "../util/ordering.ts";

async function chain(url: string): Promise<{ height: number; headHash: string | null }> {
  return (await fetch(`${url}/v1/chain`)).json() as Promise<{ height: number; headHash: string | null }>;
}

describe("a replica killed after sending its COMMIT, before its Ready is durable", () => {
  const dir = mkdtempSync(join(tmpdir(), "orderer-early-"));
  const procs: NodeProcess[] = [];

  after(async () => {
    await Promise.all(procs.map((p) => p.stop().catch(() => {})));
    rmSync(dir, { recursive: true, force: true });
  });

  it("restarts with the same chain as its peers, no acknowledged transaction lost", async () => {
    const lc = await localCluster("hybrid", 1, dir);
    const stdio = { logFile: join(dir, "nodes.log") };
    const victim = new NodeProcess(lc.cluster, lc.nodes[1]!, stdio, lc.counters[1], {
      script: NODE_SCRIPT,
      env: { ORDERER_TEST_CRASH_BEFORE_DURABLE: "5" },
    });
    procs.push(new NodeProcess(lc.cluster, lc.nodes[0]!, stdio, lc.counters[0]), victim);
    procs.push(new NodeProcess(lc.cluster, lc.nodes[2]!, stdio, lc.counters[2]));
    await Promise.all(procs.map((p) => p.start()));
    const client = new OrderingClient({ ...clientOptions(lc.cluster), hash: sha256, verify: verifyEd25519 });
    const url = lc.urls[0] as string;
    const acked: string[] = [];
    const codes = ["NO_QUORUM", "TIMEOUT", "OVERLOADED"];
    // One at a time: each is a Ready at the follower with its COMMIT; the 5th kills it.
    for (let i = 0; i < 12; i++) {
      const r = await submitWhenReady(client, new TextEncoder().encode(`split ${i}`), url, { codes });
      acked.push(r.txId);
    }
    const exited = await new Promise<boolean>((resolve) => {
      const p = victim.proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return resolve(true);
      p.once("exit", () => resolve(true));
      setTimeout(() => resolve(false), 5000);
    });
    assert.ok(exited, "the victim killed itself between sending and writing");
    const log = readFileSync(join(dir, "nodes.log"), "utf8");
    assert.doesNotMatch(log, /"level":(50|60)/, "no error or fatal line before the restart");
    await victim.counter?.kill();
    // Restarted without the fault: it must catch up to the same chain.
    const again = new NodeProcess(lc.cluster, lc.nodes[1]!, stdio, lc.counters[1]);
    procs[1] = again;
    await again.start();
    for (let i = 12; i < 15; i++) {
      const r = await submitWhenReady(client, new TextEncoder().encode(`split ${i}`), url, { codes });
      acked.push(r.txId);
    }
    const end = Date.now() + 30_000;
    let a = await chain(lc.urls[0] as string);
    let b = await chain(lc.urls[1] as string);
    while ((b.height < a.height || a.height === 0) && Date.now() < end) {
      await sleep(200);
      a = await chain(lc.urls[0] as string);
      b = await chain(lc.urls[1] as string);
    }
    assert.ok(b.height >= a.height, `the restarted replica reached height ${b.height} of ${a.height}`);
    // Same blocks: compare each block's header hash at every height the leader has.
    for (let n = 1; n < a.height; n++) {
      const [x, y] = await Promise.all(
        [lc.urls[0], lc.urls[1]].map((u) =>
          fetch(`${u}/v1/blocks/${n}`).then((r) => r.json() as Promise<{ headerHash?: string }>),
        ),
      );
      assert.ok(x?.headerHash, `block ${n} at the leader`);
      assert.equal(y?.headerHash, x?.headerHash, `block ${n} differs`);
    }
    for (const id of acked) {
      const r = await fetch(`${lc.urls[1]}/v1/transactions/${id}`);
      assert.equal(r.status, 200, `acknowledged transaction ${id} is in the restarted replica's chain`);
    }
  });
});
