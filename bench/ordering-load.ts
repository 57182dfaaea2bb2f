// Load for the ordering-service suites (ordering, scaling, failover): a cluster of replica processes
// on this machine, and a submitter that drives their WebSocket submit streams either open loop (a
// fixed offered rate, whatever the answers do: the latency-throughput curve) or closed loop (a fixed
// number of transactions outstanding: the saturated throughput). Every acknowledgement is recorded
// with its time, its latency and its block, so a suite can cut any window out of a run.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import type { Limits, Mode } from "../src/bft/types.ts";
import type { BatchConfig } from "../src/node/config.ts";
import { localCluster, NodeProcess } from "../src/node/local-cluster.ts";
import { memoryBudget } from "../src/node/memory.ts";
import { cpuSeconds } from "./results.ts";
import { pct } from "./stats.ts";

export interface OrderingCluster {
  readonly mode: Mode;
  readonly n: number;
  readonly urls: readonly string[];
  readonly procs: readonly NodeProcess[];
  /** Each replica's memory budget (docs/operations.md), bytes, from its configuration. */
  readonly budgets: readonly number[];
  /** PIDs of the replica processes still running. */
  pids(): number[];
  stop(): Promise<void>;
}

export const replicasOf = (mode: Mode, f: number): number => (mode === "hybrid" ? 2 * f + 1 : 3 * f + 1);

/**
 * Waits until every replica hears from all the others (`livePeers` in /health): until then the first
 * measurements would pay for connections still being dialled.
 */
async function allConnected(urls: readonly string[], timeoutMs: number): Promise<void> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const peers = await Promise.all(
      urls.map((u) =>
        fetch(`${u}/health`)
          .then((r) => r.json() as Promise<{ livePeers?: number }>)
          .then((h) => h.livePeers ?? 0)
          .catch(() => 0),
      ),
    );
    if (peers.every((p) => p === urls.length - 1)) return;
    if (performance.now() > end)
      throw new Error(`replicas still not all connected after ${timeoutMs} ms: ${peers}`);
    await sleep(100);
  }
}

