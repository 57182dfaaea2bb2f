// A slow Byzantine leader (a performance attack, as in Aardvark and Prime): per round and mode, a
// correct cluster first (3 hybrid or 4 PBFT replica processes, production timeouts), a closed loop of
// --outstanding transactions of 100 B over the followers' submit streams, its throughput and p50 latency
// measured; then a fresh cluster whose replica 0, the leader of view 0, sends each proposal
// --factor (10) times that p50 after the last (test/integration/slow-leader-node.ts), under the same
// load. Figures: how long after the load started the followers' pace rule (src/bft/leader-pace.ts)
// suspected it, when the new view began, and the committed rate in the new view against the correct
// cluster's (the goal: replaced within 2 s, within 20 % of a correct leader's throughput).
//
//   npm run bench -- slow-leader [--runs 5 --outstanding 8 --factor 10 --mode hybrid|pbft|both --quick]

import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type { Mode } from "../src/bft/types.ts";
import type { NodeProcess } from "../src/node/local-cluster.ts";
import { measure, Submitter, startOrdering } from "./ordering-load.ts";
import { publish } from "./results.ts";
import { median, numArg } from "./stats.ts";

const QUICK = process.argv.includes("--quick");
const RUNS = numArg("runs", QUICK ? 1 : 5);
const OUTSTANDING = numArg("outstanding", 8);
const FACTOR = numArg("factor", 10);
const TX_BYTES = 100;
const WARMUP_S = 3;
const MEASURE_S = QUICK ? 3 : 5;
const modeArg = (() => {
  const i = process.argv.indexOf("--mode");
  return i >= 0 ? (process.argv[i + 1] ?? "both") : "both";
})();
const MODES: Mode[] = modeArg === "both" ? ["hybrid", "pbft"] : [modeArg as Mode];
/** The production defaults, stated (the ordering suite lengthens them; this one must not). */
const LIMITS = { requestTimeoutTicks: 200, viewChangeTimeoutTicks: 200 };
const SLOW_NODE = fileURLToPath(new URL("../test/integration/slow-leader-node.ts", import.meta.url));

interface Round {
  correctTxPerSec: number;
  correctP50: number;
  delayMs: number;
  /** From the start of the load to the first follower's "the leader proposes too slowly". */
  suspectedMs: number;
  /** From the start of the load to the first follower entering the new view. */
  newViewMs: number;
  reasons: string[];
  afterTxPerSec: number;
  afterP50: number;
  ratio: number;
}

async function correct(mode: Mode): Promise<{ txPerSec: number; p50: number }> {
  const cluster = await startOrdering(mode, 1, { limits: LIMITS });
  let s: Submitter | null = null;
  try {
    s = await Submitter.connect(cluster.urls.slice(1), 2, TX_BYTES);
    s.closedLoop(OUTSTANDING);
    const m = await measure(s, cluster, WARMUP_S, MEASURE_S);
    return { txPerSec: m.txPerSec, p50: m.p50 };
  } finally {
    s?.close();
    await cluster.stop();
  }
}

const eventAt = (procs: readonly NodeProcess[], pred: (e: Record<string, unknown>) => boolean) =>
  procs.slice(1).some((p) => p.events.some((e) => pred(e as unknown as Record<string, unknown>)));

