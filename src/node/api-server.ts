// The replica's HTTP and WebSocket API on uWebSockets.js (see docs/api.md):
//   POST /v1/transactions        submit one transaction, answered with its receipt after commit
//   GET  /v1/transactions/:id    the receipt of a committed transaction
//   GET  /v1/blocks/:n           one certified block
//   GET  /v1/chain               certified height and head hash
//   WS   /v1/submit              pipelined submissions, one ack per transaction
//   WS   /v1/deliver             blocks in order from a seek position, with backpressure
//   WS   /v1/coord               the coordination service (docs/coord-protocol.md)
//   GET  /v1/misbehaviour        proofs of misbehaviour held, and whether this replica stopped ordering
//   GET  /health                 this replica's view of the cluster (200 with a quorum, else 503)
//   GET  /metrics                Prometheus text format
// Every error is JSON {error: {code, message}} with the code's HTTP status; never a stack trace.
// The routes live in api/, one file per family, and share an ApiContext (api/context.ts).

import uWS from "uWebSockets.js";
import { withDefaults } from "../util/defaults.ts";
import { OrdererError } from "../util/errors.ts";
import { adminRoutes, fallbackRoute } from "./api/admin-routes.ts";
import { ApiContext, type ApiStats, type Ws, type WsState } from "./api/context.ts";
import { coordSocket } from "./api/coord-socket.ts";
import { deliverSocket } from "./api/deliver-socket.ts";
import {
  API_SERVER_DEFAULTS,
  type ApiServerOptions,
  type ApiTlsOptions,
  type ResolvedApiServerOptions,
} from "./api/options.ts";
import { submitSocket } from "./api/submit-socket.ts";
import { transactionRoutes } from "./api/transaction-routes.ts";

export type { DeliverBehavior, SeekRequest } from "./api/deliver-socket.ts";
export { API_SERVER_DEFAULTS, type ApiServerOptions, type ApiTlsOptions } from "./api/options.ts";
export { receiptText, receiptToJson } from "./api/receipts.ts";

export class ApiServerError extends OrdererError<"NATIVE_UWS_MISSING" | "LISTEN_FAILED" | "TLS_FAILED"> {
  override readonly name = "ApiServerError";
}

/**
 * uWebSockets.js silently falls back to a slow pure-JS server when its native binary does not load;
 * we refuse to run on the fallback. The native module's App is a native function.
 */
export function assertNativeUws(mod: unknown = uWS): void {
  const m = mod as { App?: unknown; getParts?: unknown };
  const native =
    typeof m.App === "function" && /\[native code\]/.test(Function.prototype.toString.call(m.App));
  if (!native || typeof m.getParts !== "function")
    throw new ApiServerError(
      "NATIVE_UWS_MISSING",
      `uWebSockets.js loaded its pure-JS fallback (no native binary for ${process.platform}-${process.arch}, ` +
        `Node ABI ${process.versions.modules}); refusing to start`,
    );
}

export class ApiServer {
  private readonly o: ResolvedApiServerOptions;
  private readonly ctx: ApiContext;
  private listenSocket: uWS.us_listen_socket | null = null;
  private app: uWS.TemplatedApp | null = null;
  private boundPort = 0;
  readonly stats: ApiStats = { internalErrors: 0, deliverPauses: 0, deliverDrains: 0, refused: {} };
  /** The last unexpected error (logged by the node). */
  onInternalError: (err: unknown) => void = () => {};

  constructor(o: ApiServerOptions) {
    this.o = withDefaults(API_SERVER_DEFAULTS, o);
    this.ctx = new ApiContext(this.o, this.stats, (err) => this.onInternalError(err));
  }

  get port(): number {
    return this.boundPort;
  }

  /** Registers every route (the catch-all last) and listens. */
  async start(): Promise<void> {
    assertNativeUws();
    const app = checkedApp(this.o.tls ? sslApp(this.o.tls) : uWS.App(), this.ctx);
    this.app = app;
    transactionRoutes(app, this.ctx);
    adminRoutes(app, this.ctx);
    submitSocket(app, this.ctx);
    deliverSocket(app, this.ctx);
    if (this.o.coord) coordSocket(app, this.ctx, this.o.coord);
    fallbackRoute(app, this.ctx);
    await this.listen(app);
  }

  private listen(app: uWS.TemplatedApp): Promise<void> {
    const o = this.o;
    return new Promise<void>((resolve, reject) => {
      app.listen(o.host, o.port, (token) => {
        if (!token) {
          reject(new ApiServerError("LISTEN_FAILED", `cannot listen on ${o.host}:${o.port}`));
          return;
        }
        this.listenSocket = token;
        this.boundPort = uWS.us_socket_local_port(token);
        resolve();
      });
    });
  }

  async stop(): Promise<void> {
    if (this.listenSocket) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = null;
    const sockets: Set<Ws> = this.ctx.sockets;
    for (const ws of [...sockets]) {
      try {
        ws.end(1001, "server shutting down");
      } catch {
        // already closed
      }
    }
    sockets.clear();
    // Also closes idle keep-alive HTTP connections (native App.close, not in the bundled typings).
    (this.app as unknown as { close?: () => void } | null)?.close?.();
    this.app = null;
  }
}

/**
 * uWS.SSLApp over the given PEM files. uWS throws a bare string when OpenSSL refuses them (a key that
 * does not match the certificate, a file that is no PEM): a typed error instead, naming the files.
 */
function sslApp(tls: ApiTlsOptions): uWS.TemplatedApp {
  try {
    return uWS.SSLApp({
      cert_file_name: tls.certFile,
      key_file_name: tls.keyFile,
      ...(tls.caFile !== undefined ? { ca_file_name: tls.caFile } : {}),
    });
  } catch (err) {
    throw new ApiServerError(
      "TLS_FAILED",
      `cannot serve TLS with certificate ${tls.certFile} and key ${tls.keyFile}${tls.caFile ? ` (client CA ${tls.caFile})` : ""}: ${String(err)}`,
    );
  }
}

const HTTP_METHODS = new Set([
  "get",
  "post",
  "put",
  "del",
  "patch",
  "options",
  "head",
  "connect",
  "trace",
  "any",
]);

/**
 * The app, with every route it registers behind ApiContext.refuse (request-checks.ts): HTTP handlers
 * and WebSocket upgrades alike, so that no route can skip the Origin and header checks.
 */
function checkedApp(app: uWS.TemplatedApp, ctx: ApiContext): uWS.TemplatedApp {
  type Handler = (res: uWS.HttpResponse, req: uWS.HttpRequest) => void;
  const target = app as unknown as Record<string, (...args: unknown[]) => unknown>;
  const proxy: uWS.TemplatedApp = new Proxy(app, {
    get(_, prop) {
      const fn = target[prop as string];
      if (typeof fn !== "function") return fn;
      if (typeof prop === "string" && HTTP_METHODS.has(prop))
        return (pattern: string, handler: Handler) => {
          fn.call(app, pattern, (res: uWS.HttpResponse, req: uWS.HttpRequest) => {
            if (!ctx.refuse(res, req)) handler(res, req);
          });
          return proxy;
        };
      if (prop === "ws")
        return (pattern: string, behavior: uWS.WebSocketBehavior<WsState>) => {
          const upgrade = behavior.upgrade;
          fn.call(app, pattern, {
            ...behavior,
            upgrade: (res: uWS.HttpResponse, req: uWS.HttpRequest, c: uWS.us_socket_context_t) => {
              if (!ctx.refuse(res, req)) upgrade?.(res, req, c);
            },
          });
          return proxy;
        };
      return fn.bind(app);
    },
  });
  return proxy;
}
