// A local cluster of ordering nodes on this machine (the dev cluster, tests, benchmarks): configurations
// with fresh keys, free ports and one data directory each, and a child-process wrapper around
// `node-process.ts`.

import { type ChildProcess, fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Mode } from "../../src/bft/types.ts";
import { ed25519PublicKeyOf } from "../../src/crypto/node-crypto.ts";
import {
  type BatchConfig,
  type ClusterConfig,
  DEFAULT_BATCH,
  type NodeConfig,
  type TransportKind,
} from "../../src/node/config.ts";
import type { NodeEvent } from "./orderer-node.ts";
import { freePorts } from "./ports.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

export interface LocalCluster {
  readonly cluster: ClusterConfig;
  readonly nodes: NodeConfig[];
  readonly urls: string[];
}

export async function localCluster(
  mode: Mode,
  f: number,
  dir: string,
  opts: { batch?: Partial<BatchConfig>; node?: Partial<NodeConfig>; transport?: TransportKind } = {},
): Promise<LocalCluster> {
  const n = mode === "hybrid" ? 2 * f + 1 : 3 * f + 1;
  const ports = await freePorts(2 * n);
  const seeds = Array.from({ length: n }, () => randomBytes(32));
  const groupSecret = hex(randomBytes(32));
  const cluster: ClusterConfig = {
    name: `test-${mode}`,
    mode,
    f,
    replicas: seeds.map((s, i) => ({
      id: i,
      publicKey: hex(ed25519PublicKeyOf(s)),
      p2p: `/ip4/127.0.0.1/tcp/${ports[i]}`,
      api: `http://127.0.0.1:${ports[n + i]}`,
      ...(opts.transport === "rdma" ? { rdma: join(dir, `rdma-${i}.sock`) } : {}),
    })),
    ...(opts.transport ? { transport: opts.transport } : {}),
    batch: { ...DEFAULT_BATCH, ...opts.batch },
  };
  const nodes: NodeConfig[] = seeds.map((s, i) => ({
    id: i,
    seed: hex(s),
    groupSecret: mode === "hybrid" ? groupSecret : undefined,
    dataDir: join(dir, `node-${i}`),
    apiHost: "127.0.0.1",
    apiPort: ports[n + i] as number,
    tickMs: 10,
    limits: { requestTimeoutTicks: 100, viewChangeTimeoutTicks: 100, retransmitTicks: 10, statusTicks: 10 },
    ...opts.node,
  }));
  return { cluster, nodes, urls: cluster.replicas.map((r) => r.api) };
}

const EVENTS_KEPT = 1000;
const TSX = import.meta.resolve("tsx");
const SCRIPT = fileURLToPath(new URL("./node-process.ts", import.meta.url));

/** One node in its own process. */
export class NodeProcess {
  proc: ChildProcess | null = null;
  readonly errors: string[] = [];
  /** State-transfer events the node reported (the latest EVENTS_KEPT). */
  readonly events: NodeEvent[] = [];
  constructor(
    readonly cluster: ClusterConfig,
    readonly node: NodeConfig,
    /** Where the node's output (JSON log lines) goes: this process's, nowhere, or appended to a file. */
    private readonly stdio: "inherit" | "ignore" | { readonly logFile: string } = "inherit",
  ) {}

  async start(): Promise<void> {
    const out = typeof this.stdio === "object" ? openSync(this.stdio.logFile, "a") : this.stdio;
    const proc = fork(SCRIPT, [], {
      execArgv: [
        "--import",
        TSX, // resolved from here: the child may run in any working directory
        ...(process.env.ORDERER_CPU_PROF
          ? ["--cpu-prof", `--cpu-prof-dir=${process.env.ORDERER_CPU_PROF}`]
          : []),
      ],
      env: { ...process.env, ORDERER_NODE: JSON.stringify({ cluster: this.cluster, node: this.node }) },
      stdio: ["ignore", out, out, "ipc"],
    });
    if (typeof out === "number") closeSync(out);
    this.proc = proc;
    await new Promise<void>((resolve, reject) => {
      proc.on("message", (m: { type: string; message?: string; event?: NodeEvent }) => {
        if (m.type === "event" && m.event) {
          this.events.push(m.event);
          if (this.events.length > EVENTS_KEPT) this.events.shift();
        }
        if (m.type === "ready") resolve();
        else if (m.type === "error") {
          this.errors.push(m.message ?? "");
          reject(new Error(`node ${this.node.id}: ${m.message}`));
        }
      });
      proc.on("exit", (code, sig) => reject(new Error(`node ${this.node.id} exited (${code ?? sig})`)));
    });
  }

  kill(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      p.once("exit", () => resolve());
      p.kill("SIGKILL");
    });
  }

  /** Graceful stop (SIGTERM): the node closes its store and exits 0. */
  stop(): Promise<number | null> {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null) return Promise.resolve(p?.exitCode ?? null);
    return new Promise((resolve) => {
      const t = setTimeout(() => p.kill("SIGKILL"), 10_000);
      p.once("exit", (code) => {
        clearTimeout(t);
        resolve(code);
      });
      p.kill("SIGTERM");
    });
  }
}
