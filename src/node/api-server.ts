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

import uWS from "uWebSockets.js";
import { randomBytes } from "node:crypto";
import type { CoordConn, CoordService } from "../coord/service.ts";
import { blockToJson, type HashFn, headerHash, toBase64, toHexStr } from "../ordering/block.ts";
import { ApiError } from "../ordering/errors.ts";
import type { Gateway, Receipt } from "../ordering/gateway.ts";
import type { Ledger } from "../ordering/ledger.ts";
import type { MisbehaviourReport } from "../ordering/misbehaviour.ts";

export class ApiServerError extends Error {
  override readonly name = "ApiServerError";
  constructor(
    readonly code: "NATIVE_UWS_MISSING" | "LISTEN_FAILED",
    message: string,
  ) {
    super(message);
  }
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

export interface ApiServerOptions {
  readonly host: string;
  /** 0 picks a free port (see `port` after start). */
  readonly port: number;
  readonly ledger: Ledger;
  readonly gateway: Gateway;
  readonly hash: HashFn;
  /** AbsoluteMaxBytes; an HTTP body or WebSocket message above it (plus framing) is refused. */
  readonly txMaxBytes: number;
  /** Submissions one /v1/submit connection may have waiting for their ack. */
  readonly wsSubmitInFlightMax?: number;
  /** A deliver stream pauses while this many bytes wait in the socket's send buffer. */
  readonly deliverHighWaterBytes?: number;
  /** WebSocket connections at once. */
  readonly wsConnectionsMax?: number;
  /** Bytes of POST /v1/transactions bodies being received at once (default BODIES_MAX_BYTES_DEFAULT). */
  readonly bodiesMaxBytes?: number;
  /** The coordination service (WS /v1/coord). */
  readonly coord?: CoordService;
  /** GET /health: the replica's state; `ok` false answers 503. */
  readonly health?: () => { ok: boolean } & Record<string, unknown>;
  /** GET /metrics: Prometheus exposition. */
  readonly metrics?: () => Promise<{ contentType: string; body: string }>;
  /** GET /v1/misbehaviour: proofs this replica holds and whether it stopped ordering. */
  readonly misbehaviour?: () => MisbehaviourReport;
}

/** Bytes of transaction bodies an API server receives at once, by default; beyond, 503 OVERLOADED. */
export const BODIES_MAX_BYTES_DEFAULT = 256 * 1024 * 1024;

/** A paused deliver stream re-checks its socket's buffer this often, besides the drain event. */
const DRAIN_POLL_MS = 100;

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

export type DeliverBehavior = "BLOCK_UNTIL_READY" | "FAIL_IF_NOT_READY";

export interface SeekRequest {
  readonly start: "oldest" | "newest" | number;
  readonly stop?: "newest" | number | null;
  readonly behavior?: DeliverBehavior;
}

interface DeliverState {
  kind: "deliver";
  closed: boolean;
  active: boolean;
  drained: (() => void) | null;
}
interface SubmitState {
  kind: "submit";
  closed: boolean;
  inFlight: number;
  /** Messages posted this turn, sent together at its end (`post`). */
  out: string[] | null;
}
interface CoordState {
  kind: "coord";
  closed: boolean;
  conn: CoordConn | null;
}
type WsState = DeliverState | SubmitState | CoordState;

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

function asApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  return new ApiError("INTERNAL", "internal error");
}

export class ApiServer {
  private readonly o: ApiServerOptions;
  private listenSocket: uWS.us_listen_socket | null = null;
  private readonly sockets = new Set<uWS.WebSocket<WsState>>();
  /** Connections with messages posted this turn. */
  private outboxes: [uWS.WebSocket<WsState>, SubmitState][] = [];
  private app: uWS.TemplatedApp | null = null;
  private boundPort = 0;
  /** Bytes of POST bodies being received (bounded by bodiesMaxBytes). */
  private bodyBytes = 0;
  readonly stats = { internalErrors: 0, deliverPauses: 0, deliverDrains: 0 };
  /** The last unexpected error (logged by the node). */
  onInternalError: (err: unknown) => void = () => {};

