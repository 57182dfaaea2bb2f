// Mutual exclusion under failures, with three real replica processes: eight clients (spread over the
// replicas) run the lock recipe on one lock while the replica that the current holder is connected to is
// killed with SIGKILL and restarted, three times. A holder's session must survive by moving to another
// replica, or the holder must learn it may have lost the lock (suspended) before anyone else gets it:
// never two holders at once.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CoordClient } from "../../src/coord/client.ts";
import { DistributedLock } from "../../src/coord/recipes.ts";
import { generateEd25519KeyPair, signEd25519 } from "../../src/crypto/node-crypto.ts";
import { type LocalCluster, localCluster, NodeProcess } from "../../src/node/local-cluster.ts";
import { waitFor } from "../util/wait.ts";

const signer = { generate: generateEd25519KeyPair, sign: signEd25519 };
const CLIENTS = 8;
const KILLS = 3;
/** Acquisitions before each kill and after the last restart. */
const PROGRESS = 20;

describe("lock recipe across replica crashes (3 hybrid processes)", () => {
  let dir: string;
  let lc: LocalCluster;
  let procs: NodeProcess[];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "orderer-lock-"));
    lc = await localCluster("hybrid", 1, dir, { node: { coordClockPeriodMs: 100 } });
    procs = lc.nodes.map((n) => new NodeProcess(lc.cluster, n, "ignore", lc.counters[n.id]));
    await Promise.all(procs.map((p) => p.start()));
  });

  after(async () => {
    await Promise.all((procs ?? []).map((p) => p.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("never two holders while the holder's replica is killed and restarted", async () => {
    let holder: number | null = null;
    let violations = 0;
    let acquisitions = 0;
    let lost = 0;
    let expired = 0;
    let running = true;
    const perClient = Array.from({ length: CLIENTS }, () => 0);
    const clients: (CoordClient | null)[] = Array.from({ length: CLIENTS }, () => null);
    const open = async (i: number) => {
      for (;;) {
        try {
          return await CoordClient.connect({
            urls: lc.urls,
            signer,
            sessionTimeoutMs: 3000,
            startAt: i % 3,
            onState: (s) => {
              // From "Suspended" on, the session may expire at any moment: the lock counts as lost.
              if ((s === "Suspended" || s === "Expired") && holder === i) {
                holder = null;
                lost++;
              }
            },
          });
        } catch {
          await sleep(200);
        }
      }
    };
    const worker = async (i: number) => {
      while (running) {
        let zk = clients[i];
        if (!zk || zk.state === "Expired" || zk.state === "Closed") {
          if (zk) expired++;
          zk = await open(i);
          clients[i] = zk;
        }
        const lock = new DistributedLock(zk, "/locks/mutex");
        try {
          await lock.acquire(20_000);
        } catch {
          continue;
        }
        if (!lock.held) {
          await lock.release().catch(() => {});
          continue;
        }
        if (holder !== null) violations++;
        holder = i;
        acquisitions++;
        perClient[i] = (perClient[i] as number) + 1;
        await sleep(5 + Math.random() * 25);
        if (holder === i) holder = null;
        await lock.release().catch(() => {});
      }
    };
    const workers = Array.from({ length: CLIENTS }, (_, i) => worker(i));
    /** The lock changes hands `n` more times. */
    const progress = async (n: number) => {
      const mark = acquisitions;
      await waitFor(`${n} acquisitions after ${mark}`, () => acquisitions >= mark + n, {
        timeoutMs: 30_000,
        intervalMs: 10,
      });
    };
    // Chaos: kill the replica the current holder talks to (or a random one) once the lock has changed hands
    // PROGRESS times (since the start, or since the last restart); restart it once no client uses it.
    let holderKills = 0;
    const killed: number[] = [];
    for (let k = 0; k < KILLS; k++) {
      await progress(PROGRESS);
      // Strike while someone holds the lock (holds are short: poll for one, up to 3 s).
      for (let t = 0; t < 600 && holder === null; t++) await sleep(5);
      let target = Math.floor(Math.random() * 3);
      const h = holder;
      if (h !== null) {
        const url = clients[h]?.url;
        const idx = url ? lc.urls.indexOf(url) : -1;
        if (idx >= 0) {
          target = idx;
          holderKills++;
        }
      }
      killed.push(target);
      console.log(`# kill replica ${target} (holder ${h}), acquisitions so far ${acquisitions}`);
      await procs[target]?.kill();
      const down = lc.urls[target];
      await waitFor(
        `every client off replica ${target}`,
        () => clients.every((c) => !c || c.url !== down || c.state === "Expired" || c.state === "Closed"),
        { timeoutMs: 30_000, intervalMs: 10 },
      );
      await procs[target]?.start();
    }
    // The lock still changes hands after the last restart.
    await progress(PROGRESS);
    running = false;
    const t0 = Date.now();
    const ac = new AbortController();
    await Promise.race([
      Promise.all(workers),
      sleep(30_000, undefined, { signal: ac.signal }).catch(() => {}),
    ]);
    ac.abort();
    console.log(`# workers stopped in ${Date.now() - t0} ms`);
    console.log(
      `# ${acquisitions} acquisitions (per client ${perClient.join(",")}), killed ${killed.join(",")}, ` +
        `${holderKills} while a holder used the replica, ${lost} suspended holders, ${expired} expired sessions`,
    );
    await Promise.all(clients.map((c) => c?.close().catch(() => {})));
    assert.equal(violations, 0, "two holders at once");
    assert.ok(acquisitions >= 50, `only ${acquisitions} acquisitions`);
    assert.ok(holderKills >= 1, "no kill hit a holder's replica");
    assert.ok(perClient.filter((n) => n > 0).length >= CLIENTS - 1, "clients starved");
  });
});
