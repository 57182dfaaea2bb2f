// The ordering API's contract on a live 3-replica hybrid cluster (in one process, real sockets and
// LevelDB): error codes and statuses, duplicate detection, deliver seek behaviours and backpressure,
// restart with an intact chain, a data directory of another cluster refused, and no quorum → 503.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import { sha256, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { ApiServerError, assertNativeUws } from "../../src/node/api-server.ts";
import { clientOptions } from "../../src/node/config.ts";
import {
  type CounterProcess,
  type LocalCluster,
  localCluster,
  startCounters,
} from "../../src/node/local-cluster.ts";
import { OrdererNode } from "../../src/node/orderer-node.ts";
import { toHexStr } from "../../src/ordering/block.ts";
import { OrderingClient, type ReceiptJson, verifyReceipt } from "../../src/ordering/client.ts";
import { LedgerError } from "../../src/ordering/ledger.ts";
import { waitFor } from "../util/wait.ts";

const TX_MAX = 256 * 1024;

async function call(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as Record<string, unknown> };
}
const codeOf = (r: { body: Record<string, unknown> }) => (r.body.error as { code: string } | undefined)?.code;

type DeliverMsg = { type: string; status?: string; block?: { number: number }; error?: { code: string } };

/** Opens a deliver stream, sends the seeks, and collects messages (into `msgs`) until `until` holds. */
async function deliver(
  base: string,
  seeks: unknown[],
  until: (msgs: DeliverMsg[]) => boolean,
  msgs: DeliverMsg[] = [],
) {
  const ws = new WebSocket(`${base.replace("http", "ws")}/v1/deliver`);
  await new Promise((r) => ws.once("open", r));
  const done = new Promise<void>((resolve) => {
    ws.on("message", (d) => {
      msgs.push(JSON.parse(String(d)));
      if (until(msgs)) resolve();
    });
  });
  for (const s of seeks) ws.send(typeof s === "string" ? s : JSON.stringify(s));
  await Promise.race([done, sleep(10_000)]);
  ws.close();
  return msgs;
}

