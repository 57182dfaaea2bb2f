// Transports side by side, in one run: round-trip latency of 64 B frames (ping-pong, p50/p99) and
// one-way throughput of 256 B frames, for raw node:net TCP (4-byte length prefix, writes corked per
// event-loop turn; the baseline), the same framing over a node:net UNIX domain socket, libp2p
// (TCP + noise + yamux), the rdma transport over the native addon's shm provider (UNIX socket
// endpoints, shared-memory mailboxes; skipped with a note when the addon is not built or does not
// load) and the in-memory transport. Both endpoints live in this process, on loopback / in temp dirs
// (removed afterwards). Each figure is the median of --runs runs; ratios are against raw TCP of the
// same run.
//
//   npm run bench:transport [-- --runs 5 --pings 3000 --frames 200000]

import "../src/util/polyfill.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type NetConnectOpts, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { generateEd25519KeyPair } from "../src/crypto/node-crypto.ts";
import { freePorts } from "../src/node/ports.ts";
import { Libp2pTransport } from "../src/transport/libp2p.ts";
import { MemoryHub } from "../src/transport/memory.ts";
import { RdmaTransport } from "../src/transport/rdma.ts";
import { loadRdmaNative } from "../src/transport/rdma-native.ts";
import type { Transport, TransportLimits } from "../src/transport/transport.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    pings: { type: "string", default: "3000" },
    frames: { type: "string", default: "200000" },
  },
});
const RUNS = Number(values.runs);
const PINGS = Number(values.pings);
const FRAMES = Number(values.frames);

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
  return {
    p50: samples[Math.floor(samples.length * 0.5)] as number,
    p99: samples[Math.floor(samples.length * 0.99)] as number,
  };
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

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

const rdmaNative = loadRdmaNative();
if (!rdmaNative.available) console.log(`rdma (shm): skipped: ${rdmaNative.reason}`);

const KINDS: [string, () => Promise<Pair>][] = [
  ["tcp (node:net)", tcpPair],
  ["unix socket (node:net)", unixPair],
  ["libp2p", libp2pPair],
  ...(rdmaNative.available ? [["rdma (shm)", rdmaPair] as [string, () => Promise<Pair>]] : []),
  ["memory", memoryPair],
];
const NAME_WIDTH = Math.max("transport".length, ...KINDS.map(([name]) => name.length));

async function main(): Promise<void> {
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
    console.log(
      `${name.padEnd(NAME_WIDTH)} ${p50.toFixed(1).padStart(11)} ${median(r.p99).toFixed(1).padStart(11)} ${`${(p50 / b50).toFixed(2)}x`.padStart(7)} ${fps.toFixed(0).padStart(10)} ${((fps * 256) / 1e6).toFixed(1).padStart(7)} ${`${(fps / bfps).toFixed(2)}x`.padStart(7)}`,
    );
  }
}

try {
  await main();
} finally {
  for (const dir of [...tempDirs]) removeTempDir(dir);
}
