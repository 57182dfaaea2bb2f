// Scaling: how committed throughput, latency and CPU change with the number of replicas (hybrid n = 3,
// 5, 7; PBFT n = 4, 7) and with the batch size (maxMessageCount, hybrid n = 3): the cost curve as the
// work grows. Each replica in its own process, all on this machine (so more replicas also means less
// CPU per replica: the figures show what n costs on a fixed machine, not on n machines).
// Per configuration: a light open-loop load (latency without queueing) and a saturating closed loop
// (throughput, CPU per committed transaction). 100 B transactions, fsync on.
//
//   npm run bench -- scaling [--runs 3 --seconds 3 --quick --only n|batch]

import type { Mode } from "../src/bft/types.ts";
import { measure, replicasOf, Submitter, startOrdering } from "./ordering-load.ts";
import { publish } from "./results.ts";
import { median, numArg } from "./stats.ts";

const QUICK = process.argv.includes("--quick");
const RUNS = numArg("runs", QUICK ? 1 : 3);
const SECONDS = numArg("seconds", QUICK ? 1 : 3);
const WARMUP_S = 1;
const TX_BYTES = 100;
const LIGHT_RATE = 50;
const OUTSTANDING = 512;
const STREAMS_PER_REPLICA = 2;
const only = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1] : undefined;

interface Config {
  readonly kind: "n" | "batch";
  readonly mode: Mode;
  readonly f: number;
  readonly maxMessageCount: number;
}

const CONFIGS: Config[] = [
  ...(only === "batch"
    ? []
    : (
        [
          ["hybrid", 1],
          ["hybrid", 2],
          ["hybrid", 3],
          ["pbft", 1],
          ["pbft", 2],
        ] as const
      ).map(([mode, f]) => ({ kind: "n" as const, mode, f, maxMessageCount: 500 }))),
  ...(only === "n"
    ? []
    : (QUICK ? [1, 500] : [1, 10, 50, 200, 1000]).map((m) => ({
        kind: "batch" as const,
        mode: "hybrid" as const,
        f: 1,
        maxMessageCount: m,
      }))),
];

interface Figures {
  lightP50: number;
  lightP99: number;
  txPerSec: number;
  p50: number;
  p99: number;
  txPerBlock: number;
  cores: number;
}

async function one(c: Config): Promise<Figures> {
  const cluster = await startOrdering(c.mode, c.f, {
    batch: { maxMessageCount: c.maxMessageCount, batchTimeoutMs: 10 },
    // Saturated small batches queue for seconds: far from a faulty leader, so no view changes.
    limits: { requestTimeoutTicks: 3000, viewChangeTimeoutTicks: 3000 },
  });
  const s = await Submitter.connect(cluster.urls, STREAMS_PER_REPLICA, TX_BYTES).catch(async (err) => {
    await cluster.stop();
    throw err;
  });
  try {
    s.openLoop(LIGHT_RATE);
    const light = await measure(s, cluster, WARMUP_S, SECONDS);
    s.stopLoad();
    await s.drain(10_000);
    s.closedLoop(OUTSTANDING);
    const sat = await measure(s, cluster, WARMUP_S, SECONDS);
    s.stopLoad();
    return {
      lightP50: light.p50,
      lightP99: light.p99,
      txPerSec: sat.txPerSec,
      p50: sat.p50,
      p99: sat.p99,
      txPerBlock: (sat.txPerSec * SECONDS) / Math.max(1, sat.blocks),
      cores: sat.cores,
    };
  } finally {
    s.close();
    await cluster.stop();
  }
}

const label = (c: Config) =>
  c.kind === "n"
    ? `${c.mode} n=${replicasOf(c.mode, c.f)}`
    : `hybrid n=3, maxMessageCount ${c.maxMessageCount}`;

async function main(): Promise<void> {
  console.log(
    `scaling bench: ${TX_BYTES} B transactions, fsync on; per configuration ${LIGHT_RATE} tx/s open loop (latency) then ${OUTSTANDING} outstanding closed loop (throughput), each ${WARMUP_S} s warm-up + ${SECONDS} s measured; ${RUNS} run(s), each a fresh cluster, configurations interleaved; all replicas share this machine's ${(await import("node:os")).cpus().length} cores`,
  );
  const results = new Map<Config, Figures[]>();
  for (let r = 0; r < RUNS; r++)
    for (const c of CONFIGS) {
      const x = await one(c);
      console.log(
        `  run ${r + 1}: ${label(c)}: light p50 ${x.lightP50.toFixed(1)} ms; saturated ${x.txPerSec.toFixed(0)} tx/s, p50 ${x.p50.toFixed(0)} ms, ${x.txPerBlock.toFixed(1)} tx/block, ${x.cores.toFixed(2)} cores`,
      );
      results.set(c, [...(results.get(c) ?? []), x]);
    }
  const rows: Record<string, unknown>[] = [];
  const base = new Map<Mode, number>();
  console.log(
    "\n| configuration | light p50 / p99 ms | saturated tx/s | vs smallest n | saturated p50 / p99 ms | tx per block | CPU ms per tx |",
  );
  console.log("|---|---|---|---|---|---|---|");
  for (const c of CONFIGS) {
    const xs = results.get(c) ?? [];
    const med = (k: keyof Figures) => median(xs.map((x) => x[k]));
    const tps = med("txPerSec");
    if (c.kind === "n" && !base.has(c.mode)) base.set(c.mode, tps);
    const row = {
      kind: c.kind,
      mode: c.mode,
      n: replicasOf(c.mode, c.f),
      f: c.f,
      maxMessageCount: c.maxMessageCount,
      lightRate: LIGHT_RATE,
      lightP50Ms: med("lightP50"),
      lightP99Ms: med("lightP99"),
      txPerSec: tps,
      p50Ms: med("p50"),
      p99Ms: med("p99"),
      txPerBlock: med("txPerBlock"),
      replicaCores: med("cores"),
      cpuMsPerTx: median(xs.map((x) => (x.cores * 1000) / Math.max(1, x.txPerSec))),
      runsTxPerSec: xs.map((x) => x.txPerSec),
    };
    rows.push(row);
    const vs = c.kind === "n" ? `${(tps / (base.get(c.mode) ?? tps)).toFixed(2)}×` : "";
    console.log(
      `| ${label(c)} | ${row.lightP50Ms.toFixed(1)} / ${row.lightP99Ms.toFixed(1)} | ${tps.toFixed(0)} | ${vs} | ${row.p50Ms.toFixed(0)} / ${row.p99Ms.toFixed(0)} | ${row.txPerBlock.toFixed(1)} | ${row.cpuMsPerTx.toFixed(2)} |`,
    );
  }
  const settings = {
    runs: RUNS,
    seconds: SECONDS,
    warmupS: WARMUP_S,
    txBytes: TX_BYTES,
    lightRate: LIGHT_RATE,
    outstanding: OUTSTANDING,
    streamsPerReplica: STREAMS_PER_REPLICA,
    batchTimeoutMs: 10,
    fsync: true,
  };
  await publish("scaling", settings, rows);
}

// A rejection ends the process with its stack and exit code 1; success must exit too (open handles).
await main();
process.exit(0);