describe("ordering API (3 hybrid replicas in-process)", () => {
  let dir: string;
  let lc: LocalCluster;
  let nodes: OrdererNode[];
  let counters: CounterProcess[] = [];
  let base: string;
  let client: OrderingClient;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "orderer-api-"));
    lc = await localCluster("hybrid", 1, dir, { batch: { absoluteMaxBytes: TX_MAX, maxMessageCount: 50 } });
    counters = await startCounters(lc);
    nodes = await Promise.all(lc.nodes.map((n) => OrdererNode.start(lc.cluster, n)));
    base = lc.urls[0] as string;
    // Replicas accept submissions once they have heard from a quorum of peers.
    for (let i = 0; i < 400 && !nodes.every((n) => n.hasQuorum()); i++) await sleep(50);
    client = new OrderingClient({
      ...clientOptions(lc.cluster),
      hash: sha256,
      verify: verifyEd25519,
    });
  });

  after(async () => {
    await Promise.all((nodes ?? []).map((n) => n.stop()));
    await Promise.all(counters.map((c) => c.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("answers bad requests with a stable JSON error code and status", async () => {
    const json = { method: "POST", headers: { "content-type": "application/json" } };
    let r = await call(`${base}/v1/transactions`, { ...json, body: "{not json" });
    assert.deepEqual([r.status, codeOf(r)], [400, "MALFORMED"]);
    r = await call(`${base}/v1/transactions`, { method: "POST", body: new Uint8Array(0) });
    assert.deepEqual([r.status, codeOf(r)], [400, "EMPTY_TX"]);
    r = await call(`${base}/v1/transactions`, { method: "POST", body: new Uint8Array(TX_MAX + 1) });
    assert.deepEqual([r.status, codeOf(r)], [413, "TX_TOO_LARGE"]);
    r = await call(`${base}/v1/blocks/abc`);
    assert.deepEqual([r.status, codeOf(r)], [400, "MALFORMED"]);
    r = await call(`${base}/v1/blocks/999999`);
    assert.deepEqual([r.status, codeOf(r)], [404, "BLOCK_NOT_FOUND"]);
    r = await call(`${base}/v1/transactions/${"ab".repeat(32)}`);
    assert.deepEqual([r.status, codeOf(r)], [404, "TX_NOT_FOUND"]);
    r = await call(`${base}/v1/transactions/nothex`);
    assert.deepEqual([r.status, codeOf(r)], [400, "MALFORMED"]);
    r = await call(`${base}/v1/chain`, { method: "PUT" });
    assert.deepEqual([r.status, codeOf(r)], [405, "METHOD_NOT_ALLOWED"]);
    r = await call(`${base}/nowhere`);
    assert.deepEqual([r.status, codeOf(r)], [404, "NOT_FOUND"]);
    for (const x of [r]) assert.ok(!JSON.stringify(x.body).includes("at "), "no stack traces");
  });

  it("every replica serves genesis (and every block) with a complete certificate", async () => {
    await client.submit(new TextEncoder().encode("first"));
    for (const url of lc.urls) {
      const g = await call(`${url}/v1/blocks/0`);
      assert.equal(g.status, 200);
      assert.ok((g.body.metadata as { certificate: unknown[] }).certificate.length >= 2, `genesis at ${url}`);
      await client.block(0, url);
      await client.block(1, url);
    }
  });

  it("accepts JSON and raw bytes, and detects duplicates (sequential and concurrent)", async () => {
    const a = await client.submit({ hello: "world" });
    assert.equal(a.duplicate, false);
    const again = await client.submit({ hello: "world" }, { url: lc.urls[1] });
    assert.equal(again.duplicate, true);
    assert.deepEqual([again.block, again.position], [a.block, a.position]);
    const tx = new TextEncoder().encode("same bytes, three replicas at once");
    const rs = await Promise.all(lc.urls.map((url) => client.submit(tx, { url })));
    for (const r of rs) assert.deepEqual([r.block, r.position], [rs[0]!.block, rs[0]!.position]);
    const byId = await call(`${base}/v1/transactions/${toHexStr(sha256(tx))}`);
    assert.equal(byId.status, 200);
    assert.equal(
      Buffer.from(byId.body.tx as string, "base64").toString(),
      "same bytes, three replicas at once",
    );
    // The transaction is once in the chain.
    const { height } = await client.chain(base);
    let count = 0;
    for await (const b of client.blocks({ start: 0, stop: height - 1 }))
      for (const e of b.entries) if (Buffer.from(e).equals(Buffer.from(tx))) count++;
    assert.equal(count, 1);
  });

  it("a burst is carried by few gateway requests; every transaction has its own receipt; blocks keep maxMessageCount", async () => {
    const gw = nodes[0]!.gateway;
    const before = gw.stats.requests;
    const txs = Array.from({ length: 400 }, (_, i) => new TextEncoder().encode(`burst ${i} ${Date.now()}`));
    const rs = await Promise.all(txs.map((tx) => client.submit(tx, { url: base })));
    const requests = gw.stats.requests - before;
    assert.ok(requests <= txs.length / 4, `${requests} requests carried ${txs.length} transactions`);
    // Receipts are per transaction: distinct positions, each verified by the client against the block.
    const at = new Set(rs.map((r) => `${r.block}/${r.position}`));
    assert.equal(at.size, txs.length);
    for (const r of rs.slice(0, 20)) assert.equal(r.duplicate, false);
    const blocks = new Set(rs.map((r) => r.block));
    for await (const b of client.blocks({ start: Math.min(...blocks), stop: Math.max(...blocks) }))
      assert.ok(
        b.entries.length <= 50,
        `block ${b.header.number} holds ${b.entries.length} > maxMessageCount`,
      );
  });

  it("WebSocket submit: binary and text frames, one ack per transaction; a bad frame keeps the connection", async () => {
    const ws = new WebSocket(`${base.replace("http", "ws")}/v1/submit`);
    await new Promise((r) => ws.once("open", r));
    const acks: { id: unknown; ok: boolean; error?: { code: string } }[] = [];
    const got = new Promise<void>((resolve) => {
      ws.on("message", (d) => {
        acks.push(JSON.parse(String(d)));
        if (acks.length === 5) resolve();
      });
    });
    ws.send("not json");
    const bin = Buffer.alloc(4 + 5);
    bin.writeUInt32BE(7, 0);
    bin.write("bin-1", 4);
    ws.send(bin);
    ws.send(JSON.stringify({ id: "t", tx: Buffer.from("text-1").toString("base64") }));
    ws.send(JSON.stringify({ id: 9, json: { a: 1 } }));
    ws.send(JSON.stringify({ id: "lenient", tx: "!!!aGVsbG8=!!!" }));
    await Promise.race([got, sleep(10_000)]);
    ws.close();
    const byId = new Map(acks.map((a) => [a.id, a]));
    assert.equal(byId.get(null)?.error?.code, "MALFORMED");
    assert.equal(byId.get(7)?.ok, true);
    assert.equal(byId.get("t")?.ok, true);
    assert.equal(byId.get(9)?.ok, true);
    assert.equal(byId.get("lenient")?.error?.code, "MALFORMED");
  });

  it("WebSocket submit: a burst of 300 on one connection gets 300 receipts, each verifiable", async () => {
    const ws = new WebSocket(`${base.replace("http", "ws")}/v1/submit`);
    await new Promise((r) => ws.once("open", r));
    const acks = new Map<number, { ok: boolean; receipt: ReceiptJson }>();
    const got = new Promise<void>((resolve) => {
      ws.on("message", (d) => {
        const m = JSON.parse(String(d)) as { id: number; ok: boolean; receipt: ReceiptJson };
        acks.set(m.id, m);
        if (acks.size === 300) resolve();
      });
    });
    const txs = Array.from({ length: 300 }, (_, i) => Buffer.from(`burst-${i}-${Date.now()}`));
    txs.forEach((tx, i) => {
      const frame = Buffer.alloc(4 + tx.length);
      frame.writeUInt32BE(i, 0);
      tx.copy(frame, 4);
      ws.send(frame);
    });
    await Promise.race([got, sleep(20_000)]);
    ws.close();
    assert.equal(acks.size, 300);
    const o = clientOptions(lc.cluster);
    const replicaKeys = o.replicaKeys.map((k) => new Uint8Array(Buffer.from(k, "hex")));
    const policy = { replicaKeys, quorum: o.quorum, hash: sha256, verify: verifyEd25519 };
    for (const [i, a] of acks) {
      assert.equal(a.ok, true, `ack ${i}`);
      verifyReceipt(new Uint8Array(txs[i] as Buffer), a.receipt, policy);
    }
  });

  it("deliver: newest, stop, FAIL_IF_NOT_READY, BLOCK_UNTIL_READY, and a malformed seek that keeps the connection", async () => {
    const { height } = await client.chain(base);
    let m = await deliver(base, [{ start: "newest", stop: "newest" }], (x) =>
      x.some((y) => y.type === "status"),
    );
    assert.deepEqual(
      m.map((x) => x.type),
      ["block", "status"],
    );
    assert.equal(m[0]!.block!.number, height - 1);
    assert.equal(m[1]!.status, "SUCCESS");
    m = await deliver(base, [{ start: height + 5, behavior: "FAIL_IF_NOT_READY" }], (x) => x.length > 0);
    assert.equal(m[0]!.status, "NOT_FOUND");
    m = await deliver(
      base,
      ["{oops", { start: 0, stop: 1 }],
      (x) => x.filter((y) => y.type === "status").length === 2,
    );
    assert.deepEqual(
      m.map((x) => x.status ?? x.block?.number),
      ["BAD_REQUEST", 0, 1, "SUCCESS"],
    );
    // Waits for a block that does not exist yet, then streams it. A second seek on the connection is
    // refused while the first streams: its answer shows that the first one waits.
    const seen: DeliverMsg[] = [];
    const waiting = deliver(
      base,
      [{ start: height + 1, stop: height + 1 }, { start: 0 }],
      (x) => x.some((y) => y.status === "SUCCESS"),
      seen,
    );
    await waitFor("the second seek refused", () => seen.length > 0, { timeoutMs: 10_000 });
    assert.equal(seen[0]?.status, "BAD_REQUEST", "a second seek while the first streams");
    await client.submit(new TextEncoder().encode("for the waiting stream, 1"));
    await client.submit(new TextEncoder().encode("for the waiting stream, 2"));
    m = await waiting;
    assert.deepEqual(
      m.map((x) => x.status ?? x.block?.number),
      ["BAD_REQUEST", height + 1, "SUCCESS"],
    );
  });

  it("deliver: a consumer that stops reading makes the server wait for drain, then gets every block in order", async () => {
    const big = Array.from({ length: 160 }, (_, i) => Buffer.alloc(200 * 1024, i));
    await Promise.all(big.map((b) => client.submit(b)));
    const { height } = await client.chain(base);
    const api = nodes[0]!.api;
    const pausesBefore = api.stats.deliverPauses;
    const ws = new WebSocket(`${base.replace("http", "ws")}/v1/deliver`);
    await new Promise((r) => ws.once("open", r));
    const numbers: number[] = [];
    let finished = false;
    ws.on("message", (d) => {
      const m = JSON.parse(String(d)) as { type: string; block?: { number: number } };
      if (m.type === "block") numbers.push(m.block!.number);
      else finished = true;
    });
    ws.send(JSON.stringify({ start: 0, stop: height - 1 }));
    ws.pause();
    await waitFor("the server to pause the stream", () => api.stats.deliverPauses > pausesBefore, {
      timeoutMs: 10_000,
    });
    ws.resume();
    for (let i = 0; i < 200 && !finished; i++) await sleep(50);
    ws.close();
    assert.ok(finished, "the stream ended with a status");
    assert.deepEqual(
      numbers,
      Array.from({ length: height }, (_, i) => i),
    );
  });

  it("refuses to run on uWebSockets.js's pure-JS fallback", () => {
    const fallback = createRequire(import.meta.url)("uWebSockets.js/dist/index");
    assert.throws(
      () => assertNativeUws(fallback),
      (e: unknown) => e instanceof ApiServerError && e.code === "NATIVE_UWS_MISSING",
    );
    assertNativeUws();
  });

  it("a restarted replica resumes its chain; a data directory of another cluster is refused", async () => {
    const before = await client.chain(lc.urls[2]);
    await nodes[2]!.stop();
    await assert.rejects(
      OrdererNode.start({ ...lc.cluster, name: "another" }, lc.nodes[2]!),
      (e: unknown) => e instanceof LedgerError && e.code === "GENESIS_MISMATCH",
    );
    nodes[2] = await OrdererNode.start(lc.cluster, lc.nodes[2]!);
    const afterRestart = await client.chain(lc.urls[2]);
    assert.ok(afterRestart.height >= before.height, "afterRestart.height >= before.height");
    // A replica that just started answers NO_QUORUM until it has heard from its peers.
    let r: Awaited<ReturnType<OrderingClient["submit"]>> | undefined;
    for (let i = 0; i < 50 && !r; i++) {
      r = await client
        .submit(new TextEncoder().encode("after the restart"), { url: lc.urls[2] })
        .catch(async (e) => {
          assert.equal(e.code, "NO_QUORUM");
          await sleep(100);
          return undefined;
        });
    }
    assert.ok(r, "r");
    assert.ok(r.block >= before.height, "r.block >= before.height");
  });

  it("answers 503 NO_QUORUM (and /health 503) when the replica cannot reach a commit quorum", async () => {
    await nodes[1]!.stop();
    await nodes[2]!.stop();
    // The replica counts a peer live for a few seconds after it last heard from it.
    await waitFor(
      "the replica to report no quorum",
      async () => ((await (await fetch(`${base}/health`)).json()) as { quorum?: boolean }).quorum === false,
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    const health = await fetch(`${base}/health`);
    await health.text();
    assert.equal(health.status, 503, "GET /health answers 503 while the replica cannot commit");
    const r = await call(`${base}/v1/transactions`, { method: "POST", body: "alone" });
    assert.deepEqual([r.status, codeOf(r)], [503, "NO_QUORUM"]);
  });
});
