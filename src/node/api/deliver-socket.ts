// WS /v1/deliver: certified blocks in order from a seek position, one JSON message each; the stream
// waits for the socket to drain rather than buffer without bound.

import type uWS from "uWebSockets.js";
import { blockToJson } from "../../ordering/block.ts";
import { ApiError } from "../../ordering/errors.ts";
import type { ApiContext, DeliverState, Ws, WsState } from "./context.ts";

export type DeliverBehavior = "BLOCK_UNTIL_READY" | "FAIL_IF_NOT_READY";

export interface SeekRequest {
  readonly start: "oldest" | "newest" | number;
  readonly stop?: "newest" | number | null;
  readonly behavior?: DeliverBehavior;
}

type Seek = { start: number; stop: number; behavior: DeliverBehavior };

/** A paused deliver stream re-checks its socket's buffer this often, besides the drain event. */
const DRAIN_POLL_MS = 100;

export function deliverSocket(app: uWS.TemplatedApp, ctx: ApiContext): void {
  app.ws<WsState>("/v1/deliver", {
    maxPayloadLength: 4096,
    idleTimeout: ctx.o.wsIdleTimeoutSec,
    maxBackpressure: 256 * 1024 * 1024,
    upgrade: (res, req, uctx) =>
      ctx.upgrade(res, req, uctx, { kind: "deliver", closed: false, active: false, drained: null }),
    open: (ws) => {
      ctx.opened(ws);
    },
    message: (ws, message) => onDeliverMessage(ctx, ws, message),
    drain: (ws) => {
      ctx.stats.deliverDrains++;
      const s = ws.getUserData();
      if (s.kind === "deliver" && s.drained) {
        const fn = s.drained;
        s.drained = null;
        // Resume outside uWS's drain dispatch: a send made from within it (or its microtasks) can
        // leave backpressure that uWS never flushes (measured: the stream stalls for good).
        setImmediate(fn);
      }
    },
    close: (ws) => {
      const s = ws.getUserData();
      s.closed = true;
      if (s.kind === "deliver" && s.drained) s.drained();
      ctx.closed(ws);
    },
  });
}

function onDeliverMessage(ctx: ApiContext, ws: Ws, message: ArrayBuffer): void {
  const s = ws.getUserData();
  if (s.kind !== "deliver") return;
  let seek: Seek;
  try {
    seek = parseSeek(ctx, JSON.parse(Buffer.from(message).toString("utf8")));
  } catch (err) {
    const e = err instanceof ApiError ? err : new ApiError("MALFORMED", "a seek is a JSON object");
    ctx.wsSend(ws, { type: "status", status: "BAD_REQUEST", ...e.toJSON() });
    return;
  }
  if (s.active) {
    ctx.wsSend(ws, {
      type: "status",
      status: "BAD_REQUEST",
      ...new ApiError("MALFORMED", "a seek is already streaming on this connection").toJSON(),
    });
    return;
  }
  s.active = true;
  stream(ctx, ws, s, seek).then(
    () => {
      s.active = false;
    },
    (err: unknown) => {
      s.active = false;
      ctx.wsSend(ws, { type: "status", status: "INTERNAL", ...ctx.internal(err).toJSON() });
    },
  );
}

function parseSeek(ctx: ApiContext, m: unknown): Seek {
  const seek = m as SeekRequest;
  if (!seek || typeof seek !== "object") throw new ApiError("MALFORMED", "a seek is a JSON object");
  const newest = Math.max(0, ctx.o.ledger.certifiedHeight - 1);
  const pos = (v: unknown, field: string): number => {
    if (v === "oldest") return 0;
    if (v === "newest") return newest;
    if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return v;
    throw new ApiError("MALFORMED", `${field} must be "oldest", "newest" or a block number`);
  };
  const start = pos(seek.start ?? "oldest", "start");
  const stop =
    seek.stop === undefined || seek.stop === null ? Number.MAX_SAFE_INTEGER : pos(seek.stop, "stop");
  if (stop < start) throw new ApiError("MALFORMED", "stop is before start");
  const behavior = seek.behavior ?? "BLOCK_UNTIL_READY";
  if (behavior !== "BLOCK_UNTIL_READY" && behavior !== "FAIL_IF_NOT_READY")
    throw new ApiError("MALFORMED", 'behavior is "BLOCK_UNTIL_READY" or "FAIL_IF_NOT_READY"');
  return { start, stop, behavior };
}

/** Streams blocks start..stop; waits for the socket to drain instead of buffering without bound. */
async function stream(ctx: ApiContext, ws: Ws, s: DeliverState, seek: Seek): Promise<void> {
  const high = ctx.o.deliverHighWaterBytes;
  const ledger = ctx.o.ledger;
  for (let n = seek.start; n <= seek.stop; n++) {
    if (s.closed) return;
    if (n >= ledger.certifiedHeight) {
      if (seek.behavior === "FAIL_IF_NOT_READY") {
        ctx.wsSend(ws, {
          type: "status",
          status: "NOT_FOUND",
          ...new ApiError("NOT_READY", `block ${n} is not available yet`).toJSON(),
        });
        return;
      }
      while (!s.closed && !(await ledger.waitCertified(n, 1000))) {
        // keep waiting; the loop notices a closed socket
      }
      if (s.closed) return;
    }
    const b = await ledger.getBlock(n);
    if (!b || s.closed) return;
    if (!ctx.wsSend(ws, { type: "block", block: blockToJson(b, undefined, ctx.o.hash) })) return;
    if (ws.getBufferedAmount() > high) {
      ctx.stats.deliverPauses++;
      // Wait for the drain event; re-check periodically too (a drain that fully empties the buffer
      // between two sends is not always reported).
      while (!s.closed && ws.getBufferedAmount() > high) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, DRAIN_POLL_MS);
          s.drained = () => {
            clearTimeout(t);
            resolve();
          };
        });
        s.drained = null;
      }
    }
  }
  ctx.wsSend(ws, { type: "status", status: "SUCCESS" });
}
