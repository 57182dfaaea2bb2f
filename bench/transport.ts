// Transports side by side, in one run, in two parts.
//
// 1. Raw transports: round-trip latency of 64 B frames (ping-pong, p50/p99) and one-way throughput of
// 256 B frames, for raw node:net TCP (4-byte length prefix, writes corked per event-loop turn; the
// baseline), the same framing over a node:net UNIX domain socket, libp2p (TCP + noise + yamux), the
// rdma transport over the native addon's shm provider (UNIX socket endpoints, shared-memory mailboxes;
// skipped with a note when the addon is not built or does not load) and the in-memory transport. Both
// endpoints live in this process, on loopback / in temp dirs (removed afterwards). Each figure is the
// median of --runs runs; ratios are against raw TCP of the same run.
//
// 2. A three-replica hybrid cluster (f = 1) over rdma against the same cluster over libp2p: each replica
// in its own process (LevelDB with fsync on, the nodes' default), all on this machine, a fresh cluster
// per measurement. Over one WebSocket submit stream to the view's leader, 1 transaction outstanding:
// submit-to-commit latency (sending one 100 B transaction until its acknowledgement with a certified
// receipt arrives), p50/p99 of --cluster-txs sequential transactions after 50 warm-up ones. Then 64
// transactions outstanding, spread over one submit stream per replica (closed loop): committed tx/s over
// --cluster-seconds after 0.5 s warm-up. Each figure is the median of --cluster-runs rounds; within a
// round the transports alternate (libp2p, rdma, libp2p, rdma, ...). rdma is skipped with a note when
// the addon is unavailable. Ratios are against libp2p. Temp dirs and replica processes are removed
// even on failure or SIGINT/SIGTERM.
//
//   npm run bench:transport [-- --runs 5 --pings 3000 --frames 200000]
//   npm run bench:transport -- --no-cluster                  (part 1 only)
//   npm run bench:transport -- --no-cluster --only unix,rdma (part 1: these and the tcp baseline)
//   npm run bench:transport -- --cluster-only [--cluster-runs 3 --cluster-txs 300 --cluster-seconds 3]

import "../src/util/polyfill.ts";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type NetConnectOpts, type Socket } from "node:net";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { generateEd25519KeyPair } from "../src/crypto/node-crypto.ts";
import type { NodeConfig, TransportKind } from "../src/node/config.ts";
import { localCluster, NodeProcess } from "../src/node/local-cluster.ts";
import { freePorts } from "../src/node/ports.ts";
import { Libp2pTransport } from "../src/transport/libp2p.ts";
import { MemoryHub } from "../src/transport/memory.ts";
import { RdmaTransport } from "../src/transport/rdma.ts";
import { loadRdmaNative } from "../src/transport/rdma-native.ts";
import type { Transport, TransportLimits } from "../src/transport/transport.ts";
import { publish } from "./results.ts";
import { median, pct } from "./stats.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    pings: { type: "string", default: "3000" },
    frames: { type: "string", default: "200000" },
    "cluster-runs": { type: "string", default: "3" },
    "cluster-txs": { type: "string", default: "300" },
    "cluster-seconds": { type: "string", default: "3" },
    "no-cluster": { type: "boolean", default: false },
    "cluster-only": { type: "boolean", default: false },
    only: { type: "string" },
    quick: { type: "boolean", default: false },
  },
});
// --quick: one run of everything and fewer frames (a smoke test of the suite, not figures to quote).
const RUNS = values.quick ? 1 : Number(values.runs);
const PINGS = Number(values.pings);
const FRAMES = values.quick ? 50_000 : Number(values.frames);
const CLUSTER_RUNS = values.quick ? 1 : Number(values["cluster-runs"]);
const CLUSTER_TXS = Number(values["cluster-txs"]);
const CLUSTER_SECONDS = Number(values["cluster-seconds"]);
/** The rows both parts append to bench/results/transport.jsonl. */
const resultRows: Record<string, unknown>[] = [];
if (values["no-cluster"] && values["cluster-only"])
  throw new Error("--no-cluster and --cluster-only exclude each other");

