// Coordination service throughput and latency on 3 hybrid replicas (each its own process, libp2p,
// LevelDB with fsync on): create, setData (100 B), getData and ephemeral create+delete, closed loop at 1
// and 64 operations outstanding. One client for 1 outstanding; 8 clients (spread over the replicas) with
// 8 outstanding each for 64. Median of several fresh clusters; warm-up before measuring.
//
//   npm run bench:coord [-- --runs 3 --seconds 3 --quick]

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CoordClient, CreateMode } from "../src/coord/client.ts";
import { generateEd25519KeyPair, signEd25519 } from "../src/crypto/node-crypto.ts";
import { localCluster, NodeProcess } from "../src/node/local-cluster.ts";
import { median, numArg, pct } from "./stats.ts";

const QUICK = process.argv.includes("--quick");
const RUNS = numArg("runs", QUICK ? 1 : 3);
const SECONDS = numArg("seconds", QUICK ? 2 : 3);
const WARMUP_S = 1;
const signer = { generate: generateEd25519KeyPair, sign: signEd25519 };
const DATA = "x".repeat(100);

type Workload = "create" | "setData" | "getData" | "ephemeral create+delete";
const WORKLOADS: Workload[] = ["create", "setData", "getData", "ephemeral create+delete"];
const CONCURRENCY = [1, 64];

interface Figures {
  opsPerSec: number;
  p50: number;
  p99: number;
}

/** Runs `op` in `k` loops per client until the time is up; latencies after the warm-up. */
async function closedLoop(
  clients: CoordClient[],
  perClient: number,
  op: (zk: CoordClient, c: number, i: number) => Promise<void>,
): Promise<Figures> {
  const lat: number[] = [];
  let count = 0;
  const start = Date.now();
  const measureFrom = start + WARMUP_S * 1000;
  const end = measureFrom + SECONDS * 1000;
  let seq = 0;
  await Promise.all(
    clients.flatMap((zk, c) =>
      Array.from({ length: perClient }, async () => {
        while (Date.now() < end) {
          const t0 = performance.now();
          const started = Date.now();
          await op(zk, c, seq++);
          if (started >= measureFrom && Date.now() <= end) {
            lat.push(performance.now() - t0);
            count++;
          }
        }
      }),
    ),
  );
  lat.sort((a, b) => a - b);
  return { opsPerSec: count / SECONDS, p50: pct(lat, 0.5), p99: pct(lat, 0.99) };
}

async function oneRun(run: number): Promise<Map<string, Figures>> {
  const dir = mkdtempSync(join(tmpdir(), "orderer-coord-bench-"));
  const lc = await localCluster("hybrid", 1, dir, {
    node: { limits: { requestTimeoutTicks: 500, viewChangeTimeoutTicks: 500 } },
  });
  const procs = lc.nodes.map((n) => new NodeProcess(lc.cluster, n));
  const out = new Map<string, Figures>();
  const clients: CoordClient[] = [];
  try {
    await Promise.all(procs.map((p) => p.start()));
    await sleep(500);
    for (let i = 0; i < 8; i++)
      clients.push(
        await CoordClient.connect({ urls: lc.urls, signer, sessionTimeoutMs: 30_000, startAt: i % 3 }),
      );
    const zk0 = clients[0] as CoordClient;
    for (const p of ["/bench", "/bench/c", "/bench/s", "/bench/e"]) await zk0.create(p);
    for (let j = 0; j < 64; j++) await zk0.create(`/bench/s/k${j}`, DATA);
    for (const c of clients) await c.sync();
    for (const k of CONCURRENCY) {
      const use = k === 1 ? clients.slice(0, 1) : clients;
      const per = k === 1 ? 1 : k / clients.length;
      for (const w of WORKLOADS) {
        const op = {
          create: async (zk: CoordClient, c: number, i: number) => {
            await zk.create(`/bench/c/r${run}-k${k}-c${c}-${i}`, DATA);
          },
          setData: async (zk: CoordClient, _c: number, i: number) => {
            await zk.setData(`/bench/s/k${i % 64}`, DATA);
          },
          getData: async (zk: CoordClient, _c: number, i: number) => {
            await zk.getData(`/bench/s/k${i % 64}`);
          },
          "ephemeral create+delete": async (zk: CoordClient, c: number, i: number) => {
            const p = await zk.create(`/bench/e/k${k}-c${c}-${i}`, "", { mode: CreateMode.EPHEMERAL });
            await zk.delete(p);
          },
        }[w];
        const f = await closedLoop(use, per, op);
        out.set(`${w}|${k}`, f);
        console.log(
          `  run ${run + 1}: ${w.padEnd(24)} outstanding ${String(k).padStart(2)}: ${f.opsPerSec.toFixed(0).padStart(6)} ops/s  p50 ${f.p50.toFixed(2)} ms  p99 ${f.p99.toFixed(2)} ms`,
        );
      }
    }
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await Promise.all(procs.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

async function main(): Promise<void> {
  console.log(`coordination benchmark: 3 hybrid replicas, fsync on, ${RUNS} run(s) of ${SECONDS} s per row`);
  const runs: Map<string, Figures>[] = [];
  for (let r = 0; r < RUNS; r++) runs.push(await oneRun(r));
  console.log("\n| operation | outstanding | ops/s (median) | p50 ms | p99 ms | runs (ops/s) |");
  console.log("|---|---|---|---|---|---|");
  for (const k of CONCURRENCY)
    for (const w of WORKLOADS) {
      const fs = runs.map((m) => m.get(`${w}|${k}`) as Figures);
      console.log(
        `| ${w}${w.startsWith("ephemeral") ? " (pairs)" : ""} | ${k} | ${median(fs.map((f) => f.opsPerSec)).toFixed(0)} | ${median(fs.map((f) => f.p50)).toFixed(2)} | ${median(fs.map((f) => f.p99)).toFixed(2)} | ${fs.map((f) => f.opsPerSec.toFixed(0)).join(", ")} |`,
      );
    }
}

await main();
