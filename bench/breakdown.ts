// Latency breakdown of the write path: one transaction at a time through a real cluster (replica
// processes, libp2p, LevelDB with fsync, the trusted counter processes in hybrid mode), with every
// replica marking when the transaction or its batch passes each stage (src/util/trace.ts, on with
// ORDERER_TRACE=1). Prints the median and p90 time spent in each stage, for a transaction submitted to
// the leader and one submitted to a follower, medians over the runs.
//
//   npm run bench -- breakdown [--runs 3 --txs 300 --mode hybrid|pbft --size 100]

import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import type { Mode } from "../src/bft/types.ts";
import { monotonicUs, type TraceMark } from "../src/util/trace.ts";
import { startOrdering } from "./ordering-load.ts";
import { publish } from "./results.ts";
import { median, numArg, pct } from "./stats.ts";

const RUNS = numArg("runs", 3);
const TXS = numArg("txs", 300);
const WARMUP_TXS = 100;
const SIZE = numArg("size", 100);
const modeArg = process.argv.indexOf("--mode");
const MODE: Mode = modeArg >= 0 && process.argv[modeArg + 1] === "pbft" ? "pbft" : "hybrid";

/** The stages of the table: [label, from-stage, to-stage]; each `from` is where the previous row ended. */
const ROWS = [
  ["client → API (WebSocket)", "sent", "received"],
  ["gateway: batch, sign, propose", "received", "proposed"],
  ["leader: batch, certify, send PREPARE", "proposed", "prepare-sent"],
  ["followers: verify, certify, send COMMIT", "prepare-sent", "commit-sent"],
  ["commit quorum at the entry replica", "commit-sent", "committed"],
  ["build the block (tx ids, Merkle tree)", "committed", "prepared"],
  ["write it (fsync)", "prepared", "written"],
  ["certify the block (signature round, write)", "written", "certified"],
  ["receipt (proof, certificate)", "certified", "replied"],
  ["API → client", "replied", "acked"],
] as const;

/** Inside one follower (not the entry replica): from the leader's PREPARE to its own COMMIT on the wire. */
const FOLLOWER_ROWS = [
  ["  ↳ leader → follower (transport)", "prepare-sent", "f-received"],
  ["  ↳ core: verify, certify the COMMIT (counter)", "f-received", "f-handled"],
  ["  ↳ wait for the host to take the Ready", "f-handled", "f-ready"],
  ["  ↳ hand the COMMIT to the transport (before the Ready's write)", "f-ready", "f-sent"],
] as const;

type Times = Record<string, number>;

/** Sends TXS + warm-up transactions one at a time to `url`; client send/ack times per transaction. */
async function oneAtATime(
  url: string,
  count: number,
): Promise<{ tx: string; block: number; sent: number; acked: number }[]> {
  const ws = new WebSocket(`${url.replace("http", "ws")}/v1/submit`);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  const out: { tx: string; block: number; sent: number; acked: number }[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const frame = Buffer.alloc(4 + SIZE, 0x62);
      frame.writeUInt32BE(i, 0);
      frame.writeUInt32BE(i, 4);
      frame.writeDoubleBE(performance.now(), 8);
      const acked = new Promise<{ ok: boolean; receipt?: { txId: string; block: number } }>((resolve) =>
        ws.once("message", (d: Buffer) => resolve(JSON.parse(String(d)))),
      );
      const sent = monotonicUs();
      ws.send(frame);
      const m = await acked;
      const at = monotonicUs();
      if (!m.ok || !m.receipt) throw new Error(`submission failed: ${JSON.stringify(m)}`);
      out.push({ tx: m.receipt.txId, block: m.receipt.block, sent, acked: at });
    }
  } finally {
    ws.terminate();
  }
  return out;
}

