// Canonical byte encoding used for digests (and later reused by the wire codec).
// Length-prefixed fields so that different field sequences can never encode to the same bytes.

const TEXT = new TextEncoder();

export class ByteWriter {
  private buf: Uint8Array;
  private dv: DataView;
  private len = 0;

  constructor(initialBytes = 256) {
    this.buf = new Uint8Array(initialBytes);
    this.dv = new DataView(this.buf.buffer);
  }

  private ensure(extra: number): void {
    if (this.len + extra <= this.buf.length) return;
    let size = Math.max(16, this.buf.length * 2);
    while (size < this.len + extra) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.dv = new DataView(next.buffer);
  }

  u8(v: number): this {
    this.ensure(1);
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) throw new RangeError(`u32 out of range: ${v}`);
    this.ensure(4);
    this.dv.setUint32(this.len, v >>> 0);
    this.len += 4;
    return this;
  }

  /** Non-negative safe integer as 8 bytes big-endian. */
  u64(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`u64 out of range: ${v}`);
    this.ensure(8);
    this.dv.setUint32(this.len, Math.floor(v / 0x1_0000_0000));
    this.dv.setUint32(this.len + 4, v >>> 0);
    this.len += 8;
    return this;
  }

  /** Length-prefixed bytes. */
  bytes(b: Uint8Array): this {
    this.u32(b.length);
    this.raw(b);
    return this;
  }

  raw(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }

  str(s: string): this {
    return this.bytes(TEXT.encode(s));
  }

  /** A copy of the bytes written. */
  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }

  /** The bytes written, without copying (valid until the next write). */
  view(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function toHex(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += (b[i] as number).toString(16).padStart(2, "0");
  return s;
}

export function utf8Length(s: string): number {
  return TEXT.encode(s).length;
}

export type ByteReaderErrorCode = "TRUNCATED" | "BAD_LENGTH" | "BAD_VALUE";

const TEXT_DECODER = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Reads what ByteWriter wrote; every failure goes through `fail` (callers pick their error class). */
export class ByteReader {
  private pos = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly fail: (code: ByteReaderErrorCode, message: string) => Error,
  ) {}

  get left(): number {
    return this.buf.length - this.pos;
  }

  get offset(): number {
    return this.pos;
  }

  private need(n: number): void {
    if (n > this.left)
      throw this.fail("TRUNCATED", `need ${n} bytes at offset ${this.pos}, ${this.left} left`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++] as number;
  }

  u32(): number {
    this.need(4);
    const b = this.buf;
    const p = this.pos;
    this.pos += 4;
    return (
      (((b[p] as number) << 24) >>> 0) +
      ((b[p + 1] as number) << 16) +
      ((b[p + 2] as number) << 8) +
      (b[p + 3] as number)
    );
  }

  /** 8 bytes big-endian; values above 2^53 - 1 are refused (they cannot be represented exactly). */
  u64(): number {
    const hi = this.u32();
    const lo = this.u32();
    if (hi > 0x1f_ffff) throw this.fail("BAD_VALUE", "integer above 2^53 - 1");
    return hi * 0x1_0000_0000 + lo;
  }

  bytes(max = Number.POSITIVE_INFINITY): Uint8Array {
    const n = this.u32();
    if (n > max) throw this.fail("BAD_LENGTH", `byte string of ${n} exceeds ${max}`);
    return this.raw(n);
  }

  /** Exactly n bytes, without a length prefix. */
  raw(n: number): Uint8Array {
    this.need(n);
    const out = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  str(max = Number.POSITIVE_INFINITY): string {
    const b = this.bytes(max);
    try {
      return TEXT_DECODER.decode(b);
    } catch {
      throw this.fail("BAD_VALUE", "string is not valid UTF-8");
    }
  }

  flag(): boolean {
    const v = this.u8();
    if (v > 1) throw this.fail("BAD_VALUE", `flag byte ${v}`);
    return v === 1;
  }

  /** A list count, refused when even the smallest elements could not fit in what is left. */
  count(minElementBytes: number): number {
    const n = this.u32();
    if (n * minElementBytes > this.left) {
      throw this.fail("BAD_LENGTH", `count ${n} cannot fit in the ${this.left} bytes left`);
    }
    return n;
  }

  list<T>(minElementBytes: number, read: () => T): T[] {
    const n = this.count(minElementBytes);
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(read());
    return out;
  }
}