/** Two connected endpoints: a → b and b → a. */
interface Pair {
  send(from: 0 | 1, frame: Uint8Array): void;
  /** Frames queued but not yet handed to the OS / peer (for pacing the sender). */
  backlog(from: 0 | 1): number;
  onFrame(at: 0 | 1, cb: (frame: Uint8Array) => void): void;
  close(): Promise<void>;
}

const LIMITS: TransportLimits = {
  frameMaxBytes: 1 << 20,
  queueMaxFrames: 1 << 20,
  queueMaxBytes: 1 << 30,
};

/** Temp dirs for UNIX socket paths; each pair removes its own on close, main() any left over. */
const tempDirs = new Set<string>();
function makeTempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "orderer-bench-transport-"));
  tempDirs.add(dir);
  return dir;
}
function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

// ------------------------------------------------------------------ raw node:net (TCP, UNIX socket)

class Framer {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly cb: (f: Uint8Array) => void) {}
  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let off = 0;
    while (this.buf.length - off >= 4) {
      const len = this.buf.readUInt32BE(off);
      if (this.buf.length - off - 4 < len) break;
      this.cb(this.buf.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
    this.buf = this.buf.subarray(off);
  }
}

/** Where a node:net pair listens: loopback TCP on a free port, or a UNIX socket path. */
type NetTarget = { host: string } | { path: string };

