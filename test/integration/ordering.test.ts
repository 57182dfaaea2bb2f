// The ordering service end to end: three hybrid replicas in their own processes (libp2p, LevelDB,
// uWebSockets.js). 10,000 transactions from concurrent HTTP and WebSocket clients, a follower killed with
// SIGKILL mid-load and restarted; then every replica's chain must be identical, every acknowledged
// transaction must be in every chain where its receipt says, every receipt must verify, and the client
// verifier must accept every block and reject tampered ones.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { sha256, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { canonicalJson, clientOptions } from "../../src/node/config.ts";
import { type LocalCluster, localCluster, NodeProcess } from "../../src/node/local-cluster.ts";
import {
  type Block,
  BlockVerificationError,
  ChainVerifier,
  genesisBlock,
  headerHash,
  toHexStr,
  verifyBlock,
} from "../../src/ordering/block.ts";
import {
  OrderingClient,
  OrderingClientError,
  type SubmitStream,
  type VerifiedReceipt,
} from "../../src/ordering/client.ts";
import { submitWhenReady } from "../util/ordering.ts";
import { waitFor } from "../util/wait.ts";

const TOTAL = Number(process.env.ORDERING_TEST_TXS ?? 10_000);
const HTTP_WORKERS = 24;
const WS_STREAMS = 3;
const WS_WINDOW = 200;
const VICTIM = 2;

const txOf = (i: number) => new TextEncoder().encode(`{"tx":${i},"payload":"${"x".repeat(i % 97)}"}`);

