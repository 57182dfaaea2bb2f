// The ledger's transaction index (x/<tx id> → block number and position): its value format, the
// duplicate check a block's writes read it for, and findTx's lookups batched per turn of the event loop.

import { deserialize } from "node:v8";
import type { Level } from "level";
import { KEYSPACE } from "../storage/keyspace.ts";
import { LedgerError } from "./ledger-store.ts";

const TX = KEYSPACE.tx;

/**
 * Up to this many transaction ids, a block's duplicate check reads the database in place (getSync: the
 * memtable, or an SST's Bloom filter and a cached block), a few microseconds each. A larger block's ids
 * go to the thread pool in one getMany, which costs a hand-off and a wake-up each way (about 0.8 ms on
 * this machine's loaded cores, more than the reads) but keeps a long lookup off the event loop.
 */
export const SYNC_LOOKUP_MAX = 64;

/** Where a transaction is in the chain. */
export interface TxLocation {
  readonly number: number;
  readonly position: number;
}

export const txKey = (id: string): string => TX + id;

export class TxIndex {
  private lookups: {
    id: string;
    resolve: (l: TxLocation | undefined) => void;
    reject: (e: Error) => void;
  }[] = [];

  constructor(private readonly db: Level<string, Uint8Array>) {}

  /** The values of `keys`, read in place when they are few (SYNC_LOOKUP_MAX). */
  lookUp(keys: string[]): (Uint8Array | undefined)[] | Promise<(Uint8Array | undefined)[]> {
    const { db } = this;
    if (keys.length > SYNC_LOOKUP_MAX || !(db.supports as { getSync?: boolean }).getSync)
      return db.getMany(keys);
    return keys.map((k) => db.getSync(k));
  }

  /**
   * Where a transaction is in the chain. Lookups asked for in the same turn of the event loop go to the
   * database together (one getMany): a gateway under load asks for every submission.
   */
  find(id: string): Promise<TxLocation | undefined> {
    if (!/^[0-9a-f]{64}$/.test(id)) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      this.lookups.push({ id, resolve, reject });
      if (this.lookups.length === 1) setImmediate(() => this.runLookups());
    });
  }

  private runLookups(): void {
    const batch = this.lookups;
    this.lookups = [];
    this.db.getMany(batch.map((l) => TX + l.id)).then(
      (values) => {
        batch.forEach((l, i) => {
          const v = values[i];
          try {
            l.resolve(v === undefined ? undefined : decodeTxLocation(v, l.id));
          } catch (err) {
            l.reject(err as Error);
          }
        });
      },
      (err: Error) => {
        for (const l of batch) l.reject(err);
      },
    );
  }
}

/** A tx index value: block number (u64) and position (u32), big-endian. */
export function encodeTxLocation(n: number, position: number): Uint8Array {
  // Byte by byte: a DataView would need `.buffer`, which moves this small array off the heap (one per
  // transaction on every replica).
  const out = new Uint8Array(12);
  putU32(out, 0, Math.floor(n / 0x1_0000_0000));
  putU32(out, 4, n >>> 0);
  putU32(out, 8, position);
  return out;
}

function putU32(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 24;
  out[at + 1] = (v >>> 16) & 0xff;
  out[at + 2] = (v >>> 8) & 0xff;
  out[at + 3] = v & 0xff;
}

/** Reads a tx index value: 12 bytes, or the v8-serialized [number, position] of earlier versions. */
function decodeTxLocation(v: Uint8Array, id: string): TxLocation {
  if (v.length === 12 && v[0] !== 0xff) {
    const dv = new DataView(v.buffer, v.byteOffset, 12);
    return { number: dv.getUint32(0) * 0x1_0000_0000 + dv.getUint32(4), position: dv.getUint32(8) };
  }
  let old: unknown;
  try {
    old = deserialize(v);
  } catch {
    old = undefined;
  }
  if (!Array.isArray(old) || !Number.isSafeInteger(old[0]) || !Number.isSafeInteger(old[1]))
    throw new LedgerError("CORRUPT", `unreadable tx index entry for ${id}`);
  return { number: old[0] as number, position: old[1] as number };
}
