// The ordering service's HTTP routes: POST /v1/transactions (the body, bounded, goes to the gateway;
// the answer is its receipt once its block is certified), GET /v1/transactions/:id (a receipt again),
// GET /v1/blocks/:n and GET /v1/chain (certified blocks and the chain's head).

import type uWS from "uWebSockets.js";
import { blockToJson, headerHash, toBase64, toHexStr } from "../../ordering/block.ts";
import { ApiError } from "../../ordering/errors.ts";
import type { ApiContext } from "./context.ts";
import { receiptToJson } from "./receipts.ts";

export function transactionRoutes(app: uWS.TemplatedApp, ctx: ApiContext): void {
  app.post("/v1/transactions", submitTransaction(ctx));
  app.get("/v1/transactions/:id", (res, req) => {
    const o = ctx.o;
    const id = req.getParameter(0) ?? "";
    const state = ctx.guard(res);
    if (!/^[0-9a-f]{64}$/.test(id)) {
      ctx.error(res, state, new ApiError("MALFORMED", "a transaction id is 64 lowercase hex digits"));
      return;
    }
    (async () => {
      const loc = await o.ledger.findTx(id);
      if (!loc || loc.number >= o.ledger.certifiedHeight)
        throw new ApiError("TX_NOT_FOUND", `no transaction ${id}`);
      const r = await o.gateway.receipt(id);
      const b = await o.ledger.getBlock(loc.number);
      if (!r || !b) throw new ApiError("TX_NOT_FOUND", `no transaction ${id}`);
      return { ...receiptToJson(r, o.hash), tx: toBase64(b.entries[loc.position] as Uint8Array) };
    })().then(
      (body) => ctx.json(res, state, 200, body),
      (err: unknown) => ctx.error(res, state, err),
    );
  });
  app.get("/v1/blocks/:n", (res, req) => {
    const o = ctx.o;
    const raw = req.getParameter(0) ?? "";
    const state = ctx.guard(res);
    const n = /^\d{1,16}$/.test(raw) ? Number(raw) : Number.NaN;
    if (!Number.isSafeInteger(n)) {
      ctx.error(res, state, new ApiError("MALFORMED", "a block number is a non-negative integer"));
      return;
    }
    (async () => {
      if (n >= o.ledger.certifiedHeight) throw new ApiError("BLOCK_NOT_FOUND", `no certified block ${n}`);
      const b = await o.ledger.getBlock(n);
      if (!b) throw new ApiError("BLOCK_NOT_FOUND", `no block ${n}`);
      return blockToJson(b, undefined, o.hash);
    })().then(
      (body) => ctx.json(res, state, 200, body),
      (err: unknown) => ctx.error(res, state, err),
    );
  });
  app.get("/v1/chain", (res) => {
    const o = ctx.o;
    const state = ctx.guard(res);
    (async () => {
      const height = o.ledger.certifiedHeight;
      const head = height > 0 ? await o.ledger.getBlock(height - 1) : undefined;
      return {
        height,
        headHash: head ? toHexStr(headerHash(head.header, o.hash)) : null,
        writtenHeight: o.ledger.height,
      };
    })().then(
      (body) => ctx.json(res, state, 200, body),
      (err: unknown) => ctx.error(res, state, err),
    );
  });
}

/**
 * POST /v1/transactions: reads the body (at most txMaxBytes; bodiesMaxBytes across the requests being
 * received), hands it to the gateway and answers with the receipt.
 */
function submitTransaction(ctx: ApiContext): (res: uWS.HttpResponse, req: uWS.HttpRequest) => void {
  const o = ctx.o;
  const bodyMax = o.txMaxBytes;
  const bodiesMax = o.bodiesMaxBytes;
  /** Bytes of POST bodies being received (bounded by bodiesMax). */
  let bodyBytes = 0;
  return (res, req) => {
    const json = req.getHeader("content-type").toLowerCase().startsWith("application/json");
    const declared = Number(req.getHeader("content-length") || "0");
    const state = { aborted: false };
    // Bytes of this body counted in bodyBytes, given back when it is complete, refused or aborted.
    let held = 0;
    const release = () => {
      bodyBytes -= held;
      held = 0;
    };
    res.onAborted(() => {
      state.aborted = true;
      release();
    });
    if (declared > bodyMax) {
      ctx.error(res, state, new ApiError("TX_TOO_LARGE", `transaction exceeds absoluteMaxBytes ${bodyMax}`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    res.onData((chunk, isLast) => {
      if (refused) return;
      size += chunk.byteLength;
      const refuse = (err: ApiError) => {
        refused = true;
        release();
        ctx.error(res, state, err);
      };
      if (size > bodyMax)
        return refuse(new ApiError("TX_TOO_LARGE", `transaction exceeds absoluteMaxBytes ${bodyMax}`));
      if (bodyBytes + chunk.byteLength > bodiesMax)
        return refuse(
          new ApiError("OVERLOADED", `${bodyBytes} bytes of transactions being received; retry later`),
        );
      chunks.push(Buffer.from(chunk.slice(0)));
      held += chunk.byteLength;
      bodyBytes += chunk.byteLength;
      if (!isLast) return;
      const body = new Uint8Array(Buffer.concat(chunks));
      release();
      if (json && !isJson(body)) {
        ctx.error(res, state, new ApiError("MALFORMED", "the body is not valid JSON"));
        return;
      }
      o.gateway.submit(body).then(
        (r) => ctx.json(res, state, 200, receiptToJson(r, o.hash)),
        (err: unknown) => ctx.error(res, state, err),
      );
    });
  };
}

function isJson(b: Uint8Array): boolean {
  try {
    JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(b));
    return true;
  } catch {
    return false;
  }
}
