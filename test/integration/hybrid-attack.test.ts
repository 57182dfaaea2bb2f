// The hybrid-mode fork attack, with replica 0 run by an attacker (test/integration/attacker-node.ts):
// its process, node config and data directory are the attacker's. As leader it sends replica 1 the
// PREPARE of "transfer 100 to ALICE" and replica 2 a PREPARE of "transfer 100 to BOB" for the same seq.
//  1. Its trusted counter is a separate process it cannot reach into: the counter refuses a second
//     certificate, the forged ones do not verify, and the honest replicas never hold two different
//     certified blocks at one height; ordering continues (ATTACK_RUNS runs, default 20, fresh cluster
//     each).
//  2. It also stole the counter's key: the fork happens, and the honest replicas detect it within 5 s,
//     serve a proof that verifies with public keys only, stop ordering, and no client that confirms with
//     f+1 replicas accepts either fork.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { UsigChecker } from "../../src/bft/trusted.ts";
import { nodeCrypto, sha256, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { clientOptions } from "../../src/node/config.ts";
import { type LocalCluster, localCluster, NodeProcess } from "../../src/node/local-cluster.ts";
import { headerHash, toHexStr } from "../../src/ordering/block.ts";
import { OrderingClient, OrderingClientError } from "../../src/ordering/client.ts";
import { checkEquivocationJson, type MisbehaviourReport } from "../../src/ordering/misbehaviour.ts";
import { submitWhenReady } from "../util/ordering.ts";
import { waitFor } from "../util/wait.ts";

const ATTACKER = fileURLToPath(new URL("./attacker-node.ts", import.meta.url));
const RUNS = Number(process.env.ATTACK_RUNS ?? 20);
const hex = (s: string) => Uint8Array.from(Buffer.from(s, "hex"));

interface Run {
  dir: string;
  lc: LocalCluster;
  procs: NodeProcess[];
  client: (urls: readonly string[], confirmReplicas?: number) => OrderingClient;
}

async function startRun(attack: "honest-counter" | "stolen-counter"): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), `orderer-attack-${attack}-`));
  const lc = await localCluster("hybrid", 1, dir, {
    batch: { maxMessageCount: 10, batchTimeoutMs: 5 },
    node: { logLevel: "warn" },
  });
  const procs = lc.nodes.map(
    (n) =>
      new NodeProcess(
        lc.cluster,
        n,
        "ignore",
        lc.counters[n.id],
        n.id === 0
          ? {
              script: ATTACKER,
              env: {
                ATTACK: attack,
                ...(attack === "stolen-counter"
                  ? { ORDERER_STOLEN_COUNTER_SEED: lc.counters[0]?.seed as string }
                  : {}),
              },
            }
          : null,
      ),
  );
  await Promise.all(procs.map((p) => p.start()));
  const client = (urls: readonly string[], confirmReplicas = 1) =>
    new OrderingClient({
      ...clientOptions(lc.cluster),
      urls,
      hash: sha256,
      verify: verifyEd25519,
      confirmReplicas,
    });
  return { dir, lc, procs, client };
}

async function endRun(r: Run): Promise<void> {
  await Promise.all(r.procs.map((p) => p.kill()));
  rmSync(r.dir, { recursive: true, force: true });
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return (await res.json()) as T;
}

async function certifiedHeight(url: string): Promise<number> {
  return (await getJson<{ height: number }>(`${url}/v1/chain`)).height;
}

/** Every certified block both replicas hold, compared by header hash (each verified by the client). */
async function assertSameChain(r: Run, a: number, b: number): Promise<number> {
  const [ua, ub] = [r.lc.urls[a] as string, r.lc.urls[b] as string];
  const h = Math.min(await certifiedHeight(ua), await certifiedHeight(ub));
  const c = r.client([ua, ub]);
  for (let n = 1; n < h; n++) {
    const [ba, bb] = [await c.block(n, ua), await c.block(n, ub)];
    assert.equal(
      toHexStr(headerHash(ba.header, sha256)),
      toHexStr(headerHash(bb.header, sha256)),
      `replicas ${a} and ${b} hold different certified blocks at height ${n}`,
    );
  }
  return h;
}

