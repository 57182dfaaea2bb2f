// The counter process's durable state: every counter's value, in a small file of two fixed slots written
// alternately (write + fdatasync before any certificate at the new value leaves the process). A torn
// write can only damage the slot being written; the other still holds the previous generation, whose
// value was never exceeded by a certificate. A file that holds no valid slot is refused, never reset:
// a reset would let the counter certify values twice.
//
// Beside it, `counter.exact` holds the exact values after every certificate, written (no fdatasync)
// before the certificate leaves the process, tagged with the kernel's boot id and the reservation's
// generation. A process killed and restarted in the same boot reads back every completed write (the page
// cache survives the process), so it resumes at its last certified value and skips nothing; after a
// reboot, or when the record is torn, stale or of another generation, it resumes at the reservation.

import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
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
export const EXACT_FILE = "counter.exact";
const EXACT_MAGIC = 0x4f43_5458; // "OCTX"
const BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id";

/** This boot's id (16 bytes), or null where the kernel does not tell it (exact values are then unused). */
export function bootId(path = BOOT_ID_FILE): Uint8Array | null {
  try {
    const hex = readFileSync(path, "utf8").trim().replaceAll("-", "");
    return /^[0-9a-f]{32}$/i.test(hex) ? new Uint8Array(Buffer.from(hex, "hex")) : null;
  } catch {
    return null;
  }
}

export interface CounterState {
  readonly generation: number;
  readonly counters: ReadonlyMap<number, CounterValue>;
}

/** Opens (or creates) `dir/counter.state` for subsystem `id`; the caller holds the process lock. */
export class CounterStore {
  private generation: number;
  /** The values to resume from: the exact ones when usable (see the file comment), else the reservation. */
  readonly loaded: ReadonlyMap<number, CounterValue>;
  /** Whether `loaded` came from the exact record (nothing skipped) rather than the reservation. */
  readonly resumedExact: boolean;

  private constructor(
    private readonly fd: number,
    readonly id: number,
    state: CounterState,
    private readonly exactFd: number | null,
    private readonly boot: Uint8Array | null,
  ) {
    this.generation = state.generation;
    const exact = exactFd !== null && boot !== null ? readExact(exactFd, id, boot, state) : null;
    this.loaded = exact ?? state.counters;
    this.resumedExact = exact !== null;
  }

  static ensureDir(dir: string): void {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700); // whatever it was before
  }

  static open(dir: string, id: number, boot: Uint8Array | null = bootId()): CounterStore {
    CounterStore.ensureDir(dir);
    const path = join(dir, STATE_FILE);
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600);
    fchmodSync(fd, 0o600); // whatever it was before
    let exactFd: number | null = null;
    try {
      exactFd =
        boot === null ? null : openSync(join(dir, EXACT_FILE), constants.O_RDWR | constants.O_CREAT, 0o600);
      const size = fstatSync(fd).size;
      if (size === 0) {
        const store = new CounterStore(fd, id, { generation: 0, counters: new Map() }, exactFd, boot);
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
      return new CounterStore(fd, id, best, exactFd, boot);
    } catch (err) {
      closeSync(fd);
      if (exactFd !== null) closeSync(exactFd);
      throw err;
    }
  }

  /**
   * Records the exact values, no fdatasync: call after certifying and before the certificate leaves the
   * process. A failed write throws (the caller must not release the certificate).
   */
  writeExact(counters: ReadonlyMap<number, CounterValue>): void {
    if (this.exactFd === null || this.boot === null) return;
    const rec = encodeExact(this.id, this.boot, this.generation, counters);
    const n = writeSync(this.exactFd, rec, 0, rec.length, 0);
    if (n !== rec.length) throw new CounterStoreError("SHORT_WRITE", `wrote ${n} of ${rec.length} bytes`);
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
    if (this.exactFd !== null) closeSync(this.exactFd);
  }
}

/** The exact-values record: magic, id, boot id, reservation generation, entries, sha256 of all before. */
export function encodeExact(
  id: number,
  boot: Uint8Array,
  generation: number,
  counters: ReadonlyMap<number, CounterValue>,
): Uint8Array {
  const w = new ByteWriter(64 + counters.size * 20).u32(EXACT_MAGIC).u32(id).raw(boot).u64(generation);
  w.u32(counters.size);
  for (const [c, v] of [...counters].sort(([a], [b]) => a - b)) w.u32(c).u64(v.view).u64(v.slot);
  const body = w.finish();
  const out = new Uint8Array(body.length + 32);
  out.set(body);
  out.set(createHash("sha256").update(body).digest(), body.length);
  return out;
}

/**
 * The exact values, when the record is whole, of this subsystem, written in this boot under the
 * reservation's generation, and within the reservation; otherwise null (resume at the reservation).
 */
function readExact(
  fd: number,
  id: number,
  boot: Uint8Array,
  state: CounterState,
): Map<number, CounterValue> | null {
  const size = fstatSync(fd).size;
  if (size < 36 || size > 64 + COUNTERS_MAX * 20 + 32) return null;
  const buf = new Uint8Array(size);
  readSync(fd, buf, 0, size, 0);
  try {
    const r = new ByteReader(buf, (code, message) => new CounterStoreError(code, message));
    if (r.u32() !== EXACT_MAGIC || r.u32() !== id) return null;
    if (!bytesEqual(r.raw(16), boot) || r.u64() !== state.generation) return null;
    const count = r.u32();
    if (count > COUNTERS_MAX) return null;
    const out = new Map<number, CounterValue>();
    for (let i = 0; i < count; i++) {
      const c = r.u32();
      const v = { view: r.u64(), slot: r.u64() };
      const reserved = state.counters.get(c);
      if (c >= COUNTERS_MAX || !validValue(v) || out.has(c) || !reserved) return null;
      if (v.view > reserved.view || (v.view === reserved.view && v.slot > reserved.slot)) return null;
      out.set(c, v);
    }
    const end = r.offset;
    if (r.left < 32) return null;
    const sum = createHash("sha256").update(buf.subarray(0, end)).digest();
    if (!bytesEqual(new Uint8Array(sum), buf.subarray(end, end + 32))) return null;
    // A counter reserved but absent from the record was never certified in this generation.
    for (const [c, v] of state.counters) if (!out.has(c)) out.set(c, v);
    return out;
  } catch {
    return null;
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
