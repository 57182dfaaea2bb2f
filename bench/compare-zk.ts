// Our coordination service side by side with Apache ZooKeeper 3.8, on this machine, in one run.
//
// - ZooKeeper: the Debian `zookeeper` package (installed with apt-get when missing), a 3-server ensemble
//   on loopback with fsync on (forceSync=yes), fresh data directories per run, stopped by PID afterwards
//   (zookeeper.ts); driven by node-zookeeper-client, a pure-JavaScript client from npm.
// - Ours: 3 hybrid replicas (f = 1), each its own process (libp2p, LevelDB with fsync on), driven by our
//   client (coord-workloads.ts).
// - The same closed-loop workloads on both: create, setData (100 B), getData, ephemeral create+delete
//   (one operation = the pair), at 1 outstanding (one session, on server/replica 0) and at 64 (8
//   sessions spread over the three servers, 8 outstanding each). Each system is warmed up after it starts
//   until its throughput is stable: creates at 64 outstanding in 2 s slices, at least --system-warmup s
//   (default 20: ZooKeeper's JVMs need that long) and until the last three slices are within 10 % of
//   their median (at most 3 × --system-warmup s), then reads and creates at 1 outstanding; each row
//   after that gets --warmup s before measuring (--seconds s).
// - ZooKeeper's figures are printed next to reference figures measured on this machine with the same
//   client on a warmed ensemble; a ZooKeeper figure more than a third outside them is flagged, and its
//   ratio should not be reported until the difference is explained.
// - Runs alternate (ours, ZooKeeper, ours, ZooKeeper, ...), each on a fresh cluster / ensemble; figures
//   are medians over --runs runs (at least 3 for reported figures); the ratio is ours / ZooKeeper.
//   Server CPU is the user + system time of the three server processes over the measured interval, in
//   cores (1.00 = one core busy).
//
//   npm run bench -- compare-zk [--runs 3 --seconds 3 --warmup 2 --system-warmup 3 --quick]

import {
  allRows,
  CLIENTS,
  CONCURRENCY,
  type CoordDriver,
  DATA,
  type Figures,
  prepare,
  type SystemUnderTest,
  startOurs,
  WORKLOADS,
  workload,
} from "./coord-workloads.ts";
import { machine, publish } from "./results.ts";
import { median, numArg } from "./stats.ts";
import { ZooKeeperEnsemble } from "./zookeeper.ts";

const QUICK = process.argv.includes("--quick");
const RUNS = numArg("runs", QUICK ? 1 : 3);
const SECONDS = numArg("seconds", QUICK ? 1 : 3);
const WARMUP_S = numArg("warmup", QUICK ? 0.5 : 2);
const SYSTEM_WARMUP_S = numArg("system-warmup", QUICK ? 4 : 20);
const WARM_SLICE_S = 2;
/** The warm-up ends when the last three slices are within this fraction of their median. */
const STABLE_WITHIN = 0.1;
/**
 * ZooKeeper 3.8, 3 servers, fsync on, node-zookeeper-client, warmed, on this machine (developers' guide):
 * ops/s ranges and p50 ms. A measured figure more than a third outside its range is flagged.
 */
const ZK_REFERENCE: Record<string, { opsPerSec: [number, number]; p50Ms?: [number, number] }> = {
  "create|64": { opsPerSec: [5000, 11_000] },
  "create|1": { opsPerSec: [600, 1400], p50Ms: [0.6, 1.3] },
};

type Side = "ours" | "zookeeper";
const SIDES: readonly Side[] = ["ours", "zookeeper"];
const NAMES: Record<Side, string> = { ours: "orderer (3 hybrid)", zookeeper: "ZooKeeper 3.8 (3 servers)" };

let live: SystemUnderTest | null = null;
const warmRates: Record<Side, number[][]> = { ours: [], zookeeper: [] };

