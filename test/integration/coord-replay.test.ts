// Replaying a session's messages from the public chain (issue 25), with three real replica processes.
// Everything a client orders is in blocks that anyone can read (GET /v1/blocks/:n). A createSession taken
// from there and sent again must not attach the sender to the owner's session (nor drop the owner's
// connection), at any replica; a resume signed for one connection must not work on another; and
// replaying a crashed client's createSession and pings must not keep its session, or its ephemeral lock
// node, alive past its timeout.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import { CoordClient, CreateMode, type SessionState } from "../../src/coord/client.ts";
import {
  decodeEntry,
  decodeOp,
  isCoordEntry,
  OpKind,
  resumeSigningBytes,
  type SignedOp,
} from "../../src/coord/ops.ts";
import { generateEd25519KeyPair, signEd25519 } from "../../src/crypto/node-crypto.ts";
import { type LocalCluster, localCluster, NodeProcess } from "../../src/node/local-cluster.ts";
import { waitFor } from "../util/wait.ts";

const signer = { generate: generateEd25519KeyPair, sign: signEd25519 };
const TIMEOUT_MS = 4000;
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

/** The session key a client holds (the test plays the client's own role with it, nothing more). */
const keyOf = (zk: CoordClient) =>
  (zk as unknown as { key: { publicKey: Uint8Array; privateKey: Uint8Array } }).key;

/** A raw connection to one replica: its hello, then one request and its answer. */
async function rawAsk(url: string, msg: (hello: Record<string, unknown>) => Record<string, unknown>) {
  const ws = new WebSocket(`${url.replace("http", "ws")}/v1/coord`);
  const msgs: Record<string, unknown>[] = [];
  ws.on("message", (d) => msgs.push(JSON.parse(String(d))));
  ws.on("error", () => {});
  await new Promise((r) => ws.once("open", r));
  await waitFor("hello", () => msgs.length > 0, { timeoutMs: 5000 });
  ws.send(JSON.stringify(msg(msgs[0] as Record<string, unknown>)));
  await waitFor("an answer", () => msgs.length > 1, { timeoutMs: 10_000 });
  return { ws, hello: msgs[0] as Record<string, unknown>, answer: msgs[1] as Record<string, unknown> };
}

/** Every coordination operation of certified blocks [from, height) at `url`, as an eavesdropper reads them. */
async function chainOps(url: string, from = 1): Promise<SignedOp[]> {
  const { height } = (await (await fetch(`${url}/v1/chain`)).json()) as { height: number };
  const out: SignedOp[] = [];
  for (let n = from; n < height; n++) {
    const b = (await (await fetch(`${url}/v1/blocks/${n}`)).json()) as { entries: string[] };
    for (const e of b.entries.map((x) => new Uint8Array(Buffer.from(x, "base64"))))
      if (isCoordEntry(e)) out.push(...decodeEntry(e).ops);
  }
  return out;
}

/** The createSession that opened `zk`'s session, read back from the chain. */
async function recordedCreate(url: string, zk: CoordClient): Promise<SignedOp> {
  const key = Buffer.from(keyOf(zk).publicKey).toString("hex");
  let found: SignedOp | undefined;
  await waitFor(
    "the createSession in a certified block",
    async () => {
      found = (await chainOps(url)).find((so) => {
        const b = decodeOp(so.payload).body;
        return b.kind === OpKind.CREATE_SESSION && Buffer.from(b.publicKey).toString("hex") === key;
      });
      return found !== undefined;
    },
    { timeoutMs: 10_000, intervalMs: 200 },
  );
  return found as SignedOp;
}

