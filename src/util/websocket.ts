// The WebSocket the clients use: the browser's (or Node 22's) global one, or the `ws` package in Node 20.

import { moduleBeside } from "./modules.ts";

export type WebSocketCtor = new (url: string) => WebSocketLike;

export interface WebSocketLike {
  binaryType: string;
  readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  pause?: () => void;
  resume?: () => void;
}

export async function loadWebSocket(given?: WebSocketCtor): Promise<WebSocketCtor> {
  if (given) return given;
  const g = (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
  if (g) return g;
  const name = "ws"; // Node 20 has no global WebSocket; not bundled for browsers, which have one
  const mod = (await import(name)) as { default: WebSocketCtor };
  return mod.default;
}

/** http(s)://host → ws(s)://host */
export function wsBase(url: string): string {
  return url.replace(/^http/, "ws").replace(/\/+$/, "");
}

/** What a client uses to reach replicas that serve TLS with certificates of its own CA (Node only). */
export interface CaTransport {
  readonly fetch: typeof fetch;
  readonly WebSocket: WebSocketCtor;
  /** True when an error of these is a server certificate that does not chain to the CA. */
  readonly isCertificateError: (err: unknown) => boolean;
}

/**
 * The fetch and WebSocket trusting `ca` (PEM) alone, from tls-client.ts; null outside Node (a browser
 * checks certificates against its own trust store and cannot be given a CA). The import is computed
 * so that bundlers leave Node's https out of the browser bundles.
 */
export async function loadCaTransport(ca: string | Uint8Array): Promise<CaTransport | null> {
  const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
  if (!proc?.versions?.node) return null;
  const spec = moduleBeside(import.meta.url, "./tls-client").href;
  const mod = (await import(spec)) as { caTransport: (ca: string | Uint8Array) => CaTransport };
  return mod.caTransport(ca);
}
