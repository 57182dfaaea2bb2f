// What every route of one API server shares: its options and stats, its open WebSockets, and how it
// answers: JSON bodies with their HTTP status, {error: {code, message}} for every error (an unexpected
// one counted and reported, never shown), WebSocket sends that end a connection rather than drop data.

import type uWS from "uWebSockets.js";
import type { CoordConn } from "../../coord/service.ts";
import { ApiError } from "../../ordering/errors.ts";
import type { ResolvedApiServerOptions } from "./options.ts";
import { API_ERROR_STATUS } from "./statuses.ts";

const STATUS_TEXT: Record<number, string> = {
  200: "200 OK",
  400: "400 Bad Request",
  404: "404 Not Found",
  405: "405 Method Not Allowed",
  413: "413 Payload Too Large",
  500: "500 Internal Server Error",
  503: "503 Service Unavailable",
  504: "504 Gateway Timeout",
};

export interface DeliverState {
  kind: "deliver";
  closed: boolean;
  active: boolean;
  drained: (() => void) | null;
}
export interface SubmitState {
  kind: "submit";
  closed: boolean;
  inFlight: number;
  /** Messages posted this turn, sent together at its end (`post`). */
  out: string[] | null;
}
export interface CoordState {
  kind: "coord";
  closed: boolean;
  conn: CoordConn | null;
}
export type WsState = DeliverState | SubmitState | CoordState;
export type Ws = uWS.WebSocket<WsState>;

/** An HTTP response in progress: aborted by the client, or already answered. */
export interface ResponseState {
  aborted: boolean;
}

export interface ApiStats {
  internalErrors: number;
  deliverPauses: number;
  deliverDrains: number;
}

export class ApiContext {
  readonly sockets = new Set<Ws>();

  constructor(
    readonly o: ResolvedApiServerOptions,
    readonly stats: ApiStats,
    private readonly onInternalError: (err: unknown) => void,
  ) {}

  upgrade(res: uWS.HttpResponse, req: uWS.HttpRequest, ctx: uWS.us_socket_context_t, data: WsState): void {
    if (this.sockets.size >= this.o.wsConnectionsMax) {
      res
        .writeStatus(STATUS_TEXT[503] as string)
        .writeHeader("content-type", "application/json")
        .end(JSON.stringify(new ApiError("OVERLOADED", "too many connections")));
      return;
    }
    res.upgrade(
      data,
      req.getHeader("sec-websocket-key"),
      req.getHeader("sec-websocket-protocol"),
      req.getHeader("sec-websocket-extensions"),
      ctx,
    );
  }

  /** Sends one JSON message; false when the socket is closed. */
  wsSend(ws: Ws, msg: unknown): boolean {
    const s = ws.getUserData();
    if (s.closed) return false;
    const text = JSON.stringify(msg);
    // Sends made outside uWS's own callbacks (after an await) must be corked, or uWS may never flush
    // what the kernel did not take at once.
    let status = 1;
    ws.cork(() => {
      status = ws.send(text, false);
    });
    if (status === 2) {
      // Dropped at maxBackpressure: the peer stopped reading; losing messages silently is not an option.
      s.closed = true;
      ws.end(1008, "backpressure limit reached");
      return false;
    }
    return true;
  }

  guard(res: uWS.HttpResponse): ResponseState {
    const state = { aborted: false };
    res.onAborted(() => {
      state.aborted = true;
    });
    return state;
  }

  internal(err: unknown): ApiError {
    if (!(err instanceof ApiError)) {
      this.stats.internalErrors++;
      this.onInternalError(err);
    }
    return asApiError(err);
  }

  json(res: uWS.HttpResponse, state: ResponseState, status: number, body: unknown): void {
    if (state.aborted) return;
    state.aborted = true;
    res.cork(() => {
      res
        .writeStatus(STATUS_TEXT[status] ?? `${status} Error`)
        .writeHeader("content-type", "application/json")
        .end(JSON.stringify(body));
    });
  }

  error(res: uWS.HttpResponse, state: ResponseState, err: unknown): void {
    const e = this.internal(err);
    this.json(res, state, API_ERROR_STATUS[e.code], e.toJSON());
  }
}

function asApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  return new ApiError("INTERNAL", "internal error");
}
