// The replica's side of its trusted counter: a TrustedCounter whose certify calls go to the counter
// process over a Unix socket. The core calls its counter synchronously (as it would an enclave), so the
// socket lives in a small worker thread and the main thread blocks on shared memory until the reply is
// in: one round trip plus the counter's fdatasync, about 0.3 ms here, once per batch and not per request.

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
import { CounterLinkError } from "./errors.ts";
import {
  type CertRequest,
  decodeReady,
  decodeReply,
  encodeRequest,
  FRAME_BYTES_MAX,
  OP_CONTINUING,
  OP_INDEPENDENT,
} from "./protocol.ts";

/** How long one certification may take before the counter counts as unavailable. */
export const CERTIFY_TIMEOUT_MS_DEFAULT = 5000;

export interface RemoteCounterOptions {
  readonly socketPath: string;
  readonly id: number;
  /** The counter's public key from cluster.jsonc: a process at the socket with another key is refused. */
  readonly counterPublicKey: Uint8Array;
  /** The replica's ed25519 seed: proves to the counter that this is its replica. */
  readonly replicaSeed: Uint8Array;
  /** How long to wait for the counter process to come up (default 10 s). */
  readonly connectTimeoutMs?: number;
  readonly certifyTimeoutMs?: number;
  /** Called once when the link fails for good (the counter is unreachable or misbehaves). */
  readonly onBroken?: (err: CounterLinkError) => void;
}

const PKCS8_ED25519_PREFIX = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
]);

export class RemoteCounter implements TrustedCounter {
  readonly id: number;
  private readonly ctrl: Int32Array;
  private readonly data: Uint8Array;
  private readonly values = new Map<number, CounterValue>();
  private reqId = 0;
  private broken: string | null = null;
  /** Round trips made and their total time (for metrics). */
  readonly stats = { calls: 0, totalMs: 0 };

  private constructor(
    private readonly o: RemoteCounterOptions,
    private readonly worker: Worker,
    ctrlBuffer: SharedArrayBuffer,
    dataBuffer: SharedArrayBuffer,
  ) {
    this.id = o.id;
    this.ctrl = new Int32Array(ctrlBuffer);
    this.data = new Uint8Array(dataBuffer);
  }

  /** Connects (waiting for the counter process up to connectTimeoutMs) and learns the counters' values. */
  static async open(o: RemoteCounterOptions): Promise<RemoteCounter> {
    const ctrlBuffer = new SharedArrayBuffer(16);
    const dataBuffer = new SharedArrayBuffer(FRAME_BYTES_MAX);
    const pkcs8 = new Uint8Array(PKCS8_ED25519_PREFIX.length + 32);
    pkcs8.set(PKCS8_ED25519_PREFIX);
    pkcs8.set(o.replicaSeed, PKCS8_ED25519_PREFIX.length);
    const worker = new Worker(new URL("./link-worker.mjs", import.meta.url), {
      workerData: {
        socketPath: o.socketPath,
        subsystem: o.id,
        publicKeyHex: Buffer.from(o.counterPublicKey).toString("hex"),
        pkcs8,
        ctrlBuffer,
        dataBuffer,
      },
      execArgv: [],
    });
    const rc = new RemoteCounter(o, worker, ctrlBuffer, dataBuffer);
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: { type: string; body?: Uint8Array; message?: string }) => {
        if (m.type === "ready" && m.body) {
          rc.learn(decodeReady(new Uint8Array(m.body)));
          resolve();
        } else if (m.type === "error") {
          reject(new CounterLinkError("UNAVAILABLE", `counter ${o.id} at ${o.socketPath}: ${m.message}`));
        }
      };
      worker.on("message", onMessage);
      worker.once("error", reject);
      worker.postMessage({ type: "connect", timeoutMs: o.connectTimeoutMs ?? 10_000 });
    }).catch(async (err) => {
      await worker.terminate();
      throw err;
    });
    // Later READYs (after a reconnect) only ever raise what we know.
    worker.on("message", (m: { type: string; body?: Uint8Array }) => {
      if (m.type === "ready" && m.body) rc.learn(decodeReady(new Uint8Array(m.body)));
    });
    worker.unref();
    return rc;
  }

  private learn(values: ReadonlyMap<number, CounterValue>): void {
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
    const reply = this.call(body);
    this.stats.calls++;
    this.stats.totalMs += performance.now() - started;
    const r = decodeReply(reply);
    if (r.reqId !== reqId) return this.fail(`reply ${r.reqId} to request ${reqId}`);
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

  /** Posts a request body to the worker and blocks until its reply (or the timeout). */
  private call(body: Uint8Array): Uint8Array {
    const ctrl = this.ctrl;
    const timeoutMs = this.o.certifyTimeoutMs ?? CERTIFY_TIMEOUT_MS_DEFAULT;
    this.data.set(body);
    Atomics.store(ctrl, 1, body.length);
    Atomics.store(ctrl, 3, timeoutMs);
    Atomics.store(ctrl, 0, 1);
    Atomics.notify(ctrl, 0);
    // The worker answers within its own deadline; ours adds a margin for thread scheduling.
    const deadline = performance.now() + timeoutMs + 1000;
    for (;;) {
      const s = Atomics.load(ctrl, 0);
      if (s === 3) break;
      const left = deadline - performance.now();
      if (left <= 0) {
        if (Atomics.compareExchange(ctrl, 0, 1, 0) === 1)
          return this.fail("the link thread did not take the request");
        return this.fail("no reply in time");
      }
      Atomics.wait(ctrl, 0, s, left);
    }
    const len = Atomics.load(ctrl, 1);
    const isError = Atomics.load(ctrl, 2) === 1;
    const out = this.data.slice(0, len);
    Atomics.store(ctrl, 0, 0);
    if (isError) return this.fail(new TextDecoder().decode(out));
    return out;
  }

  async close(): Promise<void> {
    this.broken ??= "closed";
    this.worker.postMessage({ type: "close" });
    await this.worker.terminate();
  }
}
