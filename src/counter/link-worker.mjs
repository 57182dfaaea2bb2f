// The counter link's I/O thread (plain JavaScript, no loader needed). It owns the Unix socket to the
// counter process: connects, answers the handshake with the replica's key, and relays request frames
// that the replica's main thread posts in shared memory, blocking there with Atomics.wait until the
// reply lands. Framing is a 4-byte big-endian length; see protocol.ts for the frames themselves.
//
// Shared control words (Int32Array): [0] state: 0 idle, 1 posted by main, 2 taken, 3 answered;
// [1] length of the bytes in the data buffer; [2] 1 when the answer is a link error (text in data).

import { createPrivateKey, sign } from "node:crypto";
import { connect } from "node:net";
import { parentPort, workerData } from "node:worker_threads";

const { socketPath, subsystem, publicKeyHex, pkcs8, ctrlBuffer, dataBuffer } = workerData;
const ctrl = new Int32Array(ctrlBuffer);
const data = new Uint8Array(dataBuffer);
const key = createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" });
const T_HELLO = 1;
const T_AUTH = 2;
const T_READY = 3;
const T_ERR = 6;
const FRAME_BYTES_MAX = 2048;
const AUTH_DOMAIN = Buffer.from("orderer-counter-auth-v1");

let sock = null;
let buffered = Buffer.alloc(0);
let waiter = null; // (body | Error) => void for the one outstanding frame
let closed = false;

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
      s.on("close", () => {
        if (sock === s) fail(new Error("counter connection closed"));
      });
      const hello = await withDeadline(nextFrame(), deadline);
      if (hello instanceof Error) throw hello;
      if (hello[0] !== T_HELLO || hello.length !== 70) throw new Error("counter sent no HELLO");
      if (hello.readUInt32BE(2) !== subsystem)
        throw new Error(`counter at ${socketPath} is subsystem ${hello.readUInt32BE(2)}, not ${subsystem}`);
      if (hello.subarray(6, 38).toString("hex") !== publicKeyHex)
        throw new Error(`counter at ${socketPath} has another key than cluster.jsonc says`);
      const nonce = hello.subarray(38, 70);
      const msg = Buffer.concat([u32(AUTH_DOMAIN.length), AUTH_DOMAIN, u32(subsystem), u32(nonce.length), nonce]);
      s.write(frame(Buffer.concat([Buffer.from([T_AUTH]), sign(null, msg, key)])));
      const ready = await withDeadline(nextFrame(), deadline);
      if (ready instanceof Error) throw ready;
      if (ready[0] === T_ERR) throw new Error(`counter refused the handshake: ${errorText(ready)}`);
      if (ready[0] !== T_READY) throw new Error("counter sent no READY");
      return ready;
    } catch (err) {
      lastErr = err;
      if (sock) sock.destroy();
      sock = null;
      if (/refused the handshake|another key|not \d+$/.test(String(err?.message))) break;
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

function answer(bytes, isError) {
  const b = Buffer.from(bytes).subarray(0, data.length);
  data.set(b);
  Atomics.store(ctrl, 1, b.length);
  Atomics.store(ctrl, 2, isError ? 1 : 0);
  Atomics.store(ctrl, 0, 3);
  Atomics.notify(ctrl, 0);
}

async function serveRequests() {
  for (;;) {
    const state = Atomics.load(ctrl, 0);
    if (state === 1 && Atomics.compareExchange(ctrl, 0, 1, 2) === 1) {
      const req = Buffer.from(data.subarray(0, Atomics.load(ctrl, 1)));
      const timeoutMs = Atomics.load(ctrl, 3);
      const deadline = Date.now() + timeoutMs;
      try {
        // One retry over a fresh connection: the counter answers a repeated request with the same
        // certificate, so a reply lost with the connection costs nothing.
        let reply = null;
        for (let attempt = 0; attempt < 2 && reply === null; attempt++) {
          if (!sock) {
            const ready = await openLink(deadline);
            parentPort.postMessage({ type: "ready", body: ready });
          }
          sock.write(frame(req));
          const r = await withDeadline(nextFrame(), deadline);
          if (!(r instanceof Error)) reply = r;
          else if (Date.now() >= deadline) throw r;
        }
        if (reply === null) throw new Error("counter link lost twice");
        answer(reply, false);
      } catch (err) {
        answer(Buffer.from(String(err?.message ?? err)), true);
      }
      continue;
    }
    if (closed) return;
    const w = Atomics.waitAsync(ctrl, 0, state, 1000);
    if (w.async) await w.value;
  }
}

parentPort.on("message", async (m) => {
  if (m.type === "connect") {
    try {
      const ready = await openLink(Date.now() + m.timeoutMs);
      parentPort.postMessage({ type: "ready", body: ready });
    } catch (err) {
      parentPort.postMessage({ type: "error", message: String(err?.message ?? err) });
    }
  } else if (m.type === "close") {
    closed = true;
    if (sock) sock.destroy();
    parentPort.close();
  }
});

serveRequests();
