// The ledger's keys and values in LevelDB (sharing the replica's database; every prefix is in storage/keyspace.ts):
//   b/<number>  block (header, entries, view/seq/time)     c/<number>  its certificate
//   x/<tx id>   [block number, position] (tx-index.ts)      m/head      [height, head hash]
//   m/certified the height up to which every block is certified (contiguous)
// Their encodings, and reads that turn a value that does not decode into LedgerError("CORRUPT").

import { deserialize, serialize } from "node:v8";
import type { Level } from "level";
import { KEYSPACE } from "../storage/keyspace.ts";
import { OrdererError } from "../util/errors.ts";
import type { Block, CertSig } from "./block.ts";

const BLOCK = KEYSPACE.block;
const CERT = KEYSPACE.blockCert;
export const HEAD = KEYSPACE.ledgerHead;
export const CERTIFIED = KEYSPACE.ledgerCertified;

export class LedgerError extends OrdererError<"GENESIS_MISMATCH" | "CORRUPT" | "GAP"> {
  override readonly name = "LedgerError";
}

export const blockKey = (n: number): string => BLOCK + n.toString().padStart(16, "0");
export const certKey = (n: number): string => CERT + n.toString().padStart(16, "0");

/** A certificate's value: [replica, signature] pairs. */
export function encodeCert(cert: readonly CertSig[]): Uint8Array {
  return serialize(cert.map((s) => [s.replica, s.sig]));
}

export async function readBlock(db: Level<string, Uint8Array>, n: number): Promise<Block | undefined> {
  const v = await db.get(blockKey(n));
  return v === undefined ? undefined : decodeBlock(v, n);
}

/** The v8-deserialized value at `key` (undefined when there is none). */
export async function readValue(db: Level<string, Uint8Array>, key: string): Promise<unknown> {
  const v = await db.get(key);
  if (v === undefined) return undefined;
  try {
    return deserialize(v);
  } catch (err) {
    throw new LedgerError("CORRUPT", `corrupt value at ${key}: ${(err as Error).message}`);
  }
}

export function encodeBlock(b: Block): Uint8Array {
  const h = b.header;
  const m = b.metadata;
  return serialize([h.number, h.previousHash, h.dataHash, b.entries, m.view, m.seq, m.commitTimeMs]);
}

export function decodeBlock(v: Uint8Array, n: number): Block {
  try {
    const [number, previousHash, dataHash, entries, view, seq, commitTimeMs] = deserialize(v) as [
      number,
      Uint8Array,
      Uint8Array,
      Uint8Array[],
      number,
      number,
      number,
    ];
    if (number !== n || !(previousHash instanceof Uint8Array) || !Array.isArray(entries))
      throw new Error("shape");
    return {
      header: { number, previousHash, dataHash },
      entries,
      metadata: { view, seq, commitTimeMs, certificate: [] },
    };
  } catch (err) {
    throw new LedgerError("CORRUPT", `block ${n} does not decode: ${(err as Error).message}`);
  }
}