async function slow(
  mode: Mode,
  delayMs: number,
): Promise<Omit<Round, "correctTxPerSec" | "correctP50" | "ratio">> {
  const cluster = await startOrdering(mode, 1, {
    limits: LIMITS,
    variant: (id) => (id === 0 ? { script: SLOW_NODE, env: { SLOW_PROPOSAL_MS: String(delayMs) } } : null),
  });
  let s: Submitter | null = null;
  try {
    s = await Submitter.connect(cluster.urls.slice(1), 2, TX_BYTES);
    const t0 = performance.now();
    s.closedLoop(OUTSTANDING);
    let suspectedMs = Number.NaN;
    let newViewMs = Number.NaN;
    while (performance.now() - t0 < 30_000 && Number.isNaN(newViewMs)) {
      await sleep(5);
      const slowly = (e: Record<string, unknown>) =>
        e.kind === "view-change-started" && /too slowly/.test(String(e.reason));
      if (Number.isNaN(suspectedMs) && eventAt(cluster.procs, slowly)) suspectedMs = performance.now() - t0;
      if (eventAt(cluster.procs, (e) => e.kind === "new-view")) newViewMs = performance.now() - t0;
    }
    if (Number.isNaN(newViewMs)) throw new Error(`${mode}: the slow leader was not replaced within 30 s`);
    const reasons = cluster.procs
      .slice(1)
      .flatMap((p) => p.events.filter((e) => e.kind === "view-change-started").map((e) => String(e.reason)));
    const m = await measure(s, cluster, WARMUP_S, MEASURE_S);
    return { delayMs, suspectedMs, newViewMs, reasons, afterTxPerSec: m.txPerSec, afterP50: m.p50 };
  } finally {
    s?.close();
    await cluster.stop();
  }
}

async function main(): Promise<void> {
  console.log(
    `slow-leader: ${RUNS} round(s) per mode; closed loop of ${OUTSTANDING} × ${TX_BYTES} B over 2 streams per follower; replica 0 sends each proposal ${FACTOR} × the correct cluster's p50 after the last; production timeouts (requestTimeoutTicks ${LIMITS.requestTimeoutTicks}, 10 ms ticks)`,
  );
  const rows: Record<string, unknown>[] = [];
  for (const mode of MODES) {
    const rounds: Round[] = [];
    for (let r = 0; r < RUNS; r++) {
      const c = await correct(mode);
      const delayMs = Math.max(20, Math.round(FACTOR * c.p50));
      const x = await slow(mode, delayMs);
      const round = {
        ...x,
        correctTxPerSec: c.txPerSec,
        correctP50: c.p50,
        ratio: x.afterTxPerSec / c.txPerSec,
      };
      rounds.push(round);
      console.log(
        `  ${mode} round ${r + 1}: correct ${c.txPerSec.toFixed(0)} tx/s (p50 ${c.p50.toFixed(1)} ms); slow leader (${delayMs} ms per proposal) suspected after ${x.suspectedMs.toFixed(0)} ms, new view after ${x.newViewMs.toFixed(0)} ms (${[...new Set(x.reasons)].join("; ")}); afterwards ${x.afterTxPerSec.toFixed(0)} tx/s (p50 ${x.afterP50.toFixed(1)} ms) = ${round.ratio.toFixed(2)}×`,
      );
    }
    const med = (f: (r: Round) => number) => median(rounds.map(f));
    rows.push({
      mode,
      runs: RUNS,
      correctTxPerSec: med((r) => r.correctTxPerSec),
      correctP50: med((r) => r.correctP50),
      delayMs: med((r) => r.delayMs),
      suspectedMs: med((r) => r.suspectedMs),
      newViewMs: med((r) => r.newViewMs),
      maxNewViewMs: Math.max(...rounds.map((r) => r.newViewMs)),
      afterTxPerSec: med((r) => r.afterTxPerSec),
      ratio: med((r) => r.ratio),
      minRatio: Math.min(...rounds.map((r) => r.ratio)),
      rounds,
    });
  }
  console.log(
    "\n| mode | correct leader: tx/s (p50 ms) | delay per proposal, ms | suspected after, ms | new view after, ms (max) | tx/s in the new view | vs correct (min) |",
  );
  console.log("|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const n = (k: string, d = 0) => (r[k] as number).toFixed(d);
    console.log(
      `| ${r.mode} | ${n("correctTxPerSec")} (${n("correctP50", 1)}) | ${n("delayMs")} | ${n("suspectedMs")} | ${n("newViewMs")} (${n("maxNewViewMs")}) | ${n("afterTxPerSec")} | ${n("ratio", 2)}× (${n("minRatio", 2)}×) |`,
    );
  }
  await publish(
    "slow-leader",
    { runs: RUNS, outstanding: OUTSTANDING, factor: FACTOR, txBytes: TX_BYTES, limits: LIMITS },
    rows,
  );
}

// A rejection ends the process with its stack and exit code 1; success must exit too (open handles).
await main();
process.exit(0);
