// A local cluster of ordering nodes on this machine (the dev cluster, tests, benchmarks): configurations
// with fresh keys, free ports and one data directory each, and a child-process wrapper around
// `node-process.ts`.

import { type ChildProcess, fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, fchmodSync, openSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Mode } from "../bft/types.ts";
import { ed25519PublicKeyOf } from "../crypto/node-crypto.ts";
import { loaderFlags, moduleBeside } from "../util/modules.ts";
import { handOff, PRIVATE_FILE_MODE } from "../util/private-files.ts";
import {
  type BatchConfig,
  type ClusterConfig,
  type CounterConfig,
  DEFAULT_BATCH,
  type NodeConfig,
  type TransportKind,
} from "./config.ts";
import type { NodeEvent } from "./orderer-node.ts";
import { freePorts } from "./ports.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

export interface LocalCluster {
  readonly cluster: ClusterConfig;
  readonly nodes: NodeConfig[];
  /** Hybrid mode: each replica's trusted counter (run it with the node: new NodeProcess(…, counters[i])). */
  readonly counters: CounterConfig[];
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
  const hybrid = mode === "hybrid";
  const counterSeeds = Array.from({ length: n }, () => randomBytes(32));
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
      ...(hybrid ? { counterPublicKey: hex(ed25519PublicKeyOf(counterSeeds[i] as Uint8Array)) } : {}),
    })),
    ...(opts.transport ? { transport: opts.transport } : {}),
    batch: { ...DEFAULT_BATCH, ...opts.batch },
  };
  const nodes: NodeConfig[] = seeds.map((s, i) => ({
    id: i,
    seed: hex(s),
    counterSocket: hybrid ? join(dir, `counter-${i}.sock`) : undefined,
    dataDir: join(dir, `node-${i}`),
    apiHost: "127.0.0.1",
    apiPort: ports[n + i] as number,
    tickMs: 10,
    limits: { requestTimeoutTicks: 100, viewChangeTimeoutTicks: 100, retransmitTicks: 10, statusTicks: 10 },
    ...opts.node,
  }));
  const counters: CounterConfig[] = hybrid
    ? seeds.map((s, i) => ({
        id: i,
        seed: hex(counterSeeds[i] as Uint8Array),
        replicaPublicKey: hex(ed25519PublicKeyOf(s)),
        socket: join(dir, `counter-${i}.sock`),
        dataDir: join(dir, `counter-${i}`),
        logLevel: "warn",
      }))
    : [];
  return { cluster, nodes, counters, urls: cluster.replicas.map((r) => r.api) };
}

const EVENTS_KEPT = 1000;
/** The entry script of a node process (node-process.ts, or its build in dist/). */
export const NODE_SCRIPT = fileURLToPath(moduleBeside(import.meta.url, "./node-process"));
const COUNTER_SCRIPT = fileURLToPath(moduleBeside(import.meta.url, "../counter/counter-process"));

/** A hybrid replica's trusted counter in its own process (as `orderer counter` runs it). */
/** perf(1) can name JavaScript frames (on-CPU profiles: perf record -e cpu-clock -p <pid>). */
const perfMapFlags = (): string[] =>
  process.env.ORDERER_PERF_MAP
    ? ["--perf-basic-prof-only-functions", "--interpreted-frames-native-stack"]
    : [];

export class CounterProcess {
  proc: ChildProcess | null = null;
  constructor(
    readonly config: CounterConfig,
    private readonly stdio: "inherit" | "ignore" | { readonly logFile: string } = "inherit",
  ) {}

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async start(): Promise<void> {
    if (this.running) return;
    const out = openOutput(this.stdio);
    // The counter's key goes in a private file, not the environment (docs/operations.md, "File modes").
    const secrets = handOff(this.config);
    const proc = fork(COUNTER_SCRIPT, [], {
      execArgv: [...loaderFlags(COUNTER_SCRIPT), ...perfMapFlags()],
      env: { ...process.env, ORDERER_COUNTER_FILE: secrets.path },
      stdio: ["ignore", out, out, "ipc"],
    });
    if (typeof out === "number") closeSync(out);
    this.proc = proc;
    proc.once("exit", secrets.remove);
    await new Promise<void>((resolve, reject) => {
      proc.on("message", (m: { type: string; message?: string }) => {
        if (m.type === "ready") resolve();
        else if (m.type === "error") reject(new Error(`counter ${this.config.id}: ${m.message}`));
      });
      proc.on("exit", (code, sig) => reject(new Error(`counter ${this.config.id} exited (${code ?? sig})`)));
    });
  }

  async kill(): Promise<void> {
    await endProcess(this, "SIGKILL");
  }

  stop(): Promise<number | null> {
    return endProcess(this, "SIGTERM");
  }
}

/** Where a child's output goes; a log file is appended to, and kept private (0600). */
function openOutput(
  stdio: "inherit" | "ignore" | { readonly logFile: string },
): "inherit" | "ignore" | number {
  if (typeof stdio !== "object") return stdio;
  const fd = openSync(stdio.logFile, "a", PRIVATE_FILE_MODE);
  fchmodSync(fd, PRIVATE_FILE_MODE);
  return fd;
}

