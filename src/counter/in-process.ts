// Benchmarks only: the trusted counter inside the replica's process, with the same certificates, the
// same durability (the state file and its reservation) and the same request encoding as the counter
// process, minus the process boundary. It gives the replica the counter's key, so it protects against
// nothing (docs/protocol.md §2.3); no configuration reaches it, only ORDERER_BENCH_COUNTER=in-process in
// a benchmark's environment (local-cluster.ts), to measure what the counter process costs.

import { CounterError } from "../bft/errors.ts";
import { type CounterCert, type CounterValue, type TrustedCounter, ZERO_VALUE } from "../bft/trusted.ts";
import { Certifier } from "./certifier.ts";
import type { CounterConfig } from "./config.ts";
import { CounterLinkError } from "./errors.ts";
import { decodeReply, encodeRequest, OP_CONTINUING, OP_INDEPENDENT } from "./protocol.ts";
import { CounterStore } from "./store.ts";

export class InProcessCounter implements TrustedCounter {
  readonly id: number;
  private reqId = 0;
  readonly stats = { calls: 0, totalMs: 0 };

  private constructor(
    private readonly certifier: Certifier,
    id: number,
  ) {
    this.id = id;
  }

  static async open(c: CounterConfig): Promise<InProcessCounter> {
    const seed = Uint8Array.from(Buffer.from(c.seed, "hex"));
    return new InProcessCounter(new Certifier(c.id, seed, CounterStore.open(c.dataDir, c.id)), c.id);
  }

  current(counter: number): CounterValue {
    return this.certifier.counters().get(counter) ?? ZERO_VALUE;
  }

  certifyIndependent(counter: number, value: CounterValue, digest: Uint8Array): CounterCert {
    return this.certify(OP_INDEPENDENT, counter, value, digest);
  }

  certifyContinuing(counter: number, value: CounterValue, digest: Uint8Array): CounterCert {
    return this.certify(OP_CONTINUING, counter, value, digest);
  }

  private certify(op: 1 | 2, counter: number, value: CounterValue, digest: Uint8Array): CounterCert {
    const started = performance.now();
    this.reqId = (this.reqId + 1) >>> 0;
    const r = this.certifier.serve(
      encodeRequest({ reqId: this.reqId, op, counter, value, digest }).subarray(4),
    );
    const reply = decodeReply(r.reply);
    this.stats.calls++;
    this.stats.totalMs += performance.now() - started;
    if (reply.type === "err") {
      if (r.fatal) throw new CounterLinkError("UNAVAILABLE", reply.message);
      throw new CounterError(reply.code, reply.message);
    }
    const cert = { subsystem: this.id, counter, value: { view: value.view, slot: value.slot } };
    return reply.prev ? { ...cert, prev: reply.prev, sig: reply.sig } : { ...cert, sig: reply.sig };
  }

  async close(): Promise<void> {
    this.certifier.close();
  }
}