async function startZooKeeper(): Promise<SystemUnderTest> {
  const zk = await ZooKeeperEnsemble.start();
  const clients: CoordDriver[] = [];
  const stop = async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await zk.stop();
  };
  try {
    for (let i = 0; i < CLIENTS; i++) clients.push(await zk.client(i % 3));
    await prepare(clients[0] as CoordDriver);
    console.log(`  ZooKeeper ensemble up, leader: server ${await zk.leader()}`);
    return { clients, pids: () => zk.pids, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Unmeasured load until the system's throughput is stable (JIT, JVM, caches, LevelDB and ZooKeeper's
 * logs warm on both sides): creates at 64 outstanding in slices until the last three agree, then reads
 * at 64 and creates at 1. Returns the slices' rates.
 */
async function warmSystem(sut: SystemUnderTest, tag: string): Promise<number[]> {
  const rates: number[] = [];
  if (SYSTEM_WARMUP_S <= 0) return rates;
  const o = { warmupS: 0, seconds: WARM_SLICE_S };
  const stable = () => {
    const last = rates.slice(-3);
    const m = median(last);
    return last.length === 3 && last.every((r) => Math.abs(r - m) <= STABLE_WITHIN * m);
  };
  for (let t = 0; t < 3 * SYSTEM_WARMUP_S && (t < SYSTEM_WARMUP_S || !stable()); t += WARM_SLICE_S)
    rates.push((await workload(sut.clients, "create", 64, `${tag}-warm${rates.length}`, o)).opsPerSec);
  await workload(sut.clients, "getData", 64, `${tag}-warm`, o);
  await workload(sut.clients, "create", 1, `${tag}-warm1`, o);
  console.log(
    `  warm-up: creates at 64 outstanding per ${WARM_SLICE_S} s slice: ${rates.map((r) => r.toFixed(0)).join(", ")} ops/s${stable() ? " (stable)" : " (NOT stable)"}`,
  );
  return rates;
}

async function oneRun(side: Side, run: number): Promise<Map<string, Figures>> {
  console.log(`run ${run + 1}/${RUNS}: ${NAMES[side]}`);
  const sut = side === "ours" ? await startOurs() : await startZooKeeper();
  live = sut;
  try {
    warmRates[side].push(await warmSystem(sut, `r${run}`));
    return await allRows(sut, WORKLOADS, `r${run}`, { warmupS: WARMUP_S, seconds: SECONDS });
  } finally {
    live = null;
    await sut.stop();
  }
}

for (const sig of ["SIGINT", "SIGTERM"] as const)
  process.once(sig, () => {
    console.error(`\n${sig}: stopping the system under test`);
    void (live?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  });

async function main(): Promise<void> {
  const m = machine();
  console.log(
    `compare-zk: ${NAMES.ours} vs ${NAMES.zookeeper}, fsync on both, ${RUNS} alternating run(s), ${SECONDS} s per row after ${WARMUP_S} s warm-up; ${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB, Node ${m.node}; ${DATA.length} B values`,
  );
  const runs: Record<Side, Map<string, Figures>[]> = { ours: [], zookeeper: [] };
  for (let r = 0; r < RUNS; r++) for (const side of SIDES) runs[side].push(await oneRun(side, r));

  const med = (side: Side, key: string, f: (x: Figures) => number) =>
    median(runs[side].map((m) => f(m.get(key) as Figures)));
  console.log(
    "\n| operation | outstanding | ours ops/s | ZooKeeper ops/s | ours / ZK | ours p50 / p99 ms | ZK p50 / p99 ms | ours CPU (cores) | ZK CPU (cores) |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|");
  const rows = [];
  for (const k of CONCURRENCY)
    for (const w of WORKLOADS) {
      const key = `${w}|${k}`;
      const side = (s: Side) => ({
        opsPerSec: med(s, key, (f) => f.opsPerSec),
        p50Ms: med(s, key, (f) => f.p50),
        p99Ms: med(s, key, (f) => f.p99),
        serverCores: med(s, key, (f) => f.serverCores),
        runsOpsPerSec: runs[s].map((m) => (m.get(key) as Figures).opsPerSec),
      });
      const ours = side("ours");
      const zk = side("zookeeper");
      const ratio = ours.opsPerSec / zk.opsPerSec;
      rows.push({ operation: w, outstanding: k, ours, zookeeper: zk, ratio });
      console.log(
        `| ${w}${w.startsWith("ephemeral") ? " (pairs)" : ""} | ${k} | ${ours.opsPerSec.toFixed(0)} | ${zk.opsPerSec.toFixed(0)} | ${ratio.toFixed(2)}× | ${ours.p50Ms.toFixed(2)} / ${ours.p99Ms.toFixed(2)} | ${zk.p50Ms.toFixed(2)} / ${zk.p99Ms.toFixed(2)} | ${ours.serverCores.toFixed(2)} | ${zk.serverCores.toFixed(2)} |`,
      );
    }
  // ZooKeeper against its reference figures: a baseline far off them is a problem of this run.
  const checks: { key: string; measured: number; reference: [number, number]; ok: boolean }[] = [];
  console.log("\nZooKeeper against its reference figures (warmed ensemble, this machine, same client):");
  for (const [key, ref] of Object.entries(ZK_REFERENCE)) {
    const opsPerSec = med("zookeeper", key, (f) => f.opsPerSec);
    const p50 = med("zookeeper", key, (f) => f.p50);
    const within = (v: number, [lo, hi]: [number, number]) => v >= (lo * 2) / 3 && v <= (hi * 4) / 3;
    const ok = within(opsPerSec, ref.opsPerSec) && (!ref.p50Ms || within(p50, ref.p50Ms));
    checks.push({ key, measured: opsPerSec, reference: ref.opsPerSec, ok });
    console.log(
      `  ${key.replace("|", " at ")} outstanding: ${opsPerSec.toFixed(0)} ops/s (reference ${ref.opsPerSec[0]}-${ref.opsPerSec[1]})${ref.p50Ms ? `, p50 ${p50.toFixed(2)} ms (reference ${ref.p50Ms[0]}-${ref.p50Ms[1]})` : ""}: ${ok ? "ok" : "MORE THAN A THIRD OFF: explain before reporting the ratio"}`,
    );
  }
  await publish(
    "compare-zk",
    {
      runs: RUNS,
      seconds: SECONDS,
      warmupS: WARMUP_S,
      systemWarmupS: SYSTEM_WARMUP_S,
      valueBytes: DATA.length,
      clients: CLIENTS,
      ours: "3 hybrid replicas, libp2p, LevelDB fsync on",
      zookeeper: "Debian zookeeper 3.8, 3 servers, forceSync=yes, node-zookeeper-client",
      warmSliceS: WARM_SLICE_S,
      warmRates,
      zookeeperReference: checks,
    },
    rows,
  );
}

await main();
