// The trusted counter process: one replica's USIG, outside the replica's process. It holds the counter's
// ed25519 key and values, makes every value durable before it answers (by reserving RESERVE_SLOTS values
// ahead with one fdatasync, see certifier.ts), and certifies only for the replica whose key passes the
// handshake. An attacker who owns the replica's process, config and data directory can ask it to
// certify (as the replica may), but never one value twice.
//
// Two threads: this one listens on the UNIX socket, runs handshakes and hands each authenticated
// connection a session key; the certifying thread (certify-thread.ts) serves requests sealed with that
// key on the request FIFO, blocking in read(2) so that a request costs one wake-up (protocol.ts).

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  lstatSync,
  openSync,
  readFileSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { MessageChannel, type MessagePort, type Worker } from "node:worker_threads";
import type { CounterValue } from "../bft/trusted.ts";
import { ed25519PublicKeyOf, verifyEd25519 } from "../crypto/node-crypto.ts";
import { type Logger, silentLogger } from "../util/log.ts";
import { moduleBeside } from "../util/modules.ts";
import { startWorker } from "../util/worker.ts";
import type { CertifyThreadData, ControlMessage, ThreadMessage } from "./certify-thread.ts";
import { CounterLinkError, CounterStoreError } from "./errors.ts";
import {
  authBytes,
  encodeError,
  encodeHello,
  encodeLink,
  FrameReader,
  fifoPaths,
  NONCE_BYTES,
  NUDGE_FRAME,
  PROTOCOL_VERSION,
  SESSION_KEY_BYTES,
  T_AUTH,
} from "./protocol.ts";
import { CounterStore } from "./store.ts";

export { RESERVE_SLOTS } from "./certifier.ts";

/** Connections served at once (a replica needs one; reconnects overlap briefly). */
export const CONNECTIONS_MAX = 8;
/** A connection that has not authenticated by then is closed. */
export const AUTH_TIMEOUT_MS = 5000;
/** How long a clean stop waits for the certifying thread to save the exact values. */
const STOP_TIMEOUT_MS = 5000;
const LOCK_FILE = "counter.lock";

export interface CounterServerOptions {
  readonly id: number;
  /** The counter's ed25519 private seed (32 bytes): the only key that certifies for subsystem `id`. */
  readonly seed: Uint8Array;
  /** The replica allowed to use this counter (its ed25519 public key). */
  readonly replicaPublicKey: Uint8Array;
  readonly socketPath: string;
  readonly dataDir: string;
  readonly logger?: Logger;
}

type Counters = [number, CounterValue][];

