// Ordering service throughput and latency: committed tx/s and submit-to-commit (certified receipt)
// p50/p99 for 3 hybrid replicas and 4 PBFT replicas, transactions of 100 B and 1 KiB, each replica in its
// own process (libp2p, LevelDB with fsync, uWebSockets.js). The load comes from pipelined WebSocket
// submit streams spread over the replicas (closed loop: a fixed number of transactions outstanding).
// Also: Merkle root and header hashing with node:crypto vs @noble/hashes (the server's choice).
//
//   npm run bench:ordering [-- --runs 3 --seconds 5 --outstanding 1024 --quick --only hybrid:100]
//   ORDERER_CPU_PROF=DIR profiles every replica process (node --cpu-prof)

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import type { Mode } from "../src/bft/types.ts";
import { sha256 } from "../src/crypto/node-crypto.ts";
import { localCluster, NodeProcess } from "../src/node/local-cluster.ts";
import { merkleRoot, nobleHash } from "../src/ordering/block.ts";
import { median, numArg, pct } from "./stats.ts";

const QUICK = process.argv.includes("--quick");
const RUNS = numArg("runs", QUICK ? 1 : 3);
const SECONDS = numArg("seconds", QUICK ? 2 : 5);
const WARMUP_S = 1;
const OUTSTANDING = numArg("outstanding", 1024);
const STREAMS_PER_REPLICA = 2;
const MAX_MESSAGE_COUNT = 500;

interface RunResult {
  txPerSec: number;
  p50: number;
  p99: number;
  txPerBlock: number;
}

async function chainHeight(url: string): Promise<number> {
  const r = (await (await fetch(`${url}/v1/chain`)).json()) as { height: number };
  return r.height;
}

async function run(mode: Mode, size: number): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), "orderer-bench-"));
  const lc = await localCluster(mode, 1, dir, {
    batch: { maxMessageCount: MAX_MESSAGE_COUNT, batchTimeoutMs: 10 },
    node: { limits: { requestTimeoutTicks: 500, viewChangeTimeoutTicks: 500 } },
  });
  const procs = lc.nodes.map((n) => new NodeProcess(lc.cluster, n));
  try {
    await Promise.all(procs.map((p) => p.start()));
    await sleep(500);
    const streams: WebSocket[] = [];
    for (const url of lc.urls)
      for (let i = 0; i < STREAMS_PER_REPLICA; i++) {
        const ws = new WebSocket(`${url.replace("http", "ws")}/v1/submit`);
        await new Promise((r, j) => {
          ws.once("open", r);
          ws.once("error", j);
        });
        streams.push(ws);
      }
    const perStream = Math.max(1, Math.floor(OUTSTANDING / streams.length));
    let counter = 0;
    let measuring = false;
    let stop = false;
    let acked = 0;
    let errors = 0;
    const lat: number[] = [];
    const payload = Buffer.alloc(size, 0x61);
    const sentAt = new Map<number, number>();
    const sendOne = (ws: WebSocket) => {
      const id = counter++;
      const frame = Buffer.alloc(4 + size);
      frame.writeUInt32BE(id >>> 0, 0);
      payload.copy(frame, 4);
      frame.writeUInt32BE(id >>> 0, 4); // unique transaction bytes
      sentAt.set(id, performance.now());
      ws.send(frame);
    };
    for (const ws of streams) {
      ws.on("message", (d: Buffer) => {
        const m = JSON.parse(String(d)) as { id: number; ok: boolean };
        const t = sentAt.get(m.id);
        sentAt.delete(m.id);
        if (measuring && t !== undefined) {
          if (m.ok) {
            acked++;
            lat.push(performance.now() - t);
          } else errors++;
        }
        if (!stop) sendOne(ws);
      });
      for (let i = 0; i < perStream; i++) sendOne(ws);
    }
    await sleep(WARMUP_S * 1000);
    const h0 = await chainHeight(lc.urls[0] as string);
    measuring = true;
    const t0 = performance.now();
    const acked0 = acked;
    await sleep(SECONDS * 1000);
    measuring = false;
    const secs = (performance.now() - t0) / 1000;
    const done = acked - acked0;
    const h1 = await chainHeight(lc.urls[0] as string);
    stop = true;
    for (const ws of streams) ws.close();
    if (errors > 0) console.log(`  (${errors} submissions failed during the measurement)`);
    lat.sort((a, b) => a - b);
    return {
      txPerSec: done / secs,
      p50: pct(lat, 0.5),
      p99: pct(lat, 0.99),
      txPerBlock: done / Math.max(1, h1 - h0),
    };
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

function hashingBench(): void {
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
}

async function main(): Promise<void> {
  console.log(
    `ordering bench: ${RUNS} run(s) per row, ${SECONDS} s measured after ${WARMUP_S} s warm-up, ${OUTSTANDING} tx outstanding over ${STREAMS_PER_REPLICA} WebSocket streams per replica; maxMessageCount ${MAX_MESSAGE_COUNT}, batchTimeout 10 ms, fsync on; all processes on this machine`,
  );
  hashingBench();
  const rows: string[] = [];
  for (const [mode, n] of [
    ["hybrid", 3],
    ["pbft", 4],
  ] as const) {
    for (const size of [100, 1024]) {
      const only = process.argv.indexOf("--only");
      if (only >= 0 && process.argv[only + 1] !== `${mode}:${size}`) continue;
      const results: RunResult[] = [];
      for (let r = 0; r < RUNS; r++) results.push(await run(mode, size));
      const row = [
        `${mode} (n=${n})`,
        `${size} B`,
        median(results.map((x) => x.txPerSec)).toFixed(0),
        median(results.map((x) => x.p50)).toFixed(1),
        median(results.map((x) => x.p99)).toFixed(1),
        median(results.map((x) => x.txPerBlock)).toFixed(1),
        results.map((x) => x.txPerSec.toFixed(0)).join(" / "),
      ];
      rows.push(`| ${row.join(" | ")} |`);
      console.log(rows[rows.length - 1]);
    }
  }
  console.log(
    "\n| mode | tx size | committed tx/s (median) | p50 ms | p99 ms | tx per block | runs (tx/s) |",
  );
  console.log("|---|---|---|---|---|---|---|");
  for (const r of rows) console.log(r);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
