// The durable state of a replica is a small key/value space written through Ready.persist.
// MemoryStorage applies those ops (simulator, tests); a LevelDB store does the same on disk.

import type { PersistOp } from "./types.ts";

export interface StorageReader {
  get(key: string): unknown;
  /** Keys with the prefix, in ascending order. */
  keys(prefix: string): string[];
}

export class MemoryStorage implements StorageReader {
  private readonly map = new Map<string, unknown>();

  apply(ops: readonly PersistOp[]): void {
    for (const op of ops) {
      if (op.op === "put") this.map.set(op.key, op.value);
      else this.map.delete(op.key);
    }
  }

  get(key: string): unknown {
    return this.map.get(key);
  }

  keys(prefix: string): string[] {
    const out: string[] = [];
    for (const k of this.map.keys()) if (k.startsWith(prefix)) out.push(k);
    return out.sort();
  }

  get size(): number {
    return this.map.size;
  }
}

/** Fixed-width decimal so that lexicographic key order is numeric order. */
export function seqKey(prefix: string, seq: number): string {
  return prefix + seq.toString().padStart(16, "0");
}