describe("ordering service, 3 hybrid replicas in separate processes", () => {
  let dir: string;
  let lc: LocalCluster;
  let procs: NodeProcess[];
  let client: OrderingClient;
  const receipts = new Map<number, VerifiedReceipt>();
  const problems: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "orderer-ordering-"));
    lc = await localCluster("hybrid", 1, dir, { batch: { maxMessageCount: 200, batchTimeoutMs: 10 } });
    procs = lc.nodes.map((n) => new NodeProcess(lc.cluster, n, "inherit", lc.counters[n.id]));
    console.log("# starting");
    await Promise.all(procs.map((p) => p.start()));
    console.log("# started");
    client = new OrderingClient({
      ...clientOptions(lc.cluster),
      hash: sha256,
      verify: verifyEd25519,
      onProblem: (p) => problems.push(`${p.url}: ${p.error.message}`),
    });
  });

  before(async () => {
    // Replicas answer NO_QUORUM until they have heard from their peers: wait for one commit first.
    await submitWhenReady(client, new TextEncoder().encode("warm-up"));
  });

  after(async () => {
    await Promise.all((procs ?? []).map((p) => p.kill()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("orders 10,000 transactions over HTTP and WebSocket while a follower is killed and restarted", async () => {
    // Even transactions go over HTTP, odd ones over WebSocket streams.
    const httpQueue = Array.from({ length: TOTAL }, (_, i) => i).filter((i) => i % 2 === 0);
    const wsQueue = Array.from({ length: TOTAL }, (_, i) => i).filter((i) => i % 2 === 1);
    let acked = 0;
    const ack = (i: number, r: VerifiedReceipt) => {
      assert.equal(r.txId, toHexStr(sha256(txOf(i))));
      receipts.set(i, r);
      acked++;
    };

    // HTTP clients: each posts one transaction at a time to a replica (round robin); a replica that is
    // down makes the client try the next one with the same bytes.
    const httpWorker = async (w: number) => {
      for (let i = httpQueue.shift(); i !== undefined; i = httpQueue.shift()) {
        for (let attempt = 0; ; attempt++) {
          const url = lc.urls[(w + i + attempt) % 3] as string;
          try {
            ack(i, await client.submit(txOf(i), { url }));
            break;
          } catch (err) {
            if (attempt > 50) throw err;
            await sleep(20);
          }
        }
      }
    };

    // WebSocket streams: pipelined, WS_WINDOW in flight each; reconnect elsewhere when the replica dies.
    const wsWorker = async (s: number) => {
      let stream: SubmitStream | null = null;
      let urlIdx = s;
      const inflight = new Set<Promise<void>>();
      const mine: number[] = [];
      for (;;) {
        while (mine.length + inflight.size < WS_WINDOW && wsQueue.length > 0)
          mine.push(wsQueue.shift() as number);
        if (mine.length === 0 && inflight.size === 0) return;
        if (!stream && mine.length > 0) {
          try {
            stream = await client.submitStream(lc.urls[urlIdx++ % 3]);
          } catch {
            await sleep(50);
            continue;
          }
        }
        const st = stream;
        while (st && mine.length > 0) {
          const i = mine.shift() as number;
          const p: Promise<void> = st.submit(txOf(i)).then(
            (r) => ack(i, r),
            (err: unknown) => {
              if (!(err instanceof OrderingClientError)) throw err;
              if (stream === st) stream = null;
              mine.push(i);
            },
          );
          const tracked = p.finally(() => inflight.delete(tracked));
          inflight.add(tracked);
        }
        if (inflight.size > 0) await Promise.race(inflight);
      }
    };

    // Kill a follower once a third is acknowledged; restart it once another twentieth is acknowledged
    // without it (blocks it must catch up on).
    const chaos = (async () => {
      while (acked < TOTAL / 3) await sleep(10);
      await procs[VICTIM]!.kill();
      const killedAt = acked;
      await waitFor(
        "more transactions acknowledged while the follower is down",
        () => acked >= killedAt + TOTAL / 20,
        {
          timeoutMs: 120_000,
          intervalMs: 10,
        },
      );
      await procs[VICTIM]!.start();
      return killedAt;
    })();

    const t0 = performance.now();
    const progress = setInterval(() => console.log(`# ${acked} acknowledged`), 2000);
    await Promise.all([
      ...Array.from({ length: HTTP_WORKERS }, (_, w) => httpWorker(w)),
      ...Array.from({ length: WS_STREAMS }, (_, s) => wsWorker(s)),
    ]);
    clearInterval(progress);
    const secs = (performance.now() - t0) / 1000;
    const killedAt = await chaos;
    console.log(
      `# ${TOTAL} acknowledged in ${secs.toFixed(1)} s (${(TOTAL / secs).toFixed(0)} tx/s); follower ${VICTIM} killed after ${killedAt}; ${problems.length} client-side problems`,
    );
    assert.equal(receipts.size, TOTAL);
  });

  it("every replica holds the same chain with every acknowledged transaction where its receipt says", async () => {
    // Wait until all replicas (the restarted follower included) report the same certified height.
    let heights: number[] = [];
    const deadline = Date.now() + 60_000;
    const maxBlock = Math.max(...[...receipts.values()].map((r) => r.block));
    for (;;) {
      heights = await Promise.all(lc.urls.map(async (u) => (await client.chain(u)).height));
      if (heights.every((h) => h === heights[0] && h > maxBlock)) break;
      assert.ok(Date.now() < deadline, `replicas did not converge: heights ${heights}`);
      await sleep(200);
    }
    const height = heights[0] as number;
    const genesisHash = headerHash(genesisBlock(new TextEncoder().encode(canonicalJson(lc.cluster))).header);
    const chains: Block[][] = [];
    for (const url of lc.urls) {
      // Each replica's chain through its own deliver stream, verified with the browser-safe (noble) verifier.
      const c = new OrderingClient({ ...clientOptions(lc.cluster), urls: [url], genesisHash });
      const blocks: Block[] = [];
      for await (const b of c.blocks({ start: "oldest", stop: height - 1 })) blocks.push(b);
      assert.equal(blocks.length, height);
      chains.push(blocks);
    }
    const hashes = chains.map((c) => c.map((b) => toHexStr(headerHash(b.header, sha256))));
    assert.deepEqual(hashes[1], hashes[0], "replica 1's chain differs from replica 0's");
    assert.deepEqual(hashes[2], hashes[0], "replica 2's chain differs from replica 0's");

    const seen = new Set<string>();
    for (const b of chains[0]!.slice(1))
      for (const e of b.entries) {
        const id = toHexStr(sha256(e));
        assert.ok(!seen.has(id), `transaction ${id} appears twice in the chain`);
        seen.add(id);
      }
    for (const [i, r] of receipts) {
      for (const chain of chains) {
        const b = chain[r.block] as Block;
        assert.deepEqual(toHexStr(headerHash(b.header, sha256)), toHexStr(r.headerHash));
        assert.deepEqual(b.entries[r.position], txOf(i), `tx ${i} is not at block ${r.block}:${r.position}`);
      }
    }
    console.log(`# ${height} blocks, ${seen.size} entries, identical on all 3 replicas`);
  });

  it("the verifier rejects tampered blocks: changed entry, changed previous hash, missing signature", async () => {
    const opts = { replicaKeys: lc.cluster.replicas.map((r) => Buffer.from(r.publicKey, "hex")), quorum: 2 };
    const blocks: Block[] = [];
    for await (const b of client.blocks({ start: 0, stop: 3 })) blocks.push(b);
    const b = blocks.find((x) => x.entries.length > 0 && x.header.number > 0) as Block;
    const code = (fn: () => unknown) => {
      try {
        fn();
        return "OK";
      } catch (err) {
        assert.ok(err instanceof BlockVerificationError, "err instanceof BlockVerificationError");
        return err.code;
      }
    };
    assert.equal(
      code(() => verifyBlock(b, opts)),
      "OK",
    );
    const entries = b.entries.map((e) => e.slice());
    entries[0]![0] = (entries[0]![0] as number) ^ 1;
    assert.equal(
      code(() => verifyBlock({ ...b, entries }, opts)),
      "BAD_DATA_HASH",
    );
    const v = new ChainVerifier(opts);
    for (const x of blocks.slice(0, b.header.number)) v.next(x);
    const prev = b.header.previousHash.slice();
    prev[0] = (prev[0] as number) ^ 1;
    assert.equal(
      code(() => v.next({ ...b, header: { ...b.header, previousHash: prev } })),
      "BROKEN_CHAIN",
    );
    const oneSig = { ...b, metadata: { ...b.metadata, certificate: b.metadata.certificate.slice(0, 1) } };
    assert.equal(
      code(() => verifyBlock(oneSig, opts)),
      "INSUFFICIENT_SIGNATURES",
    );
    const sig = b.metadata.certificate[0]!;
    const bent = { replica: sig.replica, sig: sig.sig.map((x, i) => (i === 0 ? x ^ 1 : x)) };
    const forged = {
      ...b,
      metadata: { ...b.metadata, certificate: [bent, ...b.metadata.certificate.slice(1)] },
    };
    assert.equal(
      code(() => verifyBlock(forged, opts)),
      "BAD_SIGNATURE",
    );
  });
});
