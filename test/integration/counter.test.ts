// The trusted counter as its own process (src/counter/), driven by the replica's RemoteCounter: it
// certifies only for its replica, never one value twice, keeps its values across SIGKILL, refuses a
// second process on its data directory, survives garbage on its socket, and a replica whose counter is
// gone learns it with a typed error.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chownSync,
  closeSync,
  constants,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { BftError } from "../../src/bft/errors.ts";
import { type CounterCert, UsigChecker } from "../../src/bft/trusted.ts";
import { RemoteCounter } from "../../src/counter/client.ts";
import {
  encodeCert,
  encodeRequest,
  fifoPaths,
  frame,
  OP_INDEPENDENT,
  seal,
  T_FREPLY,
  T_FREQ,
} from "../../src/counter/protocol.ts";
import { ed25519PublicKeyOf, generateEd25519KeyPair, nodeCrypto } from "../../src/crypto/node-crypto.ts";
import type { CounterConfig } from "../../src/node/config.ts";
import { CounterProcess } from "../../src/node/local-cluster.ts";
import { waitFor } from "../util/wait.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const digest = (i: number) => nodeCrypto.sha256(new TextEncoder().encode(`message ${i}`));
const code = (c: string) => (e: unknown) => {
  assert.ok(e instanceof BftError, `expected a BftError, got ${String(e)}`);
  assert.equal(e.code, c);
  return true;
};

