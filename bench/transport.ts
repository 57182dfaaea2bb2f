// Transports side by side, in one run: round-trip latency of 64 B frames (ping-pong, p50/p99) and
// one-way throughput of 256 B frames, for raw node:net TCP (4-byte length prefix, writes corked per
// event-loop turn; the baseline),
// libp2p (TCP + noise + yamux) and the in-memory transport. Both endpoints live in this process, on
// loopback. Each figure is the median of --runs runs; ratios are against raw TCP of the same run.
//
//   npm run bench:transport [-- --runs 5 --pings 3000 --frames 200000]

import "../src/util/polyfill.ts";
import { connect, createServer, type Socket } from "node:net";
import { parseArgs } from "node:util";
import { generateEd25519KeyPair } from "../src/crypto/node-crypto.ts";
import { freePorts } from "../src/node/ports.ts";
import { Libp2pTransport } from "../src/transport/libp2p.ts";
import { MemoryHub } from "../src/transport/memory.ts";
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

// ------------------------------------------------------------------ raw TCP

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

async function tcpPair(): Promise<Pair> {
  const handlers: ((f: Uint8Array) => void)[] = [() => {}, () => {}];
  const server = createServer();
  const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const a = connect(port, "127.0.0.1");
  await new Promise<void>((r) => a.once("connect", () => r()));
  const b = await accepted;
  const socks = [a, b];
  const corked = [false, false];
  for (const [i, s] of socks.entries()) {
    s.setNoDelay(true);
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
  let up = 0;
  pair.onFrame(1, () => up++);
  pair.onFrame(0, () => up++);
  const deadline = Date.now() + 10_000;
  while (up < 2 && Date.now() < deadline) {
    pair.send(0, new Uint8Array(1));
    pair.send(1, new Uint8Array(1));
    await new Promise((r) => setTimeout(r, 20));
  }
  if (up < 2) throw new Error("libp2p pair did not connect");
  await new Promise((r) => setTimeout(r, 100));
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

const KINDS: [string, () => Promise<Pair>][] = [
  ["tcp (node:net)", tcpPair],
  ["libp2p", libp2pPair],
  ["memory", memoryPair],
];

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
    `${"transport".padEnd(16)} ${"RTT p50 µs".padStart(11)} ${"RTT p99 µs".padStart(11)} ${"vs tcp".padStart(7)} ${"frames/s".padStart(10)} ${"MB/s".padStart(7)} ${"vs tcp".padStart(7)}`,
  );
  for (const [name] of KINDS) {
    const r = res.get(name) as { p50: number[]; p99: number[]; fps: number[] };
    const p50 = median(r.p50);
    const fps = median(r.fps);
    console.log(
      `${name.padEnd(16)} ${p50.toFixed(1).padStart(11)} ${median(r.p99).toFixed(1).padStart(11)} ${`${(p50 / b50).toFixed(2)}x`.padStart(7)} ${fps.toFixed(0).padStart(10)} ${((fps * 256) / 1e6).toFixed(1).padStart(7)} ${`${(fps / bfps).toFixed(2)}x`.padStart(7)}`,
    );
  }
}

await main();
