// The replica's side of its trusted counter: a TrustedCounter whose certify calls go to the counter
// process. The core calls its counter synchronously (as it would an enclave), so a call writes its
// request to the counter's FIFO and blocks in read(2) on the reply FIFO: one round trip plus the
// counter's signature, about 0.07 ms here, once per batch and not per request. A small thread
// (link-worker.mjs) keeps the UNIX socket that authenticates this replica and brings the session key,
// reconnects when it drops, and ends a read that waits too long (protocol.ts has the frames).

import { closeSync, constants, openSync, readSync, writeSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { CounterError } from "../bft/errors.ts";
import {
  type CounterCert,
  type CounterValue,
  compareValues,
  type TrustedCounter,
  valuesEqual,
  ZERO_VALUE,
} from "../bft/trusted.ts";
import { type WithDefaults, withDefaults } from "../util/defaults.ts";
import { CounterLinkError } from "./errors.ts";
import {
  C_BUSY,
  C_GEN,
  C_SEQ,
  C_SESSION_NO,
  C_TIMEOUT_MS,
  C_UP,
  C_WAKE_REASON,
  C_WAKE_SEQ,
  CTRL_WORDS,
  WAKE_LOST,
  WAKE_TIMEOUT,
} from "./link-words.mjs";
import {
  type CertRequest,
  decodeLink,
  decodeReply,
  encodeRequest,
  FIFO_READ_BYTES,
  FrameReader,
  fifoPaths,
  OP_CONTINUING,
  OP_INDEPENDENT,
  SESSION_KEY_BYTES,
  seal,
  T_FREPLY,
  T_FREQ,
  T_NUDGE,
  unseal,
} from "./protocol.ts";

/** What a call's read returns when the connection was lost meanwhile (the call is tried once more). */
const LOST = null;

export interface RemoteCounterOptions {
  readonly socketPath: string;
  readonly id: number;
  /** The counter's public key from cluster.jsonc: a process at the socket with another key is refused. */
  readonly counterPublicKey: Uint8Array;
  /** The replica's ed25519 seed: proves to the counter that this is its replica. */
  readonly replicaSeed: Uint8Array;
  /** How long to wait for the counter process to come up (default 10 s). */
  readonly connectTimeoutMs?: number;
  /** How long one certification may take before the counter counts as unavailable (default 5 s). */
  readonly certifyTimeoutMs?: number;
  /** Called once when the link fails for good (the counter is unreachable or misbehaves). */
  readonly onBroken?: (err: CounterLinkError) => void;
}

/** The counter link's option defaults (see RemoteCounterOptions): the one place they are written. */
export const REMOTE_COUNTER_DEFAULTS = Object.freeze({
  connectTimeoutMs: 10_000,
  certifyTimeoutMs: 5000,
}) satisfies Partial<RemoteCounterOptions>;
type ResolvedOptions = WithDefaults<RemoteCounterOptions, typeof REMOTE_COUNTER_DEFAULTS>;

const PKCS8_ED25519_PREFIX = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
]);

export class RemoteCounter implements TrustedCounter {
  readonly id: number;
  private readonly ctrl: Int32Array;
  private readonly sharedKey: Uint8Array;
  private readonly values = new Map<number, CounterValue>();
  private readonly paths: { readonly req: string; readonly rep: string };
  private readonly buf = Buffer.allocUnsafe(FIFO_READ_BYTES);
  private frames = new FrameReader();
  /** The socket thread's generation of the session this thread's FIFO ends belong to (0: none open). */
  private gen = 0;
  /** The counter's number for that session (in every sealed frame). */
  private session = 0;
  private key = new Uint8Array(SESSION_KEY_BYTES);
  private reqFd = -1;
  private repFd = -1;
  private reqId = 0;
  private broken: string | null = null;
  /** Round trips made and their total time (for metrics); LINKs learned (the first, one per reconnect). */
  readonly stats = { calls: 0, totalMs: 0, links: 0 };

  private constructor(
    private readonly o: ResolvedOptions,
    private readonly worker: Worker,
    ctrlBuffer: SharedArrayBuffer,
    keyBuffer: SharedArrayBuffer,
  ) {
    this.id = o.id;
    this.ctrl = new Int32Array(ctrlBuffer);
    this.sharedKey = new Uint8Array(keyBuffer);
    this.paths = fifoPaths(o.socketPath);
    Atomics.store(this.ctrl, C_TIMEOUT_MS, o.certifyTimeoutMs);
  }

