// Base64 as the APIs carry transactions, values and blocks: Node's Buffer when present, a portable
// path otherwise (browsers). Both must agree with the reference encoding at every length, and decoding
// must refuse anything but standard padded base64.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { fromBase64, fromBase64Portable, toBase64, toBase64Portable } from "../../src/ordering/block.ts";

const reference = (b: Uint8Array) => Buffer.from(b).toString("base64");

describe("base64", () => {
  it("encodes and decodes like Buffer at every length up to 200 bytes and at 1 MiB + 1, both paths", () => {
    const lengths = [
      ...Array.from({ length: 201 }, (_, i) => i),
      0x2000 - 1,
      0x2000,
      0x2000 + 1,
      (1 << 20) + 1,
    ];
    for (const n of lengths) {
      const b = new Uint8Array(randomBytes(n));
      const ref = reference(b);
      assert.equal(toBase64(b), ref, `toBase64 at ${n} bytes`);
      assert.equal(toBase64Portable(b), ref, `toBase64Portable at ${n} bytes`);
      assert.deepEqual(fromBase64(ref), b, `fromBase64 at ${n} bytes`);
      assert.deepEqual(fromBase64Portable(ref), b, `fromBase64Portable at ${n} bytes`);
      const decoded = fromBase64(ref);
      assert.equal(decoded.buffer.byteLength, n, `fromBase64 at ${n} bytes owns its whole buffer`);
    }
  });

  it("encodes a view into a larger buffer, not the whole buffer", () => {
    const whole = new Uint8Array(randomBytes(64));
    const view = whole.subarray(5, 17);
    assert.equal(toBase64(view), reference(view));
  });

  it("refuses what is not standard padded base64", () => {
    for (const bad of ["abc", "ab=c", "a===", "====", "@@@@", "ab cd===", "AAAA\n", "YQ", "YWI"]) {
      assert.throws(() => fromBase64(bad), /bad base64/, JSON.stringify(bad));
    }
    assert.throws(() => fromBase64(42 as unknown as string), /bad base64/);
    assert.deepEqual(fromBase64(""), new Uint8Array(0));
  });
});
