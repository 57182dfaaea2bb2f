// A live 3-replica hybrid cluster in this process for coordination tests, and clients that are closed
// with it.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CoordClient } from "../../src/coord/client.ts";
import { generateEd25519KeyPair, signEd25519 } from "../../src/crypto/node-crypto.ts";
import {
  type CounterProcess,
  type LocalCluster,
  localCluster,
  startCounters,
} from "../../src/node/local-cluster.ts";
import { OrdererNode } from "../../src/node/orderer-node.ts";

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
