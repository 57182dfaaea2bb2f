// The WebSocket the clients use: the browser's (or Node 22's) global one, or the `ws` package in Node 20.

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