/** Starts n = 2f+1 (hybrid) or 3f+1 (pbft) replica processes with fsync on; their logs go to files. */
export async function startOrdering(
  mode: Mode,
  f: number,
  o: {
    batch?: Partial<BatchConfig>;
    limits?: Partial<Limits>;
    /** Another entry script for replica `id` (a Byzantine one, test/integration/*-node.ts), or null. */
    variant?: (id: number) => { readonly script: string; readonly env?: Record<string, string> } | null;
  } = {},
): Promise<OrderingCluster> {
  const dir = mkdtempSync(join(tmpdir(), "orderer-bench-"));
  const lc = await localCluster(mode, f, dir, {
    batch: { maxMessageCount: 500, batchTimeoutMs: 10, ...o.batch },
    // Long request timeouts by default: a saturated leader is slow, not faulty.
    node: { limits: { requestTimeoutTicks: 500, viewChangeTimeoutTicks: 500, ...o.limits } },
  });
  const procs = lc.nodes.map(
    (n) =>
      new NodeProcess(
        lc.cluster,
        n,
        { logFile: join(dir, `node-${n.id}.log`) },
        lc.counters[n.id],
        o.variant?.(n.id) ?? null,
      ),
  );
  const stop = async () => {
    await Promise.all(procs.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all(procs.map((p) => p.start()));
    await allConnected(lc.urls, 30_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    mode,
    n: lc.nodes.length,
    urls: lc.urls,
    procs,
    budgets: lc.nodes.map((n) => memoryBudget(lc.cluster, n).totalBytes),
    pids: () => procs.map((p) => p.proc?.pid ?? 0).filter((p) => p > 0),
    stop,
  };
}

/** One acknowledgement: when it came (ms, performance.now()), how long after its (intended) send, its block. */
export interface Ack {
  /** The transaction's number: its first 4 bytes, big-endian (every transaction of a Submitter differs). */
  readonly tx: number;
  readonly at: number;
  readonly latency: number;
  readonly ok: boolean;
  readonly block: number;
}

export interface WindowFigures {
  /** Committed (acknowledged with a receipt) transactions per second in the window. */
  readonly txPerSec: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  /** Distinct blocks the window's transactions landed in. */
  readonly blocks: number;
}

/** Client-side cap on transactions outstanding over all streams; beyond it an open loop sheds load. */
export const MAX_OUTSTANDING = 6000;

export class Submitter {
  readonly acks: Ack[] = [];
  /** Offered transactions an open loop did not send because MAX_OUTSTANDING were outstanding. */
  shed = 0;
  private counter = 0;
  private next = 0;
  private readonly sentAt = new Map<number, number>();
  private readonly payload: Buffer;
  private driver: { stop(): void } | null = null;

  private constructor(
    private readonly streams: WebSocket[],
    readonly size: number,
  ) {
    this.payload = Buffer.alloc(size, 0x61);
    for (const ws of streams) {
      ws.on("message", (d: Buffer) => {
        const m = JSON.parse(String(d)) as { id: number; ok: boolean; receipt?: { block: number } };
        const t = this.sentAt.get(m.id);
        if (t === undefined) return;
        this.sentAt.delete(m.id);
        const now = performance.now();
        this.acks.push({ tx: m.id, at: now, latency: now - t, ok: m.ok, block: m.receipt?.block ?? -1 });
        this.onAck?.(ws);
      });
      ws.on("error", () => {});
    }
  }

  private onAck: ((ws: WebSocket) => void) | null = null;

  /** `perUrl` WebSocket submit streams to each of `urls`, transactions of `size` bytes (unique). */
  static async connect(urls: readonly string[], perUrl: number, size: number): Promise<Submitter> {
    const streams: WebSocket[] = [];
    for (const url of urls)
      for (let i = 0; i < perUrl; i++) {
        const ws = new WebSocket(`${url.replace("http", "ws")}/v1/submit`);
        await new Promise((resolve, reject) => {
          ws.once("open", resolve);
          ws.once("error", reject);
        });
        streams.push(ws);
      }
    return new Submitter(streams, size);
  }

  get outstanding(): number {
    return this.sentAt.size;
  }

  private sendOn(ws: WebSocket, intendedAt: number): void {
    const id = this.counter++ >>> 0;
    const frame = Buffer.alloc(4 + this.size);
    frame.writeUInt32BE(id, 0);
    this.payload.copy(frame, 4);
    frame.writeUInt32BE(id, 4); // unique transaction bytes (size ≥ 4)
    this.sentAt.set(id, intendedAt);
    ws.send(frame);
  }

  private pick(): WebSocket | null {
    for (let tries = 0; tries < this.streams.length; tries++) {
      const ws = this.streams[this.next++ % this.streams.length] as WebSocket;
      if (ws.readyState === WebSocket.OPEN) return ws;
    }
    return null;
  }

  /**
   * Offers `rate` transactions per second, spread evenly in time over the streams, until stopped.
   * Latency counts from the moment a transaction was due, so a sender that falls behind is charged.
   */
  openLoop(rate: number): void {
    this.stopLoad();
    const t0 = performance.now();
    let due = 0;
    let running = true;
    const tick = () => {
      if (!running) return;
      const now = performance.now();
      const target = Math.floor(((now - t0) * rate) / 1000);
      for (; due < target; due++) {
        const intended = t0 + (due * 1000) / rate;
        const ws = this.outstanding < MAX_OUTSTANDING ? this.pick() : null;
        if (ws) this.sendOn(ws, intended);
        else this.shed++;
      }
      setTimeout(tick, 1);
    };
    tick();
    this.driver = {
      stop: () => {
        running = false;
      },
    };
  }

  /** Keeps `outstanding` transactions in flight: each acknowledgement sends the next on its stream. */
  closedLoop(outstanding: number): void {
    this.stopLoad();
    let running = true;
    this.onAck = (ws) => {
      if (running && ws.readyState === WebSocket.OPEN) this.sendOn(ws, performance.now());
    };
    for (let i = 0; i < outstanding; i++) {
      const ws = this.pick();
      if (ws) this.sendOn(ws, performance.now());
    }
    this.driver = {
      stop: () => {
        running = false;
      },
    };
  }

  stopLoad(): void {
    this.driver?.stop();
    this.driver = null;
    this.onAck = null;
  }

  /** Waits until nothing is outstanding, or `ms` have passed; returns whether it drained. */
  async drain(ms: number): Promise<boolean> {
    const end = performance.now() + ms;
    while (this.outstanding > 0 && performance.now() < end) await sleep(20);
    return this.outstanding === 0;
  }

  /** Figures over the acknowledgements that arrived in [from, to) (performance.now() ms). */
  window(from: number, to: number): WindowFigures {
    const lat: number[] = [];
    const blocks = new Set<number>();
    let errors = 0;
    for (const a of this.acks) {
      if (a.at < from || a.at >= to) continue;
      if (!a.ok) {
        errors++;
        continue;
      }
      lat.push(a.latency);
      blocks.add(a.block);
    }
    lat.sort((a, b) => a - b);
    return {
      txPerSec: (lat.length * 1000) / (to - from),
      p50: pct(lat, 0.5),
      p99: pct(lat, 0.99),
      errors,
      blocks: blocks.size,
    };
  }

  close(): void {
    this.stopLoad();
    for (const ws of this.streams) ws.terminate();
  }
}

/** Runs the current load for `warmupS` then measures `seconds`; figures plus the replicas' CPU in cores. */
export async function measure(
  s: Submitter,
  cluster: OrderingCluster,
  warmupS: number,
  seconds: number,
): Promise<WindowFigures & { cores: number }> {
  await sleep(warmupS * 1000);
  const pids = cluster.pids();
  const cpu0 = pids.reduce((a, p) => a + cpuSeconds(p), 0);
  const from = performance.now();
  await sleep(seconds * 1000);
  const to = performance.now();
  const cpu1 = pids.reduce((a, p) => a + cpuSeconds(p), 0);
  return { ...s.window(from, to), cores: (cpu1 - cpu0) / ((to - from) / 1000) };
}
