// The counter link's socket thread (plain JavaScript, no loader needed). It owns the UNIX socket to the
// counter process: connects, answers the handshake with the replica's key, receives the session (number
// and key) and publishes it to the main thread in shared memory; it reconnects by itself when the
// connection drops. It never carries a request: the main thread writes those to the counter's FIFO and
// blocks reading the reply FIFO (client.ts). This thread is also that read's watchdog: when the reply
// does not come in time, or the connection is lost meanwhile, it says so in shared memory and writes a
// NUDGE to the reply FIFO, which ends the blocked read. See protocol.ts for the frames.
//
// Its words of shared memory with the calling thread are in link-words.mjs.

import { createPrivateKey, sign } from "node:crypto";
import { closeSync, constants, openSync, writeSync } from "node:fs";
import { connect } from "node:net";
import { parentPort, workerData } from "node:worker_threads";
import {
  C_BUSY,
  C_GEN,
  C_SEQ,
  C_SESSION_NO,
  C_TIMEOUT_MS,
  C_UP,
  C_WAKE_REASON,
  C_WAKE_SEQ,
  WAKE_LOST,
  WAKE_TIMEOUT,
} from "./link-words.mjs";

const { socketPath, repPath, subsystem, publicKeyHex, pkcs8, ctrlBuffer, keyBuffer, watchMs } = workerData;
const ctrl = new Int32Array(ctrlBuffer);
const sessionKey = new Uint8Array(keyBuffer);
/** How often the watchdog looks at a call in progress (client.ts sets it from the certify timeout). */
const WATCH_MS = Number.isInteger(watchMs) && watchMs > 0 ? watchMs : 50;

const key = createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" });
const PROTOCOL_VERSION = 2;
const T_HELLO = 1;
const T_AUTH = 2;
const T_LINK = 3;
const T_ERR = 6;
const T_NUDGE = 9;
const SESSION_KEY_BYTES = 32;
const FRAME_BYTES_MAX = 2048;
const AUTH_DOMAIN = Buffer.from("orderer-counter-auth-v1");
const NUDGE = Buffer.from([0, 0, 0, 1, T_NUDGE]);

let sock = null;
let buffered = Buffer.alloc(0);
let waiter = null; // (body | Error) => void for the one outstanding handshake frame
let closed = false;
let wakeFd = -1; // this thread's own end of the reply FIFO, for NUDGEs
let oldWakeFd = -1; // the previous session's, in case the main thread still reads that one
let gen = 0;