describe("trusted counter process", () => {
  let dir: string;
  let cfg: CounterConfig;
  let proc: CounterProcess;
  let counterKey: Uint8Array;
  let replicaSeed: Uint8Array;
  let rc: RemoteCounter;
  let broken = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "orderer-counter-"));
    const counter = generateEd25519KeyPair();
    const replica = generateEd25519KeyPair();
    counterKey = counter.publicKey;
    replicaSeed = replica.privateKey;
    cfg = {
      id: 1,
      seed: hex(counter.privateKey),
      replicaPublicKey: hex(replica.publicKey),
      socket: join(dir, "counter-1.sock"),
      dataDir: join(dir, "counter-1"),
      logLevel: "silent",
    };
    proc = new CounterProcess(cfg, "ignore");
    await proc.start();
    rc = await RemoteCounter.open({
      socketPath: cfg.socket,
      id: 1,
      counterPublicKey: counterKey,
      replicaSeed,
      certifyTimeoutMs: 3000,
      onBroken: () => broken++,
    });
  });

  after(async () => {
    await rc?.close();
    await proc?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("certifies for its replica; the certificates verify with the counter's public key only", () => {
    const checker = new UsigChecker([new Uint8Array(32), counterKey], nodeCrypto);
    const certs: CounterCert[] = [];
    for (let i = 1; i <= 50; i++) certs.push(rc.certifyIndependent(0, { view: 0, slot: i }, digest(i)));
    for (let i = 1; i <= 50; i++)
      assert.ok(checker.verifyCert(certs[i - 1] as CounterCert, digest(i)), `certificate ${i} verifies`);
    assert.ok(!checker.verifyCert(certs[0] as CounterCert, digest(2)), "a certificate binds its digest");
    const cont = rc.certifyContinuing(0, { view: 1, slot: 0 }, digest(99));
    assert.deepEqual(cont.prev, { view: 0, slot: 50 });
    assert.ok(checker.verifyCert(cont, digest(99)), "the continuing certificate verifies");
    assert.deepEqual(rc.current(0), { view: 1, slot: 0 });
  });

  it("never certifies one value twice; the same request again gets the same certificate", () => {
    const a = rc.certifyIndependent(0, { view: 1, slot: 5 }, digest(500));
    assert.throws(() => rc.certifyIndependent(0, { view: 1, slot: 5 }, digest(501)), code("NOT_INCREASING"));
    assert.throws(() => rc.certifyIndependent(0, { view: 1, slot: 4 }, digest(502)), code("NOT_INCREASING"));
    assert.throws(() => rc.certifyContinuing(0, { view: 0, slot: 9 }, digest(503)), code("GOES_BACK"));
    const again = rc.certifyIndependent(0, { view: 1, slot: 5 }, digest(500));
    assert.deepEqual(again.sig, a.sig);
  });

  it("refuses another replica's key, and a replica expecting another counter key refuses it", async () => {
    await assert.rejects(
      RemoteCounter.open({
        socketPath: cfg.socket,
        id: 1,
        counterPublicKey: counterKey,
        replicaSeed: generateEd25519KeyPair().privateKey,
        connectTimeoutMs: 2000,
      }),
      (e: unknown) =>
        e instanceof BftError && e.code === "UNAVAILABLE" && /refused the handshake/.test(e.message),
    );
    await assert.rejects(
      RemoteCounter.open({
        socketPath: cfg.socket,
        id: 1,
        counterPublicKey: ed25519PublicKeyOf(generateEd25519KeyPair().privateKey),
        replicaSeed,
        connectTimeoutMs: 2000,
      }),
      (e: unknown) => e instanceof BftError && /another key/.test(e.message),
    );
  });

  it("closes a connection that sends garbage and keeps serving", async () => {
    for (const junk of [Buffer.alloc(8, 0xff), Buffer.from([0, 0, 0, 3, 2, 0, 0])]) {
      const closedBy = await new Promise<string>((resolve) => {
        const s = createConnection(cfg.socket);
        s.on("connect", () => s.write(junk));
        s.resume(); // read what the counter answers, so its close is seen
        s.on("end", () => resolve("server"));
        s.on("error", () => resolve("server"));
        s.setTimeout(5000, () => {
          resolve("timeout");
          s.destroy();
        });
      });
      assert.equal(closedBy, "server", `the counter kept a connection open after ${junk.toString("hex")}`);
    }
    const c = rc.certifyIndependent(0, { view: 1, slot: 6 }, digest(600));
    assert.deepEqual(c.value, { view: 1, slot: 6 });
  });

  it("certifies nothing another process writes to its FIFOs, and the replica skips forged replies", async () => {
    const { req, rep } = fifoPaths(cfg.socket);
    const C = 5; // a counter of its own, so the other tests' values are not disturbed
    const request = (reqId: number, slot: number, d: Uint8Array) =>
      encodeRequest({ reqId, op: OP_INDEPENDENT, counter: C, value: { view: 3, slot }, digest: d }).subarray(
        4,
      );
    const toCounter = openSync(req, constants.O_RDWR); // read-write: opening never blocks
    // Requests sealed with keys of the attacker's own, for the first session numbers, a bare request,
    // and bytes that are not frames at all.
    for (let session = 1; session <= 4; session++)
      writeSync(toCounter, seal(T_FREQ, session, request(1, 1, digest(1000)), randomBytes(32)));
    writeSync(toCounter, frame(request(2, 2, digest(1001))));
    writeSync(toCounter, Buffer.from("not a frame, only bytes"));
    closeSync(toCounter);
    // Replies forged for the replica's next request (reqIds are small: try the next few).
    const toReplica = openSync(rep, constants.O_RDWR);
    for (let reqId = 1; reqId <= 200; reqId++)
      writeSync(
        toReplica,
        seal(
          T_FREPLY,
          1,
          encodeCert(reqId, { view: 3, slot: 1 }, undefined, new Uint8Array(64)).subarray(4),
          randomBytes(32),
        ),
      );
    await sleep(200); // the counter has read and dropped all of it
    const checker = new UsigChecker([new Uint8Array(32), counterKey], nodeCrypto);
    // Nothing moved the counter: the replica certifies (3,1) and (3,2) over other digests...
    const a = rc.certifyIndependent(C, { view: 3, slot: 1 }, digest(1002));
    const b = rc.certifyIndependent(C, { view: 3, slot: 2 }, digest(1003));
    // ...and gets the counter's own certificates, not the forged replies waiting in its FIFO.
    assert.ok(checker.verifyCert(a, digest(1002)), "the reply is the counter's");
    assert.ok(checker.verifyCert(b, digest(1003)), "the second reply is the counter's too");
    closeSync(toReplica);
  });

  it("refuses a second counter process on the same data directory", async () => {
    const twin = new CounterProcess({ ...cfg, socket: join(dir, "twin.sock") }, "ignore");
    await assert.rejects(twin.start(), /LOCKED|in use by counter process/);
    await twin.kill();
  });

  it("keeps its values across SIGKILL: after a restart in the same boot it refuses what it certified and skips nothing", async () => {
    rc.certifyIndependent(0, { view: 1, slot: 7 }, digest(700));
    const links = rc.stats.links;
    await proc.kill();
    await proc.start();
    // The link reconnects by itself on the next call. Killed, the counter resumes at the exact values it
    // recorded before answering (counter.exact, read back in the same boot): it never certifies (1,7)
    // again, and (1,8) is still its to certify (after a reboot it would resume at its reservation).
    assert.throws(() => rc.certifyIndependent(0, { view: 1, slot: 7 }, digest(701)), code("NOT_INCREASING"));
    // The reconnect's READY reaches this thread as a worker message.
    await waitFor("the reconnect's LINK", () => rc.stats.links > links, { timeoutMs: 5000 });
    assert.deepEqual(rc.current(0), { view: 1, slot: 7 }, "resumed at its last certified value");
    const top = 7;
    assert.deepEqual(rc.certifyIndependent(0, { view: 1, slot: top + 1 }, digest(800)).value, {
      view: 1,
      slot: top + 1,
    });
    // A clean stop saves the exact values: the next start skips nothing.
    await proc.stop();
    await proc.start();
    assert.throws(
      () => rc.certifyIndependent(0, { view: 1, slot: top + 1 }, digest(802)),
      code("NOT_INCREASING"),
    );
    assert.deepEqual(rc.certifyIndependent(0, { view: 1, slot: top + 2 }, digest(803)).value, {
      view: 1,
      slot: top + 2,
    });
    assert.equal(broken, 0);
  });

  it("a counter gone for longer than the timeout: UNAVAILABLE, reported once, and the link stays down", async () => {
    await proc.kill();
    const started = Date.now();
    assert.throws(() => rc.certifyIndependent(0, { view: 2, slot: 9 }, digest(900)), code("UNAVAILABLE"));
    assert.ok(Date.now() - started < 10_000, "the call gave up within its timeout");
    assert.throws(() => rc.certifyIndependent(0, { view: 2, slot: 10 }, digest(901)), code("UNAVAILABLE"));
    assert.equal(broken, 1);
    await sleep(10);
  });
});

