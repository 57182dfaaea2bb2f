// Small browser-safe byte helpers of the ordering modules: constant-time comparison, hex and base64.
// Node's Buffer encodes natively when there is one; browsers take the portable paths.

export function bytesEq(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= (a[i] as number) ^ (b[i] as number);
  return d === 0;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

const NodeBuffer = (globalThis as { Buffer?: typeof Buffer }).Buffer;

export function toHexStr(b: Uint8Array): string {
  // Node's Buffer encodes natively (a tx id per transaction on every replica); elsewhere, by table.
  if (NodeBuffer) return NodeBuffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
  let s = "";
  for (let i = 0; i < b.length; i++) s += HEX[b[i] as number];
  return s;
}

export function fromHexStr(s: string): Uint8Array {
  if (typeof s !== "string" || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) throw new Error("bad hex");
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

// With the length a multiple of 4, this is exactly standard padded base64 (and linear: no groups).
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Standard base64 with padding. Node's Buffer encodes natively (a 1 MiB value costs about a millisecond). */
export function toBase64(b: Uint8Array): string {
  if (NodeBuffer) return NodeBuffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
  return toBase64Portable(b);
}

/** Decodes standard base64 (padding required); throws on anything else. */
export function fromBase64(s: string): Uint8Array {
  if (typeof s !== "string" || s.length % 4 !== 0 || !BASE64.test(s)) throw new Error("bad base64");
  if (NodeBuffer) {
    const buf = NodeBuffer.from(s, "base64");
    // A small result is a slice of Node's shared pool: copy it, so that its .buffer is its own (as
    // the portable path's is); a large one owns its memory already.
    return buf.byteOffset === 0 && buf.buffer.byteLength === buf.byteLength
      ? new Uint8Array(buf.buffer)
      : new Uint8Array(buf);
  }
  return fromBase64Portable(s);
}

/** toBase64 without Buffer (browsers), by chunks: spreading a chunk into fromCharCode is far slower. */
export function toBase64Portable(b: Uint8Array): string {
  const parts: string[] = [];
  for (let i = 0; i < b.length; i += 0x2000)
    parts.push(String.fromCharCode.apply(null, b.subarray(i, i + 0x2000) as unknown as number[]));
  return btoa(parts.join(""));
}

export function fromBase64Portable(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