function frame(body) {
  const out = Buffer.alloc(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  Buffer.from(body).copy(out, 4);
  return out;
}

function u32(n) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

function nextFrame() {
  return new Promise((resolve) => {
    waiter = resolve;
    drain();
  });
}

function drain() {
  if (!waiter || buffered.length < 4) return;
  const len = buffered.readUInt32BE(0);
  if (len === 0 || len > FRAME_BYTES_MAX) {
    fail(new Error(`counter sent a frame of ${len} bytes`));
    return;
  }
  if (buffered.length < 4 + len) return;
  const body = buffered.subarray(4, 4 + len);
  buffered = buffered.subarray(4 + len);
  const w = waiter;
  waiter = null;
  w(Buffer.from(body));
}

function fail(err) {
  if (sock) sock.destroy();
  sock = null;
  buffered = Buffer.alloc(0);
  const w = waiter;
  waiter = null;
  if (w) w(err);
}

function errorText(body) {
  // ERR: type, reqId u32, code (u32 len + bytes), message (u32 len + bytes)
  try {
    const cl = body.readUInt32BE(5);
    const code = body.subarray(9, 9 + cl).toString();
    const ml = body.readUInt32BE(9 + cl);
    return `${code}: ${body.subarray(13 + cl, 13 + cl + ml).toString()}`;
  } catch {
    return "malformed error frame";
  }
}

/** Ends the main thread's blocked read, if one is in progress, telling it why. */
function wake(reason, seq) {
  if (wakeFd < 0) return;
  Atomics.store(ctrl, C_WAKE_SEQ, seq);
  Atomics.store(ctrl, C_WAKE_REASON, reason);
  for (const fd of [wakeFd, oldWakeFd]) {
    if (fd < 0) continue;
    try {
      writeSync(fd, NUDGE);
    } catch {
      // nothing more to do: the main thread reads the other one
    }
  }
}

/**
 * Publishes a new session: C_GEN goes to 0 while its number and key are written, then to the next
 * generation (a restarted counter numbers its sessions from 1 again; the generation never repeats).
 */
function publish(body) {
  const fd = openSync(repPath, constants.O_RDWR);
  if (oldWakeFd >= 0) closeSync(oldWakeFd);
  oldWakeFd = wakeFd;
  wakeFd = fd;
  Atomics.store(ctrl, C_GEN, 0);
  Atomics.store(ctrl, C_SESSION_NO, body.readUInt32BE(1));
  sessionKey.set(body.subarray(5, 5 + SESSION_KEY_BYTES));
  gen = gen >= 0x7fff_ffff ? 1 : gen + 1;
  Atomics.store(ctrl, C_UP, 1);
  Atomics.store(ctrl, C_GEN, gen);
  Atomics.notify(ctrl, C_GEN);
}

function linkLost(s) {
  if (sock !== s) return;
  fail(new Error("counter connection closed"));
  // C_UP first, then C_BUSY (and the main thread sets C_BUSY before it reads C_UP): a call either sees
  // the link down before it writes, or is woken here.
  Atomics.store(ctrl, C_UP, 0);
  if (Atomics.load(ctrl, C_BUSY) === 1) wake(WAKE_LOST, Atomics.load(ctrl, C_SEQ));
  if (!closed) reconnect();
}

let reconnecting = false;
async function reconnect() {
  if (reconnecting) return;
  reconnecting = true;
  let pause = 50;
  while (!closed && sock === null) {
    try {
      const link = await openLink(Date.now() + 10_000);
      parentPort.postMessage({ type: "ready", body: link });
    } catch (err) {
      parentPort.postMessage({ type: "link-error", message: String(err?.message ?? err) });
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(1000, pause * 2);
    }
  }
  reconnecting = false;
}

async function openLink(deadline) {
  let lastErr = null;
  while (Date.now() < deadline && !closed) {
    try {
      const s = await new Promise((resolve, reject) => {
        const c = connect(socketPath);
        c.once("connect", () => resolve(c));
        c.once("error", reject);
      });
      sock = s;
      buffered = Buffer.alloc(0);
      s.on("data", (chunk) => {
        buffered = Buffer.concat([buffered, chunk]);
        if (buffered.length > 4 * FRAME_BYTES_MAX) fail(new Error("counter sent too much"));
        else drain();
      });
      s.on("error", () => {});
      let linked = false;
      s.on("close", () => (linked ? linkLost(s) : sock === s && fail(new Error("counter connection closed"))));
      const hello = await withDeadline(nextFrame(), deadline);
      if (hello instanceof Error) throw hello;
      if (hello[0] !== T_HELLO || hello.length !== 70) throw new Error("counter sent no HELLO");
      if (hello[1] !== PROTOCOL_VERSION)
        throw new Error(`counter speaks protocol ${hello[1]}, this replica ${PROTOCOL_VERSION}`);
      if (hello.readUInt32BE(2) !== subsystem)
        throw new Error(`counter at ${socketPath} is subsystem ${hello.readUInt32BE(2)}, not ${subsystem}`);
      if (hello.subarray(6, 38).toString("hex") !== publicKeyHex)
        throw new Error(`counter at ${socketPath} has another key than cluster.jsonc says`);
      const nonce = hello.subarray(38, 70);
      const msg = Buffer.concat([u32(AUTH_DOMAIN.length), AUTH_DOMAIN, u32(subsystem), u32(nonce.length), nonce]);
      s.write(frame(Buffer.concat([Buffer.from([T_AUTH]), sign(null, msg, key)])));
      const link = await withDeadline(nextFrame(), deadline);
      if (link instanceof Error) throw link;
      if (link[0] === T_ERR) throw new Error(`counter refused the handshake: ${errorText(link)}`);
      if (link[0] !== T_LINK || link.length < 5 + SESSION_KEY_BYTES + 4) throw new Error("counter sent no LINK");
      if (sock !== s) throw new Error("counter connection closed");
      publish(link);
      linked = true;
      return link;
    } catch (err) {
      lastErr = err;
      if (sock) sock.destroy();
      sock = null;
      if (/refused the handshake|another key|not \d+$|speaks protocol/.test(String(err?.message))) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw lastErr ?? new Error("counter link closed");
}

function withDeadline(p, deadline) {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(new Error("counter did not answer in time")), Math.max(1, deadline - Date.now()));
    p.then((v) => {
      clearTimeout(t);
      resolve(v);
    });
  });
}

// The watchdog: a call seen in progress, with the same sequence number, for C_TIMEOUT_MS is ended.
let watchedSeq = 0;
let watchedMs = 0;
let firedSeq = 0;
setInterval(() => {
  if (Atomics.load(ctrl, C_BUSY) !== 1) {
    watchedMs = 0;
    return;
  }
  const seq = Atomics.load(ctrl, C_SEQ);
  if (seq !== watchedSeq) {
    watchedSeq = seq;
    watchedMs = 0;
    return;
  }
  watchedMs += WATCH_MS;
  if (watchedMs >= Atomics.load(ctrl, C_TIMEOUT_MS) && firedSeq !== seq) {
    firedSeq = seq;
    wake(WAKE_TIMEOUT, seq);
  }
}, WATCH_MS);

parentPort.on("message", async (m) => {
  if (m.type === "connect") {
    try {
      const link = await openLink(Date.now() + m.timeoutMs);
      parentPort.postMessage({ type: "ready", body: link });
    } catch (err) {
      parentPort.postMessage({ type: "error", message: String(err?.message ?? err) });
    }
  } else if (m.type === "close") {
    closed = true;
    Atomics.store(ctrl, C_UP, 0);
    if (sock) sock.destroy();
    for (const fd of [wakeFd, oldWakeFd]) if (fd >= 0) closeSync(fd);
    wakeFd = -1;
    oldWakeFd = -1;
    parentPort.close();
    process.exit(0);
  }
});
