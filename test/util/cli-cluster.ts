// A cluster driven through the real `orderer` command in child processes: `orderer init`, one
// `orderer start` per replica, `orderer status` / `submit` / `verify`. Used by the end-to-end test and
// the failover benchmark.

import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type { Mode } from "../../src/bft/types.ts";
import { stripJsonComments } from "../../src/cli/config-files.ts";
import { sha256, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { type ClusterConfig, clientOptions } from "../../src/node/config.ts";
import type { HealthReport } from "../../src/node/metrics.ts";
import { freePortRange } from "../../src/node/ports.ts";
import { OrderingClient } from "../../src/ordering/client.ts";
import { submitWhenReady } from "./ordering.ts";

export const ORDERER = fileURLToPath(new URL("../../bin/orderer.mjs", import.meta.url));

/** The pids whose parent is `ppid`. */
export function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = readFileSync(`/proc/${e}/stat`, "utf8");
      if (Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[1]) === ppid) out.push(Number(e));
    } catch {} // gone meanwhile
  }
  return out;
}

/**
 * `orderer dev --dir DIR` in a child process. `up()` waits until it prints that its cluster is up (at most
 * 60 s) and fails with the end of its output otherwise; the caller kills `dev`.
 */
export function spawnDev(dir: string): { dev: ChildProcess; up: () => Promise<void> } {
  const dev = spawn(process.execPath, [ORDERER, "dev", "--dir", dir], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  dev.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const up = async () => {
    for (let t = 0; t < 600 && !/is up/.test(out); t++) await sleep(100);
    assert.match(out, /is up/, "the dev cluster started");
  };
  return { dev, up };
}

/** Runs `orderer args…`; resolves with its exit code and output (never rejects on a non-zero exit). */
export function orderer(
  args: readonly string[],
  timeoutMs = 60_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [ORDERER, ...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export class CliCluster {
  readonly procs: (ChildProcess | null)[];
  /** Hybrid mode: each replica's `orderer counter` process (it outlives its replica's kills). */
  readonly counters: (ChildProcess | null)[];
  readonly client: OrderingClient;

  private constructor(
    readonly dir: string,
    readonly mode: Mode,
    readonly cluster: ClusterConfig,
  ) {
    this.procs = cluster.replicas.map(() => null);
    this.counters = cluster.replicas.map(() => null);
    this.client = new OrderingClient({ ...clientOptions(cluster), hash: sha256, verify: verifyEd25519 });
  }

  get n(): number {
    return this.cluster.replicas.length;
  }

  get clusterFile(): string {
    return join(this.dir, "cluster.jsonc");
  }

  url(i: number): string {
    return this.cluster.replicas[i]?.api as string;
  }

  static async init(mode: Mode, opts: { transport?: "libp2p" | "rdma" } = {}): Promise<CliCluster> {
    const dir = mkdtempSync(join(tmpdir(), `orderer-cli-${mode}-`));
    const n = mode === "hybrid" ? 3 : 4;
    const base = await freePortRange(2 * n);
    const r = await orderer([
      "init",
      "--nodes",
      String(n),
      "--mode",
      mode,
      "--out",
      dir,
      "--p2p-port",
      String(base),
      "--api-port",
      String(base + n),
      "--json",
      ...(opts.transport ? ["--transport", opts.transport] : []),
    ]);
    if (r.code !== 0) throw new Error(`orderer init failed: ${r.stderr}`);
    const cluster = JSON.parse(
      stripJsonComments(readFileSync(join(dir, "cluster.jsonc"), "utf8")),
    ) as ClusterConfig;
    return new CliCluster(dir, mode, cluster);
  }

  /**
   * `orderer start --config node-<i>.jsonc` in a child process (in hybrid mode after `orderer counter
   * --config counter-<i>.jsonc`, unless it runs); resolves once its API answers.
   */
  async start(i: number): Promise<void> {
    const running = this.counters[i];
    if (this.mode === "hybrid" && (!running || running.exitCode !== null || running.signalCode !== null)) {
      const clog = openSync(join(this.dir, `counter-${i}.log`), "a");
      this.counters[i] = spawn(
        process.execPath,
        [ORDERER, "counter", "--config", join(this.dir, `counter-${i}.jsonc`)],
        { stdio: ["ignore", clog, clog] },
      );
      closeSync(clog);
    }
    const log = openSync(join(this.dir, `node-${i}.log`), "a");
    const p = spawn(process.execPath, [ORDERER, "start", "--config", join(this.dir, `node-${i}.jsonc`)], {
      stdio: ["ignore", log, log],
    });
    closeSync(log);
    this.procs[i] = p;
    for (let t = 0; t < 300; t++) {
      if (p.exitCode !== null)
        throw new Error(
          `replica ${i} exited with ${p.exitCode}; the end of ${this.dir}/node-${i}.log (removed with the cluster):\n${this.logTail(i)}`,
        );
      try {
        await fetch(`${this.url(i)}/health`, { signal: AbortSignal.timeout(500) });
        return;
      } catch {
        await sleep(100);
      }
    }
    throw new Error(`replica ${i} did not come up; the end of its log:\n${this.logTail(i)}`);
  }

  /** The last lines of replica i's log (and its counter's), for an error that outlives the directory. */
  private logTail(i: number, lines = 30): string {
    const tail = (f: string) => {
      try {
        return readFileSync(join(this.dir, f), "utf8").trimEnd().split("\n").slice(-lines).join("\n");
      } catch (err) {
        return `(${(err as Error).message})`;
      }
    };
    return this.mode === "hybrid"
      ? `${tail(`node-${i}.log`)}\n--- counter-${i}.log:\n${tail(`counter-${i}.log`)}`
      : tail(`node-${i}.log`);
  }

  kill(i: number, signal: NodeJS.Signals = "SIGKILL"): Promise<number | null> {
    const p = this.procs[i];
    this.procs[i] = null;
    if (!p || p.exitCode !== null) return Promise.resolve(p?.exitCode ?? null);
    return new Promise((resolve) => {
      p.once("exit", (code) => resolve(code));
      p.kill(signal);
    });
  }

  async health(i: number): Promise<HealthReport | null> {
    try {
      const res = await fetch(`${this.url(i)}/health`, { signal: AbortSignal.timeout(1000) });
      return (await res.json()) as HealthReport;
    } catch {
      return null;
    }
  }

  /** Waits until `orderer status` reports the cluster healthy. */
  async waitHealthy(timeoutMs = 60_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const r = await orderer(["status", "--cluster", this.clusterFile]);
      if (r.code === 0) return;
      if (Date.now() > end) throw new Error(`cluster not healthy: ${r.stdout}${r.stderr}`);
      await sleep(300);
    }
  }

  /** Submits until a replica answers with a receipt (NO_QUORUM while peers connect is retried). */
  submit(tx: Uint8Array, url?: string, timeoutMs = 60_000) {
    const codes = ["NO_QUORUM", "UNAVAILABLE", "DISCONNECTED", "TIMEOUT"];
    return submitWhenReady(this.client, tx, url, { timeoutMs, codes });
  }

  async stop(): Promise<void> {
    await Promise.all(this.procs.map((_, i) => this.kill(i, "SIGTERM")));
    await Promise.all(
      this.counters.map((p, i) => {
        this.counters[i] = null;
        if (!p || p.exitCode !== null) return Promise.resolve();
        return new Promise<void>((resolve) => {
          p.once("exit", () => resolve());
          p.kill("SIGTERM");
        });
      }),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Kills the leader and measures the time until the first transaction commits in a later view: a
 * transaction is submitted to a surviving replica right after the kill; its receipt's block carries
 * the view. Returns that time and the old and new views.
 */
export async function leaderFailover(
  c: CliCluster,
  tag: string,
): Promise<{ ms: number; leader: number; oldView: number; newView: number }> {
  let h: HealthReport | null = null;
  for (let i = 0; i < c.n && !h; i++) h = await c.health(i);
  if (!h) throw new Error("no replica answers /health");
  const leader = h.leader;
  const oldView = h.view;
  const survivor = (leader + 1) % c.n;
  await c.kill(leader);
  const t0 = performance.now();
  const receipt = await c.submit(new TextEncoder().encode(`after the leader died ${tag}`), c.url(survivor));
  const ms = performance.now() - t0;
  const block = await c.client.block(receipt.block, c.url(survivor));
  return { ms, leader, oldView, newView: block.metadata.view };
}
