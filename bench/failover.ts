// Leader failover under load: a fresh cluster per round (3 hybrid or 4 PBFT replica processes, the
// production timeouts: requestTimeoutTicks 200 and viewChangeTimeoutTicks 200 at 10 ms ticks), an
// open-loop load offered to the followers, then the leader is killed with SIGKILL. The figure is the
// time from the kill to the first acknowledged transaction whose block was ordered in a later view
// (read back from a survivor). Also the committed rate in 250 ms buckets around the kill (the plot),
// and how long the longest wait of a transaction offered during the outage was.
// Side by side, unless --no-zk: a 3-server ZooKeeper 3.8 ensemble (as in compare-zk) under the same
// offered rate of 100 B creates from sessions on the two followers (each session may move to either
// follower, 50 ms reconnect delay), its leader killed the same way; there the figure is the time from
// the kill to the first successful create that was sent after the kill (the old leader, being dead,
// cannot have committed it).
//
//   npm run bench -- failover [--runs 5 --rate 200 --quick --no-zk]

import { setTimeout as sleep } from "node:timers/promises";
import type { Mode } from "../src/bft/types.ts";
import type { CoordDriver } from "./coord-workloads.ts";
import { type Ack, MAX_OUTSTANDING, replicasOf, Submitter, startOrdering } from "./ordering-load.ts";
import { publish } from "./results.ts";
import { median, numArg } from "./stats.ts";
import { ZooKeeperEnsemble } from "./zookeeper.ts";

const QUICK = process.argv.includes("--quick");
const RUNS = numArg("runs", QUICK ? 1 : 5);
const RATE = numArg("rate", 200);
const TX_BYTES = 100;
const BEFORE_S = 2;
const AFTER_S = QUICK ? 5 : 7;
const BUCKET_MS = 250;
const LIMITS = { requestTimeoutTicks: 200, viewChangeTimeoutTicks: 200 };
const WITH_ZK = !process.argv.includes("--no-zk");
const ZK_SESSIONS = 4;

type System = Mode | "zookeeper";

interface Round {
  killToNewViewCommitMs: number;
  killToAnyCommitMs: number;
  /** Views before and after (ours); null for ZooKeeper, whose epoch the client does not see. */
  oldView: number | null;
  newView: number | null;
  leader: number;
  maxLatencyMs: number;
  errors: number;
  /** Acknowledged transactions missing from a survivor's chain (at the block their receipt named). */
  lost: number;
  /** Committed tx/s per bucket, bucket start relative to the kill in ms. */
  timeline: { t: number; txPerSec: number }[];
}

/** Committed per second in BUCKET_MS buckets from BEFORE_S before the kill to AFTER_S after it. */
function timelineOf(acks: readonly Ack[], tKill: number): { t: number; txPerSec: number }[] {
  const timeline: { t: number; txPerSec: number }[] = [];
  for (let t = -BEFORE_S * 1000 + BUCKET_MS; t < AFTER_S * 1000; t += BUCKET_MS) {
    const n = acks.filter((a) => a.ok && a.at >= tKill + t && a.at < tKill + t + BUCKET_MS).length;
    timeline.push({ t, txPerSec: (n * 1000) / BUCKET_MS });
  }
  return timeline;
}

/**
 * Acknowledged transactions that a survivor's chain does not hold where their receipt said: every
 * survivor is asked for every block a receipt named (a transaction's first 4 bytes are its number).
 */
async function lostAcks(survivors: readonly string[], acks: readonly Ack[]): Promise<number> {
  let lost = 0;
  for (const url of survivors) {
    const byBlock = new Map<number, Set<number>>();
    for (const a of acks) {
      if (!a.ok) continue;
      let txs = byBlock.get(a.block);
      if (!txs) {
        const b = await json<{ entries: string[] }>(`${url}/v1/blocks/${a.block}`).catch(() => ({
          entries: [],
        }));
        txs = new Set(b.entries.map((e) => Buffer.from(e, "base64").readUInt32BE(0)));
        byBlock.set(a.block, txs);
      }
      if (!txs.has(a.tx)) lost++;
    }
  }
  return lost;
}

const longestWait = (acks: readonly Ack[]) => Math.max(...acks.filter((a) => a.ok).map((a) => a.latency));

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
    return {
      killToNewViewCommitMs: first.at - tKill,
      killToAnyCommitMs: firstOk.at - tKill,
      oldView: h.view,
      newView: first.view,
      leader: h.leader,
      maxLatencyMs: longestWait(s.acks),
      errors: s.acks.filter((a) => !a.ok).length,
      lost: await lostAcks(survivors, s.acks),
      timeline: timelineOf(s.acks, tKill),
    };
  } finally {
    s?.close();
    await cluster.stop();
  }
}

/** Acknowledged creates whose znode a survivor does not have. */
async function lostZnodes(zk: CoordDriver, acks: readonly Ack[]): Promise<number> {
  let lost = 0;
  const ok = acks.filter((a) => a.ok);
  for (let i = 0; i < ok.length; i += 64)
    await Promise.all(
      ok.slice(i, i + 64).map((a) =>
        zk.getData(`/failover/n${a.tx}`).catch(() => {
          lost++;
        }),
      ),
    );
  return lost;
}

