// Ordering service: committed tx/s and submit-to-commit p50/p99 against offered load, open loop, so the
// latency-throughput curve shows where it bends. 3 hybrid replicas and 4 PBFT replicas, transactions
// of 100 B and 1 KiB, each replica in its own process (libp2p, LevelDB with fsync, uWebSockets.js); the
// load comes over WebSocket submit streams (2 per replica) at a fixed offered rate per step, from a
// process on the same machine. "Committed" = acknowledged with a receipt (the transaction is in a block
// holding a commit certificate); latency counts from the moment a transaction was due to be sent.
// Also: Merkle root hashing with node:crypto vs @noble/hashes (the server's choice).
//
//   npm run bench -- ordering [--runs 3 --seconds 2 --system-warmup 10 --quick --only hybrid:100]
//   ORDERER_CPU_PROF=DIR profiles every replica process (node --cpu-prof)

import { setTimeout as sleep } from "node:timers/promises";
import type { Mode } from "../src/bft/types.ts";
import { sha256 } from "../src/crypto/node-crypto.ts";
import { merkleRoot, nobleHash } from "../src/ordering/block.ts";
import { measure, replicasOf, type Submitter as S, Submitter, startOrdering } from "./ordering-load.ts";
import { publish } from "./results.ts";
import { median, numArg } from "./stats.ts";

const QUICK = process.argv.includes("--quick");
const RUNS = numArg("runs", QUICK ? 1 : 3);
const SECONDS = numArg("seconds", QUICK ? 1 : 2);
const WARMUP_S = 1;
/**
 * Load before the first step of each fresh cluster (at SYSTEM_WARMUP_RATE): V8 keeps optimising the
 * replicas' hot paths for tens of seconds after they start (measured here with --trace-opt: about 280
 * functions compiled 10 s after start, 430 at 18 s, 500 at 34 s), and a light-load row measured on a
 * cold cluster charges that compilation to latency.
 */
const SYSTEM_WARMUP_S = numArg("system-warmup", QUICK ? 5 : 10);
const SYSTEM_WARMUP_RATE = 3000;
const STREAMS_PER_REPLICA = 2;
const MAX_MESSAGE_COUNT = 500;
/** Offered loads, tx/s; a sweep stops one step after the cluster stops keeping up. */
const RATES = QUICK
  ? [200, 1000, 3000, 10_000, 20_000]
  : [100, 200, 500, 1000, 2000, 3000, 5000, 7500, 10_000, 15_000, 20_000, 30_000];
/** Below this fraction of the offered load committed, a step counts as saturated. */
const KEEPS_UP = 0.9;
const CONFIGS: readonly { mode: Mode; f: number; size: number }[] = [
  { mode: "hybrid", f: 1, size: 100 },
  { mode: "hybrid", f: 1, size: 1024 },
  { mode: "pbft", f: 1, size: 100 },
  { mode: "pbft", f: 1, size: 1024 },
];

interface Point {
  offered: number;
  committed: number;
  p50: number;
  p99: number;
  errors: number;
  shed: number;
  cores: number;
  txPerBlock: number;
}

/** One fresh cluster, the offered load stepped up until it saturates. */
async function sweep(mode: Mode, f: number, size: number): Promise<Point[]> {
  const cluster = await startOrdering(mode, f, {
    batch: { maxMessageCount: MAX_MESSAGE_COUNT, batchTimeoutMs: 10 },
  });
  let s: S | null = null;
  const points: Point[] = [];
  try {
    s = await Submitter.connect(cluster.urls, STREAMS_PER_REPLICA, size);
    if (SYSTEM_WARMUP_S > 0) {
      s.openLoop(SYSTEM_WARMUP_RATE);
      await sleep(SYSTEM_WARMUP_S * 1000);
      s.stopLoad();
      await s.drain(10_000);
    }
    let saturatedSteps = 0;
    for (const rate of RATES) {
      const shed0 = s.shed;
      s.openLoop(rate);
      const w = await measure(s, cluster, WARMUP_S, SECONDS);
      s.stopLoad();
      const p: Point = {
        offered: rate,
        committed: w.txPerSec,
        p50: w.p50,
        p99: w.p99,
        errors: w.errors,
        shed: s.shed - shed0,
        cores: w.cores,
        txPerBlock: (w.txPerSec * SECONDS) / Math.max(1, w.blocks),
      };
      points.push(p);
      console.log(
        `  ${mode} ${size} B offered ${rate}: committed ${p.committed.toFixed(0)} tx/s, p50 ${p.p50.toFixed(1)} ms, p99 ${p.p99.toFixed(1)} ms, ${p.txPerBlock.toFixed(1)} tx/block, replicas ${p.cores.toFixed(2)} cores${p.errors ? `, ${p.errors} errors` : ""}${p.shed ? `, ${p.shed} shed` : ""}`,
      );
      const drained = await s.drain(10_000);
      if (p.committed < KEEPS_UP * rate || !drained) saturatedSteps++;
      if (saturatedSteps >= 2 || !drained) break;
    }
  } finally {
    s?.close();
    await cluster.stop();
  }
  return points;
}

