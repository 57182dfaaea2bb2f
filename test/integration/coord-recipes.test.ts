// The recipes on a live 3-replica hybrid cluster (in one process): lock exclusion with contention,
// leader election hand-over, simple and double barriers, and compare-and-set configuration updates.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { CoordClient } from "../../src/coord/client.ts";
import {
  Barrier,
  DistributedLock,
  DoubleBarrier,
  LeaderElection,
  SharedConfig,
} from "../../src/coord/recipes.ts";
import { InProcessCluster } from "../util/coord-cluster.ts";
import { waitFor } from "../util/wait.ts";

describe("coordination recipes (3 hybrid replicas in-process)", () => {
  let cl: InProcessCluster;
  const connect = (startAt = 0) => cl.connect(startAt);

  before(async () => {
    cl = await InProcessCluster.start("orderer-recipes-");
  });

  after(async () => {
    await cl?.stop();
  });

  it("lock: 6 contending clients, never two holders, every client gets it", async () => {
    const zks = await Promise.all(Array.from({ length: 6 }, (_, i) => connect(i)));
    let holder: number | null = null;
    let violations = 0;
    const counts = zks.map(() => 0);
    await Promise.all(
      zks.map(async (zk, i) => {
        for (let round = 0; round < 5; round++) {
          const lock = new DistributedLock(zk, "/locks/shared");
          await lock.acquire(30_000);
          if (holder !== null) violations++;
          holder = i;
          counts[i] = (counts[i] as number) + 1;
          await sleep(2 + Math.random() * 8);
          assert.ok(lock.held, "lock.held");
          holder = null;
          await lock.release();
        }
      }),
    );
    assert.equal(violations, 0);
    assert.deepEqual(counts, [5, 5, 5, 5, 5, 5]);
    // The queue is empty afterwards (a linearizable read: the last release may come from another session).
    assert.deepEqual(await (zks[0] as CoordClient).getChildren("/locks/shared", { linearizable: true }), []);
  });

  it("lock: a timed-out acquire leaves nothing behind", async () => {
    const [a, b] = await Promise.all([connect(0), connect(1)]);
    const la = new DistributedLock(a as CoordClient, "/locks/t");
    await la.acquire();
    const lb = new DistributedLock(b as CoordClient, "/locks/t");
    await assert.rejects(lb.acquire(300), (e: Error & { code?: string }) => e.code === "OPERATIONTIMEOUT");
    assert.equal((await (a as CoordClient).getChildren("/locks/t", { linearizable: true })).length, 1);
    await la.release();
  });

  it("leader election: one leader; when it resigns or its session ends, the next candidate leads", async () => {
    const zks = await Promise.all([connect(0), connect(1), connect(2)]);
    const leaders = new Set<number>();
    const elections = zks.map(
      (zk, i) =>
        new LeaderElection(zk, "/election/svc", `candidate-${i}`, (lead) => {
          if (lead) leaders.add(i);
          else leaders.delete(i);
        }),
    );
    for (const e of elections) await e.start();
    const one = async (expected: number) => {
      for (let i = 0; i < 200 && !(leaders.size === 1 && leaders.has(expected)); i++) await sleep(20);
      assert.deepEqual([...leaders], [expected]);
      return expected;
    };
    await one(0);
    assert.equal(await elections[1]?.leader(), "candidate-0");
    await elections[0]?.resign();
    await one(1);
    await (zks[1] as CoordClient).close();
    await one(2);
    assert.ok(elections[2]?.isLeader, "elections[2]?.isLeader");
  });

  it("barriers: waiters pass when the barrier goes; a double barrier waits for all to enter and leave", async () => {
    const zks = await Promise.all([connect(0), connect(1), connect(2)]);
    const b = new Barrier(zks[0] as CoordClient, "/barrier");
    await b.set();
    let passed = 0;
    const waiting = [1, 2].map((i) =>
      new Barrier(zks[i] as CoordClient, "/barrier").wait().then(() => passed++),
    );
    // Each waiter's exists went out before this read of its session, which is answered after it: once
    // both reads return, both waiters have found the barrier standing and wait for it to go.
    for (const i of [1, 2])
      assert.notEqual(await (zks[i] as CoordClient).exists("/barrier"), null, `client ${i} sees the barrier`);
    assert.equal(passed, 0, "nobody passes a standing barrier");
    await b.remove();
    await Promise.all(waiting);
    assert.equal(passed, 2);

    await (zks[0] as CoordClient).create("/db");
    const entered: number[] = [];
    const left: number[] = [];
    const run = zks.map(async (zk, i) => {
      await sleep(i * 150);
      const d = new DoubleBarrier(zk, "/db/round", 3, `p${i}`);
      await d.enter();
      entered.push(Date.now());
      await d.leave();
      left.push(Date.now());
    });
    await Promise.all(run);
    assert.equal(entered.length, 3);
    // Nobody passes enter before the last participant arrived (about 300 ms after the first), and nobody
    // leaves before everyone has entered.
    assert.ok(Math.min(...left) >= Math.max(...entered), "a participant left before all had entered");
    assert.equal(
      await (zks[0] as CoordClient).exists("/db/round/ready"),
      null,
      "the last leaver removes ready",
    );
  });

  it("double barrier: a participant that passes and leaves at once does not strand slower ones", async () => {
    const zks = await Promise.all([connect(0), connect(1), connect(2)]);
    // p0 and p1 learn of changes 400 ms late: by then p2 has entered (completing the count), passed and
    // left, so the count they read is 2 again. Waiting on the count itself would hang here forever.
    /** The slow participants that have read the count once (they entered and saw it short). */
    const looked = new Set<string>();
    const slow = (zk: CoordClient, name: string): CoordClient => {
      const late =
        <A extends unknown[]>(w: ((...a: A) => void) | undefined) =>
        (...a: A) =>
          setTimeout(() => w?.(...a), 400);
      return new Proxy(zk, {
        get(target, prop, receiver) {
          if (prop === "exists" || prop === "getChildren")
            return async (path: string, o: { watch?: (e: unknown) => void } = {}) => {
              const r = await (target[prop] as (p: string, o: object) => Promise<unknown>).call(
                target,
                path,
                o.watch ? { ...o, watch: late(o.watch) } : o,
              );
              if (prop === "getChildren") looked.add(name);
              return r;
            };
          const v = Reflect.get(target, prop, receiver);
          return typeof v === "function" ? v.bind(target) : v;
        },
      });
    };
    const order: string[] = [];
    const participant = async (zk: CoordClient, name: string) => {
      const d = new DoubleBarrier(zk, "/db2/round", 3, name);
      await d.enter();
      order.push(`${name} entered`);
      await d.leave();
      order.push(`${name} left`);
    };
    const p0 = participant(slow(zks[0] as CoordClient, "p0"), "p0");
    const p1 = participant(slow(zks[1] as CoordClient, "p1"), "p1");
    await waitFor("p0 and p1 to enter and wait for ready", () => looked.has("p0") && looked.has("p1"));
    const p2 = participant(zks[2] as CoordClient, "p2");
    const all = Promise.all([p0, p1, p2]);
    const outcome = await Promise.race([all.then(() => "done"), sleep(8000).then(() => "stuck")]);
    assert.equal(outcome, "done", `participants stuck: ${order.join(", ")}`);
    assert.equal(order.filter((o) => o.endsWith("entered")).length, 3);
  });

  it("double barrier: a reserved or empty participant name is refused", () => {
    assert.throws(
      () => new DoubleBarrier({} as CoordClient, "/db3", 2, "ready"),
      /BADARGUMENTS|cannot be called/,
    );
    assert.throws(() => new DoubleBarrier({} as CoordClient, "/db3", 0, "p"), /count/);
  });

  it("shared configuration: concurrent compare-and-set updates lose nothing; watchers see the last value", async () => {
    const zks = await Promise.all([connect(0), connect(1), connect(2), connect(3)]);
    const observer = new SharedConfig<{ n: number }>(zks[0] as CoordClient, "/config/counter");
    await observer.watch();
    await Promise.all(
      zks.map(async (zk) => {
        const cfg = new SharedConfig<{ n: number }>(zk, "/config/counter");
        for (let i = 0; i < 10; i++) await cfg.update((old) => ({ n: (old?.n ?? 0) + 1 }));
      }),
    );
    for (let i = 0; i < 100 && observer.current?.n !== 40; i++) await sleep(20);
    assert.deepEqual(observer.current, { n: 40 });
  });
});
