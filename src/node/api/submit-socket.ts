// WS /v1/submit: pipelined submissions, each handed to the gateway and acknowledged with its receipt
// (or an error) by id. The acks of one turn leave in one corked write per connection.

import type uWS from "uWebSockets.js";
import { ApiError } from "../../ordering/errors.ts";
import type { ApiContext, SubmitState, Ws, WsState } from "./context.ts";
import { receiptText } from "./receipts.ts";

export function submitSocket(app: uWS.TemplatedApp, ctx: ApiContext): void {
  const outbox = new Outbox();
  app.ws<WsState>("/v1/submit", {
    // Text frames carry base64 (4/3 of the bytes) plus the JSON around it.
    maxPayloadLength: Math.ceil((ctx.o.txMaxBytes * 4) / 3) + 4096,
    idleTimeout: ctx.o.wsIdleTimeoutSec,
    maxBackpressure: 64 * 1024 * 1024,
    upgrade: (res, req, uctx) =>
      ctx.upgrade(res, req, uctx, { kind: "submit", closed: false, inFlight: 0, out: null }),
    open: (ws) => {
      ctx.opened(ws);
    },
    message: (ws, message, isBinary) => onSubmitMessage(ctx, outbox, ws, message, isBinary),
    close: (ws) => {
      ws.getUserData().closed = true;
      ctx.closed(ws);
    },
  });
}

function onSubmitMessage(
  ctx: ApiContext,
  outbox: Outbox,
  ws: Ws,
  message: ArrayBuffer,
  isBinary: boolean,
): void {
  const s = ws.getUserData();
  if (s.kind !== "submit") return;
  const parsed = parseSubmission(message, isBinary);
  if ("error" in parsed) {
    outbox.post(ws, s, JSON.stringify({ id: parsed.id, ok: false, ...parsed.error.toJSON() }));
    return;
  }
  const { id, tx } = parsed;
  const max = ctx.o.wsSubmitInFlightMax;
  if (s.inFlight >= max) {
    const e = new ApiError("OVERLOADED", `${max} submissions in flight on this connection`);
    outbox.post(ws, s, JSON.stringify({ id, ok: false, ...e.toJSON() }));
    return;
  }
  s.inFlight++;
  ctx.o.gateway.submit(tx).then(
    (r) => {
      s.inFlight--;
      outbox.post(ws, s, `{"id":${JSON.stringify(id)},"ok":true,"receipt":${receiptText(r, ctx.o.hash)}}`);
    },
    (err: unknown) => {
      s.inFlight--;
      outbox.post(ws, s, JSON.stringify({ id, ok: false, ...ctx.internal(err).toJSON() }));
    },
  );
}

type SubmissionId = number | string | null;

/**
 * Binary: 4-byte big-endian request id, then the transaction. Text: {"id", "tx": base64} or {"id", "json"}.
 * A submission that is not one has its error answered with its id as far as it was read.
 */
function parseSubmission(
  message: ArrayBuffer,
  isBinary: boolean,
): { id: SubmissionId; tx: Uint8Array } | { id: SubmissionId; error: ApiError } {
  let id: SubmissionId = null;
  try {
    if (isBinary) {
      if (message.byteLength < 4)
        throw new ApiError("MALFORMED", "a binary submission starts with a 4-byte id");
      id = new DataView(message).getUint32(0);
      // A copy (uWS reuses the message's memory): small ones go into Node's buffer pool, not each
      // into an off-heap buffer of its own.
      const copy = Buffer.from(new Uint8Array(message, 4));
      return { id, tx: new Uint8Array(copy.buffer, copy.byteOffset, copy.byteLength) };
    }
    const m = JSON.parse(Buffer.from(message).toString("utf8")) as {
      id?: unknown;
      tx?: unknown;
      json?: unknown;
    };
    if (typeof m?.id === "number" || typeof m?.id === "string") id = m.id;
    if (id === null) throw new ApiError("MALFORMED", 'a submission needs an "id" (number or string)');
    if (typeof m.tx === "string") {
      if (m.tx.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(m.tx))
        throw new ApiError("MALFORMED", '"tx" is not valid base64');
      return { id, tx: Uint8Array.from(Buffer.from(m.tx, "base64")) };
    }
    if (m.json !== undefined) return { id, tx: new TextEncoder().encode(JSON.stringify(m.json)) };
    throw new ApiError("MALFORMED", 'a submission needs "tx" (base64) or "json"');
  } catch (err) {
    return { id, error: err instanceof ApiError ? err : new ApiError("MALFORMED", "not a JSON submission") };
  }
}

/** The connections with messages posted this turn (one outbox per server). */
class Outbox {
  private outboxes: [Ws, SubmitState][] = [];

  /**
   * Queues a message for the end of this turn. The receipts of one block are settled in one turn: they
   * leave in one corked write per connection, not one each. (Coordination replies are sent at once:
   * their order with the connection's close matters, and they are few per turn.)
   */
  post(ws: Ws, s: SubmitState, text: string): void {
    if (s.closed) return;
    if (s.out === null) {
      s.out = [];
      this.outboxes.push([ws, s]);
      if (this.outboxes.length === 1) process.nextTick(this.flush);
    }
    s.out.push(text);
  }

  /** Sends each connection's posted messages in one corked write. */
  private readonly flush = (): void => {
    const list = this.outboxes;
    this.outboxes = [];
    for (const [ws, s] of list) {
      const out = s.out;
      s.out = null;
      if (s.closed || out === null) continue;
      let status = 1;
      try {
        ws.cork(() => {
          for (const text of out) {
            status = ws.send(text, false);
            if (status === 2) return;
          }
        });
      } catch {
        // uWS throws on a socket it already closed; its close handler may not have run yet.
        s.closed = true;
        continue;
      }
      if (status === 2) {
        // Dropped at maxBackpressure: the peer stopped reading; losing messages silently is not an option.
        s.closed = true;
        ws.end(1008, "backpressure limit reached");
      }
    }
  };
}
