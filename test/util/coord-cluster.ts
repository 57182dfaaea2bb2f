// A live 3-replica hybrid cluster in this process for coordination tests, and clients that are closed
// with it.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import { CoordClient } from "../../src/coord/client.ts";
import { encodeOp, type OpBody, OpKind, opSigningBytes } from "../../src/coord/ops.ts";
import { generateEd25519KeyPair, signEd25519 } from "../../src/crypto/node-crypto.ts";
import {
  type CounterProcess,
  type LocalCluster,
  localCluster,
  startCounters,
} from "../../src/node/local-cluster.ts";
import { OrdererNode } from "../../src/node/orderer-node.ts";
import { waitFor } from "./wait.ts";

export const nodeSigner = { generate: generateEd25519KeyPair, sign: signEd25519 };

export class InProcessCluster {
  private readonly clients: CoordClient[] = [];

  private constructor(
    readonly dir: string,
    readonly lc: LocalCluster,
    readonly nodes: OrdererNode[],
    private readonly counters: CounterProcess[],
  ) {}

  /** `coordClockPeriodMs`: how often a replica proposes its clock while anything depends on time (100 ms). */
  static async start(prefix: string, coordClockPeriodMs = 100): Promise<InProcessCluster> {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    const lc = await localCluster("hybrid", 1, dir, { node: { coordClockPeriodMs } });
    const counters = await startCounters(lc);
    const nodes = await Promise.all(lc.nodes.map((n) => OrdererNode.start(lc.cluster, n)));
    for (let i = 0; i < 400 && !nodes.every((n) => n.hasQuorum()); i++) await sleep(50);
    return new InProcessCluster(dir, lc, nodes, counters);
  }

  get urls(): string[] {
    return this.lc.urls;
  }

  /** A client whose first replica is `startAt` (mod 3). */
  async connect(startAt = 0, sessionTimeoutMs = 4000): Promise<CoordClient> {
    const c = await CoordClient.connect({
      urls: this.lc.urls,
      signer: nodeSigner,
      sessionTimeoutMs,
      startAt: startAt % 3,
    });
    this.clients.push(c);
    return c;
  }

  async stop(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close().catch(() => {})));
    await Promise.all(this.nodes.map((n) => n.stop()));
    await Promise.all(this.counters.map((c) => c.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A raw protocol connection (to test what the client library never sends). */
export async function raw(url: string) {
  const ws = new WebSocket(`${url.replace("http", "ws")}/v1/coord`);
  const msgs: Record<string, unknown>[] = [];
  ws.on("message", (d) => msgs.push(JSON.parse(String(d))));
  await new Promise((r) => ws.once("open", r));
  await waitFor("hello", () => msgs.length > 0, { timeoutMs: 5000, intervalMs: 20 });
  return {
    ws,
    msgs,
    next: async (n: number) =>
      waitFor(`message ${n}`, () => msgs.length >= n, { timeoutMs: 10_000, intervalMs: 20 }),
  };
}

/** A raw connection with a session of its own: sends signed writes the client library never would. */
export async function rawSession(url: string, timeoutMs: number) {
  const r = await raw(url);
  const key = generateEd25519KeyPair();
  const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
  const sign = (p: Uint8Array) => b64(signEd25519(key.privateKey, opSigningBytes(p)));
  const open = encodeOp({
    sessionId: 0,
    cxid: 0,
    body: {
      kind: OpKind.CREATE_SESSION,
      publicKey: key.publicKey,
      timeoutMs,
      replica: r.msgs[0]?.replica as number,
      challenge: new Uint8Array(Buffer.from(String(r.msgs[0]?.nonce), "hex")),
    },
  });
  r.ws.send(JSON.stringify({ type: "connect", id: 0, op: b64(open), sig: sign(open) }));
  await r.next(2);
  assert.equal(r.msgs[1]?.type, "connected", "the raw session is open");
  const sessionId = r.msgs[1]?.sessionId as number;
  const write = (id: number, cxid: number, body: OpBody) => {
    const op = encodeOp({ sessionId, cxid, body });
    r.ws.send(JSON.stringify({ type: "write", id, op: b64(op), sig: sign(op) }));
  };
  return { ...r, sessionId, write };
}