export class CounterServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly log: Logger;
  private session = 0;
  /** The handshake waiting for the certifying thread to take its session (only the newest counts). */
  private pendingLink: {
    readonly session: number;
    readonly key: Uint8Array;
    readonly socket: Socket;
  } | null = null;
  private readonly stopped: Promise<Extract<ThreadMessage, { type: "closed" }> | null>;
  private lastBadFrameLog = 0;
  private closing = false;
  readonly publicKey: Uint8Array;
  /** Connections refused at the handshake, frames on the FIFO that were not the session's, sessions. */
  readonly stats = { refusedAuth: 0, badFrames: 0, sessions: 0 };

  private constructor(
    private readonly o: CounterServerOptions,
    private readonly thread: Worker,
    private readonly port: MessagePort,
    private readonly reqFd: number,
  ) {
    this.log = o.logger ?? silentLogger;
    this.publicKey = ed25519PublicKeyOf(o.seed);
    this.server = createServer((s) => this.accept(s));
    this.server.maxConnections = CONNECTIONS_MAX;
    this.stopped = new Promise((resolve) => {
      thread.on("message", (m: ThreadMessage) => {
        if (m.type === "closed") resolve(m);
        else this.fromThread(m);
      });
      thread.on("error", (err) => this.log.error({ err }, "counter: the certifying thread failed"));
      thread.on("exit", () => {
        resolve(null);
        if (!this.closing) {
          this.log.fatal({ subsystem: o.id }, "counter: the certifying thread stopped; stopping");
          setImmediate(() => process.exit(70));
        }
      });
    });
  }

  static async start(o: CounterServerOptions): Promise<CounterServer> {
    lockDir(o.dataDir);
    const paths = fifoPaths(o.socketPath);
    let thread: Worker | undefined;
    let reqFd = -1;
    try {
      await removeStaleSocket(o.socketPath);
      makeFifo(paths.req);
      makeFifo(paths.rep);
      reqFd = openSync(paths.req, constants.O_RDWR);
      const { port1, port2 } = new MessageChannel();
      const data: CertifyThreadData = {
        id: o.id,
        seed: o.seed.slice(),
        dataDir: o.dataDir,
        reqPath: paths.req,
        repPath: paths.rep,
        port: port2,
      };
      thread = startWorker(moduleBeside(import.meta.url, "./certify-thread"), {
        workerData: data,
        transferList: [port2],
      });
      const counters = await firstMessage(thread);
      const srv = new CounterServer(o, thread, port1, reqFd);
      await srv.listen();
      srv.log.info(
        { subsystem: o.id, socket: o.socketPath, counters: Object.fromEntries(counters) },
        "counter ready",
      );
      return srv;
    } catch (err) {
      await thread?.terminate();
      if (reqFd >= 0) closeSync(reqFd);
      removeFifos(o.socketPath);
      unlockDir(o.dataDir);
      throw err;
    }
  }

  private fromThread(m: ThreadMessage): void {
    if (m.type === "session") {
      const p = this.pendingLink;
      if (p === null || p.session !== m.session) return; // a newer handshake took over
      this.pendingLink = null;
      this.stats.sessions++;
      if (!p.socket.destroyed)
        p.socket.write(encodeLink({ session: p.session, key: p.key, counters: new Map(m.counters) }));
    } else if (m.type === "bad-frame") {
      this.stats.badFrames++;
      const now = Date.now();
      if (now - this.lastBadFrameLog >= 1000) {
        this.lastBadFrameLog = now;
        this.log.warn(
          { subsystem: this.o.id, reason: m.reason, badFrames: this.stats.badFrames },
          "counter security event: a frame on the request FIFO that is not the session's",
        );
      }
    } else if (m.type === "fatal" || m.type === "error") {
      // The value could not be made durable (it stays burnt in the thread), or the thread is gone: stop
      // rather than certify anything a restart might certify again.
      this.log.fatal(
        { subsystem: this.o.id, reason: m.message },
        "counter state could not be saved; stopping",
      );
      setImmediate(() => process.exit(70));
    }
  }

  private async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.o.socketPath, () => {
        this.server.off("error", reject);
        // Owner and group may connect (the replica's user shares the counter's group); the handshake
        // decides who may certify.
        try {
          chmodSync(this.o.socketPath, 0o660);
        } catch (err) {
          reject(err);
          return;
        }
        resolve();
      });
    });
  }

  private accept(s: Socket): void {
    this.sockets.add(s);
    s.on("close", () => this.sockets.delete(s));
    s.on("error", () => s.destroy());
    const nonce = new Uint8Array(randomBytes(NONCE_BYTES));
    let authed = false;
    const timer = setTimeout(() => {
      if (!authed) this.refuse(s, "handshake timed out");
    }, AUTH_TIMEOUT_MS);
    s.on("close", () => clearTimeout(timer));
    const frames = new FrameReader();
    s.write(
      encodeHello({ version: PROTOCOL_VERSION, subsystem: this.o.id, publicKey: this.publicKey, nonce }),
    );
    s.on("data", (chunk: Buffer) => {
      let bodies: Uint8Array[];
      try {
        bodies = frames.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
      } catch (err) {
        this.stats.badFrames++;
        this.refuse(s, (err as Error).message);
        return;
      }
      for (const body of bodies) {
        if (s.destroyed) return;
        if (authed) {
          // Requests go over the FIFOs; the socket only stays open to show the replica is there.
          this.stats.badFrames++;
          this.refuse(s, `unexpected frame type ${body[0]} after the handshake`);
          return;
        }
        const sig = body.subarray(1);
        if (body[0] !== T_AUTH || !verifyEd25519(this.o.replicaPublicKey, authBytes(this.o.id, nonce), sig)) {
          this.stats.refusedAuth++;
          this.refuse(s, "handshake refused: not this counter's replica");
          return;
        }
        authed = true;
        clearTimeout(timer);
        this.startSession(s);
      }
    });
  }

  /** Gives an authenticated connection a fresh session: the thread takes it first, then the replica. */
  private startSession(s: Socket): void {
    this.session = this.session >= 0xffff_ffff ? 1 : this.session + 1;
    const key = new Uint8Array(randomBytes(SESSION_KEY_BYTES));
    this.pendingLink = { session: this.session, key, socket: s };
    this.control({ type: "session", session: this.session, key });
  }

  private control(m: ControlMessage): void {
    this.port.postMessage(m);
    writeSync(this.reqFd, NUDGE_FRAME);
  }

  private refuse(s: Socket, reason: string): void {
    this.log.warn({ subsystem: this.o.id, reason }, "counter security event");
    s.end(encodeError(0, "REFUSED", reason));
    s.destroySoon();
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    // A clean stop keeps the exact values: the next start skips nothing.
    this.control({ type: "stop" });
    const timeout = setTimeout(() => void this.thread.terminate(), STOP_TIMEOUT_MS);
    const closed = await this.stopped;
    clearTimeout(timeout);
    if (closed === null)
      this.log.error({}, "counter: the certifying thread did not stop cleanly (the reservation stands)");
    else if (closed.error)
      this.log.error(
        { err: closed.error },
        "counter: could not save the exact values at close (the reservation stands)",
      );
    await this.thread.terminate();
    this.port.close();
    closeSync(this.reqFd);
    removeFifos(this.o.socketPath);
    unlockDir(this.o.dataDir);
  }
}