/** Two node:net sockets with length-prefixed framing; the server listens on `target`. */
async function netPair(target: NetTarget): Promise<Pair> {
  const handlers: ((f: Uint8Array) => void)[] = [() => {}, () => {}];
  const server = createServer();
  const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
  await new Promise<void>((r) =>
    server.listen("path" in target ? { path: target.path } : { port: 0, host: target.host }, r),
  );
  const to: NetConnectOpts =
    "path" in target
      ? { path: target.path }
      : { host: target.host, port: (server.address() as { port: number }).port };
  const a = connect(to);
  await new Promise<void>((r) => a.once("connect", () => r()));
  const b = await accepted;
  const socks = [a, b];
  const corked = [false, false];
  for (const [i, s] of socks.entries()) {
    s.setNoDelay(true); // a no-op on UNIX sockets
    const framer = new Framer((f) => handlers[i]?.(f));
    s.on("data", (c: Buffer) => framer.push(c));
  }
  return {
    send(from, frame) {
      const h = Buffer.allocUnsafe(4);
      h.writeUInt32BE(frame.length);
      const s = socks[from] as Socket;
      // Like the libp2p transport, frames sent in one turn share writes (cork until the next tick).
      if (!corked[from]) {
        corked[from] = true;
        s.cork();
        process.nextTick(() => {
          corked[from] = false;
          s.uncork();
        });
      }
      s.write(h);
      s.write(frame);
    },
    backlog: (from) => (socks[from] as Socket).writableLength,
    onFrame(at, cb) {
      handlers[at] = cb;
    },
    async close() {
      a.destroy();
      b.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

const tcpPair = (): Promise<Pair> => netPair({ host: "127.0.0.1" });

async function unixPair(): Promise<Pair> {
  const dir = makeTempDir();
  const pair = await netPair({ path: join(dir, "s.sock") });
  return {
    ...pair,
    async close() {
      await pair.close();
      removeTempDir(dir);
    },
  };
}

// ------------------------------------------------------------------ Transport-based pairs

function transportPair(ts: [Transport, Transport]): Pair {
  return {
    send: (from, frame) => {
      (ts[from] as Transport).send(from === 0 ? 1 : 0, frame);
    },
    backlog: (from) => (ts[from] as Transport).stats().get(from === 0 ? 1 : 0)?.queuedFrames ?? 0,
    onFrame: (at, cb) => (ts[at] as Transport).onFrame((_f, fr) => cb(fr)),
    close: async () => {
      await Promise.all(ts.map((t) => t.stop()));
    },
  };
}

/** Sends 1-byte frames both ways until each side has received one (the connection is up). */
async function warmUp(pair: Pair, name: string): Promise<void> {
  let up = 0;
  pair.onFrame(1, () => up++);
  pair.onFrame(0, () => up++);
  const deadline = Date.now() + 10_000;
  while (up < 2 && Date.now() < deadline) {
    pair.send(0, new Uint8Array(1));
    pair.send(1, new Uint8Array(1));
    await new Promise((r) => setTimeout(r, 20));
  }
  if (up < 2) throw new Error(`${name} pair did not connect`);
  await new Promise((r) => setTimeout(r, 100));
}

async function libp2pPair(): Promise<Pair> {
  const ports = await freePorts(2);
  const keys = ports.map(() => generateEd25519KeyPair());
  const peers = keys.map((k, id) => ({
    id,
    publicKey: k.publicKey,
    addr: `/ip4/127.0.0.1/tcp/${ports[id]}`,
  }));
  const ts = keys.map(
    (k, id) => new Libp2pTransport({ self: id, seed: k.privateKey, peers, limits: LIMITS }),
  ) as [Libp2pTransport, Libp2pTransport];
  await Promise.all(ts.map((t) => t.start()));
  const pair = transportPair(ts);
  // Wait until the stream is up in both directions.
  await warmUp(pair, "libp2p");
  return pair;
}

async function rdmaPair(): Promise<Pair> {
  const dir = makeTempDir();
  const keys = [generateEd25519KeyPair(), generateEd25519KeyPair()];
  const peers = keys.map((k, id) => ({ id, publicKey: k.publicKey, path: join(dir, `r${id}.sock`) }));
  const ts = keys.map(
    (k, id) => new RdmaTransport({ self: id, seed: k.privateKey, peers, limits: LIMITS }),
  ) as [RdmaTransport, RdmaTransport];
  const inner = transportPair(ts);
  const pair: Pair = {
    ...inner,
    async close() {
      await inner.close();
      removeTempDir(dir);
    },
  };
  try {
    await Promise.all(ts.map((t) => t.start()));
    // Wait until the connection is authenticated and keys are granted both ways.
    await warmUp(pair, "rdma");
  } catch (err) {
    await pair.close();
    throw err;
  }
  return pair;
}

async function memoryPair(): Promise<Pair> {
  const hub = new MemoryHub({ n: 2 });
  const ts: [Transport, Transport] = [hub.transport(0, LIMITS), hub.transport(1, LIMITS)];
  await Promise.all(ts.map((t) => t.start()));
  return transportPair(ts);
}

// ------------------------------------------------------------------ measurements

async function rtt(pair: Pair, pings: number): Promise<{ p50: number; p99: number }> {
  const frame = new Uint8Array(64);
  pair.onFrame(1, (f) => pair.send(1, f.slice()));
  const samples: number[] = [];
  for (let i = 0; i < pings + 200; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve) => {
      pair.onFrame(0, () => resolve());
      pair.send(0, frame);
    });
    if (i >= 200) samples.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  samples.sort((a, b) => a - b);
  return { p50: pct(samples, 0.5), p99: pct(samples, 0.99) };
}

async function throughput(pair: Pair, frames: number): Promise<number> {
  const frame = new Uint8Array(256);
  let got = 0;
  const done = new Promise<void>((resolve) => {
    pair.onFrame(1, () => {
      if (++got === frames) resolve();
    });
  });
  const t0 = process.hrtime.bigint();
  let sent = 0;
  while (sent < frames) {
    // Keep at most ~4 MiB (TCP) or 16k frames (transports) in flight on the sending side.
    if (pair.backlog(0) > 16_384) {
      await new Promise((r) => setImmediate(r));
      continue;
    }
    const burst = Math.min(1024, frames - sent);
    for (let k = 0; k < burst; k++) pair.send(0, frame);
    sent += burst;
    await new Promise((r) => setImmediate(r));
  }
  await done;
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return frames / secs;
}

const rdmaNative = loadRdmaNative();

const ALL_KINDS: [string, () => Promise<Pair>][] = [
  ["tcp (node:net)", tcpPair],
  ["unix socket (node:net)", unixPair],
  ["libp2p", libp2pPair],
  ...(rdmaNative.available ? [["rdma (shm)", rdmaPair] as [string, () => Promise<Pair>]] : []),
  ["memory", memoryPair],
];
// --only picks transports by name prefix; raw TCP, the baseline of the ratios, always runs.
const ONLY = values.only?.split(",") ?? null;
const KINDS = ALL_KINDS.filter(
  ([name]) => ONLY === null || name.startsWith("tcp") || ONLY.some((w) => name.startsWith(w)),
);
const NAME_WIDTH = Math.max("transport".length, ...KINDS.map(([name]) => name.length));

async function transportBench(): Promise<void> {
  if (!rdmaNative.available) console.log(`rdma (shm): skipped: ${rdmaNative.reason}`);
  const res = new Map<string, { p50: number[]; p99: number[]; fps: number[] }>();
  for (const [name] of KINDS) res.set(name, { p50: [], p99: [], fps: [] });
  for (let run = 0; run < RUNS; run++) {
    // Interleave the transports within each run so that machine noise hits them alike.
    for (const [name, make] of KINDS) {
      const r = res.get(name) as { p50: number[]; p99: number[]; fps: number[] };
      let pair = await make();
      const lat = await rtt(pair, PINGS);
      await pair.close();
      pair = await make();
      const fps = await throughput(pair, FRAMES);
      await pair.close();
      r.p50.push(lat.p50);
      r.p99.push(lat.p99);
      r.fps.push(fps);
    }
    process.stderr.write(`run ${run + 1}/${RUNS} done\n`);
  }
  const base = res.get("tcp (node:net)") as { p50: number[]; p99: number[]; fps: number[] };
  const b50 = median(base.p50);
  const bfps = median(base.fps);
  console.log(
    `transport bench: median of ${RUNS} runs; RTT of 64 B frames over ${PINGS} pings; one-way 256 B x ${FRAMES}`,
  );
  console.log(
    `${"transport".padEnd(NAME_WIDTH)} ${"RTT p50 µs".padStart(11)} ${"RTT p99 µs".padStart(11)} ${"vs tcp".padStart(7)} ${"frames/s".padStart(10)} ${"MB/s".padStart(7)} ${"vs tcp".padStart(7)}`,
  );
  for (const [name] of KINDS) {
    const r = res.get(name) as { p50: number[]; p99: number[]; fps: number[] };
    const p50 = median(r.p50);
    const fps = median(r.fps);
    resultRows.push({
      part: "pair",
      transport: name,
      rttP50Us: p50,
      rttP99Us: median(r.p99),
      rttVsTcp: p50 / b50,
      framesPerSec: fps,
      framesVsTcp: fps / bfps,
      runsFramesPerSec: r.fps,
    });
    console.log(
      `${name.padEnd(NAME_WIDTH)} ${p50.toFixed(1).padStart(11)} ${median(r.p99).toFixed(1).padStart(11)} ${`${(p50 / b50).toFixed(2)}x`.padStart(7)} ${fps.toFixed(0).padStart(10)} ${((fps * 256) / 1e6).toFixed(1).padStart(7)} ${`${(fps / bfps).toFixed(2)}x`.padStart(7)}`,
    );
  }
}

// ------------------------------------------------------------------ part 2: a three-replica hybrid cluster

const CLUSTER_WARMUP_TXS = 50;
const CLUSTER_OUTSTANDING = 64;
const CLUSTER_WARMUP_MS = 500;
const TX_BYTES = 100;
/** Batch and core timeouts as in bench/ordering.ts; fsync on (the nodes' default, stated here). */
const CLUSTER_BATCH = { maxMessageCount: 500, batchTimeoutMs: 10 };
const CLUSTER_NODE: Partial<NodeConfig> = {
  sync: true,
  limits: { requestTimeoutTicks: 500, viewChangeTimeoutTicks: 500 },
};
const CLUSTER_NAMES: Record<TransportKind, string> = { libp2p: "libp2p", rdma: "rdma (shm)" };

/** Replica processes still running: stopped on the way out, whatever happens. */
const liveNodes = new Set<NodeProcess>();

/** An acknowledgement on /v1/submit (docs/api.md); `CLOSED` is ours: the stream went away. */
interface Ack {
  id: number | null;
  ok: boolean;
  receipt?: { duplicate: boolean; certificate: unknown[] };
  error?: { code: string; message: string };
}
const CLOSED: Ack = { id: null, ok: false, error: { code: "CLOSED", message: "submit stream closed" } };

/** A new transaction's certified receipt (hybrid f = 1: commit quorum 2). */
const committed = (a: Ack): boolean =>
  a.ok && a.receipt !== undefined && !a.receipt.duplicate && a.receipt.certificate.length >= 2;

/** One WebSocket submit stream: binary submissions (4-byte id, then the transaction), acks matched by id. */
class SubmitStream {
  private nextId = 0;
  private readonly waiting = new Map<number, (ack: Ack) => void>();
  private constructor(private readonly ws: WebSocket) {
    ws.on("error", () => {}); // "close" follows and fails whatever is waiting
    ws.on("message", (d: Buffer) => {
      const ack = JSON.parse(String(d)) as Ack;
      const done = this.waiting.get(ack.id as number);
      this.waiting.delete(ack.id as number);
      done?.(ack);
    });
    ws.on("close", () => {
      for (const done of this.waiting.values()) done(CLOSED);
      this.waiting.clear();
    });
  }
  static async open(url: string): Promise<SubmitStream> {
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}/v1/submit`);
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    return new SubmitStream(ws);
  }
  submit(tx: Buffer): Promise<Ack> {
    if (this.ws.readyState !== WebSocket.OPEN) return Promise.resolve(CLOSED);
    const id = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0;
    const frame = Buffer.allocUnsafe(4 + tx.length);
    frame.writeUInt32BE(id, 0);
    tx.copy(frame, 4);
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.ws.send(frame);
    });
  }
  close(): void {
    this.ws.close();
  }
}

/** Distinct 100 B transactions (the tx id is the hash of the bytes: a repeat would not be ordered again). */
function txSource(): () => Buffer {
  const nonce = randomBytes(16);
  let n = 0;
  return () => {
    const tx = Buffer.alloc(TX_BYTES, 0x61);
    nonce.copy(tx, 0);
    tx.writeUInt32BE(n++ >>> 0, 16);
    return tx;
  };
}

interface Health {
  ok: boolean;
  view: number;
  leader: number;
  viewChanging: boolean;
  certifiedHeight: number;
  livePeers: number;
}

/** Waits until every replica sees all its peers, has certified genesis, and all agree on the view. */
async function clusterReady(urls: readonly string[], timeoutMs = 30_000): Promise<Health> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    try {
      const hs = await Promise.all(
        urls.map(async (u) => (await (await fetch(`${u}/health`)).json()) as Health),
      );
      last = JSON.stringify(hs);
      const h0 = hs[0] as Health;
      const ready = (h: Health) =>
        h.ok &&
        !h.viewChanging &&
        h.livePeers === urls.length - 1 &&
        h.certifiedHeight >= 1 &&
        h.view === h0.view;
      if (hs.every(ready)) return h0;
    } catch (err) {
      last = String(err);
    }
    if (Date.now() > deadline) throw new Error(`cluster not ready after ${timeoutMs} ms: ${last}`);
    await sleep(100);
  }
}

interface ClusterRun {
  p50: number;
  p99: number;
  txPerSec: number;
  /** Acknowledgements that were not a new transaction's certified receipt, by error code. */
  failures: Map<string, number>;
  viewChanges: number;
}

/** A fresh three-replica hybrid cluster over `kind`: commit latency at 1 outstanding, then tx/s at 64. */
async function clusterRun(kind: TransportKind): Promise<ClusterRun> {
  const dir = makeTempDir();
  const procs: NodeProcess[] = [];
  const streams: SubmitStream[] = [];
  try {
    const lc = await localCluster("hybrid", 1, dir, {
      transport: kind,
      batch: CLUSTER_BATCH,
      node: CLUSTER_NODE,
    });
    for (const node of lc.nodes) {
      const p = new NodeProcess(lc.cluster, node, "ignore", lc.counters[node.id]);
      procs.push(p);
      liveNodes.add(p);
    }
    await Promise.all(procs.map((p) => p.start()));
    const health = await clusterReady(lc.urls);
    const nextTx = txSource();
    const failures = new Map<string, number>();
    const check = (ack: Ack): boolean => {
      if (committed(ack)) return true;
      const code = ack.ok ? "NOT_A_NEW_CERTIFIED_RECEIPT" : (ack.error?.code ?? "?");
      failures.set(code, (failures.get(code) ?? 0) + 1);
      return false;
    };

    // (a) Commit latency: one transaction at a time, to the leader.
    const leader = await SubmitStream.open(lc.urls[health.leader] as string);
    streams.push(leader);
    const lat: number[] = [];
    for (let i = 0; i < CLUSTER_WARMUP_TXS + CLUSTER_TXS; i++) {
      const t0 = performance.now();
      const ack = await leader.submit(nextTx());
      const ms = performance.now() - t0;
      if (check(ack) && i >= CLUSTER_WARMUP_TXS) lat.push(ms);
      if (ack === CLOSED) throw new Error(`${kind}: the leader's submit stream closed`);
    }
    lat.sort((a, b) => a - b);

    // (b) Committed tx/s: CLUSTER_OUTSTANDING transactions in flight over one stream per replica.
    const load: SubmitStream[] = [];
    for (const url of lc.urls) load.push(await SubmitStream.open(url));
    streams.push(...load);
    let measuring = false;
    let stop = false;
    let acked = 0;
    const slot = async (s: SubmitStream) => {
      while (!stop) {
        const ack = await s.submit(nextTx());
        if (check(ack) && measuring) acked++;
        if (ack === CLOSED) return;
      }
    };
    const slots = Array.from({ length: CLUSTER_OUTSTANDING }, (_, k) =>
      slot(load[k % load.length] as SubmitStream),
    );
    await sleep(CLUSTER_WARMUP_MS);
    measuring = true;
    const t0 = performance.now();
    await sleep(CLUSTER_SECONDS * 1000);
    measuring = false;
    const secs = (performance.now() - t0) / 1000;
    stop = true;
    // Let the last submissions commit before the cluster goes (their acks are not counted).
    await Promise.race([Promise.all(slots), sleep(10_000)]);

    return {
      p50: pct(lat, 0.5),
      p99: pct(lat, 0.99),
      txPerSec: acked / secs,
      failures,
      viewChanges: procs.reduce(
        (n, p) => n + p.events.filter((e) => e.kind === "view-change-started").length,
        0,
      ),
    };
  } finally {
    for (const s of streams) s.close();
    await Promise.all(procs.map((p) => p.stop()));
    for (const p of procs) liveNodes.delete(p);
    removeTempDir(dir);
  }
}