function hashingBench(): { noble: number; node: number } {
  const entries = Array.from({ length: MAX_MESSAGE_COUNT }, (_, i) => Buffer.alloc(100, i));
  const time = (fn: () => void) => {
    const rounds: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      for (let i = 0; i < 20; i++) fn();
      rounds.push((performance.now() - t0) / 20);
    }
    return median(rounds);
  };
  const noble = time(() => merkleRoot(entries, nobleHash));
  const node = time(() => merkleRoot(entries, sha256));
  console.log(
    `Merkle root of ${MAX_MESSAGE_COUNT} × 100 B entries: @noble/hashes ${noble.toFixed(2)} ms, node:crypto ${node.toFixed(2)} ms (noble/node ${(noble / node).toFixed(1)}×)`,
  );
  return { noble, node };
}

async function main(): Promise<void> {
  const only = process.argv.indexOf("--only");
  const configs = CONFIGS.filter((c) => only < 0 || process.argv[only + 1] === `${c.mode}:${c.size}`);
  console.log(
    `ordering bench: open loop, offered ${RATES.join(", ")} tx/s (a sweep stops one step after committing < ${KEEPS_UP * 100} % of the offer); each fresh cluster first warmed ${SYSTEM_WARMUP_S} s at ${SYSTEM_WARMUP_RATE} tx/s; ${WARMUP_S} s warm-up + ${SECONDS} s measured per step; ${RUNS} run(s), each a fresh cluster, configurations interleaved; ${STREAMS_PER_REPLICA} WebSocket streams per replica; maxMessageCount ${MAX_MESSAGE_COUNT}, batchTimeout 10 ms, fsync on`,
  );
  const hashing = hashingBench();
  const runs = new Map<string, Point[][]>();
  for (let r = 0; r < RUNS; r++)
    for (const c of configs) {
      const key = `${c.mode}:${c.size}`;
      console.log(`run ${r + 1}/${RUNS}: ${c.mode} (n=${replicasOf(c.mode, c.f)}), ${c.size} B`);
      const list = runs.get(key) ?? [];
      list.push(await sweep(c.mode, c.f, c.size));
      runs.set(key, list);
    }
  const rows: Record<string, unknown>[] = [];
  console.log(
    "\n| mode | tx size | offered tx/s | committed tx/s | p50 ms | p99 ms | tx per block | replicas' CPU (cores) | runs |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const c of configs) {
    const sweeps = runs.get(`${c.mode}:${c.size}`) ?? [];
    for (const rate of RATES) {
      const pts = sweeps.flatMap((sw) => sw.filter((p) => p.offered === rate));
      if (pts.length === 0) continue;
      const med = (k: keyof Point) => median(pts.map((p) => p[k]));
      const row = {
        mode: c.mode,
        n: replicasOf(c.mode, c.f),
        txBytes: c.size,
        offered: rate,
        committed: med("committed"),
        p50Ms: med("p50"),
        p99Ms: med("p99"),
        txPerBlock: med("txPerBlock"),
        replicaCores: med("cores"),
        errors: pts.reduce((a, p) => a + p.errors, 0),
        shed: pts.reduce((a, p) => a + p.shed, 0),
        runs: pts.length,
      };
      rows.push(row);
      console.log(
        `| ${c.mode} (n=${row.n}) | ${c.size} B | ${rate} | ${row.committed.toFixed(0)} | ${row.p50Ms.toFixed(1)} | ${row.p99Ms.toFixed(1)} | ${row.txPerBlock.toFixed(1)} | ${row.replicaCores.toFixed(2)} | ${pts.length} |`,
      );
    }
  }
  const settings = {
    runs: RUNS,
    seconds: SECONDS,
    warmupS: WARMUP_S,
    systemWarmupS: SYSTEM_WARMUP_S,
    systemWarmupRate: SYSTEM_WARMUP_RATE,
    rates: RATES,
    keepsUp: KEEPS_UP,
    streamsPerReplica: STREAMS_PER_REPLICA,
    maxMessageCount: MAX_MESSAGE_COUNT,
    batchTimeoutMs: 10,
    fsync: true,
    merkleRoot500x100B: { nobleMs: hashing.noble, nodeCryptoMs: hashing.node },
  };
  await publish("ordering", settings, rows);
}

// A rejection ends the process with its stack and exit code 1; success must exit too (open handles).
await main();
process.exit(0);