/** The thread's first word: its counters once the state file is open, or why it could not start. */
function firstMessage(thread: Worker): Promise<Counters> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: ThreadMessage) => {
      done();
      if (m.type === "ready") resolve(m.counters);
      else if (m.type === "error") reject(new CounterStoreError(m.code, m.message));
      else reject(new CounterLinkError("BAD_FRAME", `certifying thread said ${m.type} first`));
    };
    const onError = (err: Error) => {
      done();
      reject(err);
    };
    const onExit = (code: number) => {
      done();
      reject(new CounterStoreError("OPEN_FAILED", `certifying thread exited (${code})`));
    };
    const done = () => {
      thread.off("message", onMessage);
      thread.off("error", onError);
      thread.off("exit", onExit);
    };
    thread.on("message", onMessage);
    thread.on("error", onError);
    thread.on("exit", onExit);
  });
}

/** Creates a fresh FIFO at `path` (owner and group read and write), replacing one left by a past run. */
function makeFifo(path: string): void {
  if (existsSync(path)) {
    if (!lstatSync(path).isFIFO())
      throw new CounterLinkError("SOCKET_IN_USE", `${path} exists and is not a FIFO`);
    unlinkSync(path);
  }
  try {
    execFileSync("mkfifo", ["-m", "660", path], { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    throw new CounterLinkError("FIFO_FAILED", `mkfifo ${path}: ${(err as Error).message}`);
  }
}

function removeFifos(socketPath: string): void {
  for (const p of Object.values(fifoPaths(socketPath))) {
    try {
      if (lstatSync(p).isFIFO()) unlinkSync(p);
    } catch {
      // already gone
    }
  }
}

/** One counter process per data directory: a second one could certify the same values again. */
function lockDir(dir: string): void {
  CounterStore.ensureDir(dir);
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = Number(readFileSync(path, "utf8"));
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new CounterStoreError("LOCKED", `${dir} is in use by counter process ${pid}`);
      }
      unlinkSync(path); // left by a process that died
    }
  }
  throw new CounterStoreError("LOCKED", `${dir}: could not take the lock`);
}

function unlockDir(dir: string): void {
  try {
    const path = join(dir, LOCK_FILE);
    if (Number(readFileSync(path, "utf8")) === process.pid) unlinkSync(path);
  } catch {
    // already gone
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes a socket file nobody listens on (left by a killed process); refuses a live one. */
async function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const live = await new Promise<boolean>((resolve) => {
    const c = createConnection(path);
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
  if (live) throw new CounterLinkError("SOCKET_IN_USE", `${path}: another process listens there`);
  unlinkSync(path);
}
