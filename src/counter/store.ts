// The counter process's durable state: every counter's value, in a small file of two fixed slots written
// alternately (write + fdatasync before any certificate at the new value leaves the process). A torn
// write can only damage the slot being written; the other still holds the previous generation, whose
// value was never exceeded by a certificate. A file that holds no valid slot is refused, never reset:
// a reset would let the counter certify values twice.

import { createHash } from "node:crypto";
import {
  closeSync,
  constants,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { ByteReader, ByteWriter, bytesEqual } from "../bft/bytes.ts";
import { COUNTERS_MAX, type CounterValue, validValue } from "../bft/trusted.ts";
import { CounterStoreError } from "./errors.ts";

const MAGIC = 0x4f43_5452; // "OCTR"
const VERSION = 1;
/** Bytes per slot: header (4 magic, 1 version, 4 id, 8 generation, 4 count), entries (4 + 8 + 8), sha256. */
export const SLOT_BYTES = 21 + COUNTERS_MAX * 20 + 32;
export const STATE_FILE = "counter.state";

export interface CounterState {
  readonly generation: number;
  readonly counters: ReadonlyMap<number, CounterValue>;
}

/** Opens (or creates) `dir/counter.state` for subsystem `id`; the caller holds the process lock. */
export class CounterStore {
  private generation: number;

  private constructor(
    private readonly fd: number,
    readonly id: number,
    state: CounterState,
  ) {
    this.generation = state.generation;
    this.loaded = state.counters;
  }

  /** The counters as found at open. */
  readonly loaded: ReadonlyMap<number, CounterValue>;

  static ensureDir(dir: string): void {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  static open(dir: string, id: number): CounterStore {
    CounterStore.ensureDir(dir);
    const path = join(dir, STATE_FILE);
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600);
    try {
      const size = fstatSync(fd).size;
      if (size === 0) {
        const store = new CounterStore(fd, id, { generation: 0, counters: new Map() });
        store.save(new Map());
        syncDir(dir);
        return store;
      }
      if (size !== 2 * SLOT_BYTES) {
        throw new CounterStoreError("CORRUPT", `${path}: ${size} bytes, expected ${2 * SLOT_BYTES}`);
      }
      const buf = new Uint8Array(2 * SLOT_BYTES);
      readSync(fd, buf, 0, buf.length, 0);
      const slots = [0, 1].map((i) => decodeSlot(buf.subarray(i * SLOT_BYTES, (i + 1) * SLOT_BYTES)));
      let best: CounterState | null = null;
      for (const s of slots) {
        if (typeof s === "string") continue;
        if (s.id !== id) {
          throw new CounterStoreError("WRONG_SUBSYSTEM", `${path} belongs to subsystem ${s.id}, not ${id}`);
        }
        if (!best || s.generation > best.generation) best = s;
      }
      if (!best) {
        throw new CounterStoreError(
          "CORRUPT",
          `${path}: neither slot is valid (${slots.join(", ")}); refusing to start from zero`,
        );
      }
      return new CounterStore(fd, id, best);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** Makes `counters` durable: the next generation's slot, then fdatasync. Throws on any I/O failure. */
  save(counters: ReadonlyMap<number, CounterValue>): void {
    const generation = this.generation + 1;
    const slot = encodeSlot(this.id, generation, counters);
    const n = writeSync(this.fd, slot, 0, slot.length, (generation % 2) * SLOT_BYTES);
    if (n !== slot.length) throw new CounterStoreError("SHORT_WRITE", `wrote ${n} of ${slot.length} bytes`);
    fdatasyncSync(this.fd);
    this.generation = generation;
  }

  close(): void {
    closeSync(this.fd);
  }
}

function syncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function encodeSlot(
  id: number,
  generation: number,
  counters: ReadonlyMap<number, CounterValue>,
): Uint8Array {
  const w = new ByteWriter(SLOT_BYTES).u32(MAGIC).u8(VERSION).u32(id).u64(generation).u32(counters.size);
  for (const [c, v] of [...counters].sort(([a], [b]) => a - b)) w.u32(c).u64(v.view).u64(v.slot);
  const body = w.finish();
  const out = new Uint8Array(SLOT_BYTES);
  out.set(body);
  out.set(
    createHash("sha256")
      .update(out.subarray(0, SLOT_BYTES - 32))
      .digest(),
    SLOT_BYTES - 32,
  );
  return out;
}

/** A slot's state, or why it is not valid. */
export function decodeSlot(slot: Uint8Array): (CounterState & { readonly id: number }) | string {
  try {
    const r = new ByteReader(slot, (code, message) => new CounterStoreError(code, message));
    if (r.u32() !== MAGIC) return "bad magic";
    if (r.u8() !== VERSION) return "unknown version";
    const id = r.u32();
    const generation = r.u64();
    const count = r.u32();
    if (count > COUNTERS_MAX) return "too many counters";
    const counters = new Map<number, CounterValue>();
    for (let i = 0; i < count; i++) {
      const c = r.u32();
      const v = { view: r.u64(), slot: r.u64() };
      if (c >= COUNTERS_MAX || !validValue(v) || counters.has(c)) return "bad entry";
      counters.set(c, v);
    }
    const sum = createHash("sha256")
      .update(slot.subarray(0, SLOT_BYTES - 32))
      .digest();
    if (!bytesEqual(new Uint8Array(sum), slot.subarray(SLOT_BYTES - 32))) return "bad checksum";
    return { id, generation, counters };
  } catch {
    return "truncated";
  }
}
