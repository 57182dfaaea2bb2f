// The coordination service on a live 3-replica hybrid cluster (in one process, real sockets and LevelDB):
// the client API and its error codes, the watch guarantees (event before data, exactly once across a
// reconnect, persistent-recursive), sessions (ephemerals gone at close and at expiry), malformed
// messages, and the tree surviving a restart — also when its records are lost and blocks are replayed.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import WebSocket from "ws";
import { type CoordError, CreateMode, type WatchedEvent } from "../../src/coord/client.ts";
import { decodeEntry, decodeOp, isCoordEntry, OpKind } from "../../src/coord/ops.ts";
import type { LocalCluster } from "../../src/node/local-cluster.ts";
import { OrdererNode } from "../../src/node/orderer-node.ts";
import { InProcessCluster, raw, rawSession } from "../util/coord-cluster.ts";
import { waitFor } from "../util/wait.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("coordination service (3 hybrid replicas in-process)", () => {
  let cl: InProcessCluster;
  let lc: LocalCluster;
  let nodes: OrdererNode[];
  const connect = (startAt = 0) => cl.connect(startAt);

  before(async () => {
    cl = await InProcessCluster.start("orderer-coord-");
    lc = cl.lc;
    nodes = cl.nodes;
  });

  after(async () => {
    await cl?.stop();
  });

  it("create, getData, setData, exists, getChildren, delete, multi, sync and their error codes", async () => {
    const zk = await connect(0);
    assert.equal(await zk.create("/api", "v0"), "/api");
    const { data, stat } = await zk.getData("/api");
    assert.equal(text(data), "v0");
    assert.equal(stat.version, 0);
    const st = await zk.setData("/api", "v1", 0);
    assert.equal(st.version, 1);
    await assert.rejects(
      zk.setData("/api", "v2", 0),
      (e: CoordError) => e.code === "BADVERSION" && e.errno === -103,
    );
    await assert.rejects(zk.create("/api"), (e: CoordError) => e.code === "NODEEXISTS");
    await assert.rejects(zk.create("/nope/child"), (e: CoordError) => e.code === "NONODE");
    await assert.rejects(zk.getData("/nope"), (e: CoordError) => e.code === "NONODE");
    await assert.rejects(zk.create("/bad/"), (e: CoordError) => e.code === "BADARGUMENTS");
    assert.equal(await zk.exists("/nope"), null);
    const e1 = await zk.create("/api/e", "", { mode: CreateMode.EPHEMERAL });
    await assert.rejects(zk.create(`${e1}/x`), (e: CoordError) => e.code === "NOCHILDRENFOREPHEMERALS");
    const s1 = await zk.create("/api/s-", "", { mode: CreateMode.PERSISTENT_SEQUENTIAL });
    assert.match(s1, /^\/api\/s-\d{10}$/);
    assert.deepEqual(await zk.getChildren("/api"), ["e", s1.slice(5)]);
    await assert.rejects(zk.delete("/api"), (e: CoordError) => e.code === "NOTEMPTY");
    const r = await zk.multi([
      { type: "check", path: "/api", version: 1 },
      { type: "create", path: "/api/m", data: "m" },
      { type: "setData", path: "/api", data: "v3" },
    ]);
    assert.deepEqual(
      r.map((x) => x.code),
      ["OK", "OK", "OK"],
    );
    await assert.rejects(
      zk.multi([
        { type: "create", path: "/api/rolled-back" },
        { type: "delete", path: "/api/missing" },
      ]),
      (e: CoordError & { results?: { code: string }[] }) =>
        e.code === "NONODE" && e.results?.map((x) => x.code).join() === "OK,NONODE",
    );
    assert.equal(await zk.exists("/api/rolled-back"), null);
    // Another session on another replica sees everything after sync.
    const other = await connect(2);
    await other.sync("/api");
    assert.equal(text((await other.getData("/api")).data), "v3");
  });

  it("a watch event arrives before the data it announces, and exactly once", async () => {
    const a = await connect(1);
    const b = await connect(2);
    await a.create("/w", "0");
    for (let round = 1; round <= 5; round++) {
      const events: WatchedEvent[] = [];
      await a.getData("/w", { watch: (e) => events.push(e) });
      const write = b.setData("/w", String(round));
      // Poll until the new value is visible: by then the event must have been delivered.
      let mzxid = 0;
      for (;;) {
        const { data, stat } = await a.getData("/w");
        mzxid = stat.mzxid;
        if (text(data) === String(round)) break;
      }
      assert.equal(events.length, 1, "event seen before the data");
      assert.equal(events[0]?.type, "NodeDataChanged");
      assert.equal(events[0]?.zxid, mzxid, "the event names the change");
      await write;
      // Events come on the connection ahead of the answer to a read after them: a second one for this
      // change would be here by the time a synced read returns.
      await a.sync("/w");
      await a.exists("/w");
      assert.equal(events.length, 1, "one-shot: once");
    }
  });

  it("watches survive a move to another replica: fired once for changes during and after the move", async () => {
    const a = await connect(0);
    const b = await connect(1);
    await b.create("/mv1", "0");
    await b.create("/mv2", "0");
    const ev1: WatchedEvent[] = [];
    const ev2: WatchedEvent[] = [];
    const evc: WatchedEvent[] = [];
    await a.getData("/mv1", { watch: (e) => ev1.push(e) });
    await a.getData("/mv2", { watch: (e) => ev2.push(e) });
    await a.exists("/mv3", { watch: (e) => evc.push(e) });
    const before = a.url;
    a.disconnect();
    await b.setData("/mv1", "changed while moving");
    await waitFor("reconnect", () => a.state === "SyncConnected" && a.url !== before, {
      timeoutMs: 10_000,
      intervalMs: 20,
    });
    await waitFor("event for the change made during the move", () => ev1.length === 1, {
      timeoutMs: 5000,
      intervalMs: 20,
    });
    await b.setData("/mv2", "changed after the move");
    await b.create("/mv3");
    await waitFor("events after the move", () => ev2.length === 1 && evc.length === 1, {
      timeoutMs: 5000,
      intervalMs: 20,
    });
    await b.setData("/mv1", "again");
    await b.setData("/mv2", "again");
    // Once a's replica answers a read of the second change, an event for either would have come first.
    await a.sync("/mv2");
    assert.equal(text((await a.getData("/mv2")).data), "again", "a's replica applied both changes");
    assert.deepEqual(
      [ev1, ev2, evc].map((l) => l.map((e) => e.type)),
      [["NodeDataChanged"], ["NodeDataChanged"], ["NodeCreated"]],
    );
  });

  it("persistent recursive watches see every change below, in order", async () => {
    const a = await connect(0);
    const b = await connect(1);
    await b.create("/rec");
    await a.sync();
    const seen: string[] = [];
    await a.addWatch("/rec", "persistentRecursive", (e) => seen.push(`${e.type} ${e.path}`));
    await b.create("/rec/x");
    await b.create("/rec/x/y");
    await b.setData("/rec/x/y", "1");
    await b.delete("/rec/x/y");
    await waitFor("events", () => seen.length >= 4, { timeoutMs: 5000, intervalMs: 20 });
    assert.deepEqual(seen, [
      "NodeCreated /rec/x",
      "NodeCreated /rec/x/y",
      "NodeDataChanged /rec/x/y",
      "NodeDeleted /rec/x/y",
    ]);
    await a.removeWatches("/rec", "persistentRecursive");
    await b.create("/rec/z");
    // Once a's replica answers a read of the new node, an event for it would have come first.
    await a.sync("/rec");
    assert.notEqual(await a.exists("/rec/z"), null, "a's replica applied the create");
    assert.equal(seen.length, 4, "no event after the watch was removed");
  });

  it("ephemerals go when their session closes, and when it expires through the agreed clock", async () => {
    const a = await connect(0);
    const b = await connect(1);
    await b.create("/eph");
    await a.create("/eph/closed", "", { mode: CreateMode.EPHEMERAL });
    await a.close();
    assert.equal(await b.exists("/eph/closed"), null);
    // A session whose client vanishes (raw connection, no pings): expires after its timeout.
    const r = await rawSession(lc.urls[2] as string, 2000);
    r.write(2, 1, {
      kind: OpKind.CREATE,
      path: "/eph/vanishing",
      data: new Uint8Array(0),
      mode: 1,
      ttlMs: 0,
    });
    await r.next(3);
    assert.equal(r.msgs[2]?.code, "OK");
    const gone = new Promise<WatchedEvent>((resolve) => void b.exists("/eph/vanishing", { watch: resolve }));
    const t0 = Date.now();
    r.ws.terminate();
    const e = await gone;
    const waited = Date.now() - t0;
    assert.equal(e.type, "NodeDeleted");
    assert.ok(waited >= 1000, `expired after ${waited} ms, not before its timeout`);
  });

  it("writes whose cxid skips one get one clear error each and enter the chain at most once", async () => {
    // A write that cannot execute (its session's previous cxid never comes) was once proposed again and
    // again, tens of times, and never answered.
    const r = await rawSession(lc.urls[1] as string, 30_000);
    const sid = r.sessionId;
    const write = (id: number, cxid: number) =>
      r.write(id, cxid, {
        kind: OpKind.CREATE,
        path: `/gap-${cxid}`,
        data: new Uint8Array(0),
        mode: 0,
        ttlMs: 0,
      });
    const height0 = nodes[1]?.ledger.height as number;
    write(1, 1);
    await r.next(3);
    assert.equal(r.msgs[2]?.code, "OK");
    const GAPS = 1000;
    for (let i = 0; i < GAPS; i++) write(2 + i, 3 + 2 * i); // 3, 5, 7, …: each skips one
    await r.next(3 + GAPS);
    const answers = r.msgs.slice(3);
    assert.equal(answers.length, GAPS, "one answer each");
    for (const m of answers) {
      assert.equal(m.type, "error");
      assert.equal(m.code, "MARSHALLINGERROR");
      assert.match(String(m.message), /cxid \d+ skips \d+/);
    }
    assert.deepEqual(new Set(answers.map((m) => m.id)).size, GAPS);
    // The session still works: the next cxid in order succeeds.
    write(5000, 2);
    await r.next(4 + GAPS);
    assert.equal(r.msgs[3 + GAPS]?.code, "OK");
    // Count this session's operations in the blocks ordered since: the two that executed, nothing else.
    // A marker written through the same replica after the answers is ordered after anything it proposed
    // for this session (one queue, in arrival order): count through the marker's block.
    const marker = await connect(1);
    await marker.create("/gap-marker");
    const ledger = nodes[1]?.ledger as OrdererNode["ledger"];
    const inclusions = new Map<number, number>();
    for (let n = height0; n < ledger.height; n++) {
      const b = await ledger.getBlock(n);
      for (const e of b?.entries ?? []) {
        if (!isCoordEntry(e)) continue;
        for (const so of decodeEntry(e).ops) {
          const op = decodeOp(so.payload);
          if (op.sessionId === sid) inclusions.set(op.cxid, (inclusions.get(op.cxid) ?? 0) + 1);
        }
      }
    }
    assert.deepEqual(
      [...inclusions].sort((a, b) => a[0] - b[0]),
      [
        [1, 1],
        [2, 1],
      ],
    );
    r.ws.close();
  });

  it("malformed messages get an error reply and the connection survives", async () => {
    const r = await raw(lc.urls[0] as string);
    r.ws.send("not json");
    r.ws.send(JSON.stringify({ type: "getData", id: 7, path: "/" }));
    r.ws.send(JSON.stringify({ type: "write", id: 8, op: "!!", sig: "x" }));
    r.ws.send(
      JSON.stringify({ type: "connect", id: 9, op: "AAAA", sig: Buffer.alloc(64).toString("base64") }),
    );
    r.ws.send(JSON.stringify({ type: "nonsense", id: 10 }));
    await r.next(6);
    assert.deepEqual(
      r.msgs.slice(1).map((m) => [m.id, m.code]),
      [
        [null, "MARSHALLINGERROR"],
        [7, "UNKNOWNSESSION"],
        [8, "UNKNOWNSESSION"],
        [9, "MARSHALLINGERROR"],
        [10, "UNKNOWNSESSION"],
      ],
    );
    assert.equal(r.ws.readyState, WebSocket.OPEN);
    r.ws.close();
  });

  it("the tree survives a restart, and is rebuilt from the blocks when its records are lost", async () => {
    const zk = await connect(1);
    await zk.create("/durable", "kept");
    await zk.sync();
    await waitFor(
      "all replicas applied",
      () => nodes.every((n) => n.coord.tree.get("/durable") !== undefined),
      { timeoutMs: 5000, intervalMs: 20 },
    );
    const before = nodes[0]?.coord.tree.dump() as string;
    const node0 = nodes[0] as OrdererNode;
    await node0.stop();
    // Lose the tree's records: the next start replays every block.
    const { Level } = await import("level");
    const db = new Level<string, Uint8Array>(lc.nodes[0]?.dataDir as string, { valueEncoding: "view" });
    const keys: string[] = [];
    for await (const k of db.keys({ gte: "k/", lt: "l" })) keys.push(k);
    for await (const k of db.keys({ gte: "q/", lt: "s" })) keys.push(k);
    for await (const k of db.keys({ gte: "z/", lt: "z0" })) keys.push(k);
    assert.ok(keys.length > 5, "keys.length > 5");
    await db.batch(keys.map((key) => ({ type: "del" as const, key })));
    await db.close();
    nodes[0] = await OrdererNode.start(lc.cluster, lc.nodes[0] as (typeof lc.nodes)[0]);
    const after = nodes[0].coord.tree;
    assert.equal(text(after.get("/durable")?.data ?? new Uint8Array()), "kept");
    const strip = (d: string) => {
      const j = JSON.parse(d);
      return JSON.stringify([j.nodes, j.sessions]);
    };
    assert.equal(strip(after.dump()).length > 0, true);
    assert.deepEqual(JSON.parse(strip(after.dump()))[0], JSON.parse(strip(before))[0]);
    // And it keeps applying with the others.
    await zk.setData("/durable", "after restart");
    await waitFor(
      "replica 0 caught up",
      () => text(nodes[0]?.coord.tree.get("/durable")?.data ?? new Uint8Array()) === "after restart",
      { timeoutMs: 10_000, intervalMs: 20 },
    );
  });
});
