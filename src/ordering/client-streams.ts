// The client's WebSocket streams to one replica: the deliver stream (blocks as it sends them, which
// OrderingClient then verifies) and the pipelined submission stream (each ack's receipt verified).
// Browser-safe: the WebSocket constructor is the browser's or the `ws` package's.

import { type WebSocketCtor, type WebSocketLike, wsBase } from "../util/websocket.ts";
import { type Block, blockFromJson, type HashFn, toBase64, type VerifyFn } from "./block.ts";
import { OrderingClientError, type ReceiptJson, type VerifiedReceipt, verifyReceipt } from "./receipt.ts";

export interface Seek {
  readonly start?: "oldest" | "newest" | number;
  readonly stop?: "newest" | number;
  readonly behavior?: "BLOCK_UNTIL_READY" | "FAIL_IF_NOT_READY";
}

/** Blocks buffered by a block stream before it pauses the socket (when the WebSocket can pause). */
const STREAM_BUFFER_MAX = 64;

/** The blocks one replica's deliver stream sends from `seek`, parsed (the caller verifies them). */
export async function* deliverStream(Ctor: WebSocketCtor, url: string, seek: Seek): AsyncGenerator<Block> {
  const ws = new Ctor(`${wsBase(url)}/v1/deliver`);
  await opened(ws);
  const queue: unknown[] = [];
  let wake: (() => void) | null = null;
  let closed: Error | null = null;
  let paused = false;
  ws.onmessage = (ev) => {
    try {
      queue.push(
        JSON.parse(typeof ev.data === "string" ? ev.data : new TextDecoder().decode(ev.data as ArrayBuffer)),
      );
    } catch {
      queue.push({ type: "garbage" });
    }
    if (queue.length >= STREAM_BUFFER_MAX && ws.pause && !paused) {
      paused = true;
      ws.pause();
    }
    wake?.();
  };
  ws.onclose = () => {
    closed ??= new OrderingClientError("DISCONNECTED", `${url}: deliver stream closed`);
    wake?.();
  };
  ws.onerror = () => {
    closed ??= new OrderingClientError("DISCONNECTED", `${url}: deliver stream failed`);
    wake?.();
  };
  try {
    ws.send(JSON.stringify({ start: seek.start ?? "oldest", stop: seek.stop, behavior: seek.behavior }));
    for (;;) {
      if (queue.length === 0) {
        if (closed) throw closed;
        await new Promise<void>((r) => {
          wake = r;
        });
        wake = null;
        continue;
      }
      const m = queue.shift() as {
        type?: string;
        status?: string;
        block?: unknown;
        error?: { code: string; message: string };
      };
      if (paused && queue.length < STREAM_BUFFER_MAX / 2 && ws.resume) {
        paused = false;
        ws.resume();
      }
      if (m.type === "block") yield blockFromJson(m.block);
      else if (m.type === "status") {
        if (m.status === "SUCCESS") return;
        const code = m.error?.code ?? m.status ?? "ERROR";
        throw new OrderingClientError(code, `${url}: ${m.error?.message ?? m.status}`);
      } else throw new OrderingClientError("BAD_RESPONSE", `${url}: unexpected deliver message`);
    }
  } finally {
    ws.onclose = null;
    ws.onmessage = null;
    try {
      ws.close();
    } catch {
      // already closed
    }
  }
}

/** Pipelined submissions over one WebSocket: every submit() resolves with its verified receipt. */
export class SubmitStream {
  private nextId = 1;
  private readonly waiting = new Map<
    number,
    { tx: Uint8Array; resolve: (r: VerifiedReceipt) => void; reject: (e: Error) => void }
  >();
  private closedErr: Error | null = null;

  constructor(
    private readonly ws: WebSocketLike,
    private readonly policy: {
      replicaKeys: readonly Uint8Array[];
      quorum: number;
      hash?: HashFn;
      verify?: VerifyFn;
    },
  ) {
    ws.onmessage = (ev) => this.onMessage(ev.data);
    ws.onclose = () => this.fail(new OrderingClientError("DISCONNECTED", "submit stream closed"));
    ws.onerror = () => this.fail(new OrderingClientError("DISCONNECTED", "submit stream failed"));
  }

  get pending(): number {
    return this.waiting.size;
  }

  submit(tx: Uint8Array): Promise<VerifiedReceipt> {
    if (this.closedErr) return Promise.reject(this.closedErr);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { tx, resolve, reject });
      this.ws.send(JSON.stringify({ id, tx: toBase64(tx) }));
    });
  }

  close(): void {
    this.ws.close();
    this.fail(new OrderingClientError("CLOSED", "submit stream closed by the client"));
  }

  private onMessage(data: unknown): void {
    let m: { id?: number; ok?: boolean; receipt?: ReceiptJson; error?: { code: string; message: string } };
    try {
      m = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data as ArrayBuffer));
    } catch {
      return;
    }
    const w = typeof m.id === "number" ? this.waiting.get(m.id) : undefined;
    if (!w || m.id === undefined) return;
    this.waiting.delete(m.id);
    if (!m.ok || !m.receipt) {
      w.reject(new OrderingClientError(m.error?.code ?? "ERROR", m.error?.message ?? "submission failed"));
      return;
    }
    try {
      w.resolve(verifyReceipt(w.tx, m.receipt, this.policy));
    } catch (err) {
      w.reject(err as Error);
    }
  }

  private fail(err: Error): void {
    this.closedErr ??= err;
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }
}

/** Resolves once the WebSocket is open; rejects (UNREACHABLE) when it fails or closes first. */
export function opened(ws: WebSocketLike): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new OrderingClientError("UNREACHABLE", "WebSocket connection failed"));
    ws.onclose = () => reject(new OrderingClientError("UNREACHABLE", "WebSocket closed before opening"));
  });
}