/** What went wrong in a run, if anything ("" when nothing did). */
function runNotes(r: ClusterRun): string {
  const notes: string[] = [];
  for (const [code, n] of r.failures) notes.push(`${n} x ${code}`);
  if (r.viewChanges > 0) notes.push(`${r.viewChanges} view change(s) started`);
  return notes.join(", ");
}

async function clusterBench(): Promise<void> {
  const kinds: TransportKind[] = ["libp2p"];
  if (rdmaNative.available) kinds.push("rdma");
  else console.log(`rdma cluster: skipped: ${rdmaNative.reason}`);
  const res = new Map<TransportKind, ClusterRun[]>(kinds.map((k) => [k, []]));
  const odd: string[] = [];
  for (let round = 0; round < CLUSTER_RUNS; round++) {
    // Alternate the transports (libp2p, rdma, libp2p, rdma, ...) so that machine noise hits them alike.
    for (const kind of kinds) {
      const r = await clusterRun(kind);
      res.get(kind)?.push(r);
      const notes = runNotes(r);
      if (notes) odd.push(`round ${round + 1}, ${CLUSTER_NAMES[kind]}: ${notes}`);
      process.stderr.write(
        `cluster round ${round + 1}/${CLUSTER_RUNS} ${CLUSTER_NAMES[kind]}: commit p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ${r.txPerSec.toFixed(0)} tx/s @${CLUSTER_OUTSTANDING}${notes ? ` (${notes})` : ""}\n`,
      );
    }
  }
  console.log(
    `hybrid cluster bench: 3 replicas (f=1), one process each, all on this machine (${availableParallelism()} CPUs); LevelDB fsync on; maxMessageCount ${CLUSTER_BATCH.maxMessageCount}, batchTimeout ${CLUSTER_BATCH.batchTimeoutMs} ms; median of ${CLUSTER_RUNS} rounds, transports alternating, a fresh cluster each time`,
  );
  console.log(
    `commit = submit over WS to the leader until the certified receipt, 1 outstanding, ${CLUSTER_TXS} x ${TX_BYTES} B after ${CLUSTER_WARMUP_TXS} warm-up; tx/s = ${CLUSTER_OUTSTANDING} outstanding over one WS per replica, ${CLUSTER_SECONDS} s after ${CLUSTER_WARMUP_MS / 1000} s warm-up`,
  );
  const width = Math.max("transport".length, ...kinds.map((k) => CLUSTER_NAMES[k].length));
  console.log(
    `${"transport".padEnd(width)} ${"commit p50 ms".padStart(13)} ${"p99 ms".padStart(8)} ${"vs libp2p".padStart(9)} ${"tx/s @64".padStart(9)} ${"vs libp2p".padStart(9)}`,
  );
  const base = res.get("libp2p") as ClusterRun[];
  const b50 = median(base.map((r) => r.p50));
  const btps = median(base.map((r) => r.txPerSec));
  for (const kind of kinds) {
    const rs = res.get(kind) as ClusterRun[];
    const p50 = median(rs.map((r) => r.p50));
    const tps = median(rs.map((r) => r.txPerSec));
    resultRows.push({
      part: "cluster",
      transport: kind,
      commitP50Ms: p50,
      commitP99Ms: median(rs.map((r) => r.p99)),
      commitVsLibp2p: p50 / b50,
      txPerSec: tps,
      txPerSecVsLibp2p: tps / btps,
      runsTxPerSec: rs.map((r) => r.txPerSec),
    });
    console.log(
      `${CLUSTER_NAMES[kind].padEnd(width)} ${p50.toFixed(2).padStart(13)} ${median(rs.map((r) => r.p99))
        .toFixed(2)
        .padStart(
          8,
        )} ${`${(p50 / b50).toFixed(2)}x`.padStart(9)} ${tps.toFixed(0).padStart(9)} ${`${(tps / btps).toFixed(2)}x`.padStart(9)}`,
    );
  }
  for (const line of odd) console.log(`note: ${line}`);
}

// ------------------------------------------------------------------ main

async function cleanUp(): Promise<void> {
  await Promise.all([...liveNodes].map((p) => p.kill()));
  liveNodes.clear();
  for (const dir of [...tempDirs]) removeTempDir(dir);
}

for (const [sig, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const)
  process.once(sig, () => {
    void cleanUp().finally(() => process.exit(code));
  });

async function main(): Promise<void> {
  if (!values["cluster-only"]) await transportBench();
  if (values["no-cluster"]) return;
  if (!values["cluster-only"]) console.log();
  await clusterBench();
}

async function record(): Promise<void> {
  const settings = {
    runs: RUNS,
    pings: PINGS,
    frames: FRAMES,
    clusterRuns: CLUSTER_RUNS,
    clusterTxs: CLUSTER_TXS,
    clusterSeconds: CLUSTER_SECONDS,
    clusterOutstanding: CLUSTER_OUTSTANDING,
    parts: values["cluster-only"] ? ["cluster"] : values["no-cluster"] ? ["pair"] : ["pair", "cluster"],
  };
  await publish("transport", settings, resultRows);
}

try {
  await main();
  await record();
} finally {
  await cleanUp();
}
