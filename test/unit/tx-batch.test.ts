// The gateway's request op: a batch of transactions, strictly decoded so that every replica reads the same
// transactions out of the same bytes or refuses them alike.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  decodeTxBatch,
  encodeTxBatch,
  TX_BATCH_MAGIC,
  TX_BATCH_OVERHEAD_BYTES,
  txBatchBytes,
  txBatchCount,
} from "../../src/ordering/tx-batch.ts";

const tx = (s: string) => new TextEncoder().encode(s);

describe("gateway transaction batches", () => {
  it("round-trips transactions in order, with the size txBatchBytes predicts", () => {
    const txs = [tx("a"), tx("bb"), new Uint8Array(1000).fill(7)];
    const op = encodeTxBatch(txs);
    assert.equal(op.length, txBatchBytes(1003, 3));
    assert.equal(encodeTxBatch([tx("x")]).length, 1 + TX_BATCH_OVERHEAD_BYTES);
    assert.deepEqual(decodeTxBatch(op, 3), txs);
    assert.equal(txBatchCount(op), 3);
  });

  it("refuses anything but a well-formed batch within the count bound", () => {
    const op = encodeTxBatch([tx("a"), tx("bb")]);
    const withCount = (n: number) => {
      const b = op.slice();
      new DataView(b.buffer).setUint32(4, n);
      return b;
    };
    assert.equal(decodeTxBatch(op, 1), null, "more transactions than the bound");
    assert.equal(decodeTxBatch(withCount(0), 10), null, "count 0");
    assert.equal(decodeTxBatch(withCount(3), 10), null, "count beyond the bytes");
    assert.equal(decodeTxBatch(withCount(1), 10), null, "bytes after the last transaction");
    assert.equal(decodeTxBatch(op.subarray(0, op.length - 1), 10), null, "truncated");
    assert.equal(decodeTxBatch(Uint8Array.of(...op, 0), 10), null, "a trailing byte");
    const badMagic = op.slice();
    badMagic[1] = 0;
    assert.equal(decodeTxBatch(badMagic, 10), null, "no magic");
    assert.equal(txBatchCount(badMagic), 1, "not a batch: weighs one");
    const empty = Uint8Array.of(...TX_BATCH_MAGIC, 0, 0, 0, 1, 0, 0, 0, 0);
    assert.equal(decodeTxBatch(empty, 10), null, "an empty transaction");
    assert.equal(decodeTxBatch(new Uint8Array(3), 10), null, "shorter than a header");
    assert.throws(() => encodeTxBatch([]), RangeError);
  });

  it("decodes views into the op at any byte offset", () => {
    const op = encodeTxBatch([tx("hello"), tx("world")]);
    const shifted = new Uint8Array(op.length + 3);
    shifted.set(op, 3);
    assert.deepEqual(
      decodeTxBatch(shifted.subarray(3), 2)?.map((t) => new TextDecoder().decode(t)),
      ["hello", "world"],
    );
    assert.equal(txBatchCount(shifted.subarray(3)), 2);
  });
});
