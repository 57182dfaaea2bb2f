// Exactly-once bookkeeping: which (client, request number) pairs were executed. Part of the replicated
// state (identical on every correct replica), snapshotted at checkpoints.

import { assert } from "./errors.ts";

/** Request numbers tracked above a client's low watermark (how far a client may pipeline). */
export const CLIENT_WINDOW = 1024;

interface Entry {
  /** Every reqNo <= low counts as executed. */
  low: number;
  /** Executed reqNos above low. */
  seen: Set<number>;
  lastSeq: number;
  /** The application's reply to the client's latest executed request, for retransmissions. */
  reply: { readonly reqNo: number; readonly data: Uint8Array } | null;
}

export type ClientTableSnapshot = readonly (readonly [
  string,
  number,
  readonly number[],
  number,
  { readonly reqNo: number; readonly data: Uint8Array } | null,
])[];

export class ClientTable {
  private readonly map = new Map<string, Entry>();

  constructor(private readonly max: number) {}

  isExecuted(clientId: string, reqNo: number): boolean {
    const e = this.map.get(clientId);
    if (!e) return false;
    return reqNo <= e.low || e.seen.has(reqNo);
  }

  /** Records an executed request; evicts the least recently active client beyond the bound. */
  record(clientId: string, reqNo: number, seq: number): void {
    assert(!this.isExecuted(clientId, reqNo), `record: expected ${clientId}/${reqNo} not executed yet`);
    let e = this.map.get(clientId);
    if (e) this.map.delete(clientId);
    else e = { low: 0, seen: new Set(), lastSeq: seq, reply: null };
    const low = e.low;
    e.lastSeq = seq;
    if (reqNo > e.low + CLIENT_WINDOW) {
      e.low = reqNo - CLIENT_WINDOW;
      for (const r of e.seen) if (r <= e.low) e.seen.delete(r);
    }
    e.seen.add(reqNo);
    while (e.seen.has(e.low + 1)) {
      e.low++;
      e.seen.delete(e.low);
    }
    assert(e.low >= low, `record: expected ${clientId}'s window to stay at or above ${low}, got ${e.low}`);
    this.map.set(clientId, e);
    if (this.map.size > this.max) {
      const oldest = this.map.keys().next().value as string;
      this.map.delete(oldest);
    }
  }

  /** Keeps `data` as the reply to (client, reqNo) if that request was executed and is the latest replied. */
  setReply(clientId: string, reqNo: number, data: Uint8Array): boolean {
    const e = this.map.get(clientId);
    if (!e || !this.isExecuted(clientId, reqNo) || (e.reply && e.reply.reqNo > reqNo)) return false;
    e.reply = { reqNo, data };
    return true;
  }

  /** The kept reply to (client, reqNo), if it is the last one kept. */
  reply(clientId: string, reqNo: number): Uint8Array | undefined {
    const r = this.map.get(clientId)?.reply;
    return r && r.reqNo === reqNo ? r.data : undefined;
  }

  get size(): number {
    return this.map.size;
  }

  snapshot(): ClientTableSnapshot {
    const out: [string, number, number[], number, Entry["reply"]][] = [];
    for (const [id, e] of this.map)
      out.push([id, e.low, [...e.seen].sort((a, b) => a - b), e.lastSeq, e.reply]);
    return out;
  }

  static restore(max: number, snap: ClientTableSnapshot): ClientTable {
    const t = new ClientTable(max);
    for (const [id, low, seen, lastSeq, reply] of snap)
      t.map.set(id, { low, seen: new Set(seen), lastSeq, reply });
    return t;
  }
}
