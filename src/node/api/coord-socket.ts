// WS /v1/coord: a connection of the coordination service (docs/coord-protocol.md). Text frames in,
// JSON replies out, sent at once; the service may close the connection (a session expired).

import type uWS from "uWebSockets.js";
import { randomBytes } from "node:crypto";
import type { CoordService } from "../../coord/service.ts";
import type { ApiContext, CoordState, WsState } from "./context.ts";

export function coordSocket(app: uWS.TemplatedApp, ctx: ApiContext, coord: CoordService): void {
  app.ws<WsState>("/v1/coord", {
    // A write carries one signed operation in base64 (4/3 of the bytes) plus the JSON around it.
    maxPayloadLength: Math.ceil((ctx.o.txMaxBytes * 4) / 3) + 4096,
    idleTimeout: ctx.o.wsIdleTimeoutSec,
    maxBackpressure: 64 * 1024 * 1024,
    upgrade: (res, req, uctx) => ctx.upgrade(res, req, uctx, { kind: "coord", closed: false, conn: null }),
    open: (ws) => {
      ctx.opened(ws);
      const s = ws.getUserData() as CoordState;
      s.conn = coord.open(
        {
          send: (msg) => void ctx.wsSend(ws, msg),
          close: (code, reason) => {
            if (s.closed) return;
            s.closed = true;
            ws.end(code, reason);
          },
        },
        new Uint8Array(randomBytes(32)),
      );
    },
    message: (ws, message, isBinary) => {
      const s = ws.getUserData() as CoordState;
      if (!s.conn) return;
      if (isBinary) {
        ctx.wsSend(ws, {
          type: "error",
          id: null,
          code: "MARSHALLINGERROR",
          message: "send text frames",
        });
        return;
      }
      coord.message(s.conn, Buffer.from(message).toString("utf8"));
    },
    close: (ws) => {
      const s = ws.getUserData() as CoordState;
      s.closed = true;
      if (s.conn) coord.closed(s.conn);
      ctx.closed(ws);
    },
  });
}
