// The op of a gateway request: the transactions one replica's gateway collected since its last request,
// in one signed core request (one signature and one verification per replica for all of them). Each
// transaction still becomes its own block entry, with its own id and receipt.
//
//   magic "\0OT\1" (4) | count u32 BE | count × (length u32 BE | bytes)
//
// Decoding is strict (count ≥ 1, every length in bounds, nothing after the last transaction), so every
// correct replica reads the same transactions out of the same bytes, or refuses them all alike.

export const TX_BATCH_MAGIC = Uint8Array.of(0x00, 0x4f, 0x54, 0x01);
const HEADER_BYTES = TX_BATCH_MAGIC.length + 4;
/** Bytes a batch adds per transaction. */
export const TX_BATCH_PER_TX_BYTES = 4;
/** Bytes of a batch holding one transaction, besides the transaction. */
export const TX_BATCH_OVERHEAD_BYTES = HEADER_BYTES + TX_BATCH_PER_TX_BYTES;

export function txBatchBytes(txBytes: number, count: number): number {
  return HEADER_BYTES + count * TX_BATCH_PER_TX_BYTES + txBytes;
}

export function encodeTxBatch(txs: readonly Uint8Array[]): Uint8Array {
  if (txs.length === 0) throw new RangeError("a transaction batch holds at least one transaction");
  const out = new Uint8Array(
    txBatchBytes(
      txs.reduce((s, t) => s + t.length, 0),
      txs.length,
    ),
  );
  const dv = new DataView(out.buffer);
  out.set(TX_BATCH_MAGIC, 0);
  dv.setUint32(TX_BATCH_MAGIC.length, txs.length);
  let at = HEADER_BYTES;
  for (const t of txs) {
    dv.setUint32(at, t.length);
    out.set(t, at + 4);
    at += 4 + t.length;
  }
  return out;
}

function hasMagic(op: Uint8Array): boolean {
  if (op.length < HEADER_BYTES) return false;
  for (let i = 0; i < TX_BATCH_MAGIC.length; i++) if (op[i] !== TX_BATCH_MAGIC[i]) return false;
  return true;
}

/**
 * The transactions of a batch (views into `op`), or null when `op` is not a well-formed batch of at most
 * `maxCount` non-empty transactions.
 */
export function decodeTxBatch(op: Uint8Array, maxCount: number): Uint8Array[] | null {
  if (!hasMagic(op)) return null;
  const dv = new DataView(op.buffer, op.byteOffset, op.byteLength);
  const count = dv.getUint32(TX_BATCH_MAGIC.length);
  if (count < 1 || count > maxCount) return null;
  const out: Uint8Array[] = [];
  let at = HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (at + 4 > op.length) return null;
    const len = dv.getUint32(at);
    at += 4;
    if (len === 0 || at + len > op.length) return null;
    out.push(op.subarray(at, at + len));
    at += len;
  }
  return at === op.length ? out : null;
}

/** The transaction count a batch's header claims (1 for anything that is not a batch): its weight in a block. */
export function txBatchCount(op: Uint8Array): number {
  if (!hasMagic(op)) return 1;
  return Math.max(1, new DataView(op.buffer, op.byteOffset, op.byteLength).getUint32(TX_BATCH_MAGIC.length));
}
