// What a counter process certifies with: its USIG over the state file, with the reservation that keeps
// every value certified at or below what is on disk, and the last certificate per counter so that a
// request repeated after a lost reply gets the same certificate, not a new one. No I/O of its own
// besides the state file's writes; the certifying thread (certify-thread.ts) feeds it request bodies.

import { bytesEqual } from "../bft/bytes.ts";
import { CounterError } from "../bft/errors.ts";
import { type CounterCert, type CounterValue, UsigCounter } from "../bft/trusted.ts";
import { signEd25519 } from "../crypto/node-crypto.ts";
import { CounterLinkError, CounterStoreError } from "./errors.ts";
import { decodeRequest, encodeCert, encodeError, OP_INDEPENDENT } from "./protocol.ts";
import type { CounterStore } from "./store.ts";

/**
 * Values a counter reserves per fdatasync. What is on disk is always at or above every value certified:
 * a certificate above the reservation first saves a new one, RESERVE_SLOTS slots ahead in its view. A
 * counter that crashes restarts at its reservation (it never certifies a value twice, it skips at most
 * this many) unless the exact values it records after each certificate are usable (a restart in the same
 * boot, store.ts); a clean close saves the exact values. Skipped values cost the replica what a crash
 * between certify and persist costs (hybrid.ts canCertify): it sits out those slots and cannot prove a
 * VIEW-CHANGE in this view (with two such replicas of three, no view change completes).
 */
export const RESERVE_SLOTS = 128;

interface Issued {
  readonly op: number;
  readonly digest: Uint8Array;
  readonly cert: CounterCert;
}

export interface ServeResult {
  /** The CERT or ERR body to send back. */
  readonly reply: Uint8Array;
  /** The state file could not be written: the counter must stop (the value stays burnt). */
  readonly fatal?: Error;
}

export class Certifier {
  private readonly usig: UsigCounter;
  private readonly issued = new Map<number, Issued>();
  certified = 0;

  constructor(
    id: number,
    seed: Uint8Array,
    private readonly store: CounterStore,
  ) {
    const key = seed.slice();
    const reserved = new Map(store.loaded);
    this.usig = new UsigCounter({
      id,
      sign: (bytes) => signEd25519(key, bytes),
      counters: store.loaded,
      onAdvance: (c, v) => {
        const r = reserved.get(c);
        if (r && r.view === v.view && v.slot <= r.slot) return;
        reserved.set(c, { view: v.view, slot: v.slot + RESERVE_SLOTS });
        try {
          store.save(reserved);
        } catch (err) {
          reserved.delete(c); // not durable: the next advance must try to save again
          throw err;
        }
      },
    });
  }

  counters(): Map<number, CounterValue> {
    return this.usig.counters();
  }

  /** Answers one REQ body with a CERT or an ERR body. */
  serve(body: Uint8Array): ServeResult {
    let reqId = 0;
    try {
      const q = decodeRequest(body);
      reqId = q.reqId;
      const last = this.issued.get(q.counter);
      if (
        last &&
        last.op === q.op &&
        last.cert.value.view === q.value.view &&
        last.cert.value.slot === q.value.slot &&
        bytesEqual(last.digest, q.digest)
      ) {
        return { reply: encodeCert(reqId, last.cert.value, last.cert.prev, last.cert.sig).subarray(4) };
      }
      const cert =
        q.op === OP_INDEPENDENT
          ? this.usig.certifyIndependent(q.counter, q.value, q.digest)
          : this.usig.certifyContinuing(q.counter, q.value, q.digest);
      // Before the certificate leaves: a restart in this boot resumes here (store.ts, counter.exact).
      this.store.writeExact(this.usig.counters());
      this.issued.set(q.counter, { op: q.op, digest: q.digest.slice(), cert });
      this.certified++;
      return { reply: encodeCert(reqId, cert.value, cert.prev, cert.sig).subarray(4) };
    } catch (err) {
      if (err instanceof CounterError || err instanceof CounterLinkError) {
        return { reply: encodeError(reqId, err.code, err.message).subarray(4) };
      }
      if (err instanceof CounterStoreError || (err as NodeJS.ErrnoException)?.code) {
        const e = err as Error;
        return { reply: encodeError(reqId, "STORE_FAILED", String(e.message)).subarray(4), fatal: e };
      }
      throw err;
    }
  }

  /** Saves the exact values (a clean stop: the next start skips nothing) and closes the state file. */
  close(): void {
    try {
      this.store.save(this.usig.counters());
    } finally {
      this.store.close();
    }
  }
}
