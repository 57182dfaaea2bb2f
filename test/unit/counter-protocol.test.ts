// The counter link's sealed FIFO frames (src/counter/protocol.ts): a frame opens only with its session's
// key, for its type and session number, and any change to its bytes is refused.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import {
  decodeLink,
  encodeLink,
  encodeRequest,
  FrameReader,
  MAC_BYTES,
  OP_INDEPENDENT,
  seal,
  T_FREPLY,
  T_FREQ,
  unseal,
} from "../../src/counter/protocol.ts";

const body = encodeRequest({
  reqId: 7,
  op: OP_INDEPENDENT,
  counter: 0,
  value: { view: 1, slot: 2 },
  digest: new Uint8Array(32).fill(9),
}).subarray(4);

describe("counter link frames", () => {
  const key = new Uint8Array(randomBytes(32));
  const sealed = new FrameReader().push(seal(T_FREQ, 3, body, key))[0] as Uint8Array;

  it("opens with its key, type and session, and gives back the body", () => {
    assert.deepEqual(unseal(sealed, T_FREQ, 3, key), body);
  });

  it("refuses another key, another session number, another type", () => {
    assert.equal(unseal(sealed, T_FREQ, 3, new Uint8Array(randomBytes(32))), null);
    assert.equal(unseal(sealed, T_FREQ, 4, key), null);
    assert.equal(unseal(sealed, T_FREPLY, 3, key), null, "a request is not a reply (no reflection)");
  });

  it("refuses every single-byte change and a cut MAC", () => {
    for (let i = 0; i < sealed.length; i++) {
      const bad = sealed.slice();
      bad[i] = (bad[i] as number) ^ 0x01;
      assert.equal(unseal(bad, T_FREQ, 3, key), null, `byte ${i} changed`);
    }
    assert.equal(unseal(sealed.subarray(0, sealed.length - 1), T_FREQ, 3, key), null);
    assert.equal(unseal(sealed.subarray(0, 5 + MAC_BYTES), T_FREQ, 3, key), null);
  });

  it("LINK carries the session, its key and the values, and refuses trailing bytes", () => {
    const counters = new Map([[0, { view: 2, slot: 130 }]]);
    const framed = encodeLink({ session: 9, key, counters });
    const l = decodeLink(framed.subarray(4));
    assert.equal(l.session, 9);
    assert.deepEqual(l.key, key);
    assert.deepEqual(l.counters, counters);
    const longer = new Uint8Array(framed.length - 4 + 1);
    longer.set(framed.subarray(4));
    assert.throws(() => decodeLink(longer), /trailing bytes/);
  });
});
