// Builds signed coordination operations and entries for tests of the znode tree and service.

import { randomBytes } from "node:crypto";
import {
  bundle,
  bundleSigningBytes,
  encodeEntry,
  encodeOp,
  type OpBody,
  OpKind,
  opSigningBytes,
  type SignedOp,
  type SubOp,
} from "../../src/coord/ops.ts";
import { type Effect, type OpResult, type TreeConfig, ZTree } from "../../src/coord/tree.ts";
import { generateEd25519KeyPair, signEd25519, verifyEd25519 } from "../../src/crypto/node-crypto.ts";

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A session's key and counters: signs operations the way the client library does. */
export class TestSession {
  readonly key = generateEd25519KeyPair();
  id = 0;
  cxid = 0;
  ping = 0;

  sign(sessionId: number, cxid: number, body: OpBody): SignedOp {
    const payload = encodeOp({ sessionId, cxid, body });
    return { payload, sig: signEd25519(this.key.privateKey, opSigningBytes(payload)) };
  }

  /**
   * A createSession through `replica` (the harness's entries of operations come from replica 0), bound
   * to that replica's `challenge` to the connection (random here).
   */
  open(timeoutMs = 10_000, replica = 0, challenge: Uint8Array = randomBytes(32)): SignedOp {
    return this.sign(0, 0, {
      kind: OpKind.CREATE_SESSION,
      publicKey: this.key.publicKey,
      timeoutMs,
      replica,
      challenge: new Uint8Array(challenge),
    });
  }

  /** The next `bodies.length` ordered operations, signed together as one bundle (as the client does). */
  bundle(bodies: readonly OpBody[]): SignedOp[] {
    const payloads = bodies.map((body) => encodeOp({ sessionId: this.id, cxid: ++this.cxid, body }));
    const { root, proofs } = bundle(payloads);
    const sig = signEd25519(this.key.privateKey, bundleSigningBytes(root));
    return payloads.map((payload, i) => ({ payload, sig, proof: proofs[i] }));
  }

  /** The next ordered operation (cxid + 1). */
  op(body: OpBody): SignedOp {
    return this.sign(this.id, ++this.cxid, body);
  }

  keepAlive(): SignedOp {
    return this.sign(this.id, ++this.ping, { kind: OpKind.PING });
  }
}

export const create = (path: string, data = "", mode = 0, ttlMs = 0): SubOp => ({
  kind: OpKind.CREATE,
  path,
  data: enc(data),
  mode,
  ttlMs,
});
export const del = (path: string, version = -1): SubOp => ({ kind: OpKind.DELETE, path, version });
export const set = (path: string, data: string, version = -1): SubOp => ({
  kind: OpKind.SET_DATA,
  path,
  data: enc(data),
  version,
});
export const check = (path: string, version: number): SubOp => ({ kind: OpKind.CHECK, path, version });

/** A tree plus a block counter: each call applies one block of entries with the given clocks. */
export class TreeHarness {
  readonly tree: ZTree;
  block = 0;
  private entrySeq = 0;
  /** Wall clock the harness's replicas report (ms). */
  now = 1_700_000_000_000;

  constructor(cfg: Partial<TreeConfig> = {}) {
    this.tree = new ZTree({ n: 3, f: 1, ...cfg }, verifyEd25519);
  }

  entry(proposer: number, ops: readonly SignedOp[], clockMs = this.now): Uint8Array {
    return encodeEntry({ proposer, clockMs, entrySeq: ++this.entrySeq, ops });
  }

  /** One block: clock entries from replicas 1 and 2, then an entry of `ops` from replica 0. */
  apply(ops: readonly SignedOp[], clocks: readonly number[] = [this.now, this.now, this.now]): Effect[] {
    const entries = clocks.map((c, i) => this.entry(i, i === 0 ? ops : [], c)).reverse();
    return this.tree.applyBlock(++this.block, entries);
  }

  /** Applies `ops` and returns the results of session operations in order. */
  run(...ops: SignedOp[]): OpResult[] {
    return this.apply(ops)
      .filter((e) => e.kind === "result")
      .map((e) => (e as Extract<Effect, { kind: "result" }>).result);
  }

  open(s: TestSession, timeoutMs = 10_000): number {
    const [r] = this.run(s.open(timeoutMs));
    if (r?.code !== "OK" || r.sessionId === undefined) throw new Error(`open failed: ${r?.code}`);
    s.id = r.sessionId;
    return s.id;
  }

  /** Advances every replica's clock by `ms` in steps of `stepMs`, one block per step. */
  advance(ms: number, stepMs = 200): Effect[] {
    const fx: Effect[] = [];
    for (let t = 0; t < ms; t += stepMs) {
      this.now += Math.min(stepMs, ms - t);
      fx.push(...this.apply([]));
    }
    return fx;
  }
}
