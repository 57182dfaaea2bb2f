// A long saturated run with production timeouts: does anything change views when nothing fails? Each
// mode gets a fresh cluster (3 hybrid or 4 PBFT replicas, each its own process, libp2p, LevelDB with
// fsync) and a closed loop of --outstanding transactions of 100 B kept in flight over WebSocket submit
// streams to every replica (more than the cluster can order at once: it runs saturated) for --minutes.
// Every 10 s it reads each replica's view from /health. The figure that matters is the number of view
// changes: any at all means a correct, merely busy leader was suspected.
//
//   npm run bench -- soak [--minutes 10 --mode hybrid|pbft|both --outstanding 2000 --quick]

import { setTimeout as sleep } from "node:timers/promises";
import type { Mode } from "../src/bft/types.ts";
import { Submitter, startOrdering } from "./ordering-load.ts";
import { publish } from "./results.ts";
import { numArg } from "./stats.ts";

const QUICK = process.argv.includes("--quick");
const MINUTES = numArg("minutes", QUICK ? 1 : 10);
const OUTSTANDING = numArg("outstanding", 2000);
const TX_BYTES = 100;
const SAMPLE_S = 10;
const modeArg = (() => {
  const i = process.argv.indexOf("--mode");
  return i >= 0 ? (process.argv[i + 1] ?? "both") : "both";
})();
const MODES: Mode[] = modeArg === "both" ? ["hybrid", "pbft"] : [modeArg as Mode];
/** The production defaults (DEFAULT_LIMITS), stated: the ordering suite lengthens them, this one must not. */
const LIMITS = { requestTimeoutTicks: 200, viewChangeTimeoutTicks: 200 };

async function views(urls: readonly string[]): Promise<(number | null)[]> {
  return Promise.all(
    urls.map(async (u) => {
      try {
        const r = await fetch(`${u}/health`, { signal: AbortSignal.timeout(2000) });
        return ((await r.json()) as { view: number }).view;
      } catch {
        return null;
      }
    }),
  );
}

async function soak(mode: Mode): Promise<Record<string, unknown>> {
  const cluster = await startOrdering(mode, 1, { limits: LIMITS });
  let s: Submitter | null = null;
  try {
    const start = await views(cluster.urls);
    s = await Submitter.connect(cluster.urls, 2, TX_BYTES);
    s.closedLoop(OUTSTANDING);
    const samples: { t: number; txPerSec: number; views: (number | null)[] }[] = [];
    const t0 = performance.now();
    let last = t0;
    let lastCount = 0;
    while (performance.now() - t0 < MINUTES * 60_000) {
      await sleep(SAMPLE_S * 1000);
      const now = performance.now();
      const count = s.acks.filter((a) => a.ok).length;
      const v = await views(cluster.urls);
      samples.push({
        t: Math.round((now - t0) / 1000),
        txPerSec: ((count - lastCount) * 1000) / (now - last),
        views: v,
      });
      console.log(
        `  ${mode} ${samples.at(-1)?.t} s: ${samples.at(-1)?.txPerSec.toFixed(0)} tx/s, views ${v.join(" ")}`,
      );
      last = now;
      lastCount = count;
    }
    s.stopLoad();
    const end = await views(cluster.urls);
    // Why each replica started its view changes (the events its process reported).
    const reasons: Record<string, number> = {};
    for (const p of cluster.procs)
      for (const e of p.events)
        if (e.kind === "view-change-started") {
          const why = String((e as { reason?: unknown }).reason);
          reasons[why] = (reasons[why] ?? 0) + 1;
        }
    const known = [...start, ...end].filter((v): v is number => v !== null);
    const viewChanges = Math.max(...known) - Math.min(...known);
    const rates = samples.map((x) => x.txPerSec);
    return {
      mode,
      n: cluster.n,
      minutes: MINUTES,
      outstanding: OUTSTANDING,
      viewChanges,
      reasons,
      startViews: start,
      endViews: end,
      meanTxPerSec: rates.reduce((a, b) => a + b, 0) / Math.max(1, rates.length),
      minTxPerSec: Math.min(...rates),
      errors: s.acks.filter((a) => !a.ok).length,
      samples,
    };
  } finally {
    s?.close();
    await cluster.stop();
  }
}

async function main(): Promise<void> {
  console.log(
    `soak: ${MINUTES} min per mode, closed loop of ${OUTSTANDING} transactions of ${TX_BYTES} B outstanding over 2 streams per replica, production timeouts (requestTimeoutTicks ${LIMITS.requestTimeoutTicks}, viewChangeTimeoutTicks ${LIMITS.viewChangeTimeoutTicks}, leaderLinkGraceTicks 5, 10 ms ticks)`,
  );
  const rows: Record<string, unknown>[] = [];
  for (const mode of MODES) rows.push(await soak(mode));
  console.log(
    "\n| mode | minutes | view changes | why (view-change-started events, all replicas) | committed tx/s, mean (lowest 10 s) | errors |",
  );
  console.log("|---|---|---|---|---|---|");
  for (const r of rows)
    console.log(
      `| ${r.mode} (n=${r.n}) | ${r.minutes} | ${r.viewChanges} | ${JSON.stringify(r.reasons)} | ${(r.meanTxPerSec as number).toFixed(0)} (${(r.minTxPerSec as number).toFixed(0)}) | ${r.errors} |`,
    );
  await publish(
    "soak",
    { minutes: MINUTES, outstanding: OUTSTANDING, txBytes: TX_BYTES, limits: LIMITS },
    rows,
  );
}

// A rejection ends the process with its stack and exit code 1; success must exit too (open handles).
await main();
process.exit(0);