async function endProcess(
  holder: { proc: ChildProcess | null },
  signal: "SIGKILL" | "SIGTERM",
): Promise<number | null> {
  const p = holder.proc;
  holder.proc = null;
  if (!p || p.exitCode !== null || p.signalCode !== null) return p?.exitCode ?? null;
  return new Promise((resolve) => {
    const t = signal === "SIGTERM" ? setTimeout(() => p.kill("SIGKILL"), 10_000) : undefined;
    p.once("exit", (code) => {
      clearTimeout(t);
      resolve(code);
    });
    p.kill(signal);
  });
}

/** Starts every trusted counter of a local cluster (hybrid mode) for nodes run in this process. */
export async function startCounters(
  lc: LocalCluster,
  stdio: "inherit" | "ignore" | { readonly logFile: string } = "ignore",
): Promise<CounterProcess[]> {
  const procs = lc.counters.map((c) => new CounterProcess(c, stdio));
  try {
    await Promise.all(procs.map((p) => p.start()));
  } catch (err) {
    await Promise.all(procs.map((p) => p.stop()));
    throw err;
  }
  return procs;
}

/** One node in its own process (and, in hybrid mode, its trusted counter in another). */
export class NodeProcess {
  proc: ChildProcess | null = null;
  readonly counter: CounterProcess | null;
  readonly errors: string[] = [];
  /** State-transfer events the node reported (the latest EVENTS_KEPT). */
  readonly events: NodeEvent[] = [];
  /** The latest message of each other type the process sent (a variant's reports). */
  readonly reports = new Map<string, unknown>();
  constructor(
    readonly cluster: ClusterConfig,
    readonly node: NodeConfig,
    /** Where the node's output (JSON log lines) goes: this process's, nowhere, or appended to a file. */
    private readonly stdio: "inherit" | "ignore" | { readonly logFile: string } = "inherit",
    /** Hybrid mode: the replica's counter, started with the node (if not running) and ended with it. */
    counter?: CounterConfig,
    /** Another entry script speaking node-process.ts's protocol (tests: a Byzantine replica), its env. */
    private readonly variant: {
      readonly script: string;
      readonly env?: Record<string, string>;
    } | null = null,
  ) {
    // Benchmarks measure the counter process against a counter inside the replica (src/counter/in-process.ts).
    this.inProcessCounter = process.env.ORDERER_BENCH_COUNTER === "in-process" ? (counter ?? null) : null;
    this.counter = counter && !this.inProcessCounter ? new CounterProcess(counter, stdio) : null;
  }

  private readonly inProcessCounter: CounterConfig | null;

  async start(): Promise<void> {
    // The node waits for its counter's socket (RemoteCounter.open), so both start at once.
    const counterUp = this.counter?.start();
    counterUp?.catch(() => {});
    await Promise.all([this.startNode(), counterUp]);
  }

  private async startNode(): Promise<void> {
    const out = openOutput(this.stdio);
    const script = this.variant?.script ?? NODE_SCRIPT;
    // The replica's key (and a benchmark's in-process counter key) go in a private file, not the
    // environment (docs/operations.md, "File modes").
    const secrets = handOff({
      cluster: this.cluster,
      node: this.node,
      ...(this.inProcessCounter ? { inProcessCounter: this.inProcessCounter } : {}),
    });
    const proc = fork(script, [], {
      execArgv: [
        ...loaderFlags(script),
        ...(process.env.ORDERER_CPU_PROF
          ? ["--cpu-prof", `--cpu-prof-dir=${process.env.ORDERER_CPU_PROF}`]
          : []),
        ...perfMapFlags(),
        ...(process.env.ORDERER_HEAP_PROF
          ? ["--heap-prof", `--heap-prof-dir=${process.env.ORDERER_HEAP_PROF}`, "--heap-prof-interval=65536"]
          : []),
        // Any other V8/node flags, space-separated (for example --trace-deopt).
        ...(process.env.ORDERER_NODE_FLAGS?.split(/\s+/).filter((f) => f !== "") ?? []),
      ],
      env: {
        ...process.env,
        ...this.variant?.env,
        ORDERER_NODE_FILE: secrets.path,
      },
      stdio: ["ignore", out, out, "ipc"],
    });
    if (typeof out === "number") closeSync(out);
    this.proc = proc;
    proc.once("exit", secrets.remove);
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
        } else if (m.type !== "event") this.reports.set(m.type, m);
      });
      proc.on("exit", (code, sig) => reject(new Error(`node ${this.node.id} exited (${code ?? sig})`)));
    });
  }

  /**
   * Asks the node process for a report of `type` (a message it answers with the same type, e.g. "trace"
   * when started with ORDERER_TRACE=1) and waits for the answer.
   */
  async request<T>(type: string, timeoutMs = 10_000): Promise<T> {
    const proc = this.proc;
    if (!proc?.connected) throw new Error(`node ${this.node.id} is not running`);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        proc.off("message", on);
        reject(new Error(`node ${this.node.id} did not answer ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (m: { type?: string }) => {
        if (m?.type !== type) return;
        clearTimeout(timer);
        proc.off("message", on);
        resolve(m as T);
      };
      proc.on("message", on);
      proc.send({ type });
    });
  }

  /** SIGKILL to the node and its counter (a machine crash: both restart from what they fsynced). */
  async kill(): Promise<void> {
    await Promise.all([endProcess(this, "SIGKILL"), this.counter?.kill()]);
  }

  /** Graceful stop (SIGTERM): the node closes its store and exits 0; then its counter. */
  async stop(): Promise<number | null> {
    const code = await endProcess(this, "SIGTERM");
    await this.counter?.stop();
    return code;
  }
}
