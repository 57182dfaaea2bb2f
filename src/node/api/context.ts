// What every route of one API server shares: its options and stats, its open WebSockets, and how it
// answers: JSON bodies with their HTTP status, {error: {code, message}} for every error (an unexpected
// one counted and reported, never shown), WebSocket sends that end a connection rather than drop data.

import type uWS from "uWebSockets.js";
import type { CoordConn } from "../../coord/service.ts";
import { ApiError, type ApiErrorCode } from "../../ordering/errors.ts";
import type { ResolvedApiServerOptions } from "./options.ts";
import { addressKey, checkRequest } from "./request-checks.ts";
import { API_ERROR_STATUS } from "./statuses.ts";

const STATUS_TEXT: Record<number, string> = {
  200: "200 OK",
  400: "400 Bad Request",
  403: "403 Forbidden",
  404: "404 Not Found",
  405: "405 Method Not Allowed",
  413: "413 Payload Too Large",
  429: "429 Too Many Requests",
  431: "431 Request Header Fields Too Large",
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
  /** Requests and upgrades refused before their route, by error code (orderer_api_refused_total). */
  refused: Partial<Record<ApiErrorCode, number>>;
}

export class ApiContext {
  readonly sockets = new Set<Ws>();
  /** Each open WebSocket's remote address (its addressKey), and how many are open per address. */
  private readonly addressOf = new Map<Ws, string>();
  private readonly perAddress = new Map<string, number>();

  constructor(
    readonly o: ResolvedApiServerOptions,
    readonly stats: ApiStats,
    private readonly onInternalError: (err: unknown) => void,
  ) {}

  /**
   * Answers and closes a request that fails the checks every request passes (request-checks.ts): true
   * when it was refused. Call it first thing in a handler (it reads the request's headers).
   */
  refuse(res: uWS.HttpResponse, req: uWS.HttpRequest): boolean {
    const err = checkRequest(req, this.o);
    if (!err) return false;
    this.refuseWith(res, err);
    return true;
  }

  /**
   * Counts `err`, then answers it with its status and closes the connection. The answer waits for the
   * next turn: uWS parses the rest of what arrived with this request once the handler returns, and a
   * request it finds there (smuggled behind a conflicting Content-Length) while this one is unanswered
   * makes uWS close the connection unanswered, never reaching a route. Answered at once, it would.
   */
  private refuseWith(res: uWS.HttpResponse, err: ApiError): void {
    this.stats.refused[err.code] = (this.stats.refused[err.code] ?? 0) + 1;
    const state = this.guard(res);
    setImmediate(() => {
      if (state.aborted) return;
      state.aborted = true;
      res.cork(() => {
        res
          .writeStatus(STATUS_TEXT[API_ERROR_STATUS[err.code]] ?? `${API_ERROR_STATUS[err.code]} Error`)
          .writeHeader("content-type", "application/json")
          .end(JSON.stringify(err), true);
      });
    });
  }

  upgrade(res: uWS.HttpResponse, req: uWS.HttpRequest, ctx: uWS.us_socket_context_t, data: WsState): void {
    if (this.sockets.size >= this.o.wsConnectionsMax) {
      this.refuseWith(res, new ApiError("OVERLOADED", "too many connections"));
      return;
    }
    const addr = addressKey(Buffer.from(res.getRemoteAddressAsText()).toString());
    if ((this.perAddress.get(addr) ?? 0) >= this.o.wsPerAddressMax) {
      this.refuseWith(
        res,
        new ApiError(
          "TOO_MANY_CONNECTIONS",
          `${this.o.wsPerAddressMax} WebSocket connections from ${addr} already (wsPerAddressMax)`,
        ),
      );
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

  /** A WebSocket opened (every socket's open handler calls it). */
  opened(ws: Ws): void {
    this.sockets.add(ws);
    const addr = addressKey(Buffer.from(ws.getRemoteAddressAsText()).toString());
    this.addressOf.set(ws, addr);
    this.perAddress.set(addr, (this.perAddress.get(addr) ?? 0) + 1);
  }

  /** A WebSocket closed (every socket's close handler calls it). */
  closed(ws: Ws): void {
    this.sockets.delete(ws);
    const addr = this.addressOf.get(ws);
    if (addr === undefined) return;
    this.addressOf.delete(ws);
    const left = (this.perAddress.get(addr) ?? 1) - 1;
    if (left > 0) this.perAddress.set(addr, left);
    else this.perAddress.delete(addr);
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