  /** Connects (waiting for the counter process up to connectTimeoutMs) and learns the counters' values. */
  static async open(options: RemoteCounterOptions): Promise<RemoteCounter> {
    const o = withDefaults(REMOTE_COUNTER_DEFAULTS, options);
    const ctrlBuffer = new SharedArrayBuffer(CTRL_WORDS * 4);
    const keyBuffer = new SharedArrayBuffer(SESSION_KEY_BYTES);
    const pkcs8 = new Uint8Array(PKCS8_ED25519_PREFIX.length + 32);
    pkcs8.set(PKCS8_ED25519_PREFIX);
    pkcs8.set(o.replicaSeed, PKCS8_ED25519_PREFIX.length);
    const worker = new Worker(new URL("./link-worker.mjs", import.meta.url), {
      workerData: {
        socketPath: o.socketPath,
        repPath: fifoPaths(o.socketPath).rep,
        subsystem: o.id,
        publicKeyHex: Buffer.from(o.counterPublicKey).toString("hex"),
        pkcs8,
        ctrlBuffer,
        keyBuffer,
        // The watchdog looks 20 times per timeout (at least every 50 ms, at most every 250 ms): an idle
        // replica's link thread wakes 4 times a second, not 20.
        watchMs: Math.min(250, Math.max(50, Math.floor(o.certifyTimeoutMs / 20))),
      },
      execArgv: [],
    });
    const rc = new RemoteCounter(o, worker, ctrlBuffer, keyBuffer);
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: { type: string; body?: Uint8Array; message?: string }) => {
        if (m.type === "ready" && m.body) {
          rc.learn(decodeLink(new Uint8Array(m.body)).counters);
          resolve();
        } else if (m.type === "error") {
          reject(new CounterLinkError("UNAVAILABLE", `counter ${o.id} at ${o.socketPath}: ${m.message}`));
        }
      };
      worker.on("message", onMessage);
      worker.once("error", reject);
      worker.postMessage({ type: "connect", timeoutMs: o.connectTimeoutMs });
    }).catch(async (err) => {
      await worker.terminate();
      throw err;
    });
    // Later LINKs (after a reconnect) only ever raise what we know.
    worker.on("message", (m: { type: string; body?: Uint8Array }) => {
      if (m.type === "ready" && m.body) rc.learn(decodeLink(new Uint8Array(m.body)).counters);
    });
    worker.unref();
    return rc;
  }

  private learn(values: ReadonlyMap<number, CounterValue>): void {
    this.stats.links++;
    for (const [c, v] of values) if (compareValues(v, this.current(c)) > 0) this.values.set(c, v);
  }

  current(counter: number): CounterValue {
    return this.values.get(counter) ?? ZERO_VALUE;
  }

  certifyIndependent(counter: number, value: CounterValue, digest: Uint8Array): CounterCert {
    return this.certify(OP_INDEPENDENT, counter, value, digest);
  }

  certifyContinuing(counter: number, value: CounterValue, digest: Uint8Array): CounterCert {
    return this.certify(OP_CONTINUING, counter, value, digest);
  }

  private certify(
    op: CertRequest["op"],
    counter: number,
    value: CounterValue,
    digest: Uint8Array,
  ): CounterCert {
    if (this.broken !== null) throw new CounterLinkError("UNAVAILABLE", this.broken);
    this.reqId = (this.reqId + 1) >>> 0;
    const reqId = this.reqId;
    const body = encodeRequest({ reqId, op, counter, value, digest }).subarray(4);
    const started = performance.now();
    const reply = this.roundTrip(body, reqId, started + this.o.certifyTimeoutMs);
    this.stats.calls++;
    this.stats.totalMs += performance.now() - started;
    const r = decodeReply(reply);
    if (r.type === "err") {
      if (
        r.code === "NOT_INCREASING" ||
        r.code === "GOES_BACK" ||
        r.code === "BAD_COUNTER" ||
        r.code === "BAD_VALUE"
      )
        throw new CounterError(r.code, r.message);
      return this.fail(`${r.code}: ${r.message}`);
    }
    if (!valuesEqual(r.value, value)) return this.fail("the counter certified another value than asked");
    if (op === OP_CONTINUING && !r.prev) return this.fail("a continuing certificate without prev");
    this.values.set(counter, { view: value.view, slot: value.slot });
    const cert = { subsystem: this.id, counter, value: { view: value.view, slot: value.slot } };
    return r.prev ? { ...cert, prev: r.prev, sig: r.sig } : { ...cert, sig: r.sig };
  }

  private fail(why: string): never {
    const first = this.broken === null;
    this.broken = `counter ${this.id}: ${why}`;
    const err = new CounterLinkError("UNAVAILABLE", this.broken);
    if (first) this.o.onBroken?.(err);
    throw err;
  }

  /**
   * Sends one request body and blocks until its reply body. A connection lost meanwhile costs one more
   * try over the next session: the counter answers a repeated request with the same certificate.
   */
  private roundTrip(body: Uint8Array, reqId: number, deadline: number): Uint8Array {
    const c = this.ctrl;
    for (let attempt = 0; attempt < 2; attempt++) {
      this.useSession(deadline);
      const seq = (Atomics.load(c, C_SEQ) + 1) | 0;
      Atomics.store(c, C_SEQ, seq);
      Atomics.store(c, C_BUSY, 1);
      try {
        // C_BUSY before C_UP (the socket thread stores C_UP before it looks at C_BUSY): either the
        // loss is seen here, or the read below is woken.
        if (Atomics.load(c, C_UP) !== 1 || Atomics.load(c, C_GEN) !== this.gen) continue;
        writeSync(this.reqFd, seal(T_FREQ, this.session, body, this.key));
        const reply = this.readReply(seq, reqId);
        if (reply !== LOST) return reply;
      } finally {
        Atomics.store(c, C_BUSY, 0);
      }
    }
    return this.fail("the counter connection was lost twice during one certification");
  }

  /** Makes this thread's FIFO ends and key those of the current session, waiting for one if need be. */
  private useSession(deadline: number): void {
    const c = this.ctrl;
    for (;;) {
      const g = Atomics.load(c, C_GEN);
      if (g !== 0 && Atomics.load(c, C_UP) === 1) {
        if (g === this.gen) return;
        const key = this.sharedKey.slice();
        const session = Atomics.load(c, C_SESSION_NO);
        if (Atomics.load(c, C_GEN) !== g) continue; // replaced while we copied
        this.closeFifos();
        try {
          this.reqFd = openSync(this.paths.req, constants.O_RDWR);
          this.repFd = openSync(this.paths.rep, constants.O_RDWR);
        } catch (err) {
          this.closeFifos();
          return this.fail(`cannot open the counter's FIFOs: ${(err as Error).message}`);
        }
        this.key = key;
        this.gen = g;
        this.session = session;
        this.frames = new FrameReader();
        return;
      }
      const left = deadline - performance.now();
      if (left <= 0) return this.fail("the counter is unreachable (no session in time)");
      Atomics.wait(c, C_GEN, g, Math.min(left, 50));
    }
  }

  /** Reads the reply FIFO until the reply to `reqId` (skipping stale and foreign frames) or a wake-up. */
  private readReply(seq: number, reqId: number): Uint8Array | typeof LOST {
    const c = this.ctrl;
    for (;;) {
      const n = readSync(this.repFd, this.buf, 0, FIFO_READ_BYTES, null);
      let bodies: Uint8Array[];
      try {
        bodies = this.frames.push(this.buf.subarray(0, n));
      } catch {
        this.frames = new FrameReader(); // not frames (someone else's bytes): realign with the next write
        continue;
      }
      for (const b of bodies) {
        if (b[0] === T_NUDGE) {
          if (Atomics.load(c, C_WAKE_SEQ) !== seq) continue;
          const why = Atomics.load(c, C_WAKE_REASON);
          if (why === WAKE_TIMEOUT) return this.fail("no reply in time");
          if (why === WAKE_LOST) return LOST;
          continue;
        }
        const inner = unseal(b, T_FREPLY, this.session, this.key);
        if (inner === null || inner.length < 5) continue;
        if (new DataView(inner.buffer, inner.byteOffset + 1, 4).getUint32(0) !== reqId) continue; // stale
        return inner;
      }
    }
  }

  private closeFifos(): void {
    for (const fd of [this.reqFd, this.repFd]) if (fd >= 0) closeSync(fd);
    this.reqFd = -1;
    this.repFd = -1;
    this.gen = 0;
  }

  async close(): Promise<void> {
    this.broken ??= "closed";
    this.worker.postMessage({ type: "close" });
    await this.worker.terminate();
    this.closeFifos();
  }
}
