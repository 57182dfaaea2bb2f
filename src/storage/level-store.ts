// A replica's durable state in LevelDB: the core's key/value space (written through Ready.persist) and
// the application's writes, in one atomic batch per Ready. (Hybrid mode's trusted counters are not here:
// their own process keeps them, see src/counter/.)

import { deserialize, serialize } from "node:v8";
import { Level } from "level";
import { MemoryStorage } from "../bft/storage.ts";
import type { PersistOp } from "../bft/types.ts";
import { withDefaults } from "../util/defaults.ts";
import { OrdererError } from "../util/errors.ts";
import { makePrivate } from "../util/private-files.ts";
import { KEYSPACE } from "./keyspace.ts";

const STATE = KEYSPACE.coreState;

export class StoreError extends OrdererError<"STORE_FAILED"> {
  override readonly name = "StoreError";
  constructor(message: string, options?: { readonly cause?: unknown }) {
    super("STORE_FAILED", message, options);
  }
}

export interface LoadedState {
  /** The core's key/value space, for createReplica(..., storage). */
  readonly storage: MemoryStorage;
}

/** A raw write of another component sharing this database (the ledger), applied in the same batch. */
export type RawOp =
  | { readonly type: "put"; readonly key: string; readonly value: Uint8Array }
  | { readonly type: "del"; readonly key: string };

/**
 * Writes raw ops in one atomic batch. A chained batch, not `db.batch(array)`: measured here, the
 * array form costs about 3x the synchronous time per call and 6x per op (each op object is read
 * property by property on the native side).
 */
export function writeBatch(
  db: Level<string, Uint8Array>,
  raw: readonly RawOp[],
  sync: boolean,
): Promise<void> {
  const batch = db.batch();
  addRaw(batch, raw);
  return batch.write({ sync });
}

function addRaw(batch: ReturnType<Level<string, Uint8Array>["batch"]>, raw: readonly RawOp[]): void {
  for (const r of raw) {
    if (r.type === "put") batch.put(r.key, r.value);
    else batch.del(r.key);
  }
}

export interface LevelStoreOptions {
  /** fsync every write batch (default true): a write acknowledged is a write that survives power loss. */
  readonly sync?: boolean;
}

/** The store's option defaults: the one place they are written. */
export const LEVEL_STORE_DEFAULTS = Object.freeze({ sync: true }) satisfies Partial<LevelStoreOptions>;

export class LevelStore {
  /** The database, shared with the ledger and the znode tree (each under its own KEYSPACE prefixes). */
  readonly db: Level<string, Uint8Array>;
  readonly sync: boolean;

  private constructor(db: Level<string, Uint8Array>, sync: boolean) {
    this.db = db;
    this.sync = sync;
  }

  static async open(dir: string, opts: LevelStoreOptions = {}): Promise<LevelStore> {
    const db = new Level<string, Uint8Array>(dir, { valueEncoding: "view" });
    try {
      // The replica's state is its user's alone: the directory 0700 and its files 0600, whatever they
      // were (LevelDB creates its files 0644 less the umask; docs/operations.md, "File modes").
      makePrivate(dir);
      await db.open();
    } catch (err) {
      throw new StoreError(`cannot open the replica store at ${dir}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return new LevelStore(db, withDefaults(LEVEL_STORE_DEFAULTS, opts).sync);
  }

  /** Reads everything back (the state is bounded by the core's limits). */
  async load(): Promise<LoadedState> {
    const storage = new MemoryStorage();
    const ops: PersistOp[] = [];
    for await (const [key, value] of this.db.iterator({ gte: STATE, lt: "t0" })) {
      let decoded: unknown;
      try {
        decoded = deserialize(value);
      } catch (err) {
        throw new StoreError(`corrupt value at ${key}: ${(err as Error).message}`, { cause: err });
      }
      if (key.startsWith(STATE)) ops.push({ op: "put", key: key.slice(STATE.length), value: decoded });
    }
    storage.apply(ops);
    return { storage };
  }

  /** Applies one Ready's ops and other raw writes atomically. */
  async apply(ops: readonly PersistOp[], raw: readonly RawOp[] = []): Promise<void> {
    const batch = this.db.batch();
    addRaw(batch, raw);
    for (const op of ops) {
      if (op.op === "put") batch.put(STATE + op.key, serialize(op.value));
      else batch.del(STATE + op.key);
    }
    await batch.write({ sync: this.sync });
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