describe("trusted counter process under its own Unix user", () => {
  const root = process.getuid?.() === 0;
  const USER = "orderer-counter-test";
  it("drops root for the configured user: its process and its files are that user's", {
    skip: !root && "needs root",
  }, async () => {
    try {
      execFileSync("id", ["-u", USER], { stdio: "ignore" });
    } catch {
      execFileSync("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER]);
    }
    const uid = Number(execFileSync("id", ["-u", USER], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", USER], { encoding: "utf8" }).trim());
    const dir = mkdtempSync(join(tmpdir(), "orderer-counter-user-"));
    chownSync(dir, uid, gid); // where the counter's user creates its socket
    const counter = generateEd25519KeyPair();
    const replica = generateEd25519KeyPair();
    const proc = new CounterProcess(
      {
        id: 0,
        seed: hex(counter.privateKey),
        replicaPublicKey: hex(replica.publicKey),
        socket: join(dir, "c.sock"),
        dataDir: join(dir, "data"),
        user: USER,
        logLevel: "silent",
      },
      "ignore",
    );
    let rc: RemoteCounter | undefined;
    try {
      await proc.start();
      const pid = proc.proc?.pid as number;
      const uidLine = readFileSync(`/proc/${pid}/status`, "utf8")
        .split("\n")
        .find((l) => l.startsWith("Uid:"));
      assert.deepEqual(
        uidLine?.split(/\s+/).slice(1, 4).map(Number),
        [uid, uid, uid],
        "the counter runs as its user",
      );
      assert.equal(statSync(join(dir, "data", "counter.state")).uid, uid, "its state file is its user's");
      assert.equal(statSync(join(dir, "data")).mode & 0o777, 0o700, "its data directory is private");
      rc = await RemoteCounter.open({
        socketPath: join(dir, "c.sock"),
        id: 0,
        counterPublicKey: counter.publicKey,
        replicaSeed: replica.privateKey,
      });
      assert.deepEqual(rc.certifyIndependent(0, { view: 0, slot: 1 }, digest(1)).value, { view: 0, slot: 1 });
    } finally {
      await rc?.close();
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("trusted counter link: a counter that stops answering", () => {
  it("fails the call with UNAVAILABLE once counterTimeoutMs has passed (SIGSTOP: the socket stays open)", {
    timeout: 30_000,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "orderer-counter-stop-"));
    const counter = generateEd25519KeyPair();
    const replica = generateEd25519KeyPair();
    const cfg: CounterConfig = {
      id: 0,
      seed: hex(counter.privateKey),
      replicaPublicKey: hex(replica.publicKey),
      socket: join(dir, "counter-0.sock"),
      dataDir: join(dir, "counter-0"),
      logLevel: "silent",
    };
    const proc = new CounterProcess(cfg, "ignore");
    await proc.start();
    let broken = 0;
    const rc = await RemoteCounter.open({
      socketPath: cfg.socket,
      id: 0,
      counterPublicKey: counter.publicKey,
      replicaSeed: replica.privateKey,
      certifyTimeoutMs: 1000,
      onBroken: () => broken++,
    });
    try {
      rc.certifyIndependent(0, { view: 0, slot: 1 }, digest(1));
      const pid = proc.proc?.pid as number;
      process.kill(pid, "SIGSTOP");
      await allThreadsStopped(pid); // the stop reaches each thread in its own time
      const started = Date.now();
      assert.throws(() => rc.certifyIndependent(0, { view: 0, slot: 2 }, digest(2)), code("UNAVAILABLE"));
      const took = Date.now() - started;
      assert.ok(took >= 900 && took < 3000, `gave up after ${took} ms, the timeout is 1000 ms`);
      assert.equal(broken, 1);
      process.kill(pid, "SIGCONT");
    } finally {
      await rc.close();
      await proc.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function allThreadsStopped(pid: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const states = readdirSync(`/proc/${pid}/task`).map(
      (t) => readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8").replace(/^.*\) /s, "")[0],
    );
    if (states.every((st) => st === "T" || st === "t")) return;
    await sleep(10);
  }
  throw new Error(`process ${pid} did not stop`);
}
