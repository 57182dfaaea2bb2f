// The coordination workloads shared by bench/coord.ts (our replicas alone) and bench/compare-zk.ts
// (side by side with ZooKeeper): create, setData (100 B), getData and ephemeral create+delete, closed
// loop at 1 and 64 operations outstanding (1 client; 8 clients with 8 outstanding each), warm-up first.
// Both sides are driven through the same small client interface.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CoordClient, CreateMode } from "../src/coord/client.ts";
import { generateEd25519KeyPair, signEd25519 } from "../src/crypto/node-crypto.ts";
import { localCluster, NodeProcess } from "../src/node/local-cluster.ts";
import { cpuSeconds } from "./results.ts";
import { pct } from "./stats.ts";

export type Workload = "create" | "setData" | "getData" | "ephemeral create+delete";
export const WORKLOADS: readonly Workload[] = ["create", "setData", "getData", "ephemeral create+delete"];
export const CONCURRENCY: readonly number[] = [1, 64];
export const CLIENTS = 8;
export const DATA = "x".repeat(100);
const KEYS = 64;

/** What a workload needs from a coordination client (ours or a ZooKeeper client). */
export interface CoordDriver {
  /** Creates a node (persistent or ephemeral) and returns its path. */
  create(path: string, data: string, ephemeral?: boolean): Promise<string>;
  setData(path: string, data: string): Promise<void>;
  getData(path: string): Promise<void>;
  delete(path: string): Promise<void>;
  close(): Promise<void>;
}

export interface Figures {
  readonly opsPerSec: number;
  readonly p50: number;
  readonly p99: number;
  /** CPU the servers used while measuring, in cores (CPU seconds per second); NaN when not measured. */
  readonly serverCores: number;
}

export interface LoopOptions {
  readonly warmupS: number;
  readonly seconds: number;
  /** Server processes whose CPU use is measured over the measured interval. */
  readonly serverPids?: () => readonly number[];
}

const cpuOf = (pids: readonly number[]) => pids.reduce((a, p) => a + cpuSeconds(p), 0);

/** Runs `op` in `perClient` loops per client until the time is up; figures over the measured part. */
export async function closedLoop(
  clients: readonly CoordDriver[],
  perClient: number,
  op: (c: CoordDriver, client: number, i: number) => Promise<void>,
  o: LoopOptions,
): Promise<Figures> {
  const lat: number[] = [];
  let count = 0;
  const start = Date.now();
  const measureFrom = start + o.warmupS * 1000;
  const end = measureFrom + o.seconds * 1000;
  // Server CPU over the measured interval: sampled when it starts and ends (or when the last operation
  // returns, if the event loop was too busy to run the end timer on time).
  const cpu = { from: Number.NaN, fromAt: 0, to: Number.NaN, toAt: 0 };
  const sample = () => (o.serverPids ? cpuOf(o.serverPids()) : Number.NaN);
  const t0 = setTimeout(() => {
    cpu.from = sample();
    cpu.fromAt = Date.now();
  }, measureFrom - Date.now());
  const t1 = setTimeout(() => {
    cpu.to = sample();
    cpu.toAt = Date.now();
  }, end - Date.now());
  let seq = 0;
  try {
    await Promise.all(
      clients.flatMap((zk, c) =>
        Array.from({ length: perClient }, async () => {
          while (Date.now() < end) {
            const began = performance.now();
            const startedAt = Date.now();
            await op(zk, c, seq++);
            if (startedAt >= measureFrom && Date.now() <= end) {
              lat.push(performance.now() - began);
              count++;
            }
          }
        }),
      ),
    );
  } finally {
    clearTimeout(t0);
    clearTimeout(t1);
  }
  if (Number.isNaN(cpu.to)) {
    cpu.to = sample();
    cpu.toAt = Date.now();
  }
  lat.sort((a, b) => a - b);
  return {
    opsPerSec: count / o.seconds,
    p50: pct(lat, 0.5),
    p99: pct(lat, 0.99),
    serverCores: (cpu.to - cpu.from) / ((cpu.toAt - cpu.fromAt) / 1000),
  };
}

/** Creates the parents and the keys setData/getData use; run once per fresh cluster. */
export async function prepare(zk: CoordDriver): Promise<void> {
  for (const p of ["/bench", "/bench/c", "/bench/s", "/bench/e"]) await zk.create(p, "");
  for (let j = 0; j < KEYS; j++) await zk.create(`/bench/s/k${j}`, DATA);
}

