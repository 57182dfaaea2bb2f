// Coordination service throughput and latency on 3 hybrid replicas (each its own process, libp2p,
// LevelDB with fsync on): create, setData (100 B), getData and ephemeral create+delete, closed loop at 1
// and 64 operations outstanding. One client for 1 outstanding; 8 clients (spread over the replicas) with
// 8 outstanding each for 64. Median of several fresh clusters; warm-up before measuring. The same
// workloads run side by side with ZooKeeper in compare-zk.ts.
//
//   npm run bench -- coord [--runs 3 --seconds 3 --system-warmup 10 --quick --only create,setData]
//   ORDERER_CPU_PROF=DIR npm run bench -- coord --runs 1 --only create   (profiles every replica)

import { allRows, CONCURRENCY, type Figures, startOurs, WORKLOADS, workload } from "./coord-workloads.ts";
import { publish } from "./results.ts";
import { median, numArg } from "./stats.ts";

const QUICK = process.argv.includes("--quick");
const RUNS = numArg("runs", QUICK ? 1 : 3);
const SECONDS = numArg("seconds", QUICK ? 2 : 3);
const WARMUP_S = 1;
/** Creates and setData at 64 outstanding on each fresh cluster before its first row (JIT warm-up; see ordering.ts). */
const SYSTEM_WARMUP_S = numArg("system-warmup", QUICK ? 4 : 10);
const ONLY = (() => {
  const i = process.argv.indexOf("--only");
  return i >= 0 ? (process.argv[i + 1] ?? "").split(",") : null;
})();
const ROWS = WORKLOADS.filter((w) => ONLY === null || ONLY.includes(w));

async function oneRun(run: number): Promise<Map<string, Figures>> {
  const sut = await startOurs();
  try {
    if (SYSTEM_WARMUP_S > 0) {
      const o = { warmupS: 0, seconds: SYSTEM_WARMUP_S / 2 };
      await workload(sut.clients, "create", 64, `r${run}-warm`, o);
      await workload(sut.clients, "setData", 64, `r${run}-warm`, o);
    }
    return await allRows(sut, ROWS, `r${run}`, { warmupS: WARMUP_S, seconds: SECONDS }, `  run ${run + 1}: `);
  } finally {
    await sut.stop();
  }
}

async function main(): Promise<void> {
  console.log(
    `coordination benchmark: 3 hybrid replicas, fsync on, ${RUNS} run(s) of ${SECONDS} s per row, each fresh cluster first warmed ${SYSTEM_WARMUP_S} s (create, setData at 64 outstanding)`,
  );
  const runs: Map<string, Figures>[] = [];
  for (let r = 0; r < RUNS; r++) runs.push(await oneRun(r));
  console.log(
    "\n| operation | outstanding | ops/s (median) | p50 ms | p99 ms | server CPU (cores) | runs (ops/s) |",
  );
  console.log("|---|---|---|---|---|---|---|");
  const rows = [];
  for (const k of CONCURRENCY)
    for (const w of ROWS) {
      const fs = runs.map((m) => m.get(`${w}|${k}`) as Figures);
      const row = {
        operation: w,
        outstanding: k,
        opsPerSec: median(fs.map((f) => f.opsPerSec)),
        p50Ms: median(fs.map((f) => f.p50)),
        p99Ms: median(fs.map((f) => f.p99)),
        serverCores: median(fs.map((f) => f.serverCores)),
        runsOpsPerSec: fs.map((f) => f.opsPerSec),
      };
      rows.push(row);
      console.log(
        `| ${w}${w.startsWith("ephemeral") ? " (pairs)" : ""} | ${k} | ${row.opsPerSec.toFixed(0)} | ${row.p50Ms.toFixed(2)} | ${row.p99Ms.toFixed(2)} | ${row.serverCores.toFixed(2)} | ${fs.map((f) => f.opsPerSec.toFixed(0)).join(", ")} |`,
      );
    }
  await publish(
    "coord",
    {
      runs: RUNS,
      seconds: SECONDS,
      warmupS: WARMUP_S,
      systemWarmupS: SYSTEM_WARMUP_S,
      replicas: 3,
      mode: "hybrid",
      workloads: ROWS,
      cpuProfile: Boolean(process.env.ORDERER_CPU_PROF),
    },
    rows,
  );
}

await main();
