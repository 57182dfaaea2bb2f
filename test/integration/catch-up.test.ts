// A replica that was down while the others moved on past the batches they keep (retainBatches is tiny
// here) comes back: its peers offer it a certified checkpoint snapshot, its ledger fetches the certified
// blocks it misses from them, its znode tree is rebuilt from those blocks, and it then takes part in
// agreement again (the cluster needs it once another replica is killed). Three hybrid replicas, each in
// its own process.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CoordClient } from "../../src/coord/client.ts";
import { CreateMode } from "../../src/coord/ops.ts";
import type { Stat } from "../../src/coord/tree.ts";
import { sha256, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { clientOptions } from "../../src/node/config.ts";
import { type LocalCluster, localCluster, NodeProcess } from "../../src/node/local-cluster.ts";
import { ChainVerifier, headerHash, toHexStr } from "../../src/ordering/block.ts";
import { OrderingClient } from "../../src/ordering/client.ts";
import { nodeSigner } from "../util/coord-cluster.ts";
import { submitWhenReady } from "../util/ordering.ts";
import { waitForValue } from "../util/wait.ts";

const LAGGARD = 2;
const LIMITS = {
  requestTimeoutTicks: 100,
  viewChangeTimeoutTicks: 100,
  retransmitTicks: 10,
  statusTicks: 10,
  checkpointInterval: 4,
  window: 16,
  retainBatches: 8,
  stateChunkBatches: 8,
};

/** Every znode under `root` with its data and stat, as read by `c` (after a sync). */
async function dump(c: CoordClient, root: string): Promise<Map<string, { data: string; stat: Stat }>> {
  await c.sync(root);
  const out = new Map<string, { data: string; stat: Stat }>();
  const walk = async (p: string) => {
    const { data, stat } = await c.getData(p);
    out.set(p, { data: Buffer.from(data).toString("hex"), stat });
    for (const child of (await c.getChildren(p)).sort()) await walk(`${p}/${child}`);
  };
  await walk(root);
  return out;
}

describe("a replica far behind catches up through a snapshot (3 hybrid processes)", () => {
  let dir: string;
  let lc: LocalCluster;
  let procs: NodeProcess[];
  let orderingClient: OrderingClient;
  const clients: CoordClient[] = [];
  const connect = async (urls: string[], sessionTimeoutMs = 4000) => {
    const c = await CoordClient.connect({ urls, signer: nodeSigner, sessionTimeoutMs, startAt: 0 });
    clients.push(c);
    return c;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "orderer-catch-up-"));
    lc = await localCluster("hybrid", 1, dir, {
      batch: { batchTimeoutMs: 5 },
      node: { coordClockPeriodMs: 100, limits: LIMITS },
    });
    procs = lc.nodes.map((n) => new NodeProcess(lc.cluster, n, "ignore", lc.counters[n.id]));
    await Promise.all(procs.map((p) => p.start()));
    orderingClient = new OrderingClient({
      ...clientOptions(lc.cluster),
      hash: sha256,
      verify: verifyEd25519,
    });
    await warmUp(lc.urls[0] as string);
  });

  /** Waits for one commit through `url` (replicas answer NO_QUORUM until they heard from their peers). */
  async function warmUp(url: string): Promise<void> {
    await submitWhenReady(orderingClient, new TextEncoder().encode(`warm-up ${Date.now()}`), url);
  }

  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await Promise.all((procs ?? []).map((p) => p.kill()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("gets the chain and the tree identical to its peers', then commits with them", async () => {
    const url0 = lc.urls[0] as string;
    const urlLag = lc.urls[LAGGARD] as string;
    const writer = await connect([url0, lc.urls[1] as string]);
    await writer.create("/app", "root");
    const before = (await orderingClient.chain(url0)).height;
    assert.equal(await procs[LAGGARD]?.stop(), 0);

    // While it is down: far more blocks than the peers keep batches for (8), of every kind.
    const ephemeralOwner = await connect([url0]);
    await ephemeralOwner.create("/app/owned", "goes away with its session", { mode: CreateMode.EPHEMERAL });
    for (let i = 0; i < 30; i++) {
      await writer.create(`/app/n${i}`, `value ${i}`);
      if (i % 3 === 0) await writer.setData(`/app/n${i}`, `changed ${i}`);
      if (i % 5 === 0) await writer.delete(`/app/n${i}`);
      if (i % 4 === 0) await writer.create("/app/seq-", `s${i}`, { mode: CreateMode.PERSISTENT_SEQUENTIAL });
      if (i % 6 === 0) await orderingClient.submit(new TextEncoder().encode(`tx ${i}`), { url: url0 });
    }
    await writer.multi([
      { type: "create", path: "/app/m1", data: "a" },
      { type: "setData", path: "/app/n1", data: "via multi" },
    ]);
    await ephemeralOwner.close();
    // The peers' transports queue frames for a peer that is down (up to 64k); a long outage overflows
    // that. Restarting the peers drops their queues, so the laggard surely misses those messages.
    await Promise.all([procs[0]?.stop(), procs[1]?.stop()]);
    await Promise.all([procs[0]?.start(), procs[1]?.start()]);
    await warmUp(url0);
    const writer2 = await waitForValue(
      "a session after the restart",
      () => connect([url0, lc.urls[1] as string], 15_000),
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    for (let i = 0; i < 5; i++) await writer2.create(`/app/late${i}`, `after the peers restarted ${i}`);
    const moved = (await orderingClient.chain(url0)).height;
    assert.ok(moved - before > 3 * LIMITS.retainBatches, `only ${moved - before} blocks while it was down`);

    // Back up: it must be offered a snapshot (state transfer of batches is impossible) and fetch blocks.
    await procs[LAGGARD]?.start();
    const target = (await orderingClient.chain(url0)).height;
    await waitForValue(
      "the laggard's chain to reach its peers'",
      async () => {
        const c = await orderingClient.chain(urlLag);
        return c.height >= target ? c : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    const events = procs[LAGGARD]?.events ?? [];
    // The chain can reach the target with fetched blocks before the core installs the snapshot.
    await waitForValue(
      "the laggard's core to jump",
      async () => (events.some((e) => e.kind === "state-transfer") ? true : undefined),
      { timeoutMs: 60_000, intervalMs: 100 },
    ).catch(() => {});
    const offered = events.filter((e) => e.kind === "snapshot-offered");
    const fetched = events.filter((e) => e.kind === "blocks-fetched");
    const jumped = events.filter((e) => e.kind === "state-transfer");
    assert.ok(offered.length > 0, `no snapshot offered: ${JSON.stringify(events)}`);
    assert.ok(fetched.length > 0, "no blocks fetched");
    assert.ok(jumped.length > 0, "the core never jumped");

    // The whole chain verifies and is the same block for block.
    const head = (await orderingClient.chain(urlLag)).height;
    const verifier = new ChainVerifier({
      replicaKeys: lc.cluster.replicas.map((r) => Uint8Array.from(Buffer.from(r.publicKey, "hex"))),
      quorum: 2,
      hash: sha256,
      verify: verifyEd25519,
    });
    for (let n = 0; n < head; n++) {
      const mine = await orderingClient.block(n, urlLag);
      const theirs = await orderingClient.block(n, url0);
      verifier.next(mine);
      assert.equal(toHexStr(headerHash(mine.header, sha256)), toHexStr(headerHash(theirs.header, sha256)));
    }

    // The tree, read from the laggard alone, is the one its peers hold (data, versions, zxids, times).
    const reader = await waitForValue("a session on the laggard", () => connect([urlLag], 15_000), {
      timeoutMs: 60_000,
      intervalMs: 100,
    }).catch(async (err) => {
      // Diagnostics for a failure: what each replica reports and what the laggard went through.
      for (const u of lc.urls)
        console.log(
          `# ${u} /health: ${await fetch(`${u}/health`)
            .then((r) => r.text())
            .catch(() => "down")}`,
        );
      console.log(`# laggard events: ${JSON.stringify(events)}`);
      throw err;
    });
    const expected = await dump(writer2, "/app");
    const actual = await dump(reader, "/app");
    assert.deepEqual([...actual.keys()], [...expected.keys()]);
    assert.deepEqual(actual, expected);
    assert.equal(actual.has("/app/owned"), false, "the ephemeral node died with its session");
    assert.equal(actual.get("/app/n1")?.data, Buffer.from("via multi").toString("hex"));

    // It takes part in agreement again: with replica 1 gone, nothing commits without it (if replica 1
    // led, a view change comes first, which the laggard must take part in too).
    await procs[1]?.kill();
    const late = await waitForValue("a session through replica 0", () => connect([url0], 15_000), {
      timeoutMs: 60_000,
      intervalMs: 100,
    });
    await late.create("/app/after", "needs the laggard");
    await reader.sync("/app");
    assert.equal(Buffer.from((await reader.getData("/app/after")).data).toString(), "needs the laggard");
    const receipt = await orderingClient.submit(new TextEncoder().encode("after the catch-up"), {
      url: urlLag,
    });
    assert.ok(receipt.block >= head, "receipt.block >= head");
  });
});
