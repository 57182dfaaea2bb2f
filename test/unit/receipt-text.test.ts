// The WebSocket receipt text is assembled from per-block fragments: it must be exactly the JSON the
// HTTP API serializes from receiptToJson, for every shape of proof.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { sha256 } from "../../src/crypto/node-crypto.ts";
import { receiptText, receiptToJson } from "../../src/node/api-server.ts";
import type { Receipt } from "../../src/ordering/gateway.ts";

const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill);

describe("receiptText", () => {
  it("equals JSON.stringify(receiptToJson) for empty and long proofs, shared and fresh headers", () => {
    const header = { number: 42, previousHash: bytes(32, 1), dataHash: bytes(32, 2) };
    const certificate = [
      { replica: 0, sig: bytes(64, 3) },
      { replica: 2, sig: bytes(64, 4) },
    ];
    for (const pathLen of [0, 1, 9]) {
      for (const duplicate of [false, true]) {
        const r: Receipt = {
          txId: "ab".repeat(32),
          block: 42,
          position: pathLen,
          duplicate,
          header,
          proof: {
            index: pathLen,
            size: 1 << pathLen,
            path: Array.from({ length: pathLen }, (_, i) => bytes(32, i)),
          },
          certificate,
        };
        // Twice: the second call takes the cached header and certificate text.
        assert.equal(receiptText(r, sha256), JSON.stringify(receiptToJson(r, sha256)));
        assert.equal(receiptText(r, sha256), JSON.stringify(receiptToJson(r, sha256)));
      }
    }
    const other = { number: 43, previousHash: bytes(32, 5), dataHash: bytes(32, 6) };
    const r2: Receipt = {
      txId: "cd".repeat(32),
      block: 43,
      position: 0,
      duplicate: false,
      header: other,
      proof: { index: 0, size: 1, path: [] },
      certificate: [],
    };
    assert.equal(receiptText(r2, sha256), JSON.stringify(receiptToJson(r2, sha256)));
  });
});
