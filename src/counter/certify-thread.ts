// The counter process's certifying thread. It owns the state file and the USIG (Certifier) and serves
// the request FIFO in a blocking loop: read(2) until a request is in, certify, write the reply. The main
// thread keeps the UNIX socket (handshakes) and signals; it hands this thread a new session (number and
// key) or a stop through a MessagePort, read synchronously here, and writes a NUDGE to the FIFO so that
// the blocked read returns and the port is looked at. Nothing that arrives on the FIFO itself can
// change the session: a frame counts only when it is sealed with the current session's key.

import { closeSync, constants, openSync, readSync, writeSync } from "node:fs";
import { type MessagePort, parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import { Certifier } from "./certifier.ts";
import { FIFO_READ_BYTES, FrameReader, seal, T_FREPLY, T_FREQ, T_NUDGE, unseal } from "./protocol.ts";
import { CounterStore } from "./store.ts";

export interface CertifyThreadData {
  readonly id: number;
  readonly seed: Uint8Array;
  readonly dataDir: string;
  readonly reqPath: string;
  readonly repPath: string;
  /** Main → thread: ControlMessage. */
  readonly port: MessagePort;
}

export type ControlMessage =
  | { readonly type: "session"; readonly session: number; readonly key: Uint8Array }
  | { readonly type: "stop" };

export type ThreadMessage =
  | { readonly type: "ready"; readonly counters: [number, { view: number; slot: number }][] }
  | { readonly type: "error"; readonly code: string; readonly message: string }
  | {
      readonly type: "session";
      readonly session: number;
      readonly counters: [number, { view: number; slot: number }][];
    }
  | { readonly type: "bad-frame"; readonly reason: string }
  | { readonly type: "fatal"; readonly message: string }
  | { readonly type: "closed"; readonly certified: number; readonly error?: string };

const post = (m: ThreadMessage) => parentPort?.postMessage(m);

function run(d: CertifyThreadData): void {
  let certifier: Certifier;
  let req: number;
  let rep: number;
  try {
    certifier = new Certifier(d.id, d.seed, CounterStore.open(d.dataDir, d.id));
    req = openSync(d.reqPath, constants.O_RDWR);
    rep = openSync(d.repPath, constants.O_RDWR);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    post({
      type: "error",
      code: typeof code === "string" ? code : "OPEN_FAILED",
      message: (err as Error).message,
    });
    return;
  }
  post({ type: "ready", counters: [...certifier.counters()] });
  let session = 0;
  let key: Uint8Array | null = null;
  let frames = new FrameReader();
  const buf = Buffer.allocUnsafe(FIFO_READ_BYTES);
  for (;;) {
    const n = readSync(req, buf, 0, FIFO_READ_BYTES, null);
    let stop = false;
    for (let m = receiveMessageOnPort(d.port); m; m = receiveMessageOnPort(d.port)) {
      const c = m.message as ControlMessage;
      if (c.type === "stop") stop = true;
      else {
        session = c.session;
        key = c.key;
        frames = new FrameReader(); // whatever is buffered belongs to an earlier session
        post({ type: "session", session, counters: [...certifier.counters()] });
      }
    }
    if (stop) break;
    let bodies: Uint8Array[];
    try {
      bodies = frames.push(buf.subarray(0, n));
    } catch (err) {
      // Not frames: someone else wrote to the FIFO. One read takes the whole pipe, so dropping what
      // is buffered realigns with the next write.
      frames = new FrameReader();
      post({ type: "bad-frame", reason: (err as Error).message });
      continue;
    }
    for (const body of bodies) {
      if (body[0] === T_NUDGE) continue;
      const inner = key === null ? null : unseal(body, T_FREQ, session, key);
      if (inner === null || key === null) {
        post({ type: "bad-frame", reason: `a frame of type ${body[0]} not sealed for session ${session}` });
        continue;
      }
      const r = certifier.serve(inner);
      writeSync(rep, seal(T_FREPLY, session, r.reply, key));
      if (r.fatal) {
        // The value stays burnt in memory: stop rather than certify anything a restart might again.
        post({ type: "fatal", message: r.fatal.message });
        return;
      }
    }
  }
  let error: string | undefined;
  try {
    certifier.close();
  } catch (err) {
    error = (err as Error).message;
  }
  closeSync(req);
  closeSync(rep);
  post({ type: "closed", certified: certifier.certified, ...(error ? { error } : {}) });
}

run(workerData as CertifyThreadData);