describe("replaying a session's messages from the chain (3 hybrid processes)", () => {
  let dir: string;
  let lc: LocalCluster;
  let procs: NodeProcess[];
  const clients: CoordClient[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "orderer-replay-"));
    lc = await localCluster("hybrid", 1, dir, { node: { coordClockPeriodMs: 100 } });
    procs = lc.nodes.map((n) => new NodeProcess(lc.cluster, n, "ignore", lc.counters[n.id]));
    await Promise.all(procs.map((p) => p.start()));
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await Promise.all((procs ?? []).map((p) => p.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const connect = async (startAt: number, states: SessionState[] = []) => {
    const zk = await CoordClient.connect({
      urls: lc.urls,
      signer,
      sessionTimeoutMs: TIMEOUT_MS,
      startAt,
      onState: (s) => states.push(s),
    });
    clients.push(zk);
    return zk;
  };

  it("a createSession or resume replayed from the chain is refused everywhere; the owner keeps its session", async () => {
    const states: SessionState[] = [];
    const owner = await connect(0, states);
    await owner.create("/owned", "mine", { mode: CreateMode.EPHEMERAL });
    const sid = owner.sessionId;
    const create = await recordedCreate(lc.urls[0] as string, owner);
    const replay = { type: "connect", id: 0, op: b64(create.payload), sig: b64(create.sig) };
    for (const url of lc.urls) {
      const { ws, answer } = await rawAsk(url, () => replay);
      assert.equal(
        answer.type,
        "error",
        `${url}: a replayed createSession gets an error (${JSON.stringify(answer)})`,
      );
      assert.equal(answer.code, "AUTHFAILED", `${url}: AUTHFAILED`);
      assert.notEqual(answer.sessionId, sid, `${url}: the replayer is not attached to the owner's session`);
      // Nothing was attached: a read on that connection has no session.
      ws.send(JSON.stringify({ type: "getData", id: 1, path: "/owned" }));
      await sleep(200);
      ws.close();
    }
    // A resume the owner signed for one connection (replica 0's challenge to it), sent on others.
    const key = keyOf(owner);
    const { ws: first, hello } = await rawAsk(lc.urls[0] as string, () => ({
      type: "getData",
      id: 9,
      path: "/",
    }));
    first.close();
    const challenge = new Uint8Array(Buffer.from(String(hello.nonce), "hex"));
    const sig = signEd25519(key.privateKey, resumeSigningBytes(sid, hello.replica as number, challenge));
    for (const url of lc.urls) {
      const { ws, answer } = await rawAsk(url, () => ({
        type: "resume",
        id: 0,
        sessionId: sid,
        sig: b64(sig),
      }));
      assert.equal(
        answer.code,
        "AUTHFAILED",
        `${url}: a recorded resume is refused (${JSON.stringify(answer)})`,
      );
      ws.close();
    }
    // The owner was never moved off its connection and its session works.
    await owner.setData("/owned", "still mine");
    assert.equal(owner.sessionId, sid, "the owner has the same session");
    assert.ok(
      !states.includes("Disconnected"),
      `the owner's connection was never closed: ${states.join(",")}`,
    );
    assert.equal(owner.state, "SyncConnected", "the owner is connected");
  });

  it("a dead client's ephemeral node goes away within its timeout despite replays of its createSession and pings", async (t) => {
    const holder = await connect(1);
    await holder.create("/lock", "held", { mode: CreateMode.EPHEMERAL });
    const sid = holder.sessionId;
    await sleep(1000); // a few pings go through the order
    const url = lc.urls[1] as string;
    const create = await recordedCreate(url, holder);
    const pings = (await chainOps(url)).filter((so) => {
      const op = decodeOp(so.payload);
      return op.sessionId === sid && op.body.kind === OpKind.PING;
    });
    const watcher = await connect(2);
    // The holder crashes: no closeSession, no more pings.
    (holder as unknown as { shutdown(s: string, e: Error): void }).shutdown("Closed", new Error("crashed"));
    const crashedAt = Date.now();
    let replaying = true;
    const answers: Record<string, unknown>[] = [];
    const replayer = (async () => {
      for (let i = 0; replaying; i++) {
        const { ws, answer } = await rawAsk(lc.urls[i % 3] as string, () => ({
          type: "connect",
          id: 0,
          op: b64(create.payload),
          sig: b64(create.sig),
        }));
        answers.push(answer);
        for (const p of pings.slice(-3))
          ws.send(JSON.stringify({ type: "ping", op: b64(p.payload), sig: b64(p.sig) }));
        await sleep(500);
        ws.close();
      }
    })();
    try {
      await waitFor(
        "the dead holder's lock node to go",
        async () => (await watcher.exists("/lock")) === null,
        {
          timeoutMs: 3 * TIMEOUT_MS,
          intervalMs: 100,
        },
      );
    } finally {
      replaying = false;
      await replayer;
    }
    const gone = Date.now() - crashedAt;
    t.diagnostic(`lock node gone ${gone} ms after the crash; ${answers.length} replays, all refused`);
    // Expiry is decided on the agreed session clock at a block boundary: a little ordering latency on top.
    assert.ok(
      gone <= TIMEOUT_MS + 1500,
      `the lock node went ${gone} ms after the crash (timeout ${TIMEOUT_MS} ms)`,
    );
    assert.ok(answers.length >= 3, `${answers.length} replays were made while waiting`);
    for (const a of answers)
      assert.equal(a.code, "AUTHFAILED", `every replayed createSession is refused: ${JSON.stringify(a)}`);
  });
});
