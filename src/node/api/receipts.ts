// A transaction's receipt as the API answers it (POST /v1/transactions, GET /v1/transactions/:id, WS
// /v1/submit): its block's header and certificate, made into JSON once per block, and its Merkle proof.

import { type HashFn, headerHash } from "../../ordering/block.ts";
import type { Receipt } from "../../ordering/gateway.ts";

const hexOf = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

/** The JSON of a block's header and certificate, made once per block (every receipt of the block shares them). */
const headerJson = new WeakMap<Receipt["header"], Record<string, unknown>>();
const certificateJson = new WeakMap<Receipt["certificate"], Record<string, unknown>[]>();
/** The same, as text: a WebSocket receipt is assembled from these without serializing them again. */
const headerText = new WeakMap<Receipt["header"], string>();
const certificateText = new WeakMap<Receipt["certificate"], string>();

/**
 * `JSON.stringify(receiptToJson(r, hash))`, byte for byte, with the parts every receipt of a block
 * shares (header, certificate) serialized once per block.
 */
export function receiptText(r: Receipt, hash: HashFn): string {
  let header = headerText.get(r.header);
  let certificate = certificateText.get(r.certificate);
  if (header === undefined || certificate === undefined) {
    const j = receiptToJson(r, hash);
    header = JSON.stringify(j.header);
    certificate = JSON.stringify(j.certificate);
    headerText.set(r.header, header);
    certificateText.set(r.certificate, certificate);
  }
  let path = "";
  for (const h of r.proof.path) path += path === "" ? `"${hexOf(h)}"` : `,"${hexOf(h)}"`;
  return (
    `{"txId":${JSON.stringify(r.txId)},"block":${r.block},"position":${r.position},` +
    `"duplicate":${r.duplicate},"header":${header},` +
    `"proof":{"index":${r.proof.index},"size":${r.proof.size},"path":[${path}]},"certificate":${certificate}}`
  );
}

export function receiptToJson(r: Receipt, hash: HashFn): Record<string, unknown> {
  let header = headerJson.get(r.header);
  if (!header) {
    header = {
      number: r.header.number,
      previousHash: hexOf(r.header.previousHash),
      dataHash: hexOf(r.header.dataHash),
      headerHash: hexOf(headerHash(r.header, hash)),
    };
    headerJson.set(r.header, header);
  }
  let certificate = certificateJson.get(r.certificate);
  if (!certificate) {
    certificate = r.certificate.map((s) => ({ replica: s.replica, sig: hexOf(s.sig) }));
    certificateJson.set(r.certificate, certificate);
  }
  return {
    txId: r.txId,
    block: r.block,
    position: r.position,
    duplicate: r.duplicate,
    header,
    proof: { index: r.proof.index, size: r.proof.size, path: r.proof.path.map(hexOf) },
    certificate,
  };
}