  constructor(o: ApiServerOptions) {
    this.o = o;
  }

  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<void> {
    assertNativeUws();
    const app = uWS.App();
    this.app = app;
    const o = this.o;
    const bodyMax = o.txMaxBytes;
    const bodiesMax = o.bodiesMaxBytes ?? BODIES_MAX_BYTES_DEFAULT;
    app.post("/v1/transactions", (res, req) => {
      const json = req.getHeader("content-type").toLowerCase().startsWith("application/json");
      const declared = Number(req.getHeader("content-length") || "0");
      const state = { aborted: false };
      // Bytes of this body counted in bodyBytes, given back when it is complete, refused or aborted.
      let held = 0;
      const release = () => {
        this.bodyBytes -= held;
        held = 0;
      };
      res.onAborted(() => {
        state.aborted = true;
        release();
      });
      if (declared > bodyMax) {
        this.error(
          res,
          state,
          new ApiError("TX_TOO_LARGE", `transaction exceeds absoluteMaxBytes ${bodyMax}`),
        );
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
          this.error(res, state, err);
        };
        if (size > bodyMax)
          return refuse(new ApiError("TX_TOO_LARGE", `transaction exceeds absoluteMaxBytes ${bodyMax}`));
        if (this.bodyBytes + chunk.byteLength > bodiesMax)
          return refuse(
            new ApiError("OVERLOADED", `${this.bodyBytes} bytes of transactions being received; retry later`),
          );
        chunks.push(Buffer.from(chunk.slice(0)));
        held += chunk.byteLength;
        this.bodyBytes += chunk.byteLength;
        if (!isLast) return;
        const body = new Uint8Array(Buffer.concat(chunks));
        release();
        if (json && !isJson(body)) {
          this.error(res, state, new ApiError("MALFORMED", "the body is not valid JSON"));
          return;
        }
        o.gateway.submit(body).then(
          (r) => this.json(res, state, 200, receiptToJson(r, o.hash)),
          (err: unknown) => this.error(res, state, err),
        );
      });
    });
    app.get("/v1/transactions/:id", (res, req) => {
      const id = req.getParameter(0) ?? "";
      const state = this.guard(res);
      if (!/^[0-9a-f]{64}$/.test(id)) {
        this.error(res, state, new ApiError("MALFORMED", "a transaction id is 64 lowercase hex digits"));
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
        (body) => this.json(res, state, 200, body),
        (err: unknown) => this.error(res, state, err),
      );
    });
    app.get("/v1/blocks/:n", (res, req) => {
      const raw = req.getParameter(0) ?? "";
      const state = this.guard(res);
      const n = /^\d{1,16}$/.test(raw) ? Number(raw) : Number.NaN;
      if (!Number.isSafeInteger(n)) {
        this.error(res, state, new ApiError("MALFORMED", "a block number is a non-negative integer"));
        return;
      }
      (async () => {
        if (n >= o.ledger.certifiedHeight) throw new ApiError("BLOCK_NOT_FOUND", `no certified block ${n}`);
        const b = await o.ledger.getBlock(n);
        if (!b) throw new ApiError("BLOCK_NOT_FOUND", `no block ${n}`);
        return blockToJson(b, undefined, o.hash);
      })().then(
        (body) => this.json(res, state, 200, body),
        (err: unknown) => this.error(res, state, err),
      );
    });
    app.get("/health", (res) => {
      const state = this.guard(res);
      if (!o.health) return this.error(res, state, new ApiError("NOT_FOUND", "no health report"));
      try {
        const h = o.health();
        this.json(res, state, h.ok ? 200 : 503, h);
      } catch (err) {
        this.error(res, state, err);
      }
    });
    app.get("/metrics", (res) => {
      const state = this.guard(res);
      const metrics = o.metrics;
      if (!metrics) return this.error(res, state, new ApiError("NOT_FOUND", "no metrics"));
      metrics().then(
        ({ contentType, body }) => {
          if (state.aborted) return;
          state.aborted = true;
          res.cork(() => {
            res.writeStatus("200 OK").writeHeader("content-type", contentType).end(body);
          });
        },
        (err: unknown) => this.error(res, state, err),
      );
    });
    app.get("/v1/misbehaviour", (res) => {
      const state = this.guard(res);
      this.json(res, state, 200, o.misbehaviour ? o.misbehaviour() : { halted: null, proofs: [] });
    });
    app.get("/v1/chain", (res) => {
      const state = this.guard(res);
      (async () => {
        const height = o.ledger.certifiedHeight;
        const head = height > 0 ? await o.ledger.getBlock(height - 1) : undefined;
        return {
          height,
          headHash: head ? toHexStr(headerHash(head.header, o.hash)) : null,
          writtenHeight: o.ledger.height,
        };
      })().then(
        (body) => this.json(res, state, 200, body),
        (err: unknown) => this.error(res, state, err),
      );
    });
    app.ws<WsState>("/v1/submit", {
      // Text frames carry base64 (4/3 of the bytes) plus the JSON around it.
      maxPayloadLength: Math.ceil((bodyMax * 4) / 3) + 4096,
      idleTimeout: 120,
      maxBackpressure: 64 * 1024 * 1024,
      upgrade: (res, req, ctx) =>
        this.upgrade(res, req, ctx, { kind: "submit", closed: false, inFlight: 0, out: null }),
      open: (ws) => {
        this.sockets.add(ws);
      },
      message: (ws, message, isBinary) => this.onSubmitMessage(ws, message, isBinary),
      close: (ws) => {
        ws.getUserData().closed = true;
        this.sockets.delete(ws);
      },
    });
    app.ws<WsState>("/v1/deliver", {
      maxPayloadLength: 4096,
      idleTimeout: 0,
      maxBackpressure: 256 * 1024 * 1024,
      upgrade: (res, req, ctx) =>
        this.upgrade(res, req, ctx, { kind: "deliver", closed: false, active: false, drained: null }),
      open: (ws) => {
        this.sockets.add(ws);
      },
      message: (ws, message) => this.onDeliverMessage(ws, message),
      drain: (ws) => {
        this.stats.deliverDrains++;
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
        this.sockets.delete(ws);
      },
    });
    const coord = o.coord;
    if (coord)
      app.ws<WsState>("/v1/coord", {
        // A write carries one signed operation in base64 (4/3 of the bytes) plus the JSON around it.
        maxPayloadLength: Math.ceil((bodyMax * 4) / 3) + 4096,
        idleTimeout: 0,
        maxBackpressure: 64 * 1024 * 1024,
        upgrade: (res, req, ctx) => this.upgrade(res, req, ctx, { kind: "coord", closed: false, conn: null }),
        open: (ws) => {
          this.sockets.add(ws);
          const s = ws.getUserData() as CoordState;
          s.conn = coord.open(
            {
              send: (msg) => void this.wsSend(ws, msg),
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
            this.wsSend(ws, {
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
          this.sockets.delete(ws);
        },
      });
    app.any("/*", (res, req) => {
      const state = this.guard(res);
      const known = /^\/v1\/(transactions|blocks|chain)(\/|$)/.test(req.getUrl());
      this.error(
        res,
        state,
        known
          ? new ApiError("METHOD_NOT_ALLOWED", `${req.getMethod().toUpperCase()} is not allowed here`)
          : new ApiError("NOT_FOUND", `no route ${req.getUrl()}`),
      );
    });
    await new Promise<void>((resolve, reject) => {
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
    for (const ws of [...this.sockets]) {
      try {
        ws.end(1001, "server shutting down");
      } catch {
        // already closed
      }
    }
    this.sockets.clear();
    // Also closes idle keep-alive HTTP connections (native App.close, not in the bundled typings).
    (this.app as unknown as { close?: () => void } | null)?.close?.();
    this.app = null;
  }

  // ------------------------------------------------------------------ WebSocket: submit

  private onSubmitMessage(ws: uWS.WebSocket<WsState>, message: ArrayBuffer, isBinary: boolean): void {
    const s = ws.getUserData();
    if (s.kind !== "submit") return;
    // Binary: 4-byte big-endian request id, then the transaction. Text: {"id", "tx": base64} or {"id", "json"}.
    let id: number | string | null = null;
    let tx: Uint8Array;
    try {
      if (isBinary) {
        if (message.byteLength < 4)
          throw new ApiError("MALFORMED", "a binary submission starts with a 4-byte id");
        id = new DataView(message).getUint32(0);
        // A copy (uWS reuses the message's memory): small ones go into Node's buffer pool, not each
        // into an off-heap buffer of its own.
        const copy = Buffer.from(new Uint8Array(message, 4));
        tx = new Uint8Array(copy.buffer, copy.byteOffset, copy.byteLength);
      } else {
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
          tx = Uint8Array.from(Buffer.from(m.tx, "base64"));
        } else if (m.json !== undefined) tx = new TextEncoder().encode(JSON.stringify(m.json));
        else throw new ApiError("MALFORMED", 'a submission needs "tx" (base64) or "json"');
      }
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError("MALFORMED", "not a JSON submission");
      this.post(ws, s, JSON.stringify({ id, ok: false, ...e.toJSON() }));
      return;
    }
    const max = this.o.wsSubmitInFlightMax ?? 8192;
    if (s.inFlight >= max) {
      const e = new ApiError("OVERLOADED", `${max} submissions in flight on this connection`);
      this.post(ws, s, JSON.stringify({ id, ok: false, ...e.toJSON() }));
      return;
    }
    s.inFlight++;
    this.o.gateway.submit(tx).then(
      (r) => {
        s.inFlight--;
        this.post(ws, s, `{"id":${JSON.stringify(id)},"ok":true,"receipt":${receiptText(r, this.o.hash)}}`);
      },
      (err: unknown) => {
        s.inFlight--;
        this.post(ws, s, JSON.stringify({ id, ok: false, ...this.internal(err).toJSON() }));
      },
    );
  }

  // ------------------------------------------------------------------ WebSocket: deliver

  private onDeliverMessage(ws: uWS.WebSocket<WsState>, message: ArrayBuffer): void {
    const s = ws.getUserData();
    if (s.kind !== "deliver") return;
    let seek: { start: number; stop: number; behavior: DeliverBehavior };
    try {
      seek = this.parseSeek(JSON.parse(Buffer.from(message).toString("utf8")));
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError("MALFORMED", "a seek is a JSON object");
      this.wsSend(ws, { type: "status", status: "BAD_REQUEST", ...e.toJSON() });
      return;
    }
    if (s.active) {
      this.wsSend(ws, {
        type: "status",
        status: "BAD_REQUEST",
        ...new ApiError("MALFORMED", "a seek is already streaming on this connection").toJSON(),
      });
      return;
    }
    s.active = true;
    this.stream(ws, s, seek).then(
      () => {
        s.active = false;
      },
      (err: unknown) => {
        s.active = false;
        this.wsSend(ws, { type: "status", status: "INTERNAL", ...this.internal(err).toJSON() });
      },
    );
  }

  private parseSeek(m: unknown): { start: number; stop: number; behavior: DeliverBehavior } {
    const seek = m as SeekRequest;
    if (!seek || typeof seek !== "object") throw new ApiError("MALFORMED", "a seek is a JSON object");
    const newest = Math.max(0, this.o.ledger.certifiedHeight - 1);
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
  private async stream(
    ws: uWS.WebSocket<WsState>,
    s: DeliverState,
    seek: { start: number; stop: number; behavior: DeliverBehavior },
  ): Promise<void> {
    const high = this.o.deliverHighWaterBytes ?? 1024 * 1024;
    const ledger = this.o.ledger;
    for (let n = seek.start; n <= seek.stop; n++) {
      if (s.closed) return;
      if (n >= ledger.certifiedHeight) {
        if (seek.behavior === "FAIL_IF_NOT_READY") {
          this.wsSend(ws, {
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
      if (!this.wsSend(ws, { type: "block", block: blockToJson(b, undefined, this.o.hash) })) return;
      if (ws.getBufferedAmount() > high) {
        this.stats.deliverPauses++;
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
    this.wsSend(ws, { type: "status", status: "SUCCESS" });
  }

  // ------------------------------------------------------------------ helpers

  private upgrade(
    res: uWS.HttpResponse,
    req: uWS.HttpRequest,
    ctx: uWS.us_socket_context_t,
    data: WsState,
  ): void {
    if (this.sockets.size >= (this.o.wsConnectionsMax ?? 4096)) {
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

  /**
   * Queues a message for the end of this turn. The receipts of one block are settled in one turn: they
   * leave in one corked write per connection, not one each. (Coordination replies are sent at once:
   * their order with the connection's close matters, and they are few per turn.)
   */
  private post(ws: uWS.WebSocket<WsState>, s: SubmitState, text: string): void {
    if (s.closed) return;
    if (s.out === null) {
      s.out = [];
      this.outboxes.push([ws, s]);
      if (this.outboxes.length === 1) process.nextTick(this.flushOutboxes);
    }
    s.out.push(text);
  }

  /** Sends each connection's posted messages in one corked write. */
  private readonly flushOutboxes = (): void => {
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

  /** Sends one JSON message; false when the socket is closed. */
  private wsSend(ws: uWS.WebSocket<WsState>, msg: unknown): boolean {
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

  private guard(res: uWS.HttpResponse): { aborted: boolean } {
    const state = { aborted: false };
    res.onAborted(() => {
      state.aborted = true;
    });
    return state;
  }

  private internal(err: unknown): ApiError {
    if (!(err instanceof ApiError)) {
      this.stats.internalErrors++;
      this.onInternalError(err);
    }
    return asApiError(err);
  }

  private json(res: uWS.HttpResponse, state: { aborted: boolean }, status: number, body: unknown): void {
    if (state.aborted) return;
    state.aborted = true;
    res.cork(() => {
      res
        .writeStatus(STATUS_TEXT[status] ?? `${status} Error`)
        .writeHeader("content-type", "application/json")
        .end(JSON.stringify(body));
    });
  }

  private error(res: uWS.HttpResponse, state: { aborted: boolean }, err: unknown): void {
    const e = this.internal(err);
    this.json(res, state, e.status, e.toJSON());
  }
}

function isJson(b: Uint8Array): boolean {
  try {
    JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(b));
    return true;
  } catch {
    return false;
  }
}