/** One workload at one concurrency; `tag` keeps created paths unique across runs. */
export function workload(
  clients: readonly CoordDriver[],
  w: Workload,
  k: number,
  tag: string,
  o: LoopOptions,
): Promise<Figures> {
  const use = k === 1 ? clients.slice(0, 1) : clients;
  const per = k === 1 ? 1 : k / clients.length;
  const op = {
    create: async (zk: CoordDriver, c: number, i: number) => {
      await zk.create(`/bench/c/${tag}-k${k}-c${c}-${i}`, DATA);
    },
    setData: (zk: CoordDriver, _c: number, i: number) => zk.setData(`/bench/s/k${i % KEYS}`, DATA),
    getData: (zk: CoordDriver, _c: number, i: number) => zk.getData(`/bench/s/k${i % KEYS}`),
    "ephemeral create+delete": async (zk: CoordDriver, c: number, i: number) => {
      const p = await zk.create(`/bench/e/${tag}-k${k}-c${c}-${i}`, "", true);
      await zk.delete(p);
    },
  }[w];
  return closedLoop(use, per, op, o);
}

// ------------------------------------------------------------------ our side

const signer = { generate: generateEd25519KeyPair, sign: signEd25519 };

export function ourDriver(zk: CoordClient): CoordDriver {
  return {
    create: (path, data, ephemeral) =>
      zk.create(path, data, ephemeral ? { mode: CreateMode.EPHEMERAL } : undefined),
    setData: async (path, data) => {
      await zk.setData(path, data);
    },
    getData: async (path) => {
      await zk.getData(path);
    },
    delete: (path) => zk.delete(path),
    close: () => zk.close(),
  };
}

/** A running system under test: drivers connected to it, its server processes, and how to stop it. */
export interface SystemUnderTest {
  readonly clients: readonly CoordDriver[];
  readonly pids: () => readonly number[];
  /** The replicas' HTTP API addresses (ours only: /metrics, /health). */
  readonly urls?: readonly string[];
  stop(): Promise<void>;
}

/**
 * Three hybrid replicas (f = 1), each its own process (libp2p, LevelDB with fsync on), and CLIENTS
 * sessions spread over them, with the workloads' nodes prepared.
 */
export async function startOurs(): Promise<SystemUnderTest> {
  const dir = mkdtempSync(join(tmpdir(), "orderer-coord-bench-"));
  const lc = await localCluster("hybrid", 1, dir, {
    node: { limits: { requestTimeoutTicks: 500, viewChangeTimeoutTicks: 500 } },
  });
  // The replicas' JSON logs go to files in the temporary folder (removed at the end), not the table.
  const procs = lc.nodes.map(
    (n) => new NodeProcess(lc.cluster, n, { logFile: join(dir, `node-${n.id}.log`) }, lc.counters[n.id]),
  );
  const clients: CoordClient[] = [];
  const stop = async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await Promise.all(procs.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all(procs.map((p) => p.start()));
    await sleep(500);
    for (let i = 0; i < CLIENTS; i++)
      clients.push(
        await CoordClient.connect({ urls: lc.urls, signer, sessionTimeoutMs: 30_000, startAt: i % 3 }),
      );
    const drivers = clients.map(ourDriver);
    await prepare(drivers[0] as CoordDriver);
    for (const c of clients) await c.sync();
    return {
      clients: drivers,
      pids: () => procs.map((p) => p.proc?.pid ?? 0).filter((p) => p > 0),
      urls: lc.urls,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Every workload at every concurrency on a running system, one line printed per row; keyed `w|k`. */
export async function allRows(
  sut: SystemUnderTest,
  workloads: readonly Workload[],
  tag: string,
  o: { warmupS: number; seconds: number },
  prefix = "  ",
): Promise<Map<string, Figures>> {
  const out = new Map<string, Figures>();
  for (const k of CONCURRENCY)
    for (const w of workloads) {
      const f = await workload(sut.clients, w, k, tag, { ...o, serverPids: sut.pids });
      out.set(`${w}|${k}`, f);
      console.log(
        `${prefix}${w.padEnd(24)} ${String(k).padStart(2)} outstanding: ${f.opsPerSec.toFixed(0).padStart(6)} ops/s  p50 ${f.p50.toFixed(2)} ms  p99 ${f.p99.toFixed(2)} ms  servers ${f.serverCores.toFixed(2)} cores`,
      );
    }
  return out;
}