/** Per transaction, the time of each stage (µs), from the client's times and the replicas' marks. */
function stageTimes(
  txs: readonly { tx: string; block: number; sent: number; acked: number }[],
  marks: readonly TraceMark[][],
  entry: number,
  leader: number,
): Times[] {
  const at = (r: number, stage: string, key: string | number): number | undefined =>
    index[r]?.get(`${stage}:${key}`);
  const index = marks.map((ms) => {
    const m = new Map<string, number>();
    // The first mark of a stage counts (a retransmitted message is marked again).
    for (const x of ms) if (!m.has(`${x.stage}:${x.key}`)) m.set(`${x.stage}:${x.key}`, x.at);
    return m;
  });
  const out: Times[] = [];
  const follower = [1, 2].find((r) => r !== entry && r !== leader) as number;
  for (const t of txs) {
    // The first COMMIT sent by a replica other than the leader (hybrid: the leader's PREPARE is its vote).
    const commits = marks
      .map((_, r) => (r === leader && MODE === "hybrid" ? undefined : at(r, "commit-sent", t.block)))
      .filter((x): x is number => x !== undefined);
    const row: Times = {
      sent: t.sent,
      received: at(entry, "received", t.tx) ?? Number.NaN,
      proposed: at(entry, "proposed", t.tx) ?? Number.NaN,
      "prepare-sent": at(leader, "prepare-sent", t.block) ?? Number.NaN,
      "commit-sent": commits.length > 0 ? Math.min(...commits) : Number.NaN,
      committed: at(entry, "committed", t.block) ?? Number.NaN,
      prepared: at(entry, "prepared", t.block) ?? Number.NaN,
      written: at(entry, "written", t.block) ?? Number.NaN,
      certified: at(entry, "certified", t.block) ?? Number.NaN,
      replied: at(entry, "replied", t.tx) ?? Number.NaN,
      acked: t.acked,
      "f-received": at(follower, "prepare-received", t.block) ?? Number.NaN,
      "f-handled": at(follower, "prepare-handled", t.block) ?? Number.NaN,
      "f-ready": at(follower, "commit-ready", t.block) ?? Number.NaN,
      "f-sent": at(follower, "commit-sent", t.block) ?? Number.NaN,
    };
    if (Object.values(row).every(Number.isFinite)) out.push(row);
  }
  return out;
}

interface Summary {
  entry: "leader" | "follower";
  stage: string;
  p50Us: number;
  p90Us: number;
}

async function run(): Promise<Summary[]> {
  process.env.ORDERER_TRACE = "1";
  const cluster = await startOrdering(MODE, 1);
  const out: Summary[] = [];
  try {
    const leader = 0;
    for (const [entry, replica] of [
      ["leader", leader],
      ["follower", 1],
    ] as const) {
      await oneAtATime(cluster.urls[replica] as string, WARMUP_TXS);
      await sleep(200);
      for (const p of cluster.procs) await p.request("trace");
      const txs = await oneAtATime(cluster.urls[replica] as string, TXS);
      await sleep(200);
      const marks = await Promise.all(
        cluster.procs.map((p) => p.request<{ marks: TraceMark[] }>("trace").then((m) => m.marks)),
      );
      const rows = stageTimes(txs, marks, replica, leader);
      if (rows.length < txs.length / 2)
        throw new Error(`only ${rows.length} of ${txs.length} transactions have every stage marked`);
      for (const [label, from, to] of [
        ...ROWS,
        ["total (client send → ack)", "sent", "acked"] as const,
        ...FOLLOWER_ROWS,
      ]) {
        const d = rows.map((r) => (r[to] as number) - (r[from] as number)).sort((a, b) => a - b);
        out.push({ entry, stage: label, p50Us: pct(d, 0.5), p90Us: pct(d, 0.9) });
      }
    }
  } finally {
    await cluster.stop();
  }
  return out;
}

async function main(): Promise<void> {
  console.log(
    `latency breakdown: ${MODE} n=${MODE === "hybrid" ? 3 : 4}, ${SIZE} B transactions one at a time over one WebSocket stream, ${WARMUP_TXS} warm-up + ${TXS} measured per entry replica; ${RUNS} run(s), each a fresh cluster; fsync on`,
  );
  const runs: Summary[][] = [];
  for (let r = 0; r < RUNS; r++) {
    console.log(`run ${r + 1}/${RUNS}`);
    runs.push(await run());
  }
  const rows: Record<string, unknown>[] = [];
  for (const entry of ["leader", "follower"] as const) {
    console.log(`\nsubmitted to the ${entry}:\n\n| stage | p50 µs | p90 µs |\n|---|---|---|`);
    for (const s of runs[0]?.filter((x) => x.entry === entry) ?? []) {
      const same = runs.flatMap((rr) => rr.filter((x) => x.entry === entry && x.stage === s.stage));
      const row = {
        mode: MODE,
        entry,
        stage: s.stage,
        p50Us: median(same.map((x) => x.p50Us)),
        p90Us: median(same.map((x) => x.p90Us)),
        runs: same.length,
      };
      rows.push(row);
      console.log(`| ${row.stage} | ${row.p50Us.toFixed(0)} | ${row.p90Us.toFixed(0)} |`);
    }
  }
  await publish(
    "breakdown",
    { runs: RUNS, txs: TXS, warmupTxs: WARMUP_TXS, size: SIZE, mode: MODE, fsync: true },
    rows,
  );
}

await main();
process.exit(0);
