// Node only: the clients' fetch and WebSocket when they are given a CA (docs/api.md, "TLS"). Both trust
// that CA alone, not the system's roots, so a replica whose certificate does not chain to it is refused
// in the handshake. Loaded by loadCaTransport (websocket.ts) through a computed import, which keeps it
// (and node:https) out of the browser bundles of the clients.

import { Agent, request } from "node:https";
import WebSocket from "ws";
import type { CaTransport, WebSocketCtor } from "./websocket.ts";

/** Certificate failures of a TLS handshake (Node's codes), as opposed to a replica being unreachable. */
const CERTIFICATE_ERRORS = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** True when `err` (or its cause) is a refused server certificate. */
export function isCertificateError(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && CERTIFICATE_ERRORS.has(code)) return true;
  }
  return false;
}

/** A fetch (the subset the clients use: method, string or bytes body, headers, signal) trusting `ca`. */
function caFetch(agent: Agent): typeof fetch {
  const f = (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.protocol !== "https:") return fetch(input, init);
    const body = init.body;
    if (body != null && typeof body !== "string" && !(body instanceof Uint8Array))
      return Promise.reject(new TypeError("this fetch sends string or Uint8Array bodies only"));
    return new Promise<Response>((resolve, reject) => {
      const req = request(
        url,
        {
          method: init.method ?? "GET",
          headers: new Headers(init.headers) as unknown as Record<string, string>,
          agent,
          signal: init.signal ?? undefined,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const status = res.statusCode ?? 502;
            const headers = new Headers();
            for (const [k, v] of Object.entries(res.headers))
              for (const one of Array.isArray(v) ? v : v === undefined ? [] : [v]) headers.append(k, one);
            const empty = status === 204 || status === 304;
            resolve(new Response(empty ? null : Buffer.concat(chunks), { status, headers }));
          });
        },
      );
      req.on("error", reject);
      req.end(body ?? undefined);
    });
  };
  return f as typeof fetch;
}

/** A WebSocket constructor (the `ws` package) trusting `ca` alone. */
function caWebSocket(ca: string | Uint8Array): WebSocketCtor {
  class CaWebSocket extends WebSocket {
    constructor(url: string) {
      super(url, undefined, { ca: Buffer.from(ca) });
    }
  }
  return CaWebSocket as unknown as WebSocketCtor;
}

/** The fetch and WebSocket of a client that trusts `ca` (PEM; one or more certificates). */
export function caTransport(ca: string | Uint8Array): CaTransport {
  const agent = new Agent({ ca: Buffer.from(ca), keepAlive: true });
  return { fetch: caFetch(agent), WebSocket: caWebSocket(ca), isCertificateError };
}
