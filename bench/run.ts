// `npm run bench -- <suite> [options]` runs one benchmark suite; `npm run bench -- all` runs every suite
// in turn (options are passed to each). Each suite prints its table and appends its results to
// bench/results/<suite>.jsonl (see results.ts) and draws its charts to bench/plots/ (see plots.ts);
// `npm run bench -- plot` redraws every chart from the latest results without running anything.

import { spawnSync } from "node:child_process";
import { join } from "node:path";

const SUITES: Record<string, { file: string; what: string }> = {
  "compare-zk": {
    file: "compare-zk.ts",
    what: "coordination workloads against a 3-server Apache ZooKeeper 3.8 ensemble, side by side",
  },
  coord: { file: "coord.ts", what: "coordination workloads on 3 hybrid replicas" },
  breakdown: {
    file: "breakdown.ts",
    what: "one transaction at a time: time spent in each stage of the write path",
  },
  ordering: { file: "ordering.ts", what: "committed tx/s and submit-to-commit latency, hybrid and pbft" },
  scaling: { file: "scaling.ts", what: "throughput, latency and CPU per tx against n and batch size" },
  failover: { file: "failover.ts", what: "leader killed under load → first commit in the new view" },
  "slow-leader": {
    file: "slow-leader.ts",
    what: "a leader that proposes 10× slower than normal: time to replace it, throughput afterwards",
  },
  soak: {
    file: "soak.ts",
    what: "minutes of saturation with production timeouts: view changes (should be 0)",
  },
  transport: { file: "transport.ts", what: "TCP, UNIX socket, libp2p, rdma, memory; cluster over rdma" },
  core: { file: "core.ts", what: "the pure BFT core in one process" },
  memory: { file: "memory.ts", what: "peak replica memory under 2 MiB transactions and reading every block" },
};

const [suite, ...args] = process.argv.slice(2);
// --counter in-process: hybrid replicas certify with a counter inside their own process, to measure
// what the counter process costs (src/counter/in-process.ts; never a configuration to run).
const counterAt = args.indexOf("--counter");
const counterKind = counterAt >= 0 ? args[counterAt + 1] : "process";
if (counterKind !== "process" && counterKind !== "in-process") {
  console.error('--counter is "process" (default) or "in-process"');
  process.exit(2);
}
const rest = counterAt >= 0 ? args.filter((_, i) => i !== counterAt && i !== counterAt + 1) : args;
if (suite === "plot") {
  const { PLOTTED_SUITES, renderSuite } = await import("./plots.ts");
  for (const s of PLOTTED_SUITES()) for (const f of await renderSuite(s)) console.log(`plot: ${f}`);
  process.exit(0);
}
if (!suite || !(suite === "all" || suite in SUITES)) {
  console.error(
    "usage: npm run bench -- <suite> [options]  |  npm run bench -- all [options]  |  npm run bench -- plot\n\nsuites:",
  );
  for (const [name, s] of Object.entries(SUITES)) console.error(`  ${name.padEnd(12)} ${s.what}`);
  process.exit(2);
}
let failed = 0;
for (const name of suite === "all" ? Object.keys(SUITES) : [suite]) {
  const s = SUITES[name] as { file: string };
  console.log(`\n=== bench ${name} ===`);
  const r = spawnSync(process.execPath, ["--import", "tsx", join(import.meta.dirname, s.file), ...rest], {
    stdio: "inherit",
    env: counterKind === "in-process" ? { ...process.env, ORDERER_BENCH_COUNTER: "in-process" } : process.env,
  });
  if (r.status !== 0) {
    console.error(`bench ${name} failed (${r.status ?? r.signal})`);
    failed++;
  }
}
process.exit(failed === 0 ? 0 : 1);
