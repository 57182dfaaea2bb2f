// What an API server is given: where to listen, the parts it serves (ledger, gateway, coordination
// service, health, metrics, misbehaviour) and its bounds.

import type { CoordService } from "../../coord/service.ts";
import type { HashFn } from "../../ordering/block.ts";
import type { Gateway } from "../../ordering/gateway.ts";
import type { Ledger } from "../../ordering/ledger.ts";
import type { MisbehaviourReport } from "../../ordering/misbehaviour.ts";
import type { WithDefaults } from "../../util/defaults.ts";

/**
 * HTTPS and WSS instead of HTTP and WS (docs/operations.md, "TLS"): PEM files the server reads when it
 * starts. With `caFile`, a client certificate that does not chain to it is refused in the handshake;
 * the bundled uWebSockets.js cannot require one, so a client that presents none is still served.
 */
export interface ApiTlsOptions {
  /** The server's certificate chain (PEM): its own certificate first, then any intermediates. */
  readonly certFile: string;
  /** The certificate's private key (PEM, unencrypted). */
  readonly keyFile: string;
  /** CA certificates (PEM) that a client certificate, when presented, must chain to. */
  readonly caFile?: string;
}

export interface ApiServerOptions {
  readonly host: string;
  /** Serve HTTPS/WSS with these files (default: plain HTTP/WS). */
  readonly tls?: ApiTlsOptions;
  /** 0 picks a free port (see `port` after start). */
  readonly port: number;
  readonly ledger: Ledger;
  readonly gateway: Gateway;
  readonly hash: HashFn;
  /** AbsoluteMaxBytes; an HTTP body or WebSocket message above it (plus framing) is refused. */
  readonly txMaxBytes: number;
  /** Submissions one /v1/submit connection may have waiting for their ack (default 8192). */
  readonly wsSubmitInFlightMax?: number;
  /** A deliver stream pauses while this many bytes wait in the socket's send buffer (default 1 MiB). */
  readonly deliverHighWaterBytes?: number;
  /** WebSocket connections at once (default 4096). */
  readonly wsConnectionsMax?: number;
  /** WebSocket connections at once from one remote address (default 256): one client cannot take them all. */
  readonly wsPerAddressMax?: number;
  /**
   * A WebSocket that receives nothing, not even the answer to a ping, for this long is closed (seconds;
   * default 120; uWS pings an idle connection first, so a live client stays connected).
   */
  readonly wsIdleTimeoutSec?: number;
  /** Browser origins (scheme://host[:port]) allowed to call the API; "*" allows any (default none). */
  readonly allowedOrigins?: readonly string[];
  /** Bytes of request header names and values; beyond, 431 HEADERS_TOO_LARGE (default 16 KiB). */
  readonly headersMaxBytes?: number;
  /** Bytes of POST /v1/transactions bodies being received at once (default 256 MiB). */
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

/** The API server's option defaults (see ApiServerOptions): the one place they are written. */
export const API_SERVER_DEFAULTS = Object.freeze({
  wsSubmitInFlightMax: 8192,
  deliverHighWaterBytes: 1024 * 1024,
  wsConnectionsMax: 4096,
  wsPerAddressMax: 256,
  wsIdleTimeoutSec: 120,
  allowedOrigins: Object.freeze([]) as readonly string[],
  headersMaxBytes: 16 * 1024,
  /** Bytes of transaction bodies an API server receives at once; beyond, 503 OVERLOADED. */
  bodiesMaxBytes: 256 * 1024 * 1024,
}) satisfies Partial<ApiServerOptions>;

/** ApiServerOptions with every default filled in (ApiServer resolves them). */
export type ResolvedApiServerOptions = WithDefaults<ApiServerOptions, typeof API_SERVER_DEFAULTS>;
