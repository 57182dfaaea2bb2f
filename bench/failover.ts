// Leader failover under load: a fresh cluster per round (3 hybrid or 4 PBFT replica processes, the
// production timeouts: requestTimeoutTicks 200 and viewChangeTimeoutTicks 200 at 10 ms ticks), an
// open-loop load offered to the followers, then the leader is killed with SIGKILL. The figure is the
// time from the kill to the first acknowledged transaction whose block was ordered in a later view
// (read back from a survivor). Also the committed rate in 250 ms buckets around the kill (the plot),
// and how long the longest wait of a transaction offered during the outage was.
//
//   npm run bench -- failover [--runs 5 --rate 200 --quick]

import { setTimeout as sleep } from "node:timers/promises";
import type { Mode } from "../src/bft/types.ts";
import { replicasOf, Submitter, startOrdering } from "./ordering-load.ts";
import { publish } from "./results.ts";
import { median, numArg } from "./stats.ts";

const QUICK = process.argv.includes("--quick");
const RUNS = numArg("runs", QUICK ? 1 : 5);
const RATE = numArg("rate", 200);
const TX_BYTES = 100;
const BEFORE_S = 2;
const AFTER_S = QUICK ? 5 : 7;
const BUCKET_MS = 250;
const LIMITS = { requestTimeoutTicks: 200, viewChangeTimeoutTicks: 200 };

interface Round {
  killToNewViewCommitMs: number;
  killToAnyCommitMs: number;
  oldView: number;
  newView: number;
  leader: number;
  maxLatencyMs: number;
  errors: number;
  /** Committed tx/s per bucket, bucket start relative to the kill in ms. */
  timeline: { t: number; txPerSec: number }[];
}

async function json<T>(url: string): Promise<T> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return (await r.json()) as T;
}

async function round(mode: Mode): Promise<Round> {
  const cluster = await startOrdering(mode, 1, { limits: LIMITS });
  let s: Submitter | null = null;
  try {
    const h = await json<{ view: number; leader: number }>(`${cluster.urls[0]}/health`);
    const survivors = cluster.urls.filter((_, i) => i !== h.leader);
    s = await Submitter.connect(survivors, 2, TX_BYTES);
    s.openLoop(RATE);
    await sleep(BEFORE_S * 1000);
    const tKill = performance.now();
    await (cluster.procs[h.leader] as { kill(): Promise<void> }).kill();
    await sleep(AFTER_S * 1000);
    s.stopLoad();
    await s.drain(10_000);
    const after = s.acks.filter((a) => a.at >= tKill).sort((a, b) => a.at - b.at);
    const firstOk = after.find((a) => a.ok);
    if (!firstOk) throw new Error(`${mode}: nothing committed in the ${AFTER_S} s after the kill`);
    // The first acknowledged block ordered in a later view, read back from a survivor.
    const viewOf = new Map<number, number>();
    let first: { at: number; view: number } | null = null;
    for (const a of after) {
      if (!a.ok) continue;
      if (!viewOf.has(a.block))
        viewOf.set(
          a.block,
          (await json<{ metadata: { view: number } }>(`${survivors[0]}/v1/blocks/${a.block}`)).metadata.view,
        );
      const view = viewOf.get(a.block) as number;
      if (view > h.view) {
        first = { at: a.at, view };
        break;
      }
    }
    if (!first)
      throw new Error(`${mode}: no commit in a view after ${h.view} within ${AFTER_S} s of the kill`);
    const timeline: { t: number; txPerSec: number }[] = [];
    for (let t = -BEFORE_S * 1000 + BUCKET_MS; t < AFTER_S * 1000; t += BUCKET_MS) {
      const n = s.acks.filter((a) => a.ok && a.at >= tKill + t && a.at < tKill + t + BUCKET_MS).length;
      timeline.push({ t, txPerSec: (n * 1000) / BUCKET_MS });
    }
    return {
      killToNewViewCommitMs: first.at - tKill,
      killToAnyCommitMs: firstOk.at - tKill,
      oldView: h.view,
      newView: first.view,
      leader: h.leader,
      maxLatencyMs: Math.max(...s.acks.filter((a) => a.ok).map((a) => a.latency)),
      errors: s.acks.filter((a) => !a.ok).length,
      timeline,
    };
  } finally {
    s?.close();
    await cluster.stop();
  }
}

async function main(): Promise<void> {
  console.log(
    `failover bench: ${RATE} tx/s of ${TX_BYTES} B offered open loop to the followers; leader SIGKILLed after ${BEFORE_S} s, load kept ${AFTER_S} s more; requestTimeoutTicks ${LIMITS.requestTimeoutTicks} and viewChangeTimeoutTicks ${LIMITS.viewChangeTimeoutTicks} at 10 ms ticks; ${RUNS} round(s) per mode, each a fresh cluster, modes alternating`,
  );
  const rounds = new Map<Mode, Round[]>();
  for (let r = 0; r < RUNS; r++)
    for (const mode of ["hybrid", "pbft"] as Mode[]) {
      const x = await round(mode);
      rounds.set(mode, [...(rounds.get(mode) ?? []), x]);
      console.log(
        `  ${mode} round ${r + 1}: leader ${x.leader} killed; first commit in view ${x.newView} after ${x.killToNewViewCommitMs.toFixed(0)} ms (any commit after ${x.killToAnyCommitMs.toFixed(0)} ms); longest wait ${x.maxLatencyMs.toFixed(0)} ms; ${x.errors} errors`,
      );
    }
  const rows: Record<string, unknown>[] = [];
  console.log(
    "\n| mode | kill → first commit in the new view, median (min–max) ms | above the 2 000 ms request timeout | longest wait of a transaction, median ms | errors |",
  );
  console.log("|---|---|---|---|---|");
  for (const [mode, xs] of rounds) {
    const times = xs.map((x) => x.killToNewViewCommitMs);
    const med = median(times);
    const row = {
      mode,
      n: replicasOf(mode, 1),
      rate: RATE,
      killToNewViewCommitMs: med,
      minMs: Math.min(...times),
      maxMs: Math.max(...times),
      roundsMs: times,
      maxLatencyMs: median(xs.map((x) => x.maxLatencyMs)),
      errors: xs.reduce((a, x) => a + x.errors, 0),
      // The median round's timeline, for the plot.
      timeline: (xs.find((x) => x.killToNewViewCommitMs === med) ?? xs[0])?.timeline ?? [],
    };
    rows.push(row);
    console.log(
      `| ${mode} (n=${row.n}) | ${med.toFixed(0)} (${row.minMs.toFixed(0)}–${row.maxMs.toFixed(0)}) | ${(med - LIMITS.requestTimeoutTicks * 10).toFixed(0)} | ${row.maxLatencyMs.toFixed(0)} | ${row.errors} |`,
    );
  }
  const settings = {
    runs: RUNS,
    rate: RATE,
    txBytes: TX_BYTES,
    beforeS: BEFORE_S,
    afterS: AFTER_S,
    bucketMs: BUCKET_MS,
    limits: LIMITS,
    tickMs: 10,
  };
  await publish("failover", settings, rows);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