describe("hybrid mode under a Byzantine replica 0 (separate processes)", () => {
  it(`the counter outside the replica's reach: no fork, ordering continues (${RUNS} runs)`, async () => {
    for (let run = 1; run <= RUNS; run++) {
      const t0 = Date.now();
      const r = await startRun("honest-counter");
      const phases: string[] = [`started ${Date.now() - t0} ms`];
      try {
        const [u0, u1, u2] = r.lc.urls as [string, string, string];
        // ALICE through the attacker's own gateway: the attacker leads view 0 and equivocates.
        const alice = new TextEncoder().encode(`transfer 100 to ALICE (run ${run})`);
        await submitWhenReady(r.client([u0]), alice, u0, {
          timeoutMs: 30_000,
          codes: ["NO_QUORUM", "TIMEOUT", "UNREACHABLE"],
        }).catch(() => undefined); // the attacker may withhold its receipt; what matters is below
        phases.push(`alice ${Date.now() - t0} ms`);
        const report = r.procs[0]?.reports.get("attack") as
          | { forged: number; counterRefused: number; counterCertified: number }
          | undefined;
        assert.ok(report && report.forged >= 1, `run ${run}: the attacker forged no PREPARE`);
        assert.ok(report.counterRefused >= 1, `run ${run}: the counter was never asked to certify twice`);
        assert.equal(report.counterCertified, 0, `run ${run}: the counter certified one value twice`);
        // Ordering continues: a transaction through an honest replica commits, and both honest
        // replicas agree on every certified block, confirmed by both.
        const bob = new TextEncoder().encode(`transfer 5 to CAROL (run ${run})`);
        const receipt = await submitWhenReady(r.client([u1]), bob, u1, {
          timeoutMs: 30_000,
          codes: ["NO_QUORUM", "TIMEOUT", "UNREACHABLE", "VIEW_CHANGE"],
        });
        phases.push(`carol ${Date.now() - t0} ms`);
        await waitFor(
          `run ${run}: both honest replicas certify block ${receipt.block}`,
          async () =>
            (await certifiedHeight(u2)) > receipt.block && (await certifiedHeight(u1)) > receipt.block,
          { timeoutMs: 30_000, intervalMs: 25 },
        );
        const h = await assertSameChain(r, 1, 2);
        assert.ok(h > receipt.block, `run ${run}: compared ${h} blocks`);
        await r.client([u1, u2], 2).confirmHeader(receipt.block, receipt.headerHash);
        for (const u of [u1, u2]) {
          const m = await getJson<MisbehaviourReport>(`${u}/v1/misbehaviour`);
          assert.equal(m.halted, null, `run ${run}: ${u} stopped ordering without a proof`);
          assert.equal(m.proofs.length, 0, `run ${run}: ${u} holds a proof no one could have made`);
        }
        console.log(`# run ${run}: ${phases.join(", ")}, checked ${Date.now() - t0} ms`);
      } finally {
        await endRun(r);
      }
    }
  });

  it("a stolen counter key: the fork is detected within 5 s, proven, and no f+1-confirming client accepts it (3 runs)", async () => {
    for (let run = 1; run <= 3; run++) await stolenKeyRun();
  });
});

async function stolenKeyRun(): Promise<void> {
  const r = await startRun("stolen-counter");
  try {
    const [u0, u1, u2] = r.lc.urls as [string, string, string];
    const alice = new TextEncoder().encode("transfer 100 to ALICE");
    // Wait until the cluster takes submissions, then time the attack from the submission.
    await waitFor(
      "a quorum at replica 0",
      async () => (await fetch(`${u0}/health`).then((x) => x.status)) === 200,
      { timeoutMs: 30_000, intervalMs: 25 },
    );
    const sent = Date.now();
    const pending = r
      .client([u0])
      .submit(alice, { url: u0 })
      .catch(() => undefined);
    const detectedAt = new Map<string, number>();
    await waitFor(
      "both honest replicas to hold a proof",
      async () => {
        for (const u of [u1, u2]) {
          if (detectedAt.has(u)) continue;
          const m = await getJson<MisbehaviourReport>(`${u}/v1/misbehaviour`);
          if (m.proofs.length > 0) detectedAt.set(u, Date.now() - sent);
        }
        return detectedAt.size === 2;
      },
      { timeoutMs: 5000, intervalMs: 25 },
    );
    await pending;
    console.log(`# detected after ${[...detectedAt.values()].join(" and ")} ms`);
    // The proof convinces with public information only: the cluster file's counter keys.
    const checker = new UsigChecker(
      r.lc.cluster.replicas.map((x) => hex(x.counterPublicKey as string)),
      nodeCrypto,
    );
    for (const u of [u1, u2]) {
      const m = await getJson<MisbehaviourReport>(`${u}/v1/misbehaviour`);
      assert.ok(m.halted !== null, `${u} still orders after the proof`);
      for (const p of m.proofs) {
        assert.equal(p.culprit, 0, `${u} accuses replica ${p.culprit}`);
        assert.equal(checkEquivocationJson(p, checker), null, `${u}'s proof does not verify`);
      }
      const health = await fetch(`${u}/health`);
      assert.equal(health.status, 503, `${u}/health answers ${health.status} after stopping`);
      // A halted replica refuses new work with a typed error.
      await assert.rejects(
        r.client([u]).submit(new TextEncoder().encode("after the proof"), { url: u }),
        (e: unknown) => e instanceof OrderingClientError && (e.code === "HALTED" || e.code === "NO_QUORUM"),
        `${u} took a submission after stopping`,
      );
    }
    // Every block 1 any replica certified (replica 1 may have halted before voting, when replica 2's
    // COMMIT reached it before the PREPARE: then only one side exists).
    const c = r.client([u0, u1, u2]);
    const forks = new Map<string, Uint8Array>();
    for (const u of [u0, u1, u2]) {
      const b = await c.block(1, u).catch(() => null);
      if (b) forks.set(toHexStr(headerHash(b.header, sha256)), headerHash(b.header, sha256));
    }
    assert.ok(forks.size >= 1, "no replica certified a block 1: nothing was tested");
    console.log(`# ${forks.size} different block 1s certified`);
    // Any f+1 = 2 replicas include an honest one, which holds the proof: no block 1 is accepted.
    for (const pair of [
      [u0, u1],
      [u0, u2],
      [u1, u2],
    ] as const) {
      for (const hh of forks.values()) {
        await assert.rejects(
          r.client(pair, 2).confirmHeader(1, hh),
          (e: unknown) => e instanceof OrderingClientError && e.code === "FORK_SUSPECTED",
          `${pair.join(" + ")} confirmed block 1 ${toHexStr(hh).slice(0, 16)}`,
        );
      }
    }
  } finally {
    await endRun(r);
  }
}