/** The same open-loop load and kill against a 3-server ZooKeeper ensemble. */
async function zkRound(): Promise<Round> {
  const zk = await ZooKeeperEnsemble.start();
  const clients: CoordDriver[] = [];
  try {
    const leader = await zk.leader();
    const followers = [0, 1, 2].filter((i) => i !== leader);
    for (let i = 0; i < ZK_SESSIONS; i++)
      clients.push(await zk.client(followers[i % 2] as number, { servers: followers, spinDelayMs: 50 }));
    await (clients[0] as CoordDriver).create("/failover", "");
    const data = "x".repeat(TX_BYTES);
    const acks: (Ack & { dueAt: number })[] = [];
    let outstanding = 0;
    let due = 0;
    let running = true;
    const t0 = performance.now();
    const tick = () => {
      if (!running) return;
      const target = Math.floor(((performance.now() - t0) * RATE) / 1000);
      for (; due < target; due++) {
        if (outstanding >= MAX_OUTSTANDING) continue;
        const dueAt = t0 + (due * 1000) / RATE;
        outstanding++;
        const record = (ok: boolean) => {
          outstanding--;
          const at = performance.now();
          acks.push({ tx: n, at, latency: at - dueAt, ok, block: -1, dueAt });
        };
        const n = due;
        (clients[due % ZK_SESSIONS] as CoordDriver).create(`/failover/n${n}`, data).then(
          () => record(true),
          () => record(false),
        );
      }
      setTimeout(tick, 1);
    };
    tick();
    await sleep(BEFORE_S * 1000);
    const tKill = performance.now();
    await zk.kill(leader);
    await sleep(AFTER_S * 1000);
    running = false;
    for (const end = performance.now() + 10_000; outstanding > 0 && performance.now() < end; )
      await sleep(20);
    const after = acks.filter((a) => a.ok && a.at >= tKill).sort((a, b) => a.at - b.at);
    const first = after.find((a) => a.dueAt >= tKill);
    if (!first) throw new Error(`zookeeper: no create sent after the kill succeeded within ${AFTER_S} s`);
    return {
      killToNewViewCommitMs: first.at - tKill,
      killToAnyCommitMs: (after[0] as Ack).at - tKill,
      oldView: null,
      newView: null,
      leader,
      maxLatencyMs: longestWait(acks),
      errors: acks.filter((a) => !a.ok).length,
      lost: await lostZnodes(clients[0] as CoordDriver, acks),
      timeline: timelineOf(acks, tKill),
    };
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await zk.stop();
  }
}

async function main(): Promise<void> {
  console.log(
    `failover bench: ${RATE} tx/s of ${TX_BYTES} B offered open loop to the followers; leader SIGKILLed after ${BEFORE_S} s, load kept ${AFTER_S} s more; requestTimeoutTicks ${LIMITS.requestTimeoutTicks} and viewChangeTimeoutTicks ${LIMITS.viewChangeTimeoutTicks} at 10 ms ticks; ${RUNS} round(s) per mode, each a fresh cluster, modes alternating`,
  );
  const systems: System[] = ["hybrid", "pbft", ...(WITH_ZK ? (["zookeeper"] as const) : [])];
  const rounds = new Map<System, Round[]>();
  for (let r = 0; r < RUNS; r++)
    for (const sys of systems) {
      const x = sys === "zookeeper" ? await zkRound() : await round(sys);
      rounds.set(sys, [...(rounds.get(sys) ?? []), x]);
      const what =
        x.newView === null
          ? "first create sent after the kill committed"
          : `first commit in view ${x.newView}`;
      console.log(
        `  ${sys} round ${r + 1}: leader ${x.leader} killed; ${what} after ${x.killToNewViewCommitMs.toFixed(0)} ms (any commit after ${x.killToAnyCommitMs.toFixed(0)} ms); longest wait ${x.maxLatencyMs.toFixed(0)} ms; ${x.errors} errors; ${x.lost} acknowledged but lost`,
      );
    }
  const rows: Record<string, unknown>[] = [];
  console.log(
    "\n| system | kill → first commit in the new view, median (min–max) ms | vs ZooKeeper | longest wait of a transaction, median ms | errors (all rounds) | acknowledged but lost (all rounds) |",
  );
  console.log("|---|---|---|---|---|---|");
  const zkTimes = rounds.get("zookeeper")?.map((x) => x.killToNewViewCommitMs);
  const zkMedian = zkTimes ? median(zkTimes) : Number.NaN;
  for (const [mode, xs] of rounds) {
    const times = xs.map((x) => x.killToNewViewCommitMs);
    const med = median(times);
    const row = {
      mode,
      n: mode === "zookeeper" ? 3 : replicasOf(mode, 1),
      rate: RATE,
      killToNewViewCommitMs: med,
      vsZooKeeper: med / zkMedian,
      minMs: Math.min(...times),
      maxMs: Math.max(...times),
      roundsMs: times,
      maxLatencyMs: median(xs.map((x) => x.maxLatencyMs)),
      errors: xs.reduce((a, x) => a + x.errors, 0),
      lost: xs.reduce((a, x) => a + x.lost, 0),
      // The median round's timeline, for the plot.
      timeline: (xs.find((x) => x.killToNewViewCommitMs === med) ?? xs[0])?.timeline ?? [],
    };
    rows.push(row);
    console.log(
      `| ${mode} (n=${row.n}) | ${med.toFixed(0)} (${row.minMs.toFixed(0)}–${row.maxMs.toFixed(0)}) | ${Number.isNaN(row.vsZooKeeper) ? "–" : `${row.vsZooKeeper.toFixed(2)}×`} | ${row.maxLatencyMs.toFixed(0)} | ${row.errors} | ${row.lost} |`,
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
    zookeeper: WITH_ZK
      ? `Debian zookeeper 3.8, 3 servers, forceSync=yes, tickTime 2000, ${ZK_SESSIONS} node-zookeeper-client sessions on the followers, spinDelay 50 ms`
      : null,
  };
  await publish("failover", settings, rows);
}

// A rejection ends the process with its stack and exit code 1; success must exit too (open handles).
await main();
process.exit(0);
