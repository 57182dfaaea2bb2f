// The trusted counter process: one replica's USIG, outside the replica's process. It holds the counter's
// ed25519 key and values, makes every value durable before it answers (by reserving RESERVE_SLOTS values
// ahead with one fdatasync, see Reservation), and certifies only for the replica whose key passes the
// handshake. An attacker who owns the replica's process, config and
// data directory can ask it to certify (as the replica may), but never one value twice.

import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  openSync,
  readFileSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { bytesEqual } from "../bft/bytes.ts";
import { CounterError } from "../bft/errors.ts";
import { type CounterCert, UsigCounter } from "../bft/trusted.ts";
import { ed25519PublicKeyOf, signEd25519, verifyEd25519 } from "../crypto/node-crypto.ts";
import { type Logger, silentLogger } from "../node/log.ts";
import { CounterLinkError, CounterStoreError } from "./errors.ts";
import {
  authBytes,
  decodeRequest,
  encodeCert,
  encodeError,
  encodeHello,
  encodeReady,
  FrameReader,
  NONCE_BYTES,
  OP_INDEPENDENT,
  PROTOCOL_VERSION,
  T_AUTH,
  T_REQ,
} from "./protocol.ts";
import { CounterStore } from "./store.ts";

/**
 * Values a counter reserves per fdatasync. What is on disk is always at or above every value certified:
 * a certificate above the reservation first saves a new one, RESERVE_SLOTS slots ahead in its view. A
 * counter that crashes restarts at its reservation (it never certifies a value twice, it skips at most
 * this many); a clean close saves the exact values. Skipped values cost the replica what a crash between
 * certify and persist costs (hybrid.ts canCertify): it sits out those slots and this view's change.
 */
export const RESERVE_SLOTS = 128;

/** Connections served at once (a replica needs one; reconnects overlap briefly). */
export const CONNECTIONS_MAX = 8;
/** A connection that has not authenticated by then is closed. */
export const AUTH_TIMEOUT_MS = 5000;
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

/** The last certificate issued per counter, so a request retried after a lost reply gets the same one. */
interface Issued {
  readonly op: number;
  readonly digest: Uint8Array;
  readonly cert: CounterCert;
}

export class CounterServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly issued = new Map<number, Issued>();
  private readonly log: Logger;
  readonly publicKey: Uint8Array;
  /** Certificates issued since start, and connections refused at the handshake. */
  readonly stats = { certified: 0, refusedAuth: 0, badFrames: 0 };

  private constructor(
    private readonly o: CounterServerOptions,
    private readonly store: CounterStore,
    private readonly usig: UsigCounter,
  ) {
    this.log = o.logger ?? silentLogger;
    this.publicKey = ed25519PublicKeyOf(o.seed);
    this.server = createServer((s) => this.accept(s));
    this.server.maxConnections = CONNECTIONS_MAX;
  }

  static async start(o: CounterServerOptions): Promise<CounterServer> {
    lockDir(o.dataDir);
    let store: CounterStore | undefined;
    try {
      store = CounterStore.open(o.dataDir, o.id);
      const st = store;
      const seed = o.seed.slice();
      const reserved = new Map(store.loaded);
      const usig = new UsigCounter({
        id: o.id,
        sign: (bytes) => signEd25519(seed, bytes),
        counters: store.loaded,
        onAdvance: (c, v) => {
          const r = reserved.get(c);
          if (r && r.view === v.view && v.slot <= r.slot) return;
          reserved.set(c, { view: v.view, slot: v.slot + RESERVE_SLOTS });
          try {
            st.save(reserved);
          } catch (err) {
            reserved.delete(c); // not durable: the next advance must try to save again
            throw err;
          }
        },
      });
      const srv = new CounterServer(o, store, usig);
      await srv.listen();
      srv.log.info(
        { subsystem: o.id, socket: o.socketPath, counters: Object.fromEntries(usig.counters()) },
        "counter ready",
      );
      return srv;
    } catch (err) {
      store?.close();
      unlockDir(o.dataDir);
      throw err;
    }
  }

  private async listen(): Promise<void> {
    await removeStaleSocket(this.o.socketPath);
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
        if (!authed) {
          const sig = body.subarray(1);
          if (
            body[0] !== T_AUTH ||
            !verifyEd25519(this.o.replicaPublicKey, authBytes(this.o.id, nonce), sig)
          ) {
            this.stats.refusedAuth++;
            this.refuse(s, "handshake refused: not this counter's replica");
            return;
          }
          authed = true;
          clearTimeout(timer);
          s.write(encodeReady(this.usig.counters()));
          continue;
        }
        if (body[0] !== T_REQ) {
          this.stats.badFrames++;
          this.refuse(s, `unexpected frame type ${body[0]}`);
          return;
        }
        s.write(this.serve(body));
      }
    });
  }

  /** Answers one REQ body with a CERT or an ERR frame. */
  private serve(body: Uint8Array): Uint8Array {
    let reqId = 0;
    try {
      const q = decodeRequest(body);
      reqId = q.reqId;
      const last = this.issued.get(q.counter);
      // The same request again (its reply was lost with a connection): the same certificate, not a new one.
      if (
        last &&
        last.op === q.op &&
        last.cert.value.view === q.value.view &&
        last.cert.value.slot === q.value.slot &&
        bytesEqual(last.digest, q.digest)
      ) {
        return encodeCert(reqId, last.cert.value, last.cert.prev, last.cert.sig);
      }
      const cert =
        q.op === OP_INDEPENDENT
          ? this.usig.certifyIndependent(q.counter, q.value, q.digest)
          : this.usig.certifyContinuing(q.counter, q.value, q.digest);
      this.issued.set(q.counter, { op: q.op, digest: q.digest.slice(), cert });
      this.stats.certified++;
      return encodeCert(reqId, cert.value, cert.prev, cert.sig);
    } catch (err) {
      if (err instanceof CounterError || err instanceof CounterLinkError) {
        return encodeError(reqId, err.code, err.message);
      }
      if (err instanceof CounterStoreError || (err as NodeJS.ErrnoException)?.code) {
        // The value could not be made durable: it stays burnt in memory, and we stop rather than
        // certify anything a restart might certify again.
        this.log.fatal({ err }, "counter state could not be saved; stopping");
        setImmediate(() => process.exit(70));
        return encodeError(reqId, "STORE_FAILED", String((err as Error).message));
      }
      throw err;
    }
  }

  private refuse(s: Socket, reason: string): void {
    this.log.warn({ subsystem: this.o.id, reason }, "counter security event");
    s.end(encodeError(0, "REFUSED", reason));
    s.destroySoon();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    // A clean stop keeps the exact values: the next start skips nothing.
    try {
      this.store.save(this.usig.counters());
    } catch (err) {
      this.log.error({ err }, "counter: could not save the exact values at close (the reservation stands)");
    }
    this.store.close();
    unlockDir(this.o.dataDir);
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
