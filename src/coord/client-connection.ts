// The connection side of a coordination client: one WebSocket to a replica at a time, the session
// created or resumed over it, reconnection to another replica (watches registered again, unanswered
// requests sent again), request tracking, pings and the session state they decide. CoordClient
// (client.ts) puts the ZooKeeper API on top. Bundled for browsers: no Node built-in here.

import { toBase64 } from "../ordering/block.ts";
import { withDefaults } from "../util/defaults.ts";
import {
  loadCaTransport,
  loadWebSocket,
  type WebSocketCtor,
  type WebSocketLike,
  wsBase,
} from "../util/websocket.ts";
import {
  COORD_CLIENT_DEFAULTS,
  type CoordClientOptions,
  type EventType,
  type ResolvedCoordClientOptions,
  type SessionState,
  type Signer,
} from "./client-options.ts";
import { ClientWatches } from "./client-watches.ts";
import { CoordError, isZkCode } from "./errors.ts";
import {
  CHALLENGE_BYTES,
  COORD_PROTOCOL,
  encodeOp,
  OpKind,
  opSigningBytes,
  resumeSigningBytes,
} from "./ops.ts";

interface Pending {
  readonly msg: Record<string, unknown>;
  readonly resolve: (m: Record<string, unknown>) => void;
  readonly reject: (e: Error) => void;
  sentAt: number;
  readonly cxid?: number;
  /** Called with the response before resolve (to register a watcher in order). */
  readonly onReply?: (m: Record<string, unknown>) => void;
}

/** A replica's hello: its id and its challenge to this connection, or what is wrong with it. */
export function helloOf(m: Record<string, unknown>): { replica: number; challenge: Uint8Array } | string {
  if (m.protocol !== COORD_PROTOCOL)
    return `the replica speaks protocol ${String(m.protocol)}, not ${COORD_PROTOCOL}`;
  const replica = m.replica;
  if (typeof replica !== "number" || !Number.isInteger(replica) || replica < 0 || replica > 0xffff_ffff)
    return "the hello carries no replica id";
  const hex = m.nonce;
  if (typeof hex !== "string" || !new RegExp(`^[0-9a-f]{${2 * CHALLENGE_BYTES}}$`).test(hex))
    return `the hello carries no challenge of ${CHALLENGE_BYTES} bytes`;
  const challenge = new Uint8Array(CHALLENGE_BYTES);
  for (let i = 0; i < CHALLENGE_BYTES; i++) challenge[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return { replica, challenge };
}

/** What a WebSocket error event says (the `ws` package: e.g. a refused TLS certificate), if anything. */
const why = (ev: unknown): string => {
  const m = (ev as { message?: unknown } | null)?.message;
  return typeof m === "string" && m.length > 0 ? `: ${m}` : "";
};

export abstract class CoordConnection {
  protected readonly o: ResolvedCoordClientOptions;
  protected readonly signer: Signer;
  protected readonly key: { publicKey: Uint8Array; privateKey: Uint8Array };
  private ws: WebSocketLike | null = null;
  private Ctor: WebSocketCtor | null = null;
  private urlIndex: number;
  protected sessionIdV = 0;
  protected timeoutMsV = 0;
  protected stateV: SessionState = "Connecting";
  private lastZxidV = 0;
  private pingSeq = 0;
  private readonly pending = new Map<number, Pending>();
  /** Writes beyond maxOutstandingWrites, not sent yet (their cxid is assigned when sent). */
  protected readonly backlog: { go: () => void; reject: (e: Error) => void }[] = [];
  protected readonly watches = new ClientWatches();
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private pingsInFlight = new Map<number, number>();
  /** Send time of the newest ping or write the order confirmed. */
  private confirmedSentAt = 0;
  private reconnecting: Promise<void> | null = null;
  protected closing = false;
  private readonly stateWaiters = new Set<() => void>();
  /** The largest data of a znode, as the replica said in its hello. */
  protected dataMax = 1024 * 1024;

  protected constructor(o: CoordClientOptions) {
    this.o = withDefaults(COORD_CLIENT_DEFAULTS, o);
    this.signer = this.o.signer;
    this.key = this.signer.generate();
    this.urlIndex = o.startAt ?? Math.floor(Math.random() * o.urls.length);
  }

  /** Opens the session through one of the replicas and starts the pings. */
  protected async begin(): Promise<void> {
    this.Ctor = await this.webSocketCtor();
    await this.establish(true);
    this.pingTimer = setInterval(() => this.tick(), Math.max(20, Math.floor(this.timeoutMsV / 10)));
  }

  /** The given WebSocket, else with `ca` one trusting that CA alone (Node), else the default one. */
  private async webSocketCtor(): Promise<WebSocketCtor> {
    if (this.o.WebSocket || this.o.ca === undefined) return loadWebSocket(this.o.WebSocket);
    const t = await loadCaTransport(this.o.ca);
    if (!t)
      throw new CoordError(
        "BADARGUMENTS",
        "the ca option needs Node: a browser checks certificates against its own trust store",
      );
    return t.WebSocket;
  }

  get sessionId(): number {
    return this.sessionIdV;
  }

  get sessionTimeoutMs(): number {
    return this.timeoutMsV;
  }

  get state(): SessionState {
    return this.stateV;
  }

  /** The highest zxid this client has seen (reads anywhere return data at least this new). */
  get lastZxid(): number {
    return this.lastZxidV;
  }

  /** The replica URL currently in use. */
  get url(): string {
    return this.o.urls[this.urlIndex % this.o.urls.length] as string;
  }

  /** True when the session may have expired without this client knowing (see client.ts). */
  get suspended(): boolean {
    return this.stateV === "Suspended" || this.stateV === "Expired" || this.stateV === "Closed";
  }

  /** Drops the connection without ending the session (tests: simulate a network failure). */
  disconnect(): void {
    this.ws?.close(4002, "client-side disconnect");
  }

  // ------------------------------------------------------------------ requests

  protected request(
    msg: Record<string, unknown>,
    resolve: (m: Record<string, unknown>) => void,
    reject: (e: Error) => void,
    cxid?: number,
    onReply?: (m: Record<string, unknown>) => void,
  ): void {
    const p: Pending = { msg, resolve, reject, sentAt: Date.now(), cxid, onReply };
    this.pending.set(msg.id as number, p);
    if (this.stateV === "SyncConnected" || this.stateV === "Suspended") this.transmit(p);
  }

  private transmit(p: Pending): void {
    p.sentAt = Date.now();
    const msg = p.msg.type === "write" ? p.msg : { ...p.msg, minZxid: this.lastZxidV };
    try {
      this.ws?.send(JSON.stringify(msg));
    } catch {
      // the close handler reconnects and sends it again
    }
  }

  // ------------------------------------------------------------------ connection

  private async establish(fresh: boolean): Promise<void> {
    let delay = 50;
    const started = Date.now();
    let lastErr: Error | null = null;
    for (let attempt = 0; !this.closing; attempt++) {
      const url = this.o.urls[this.urlIndex % this.o.urls.length] as string;
      try {
        await this.openOn(url, fresh);
        return;
      } catch (err) {
        lastErr = err as Error;
        if (err instanceof CoordError && (err.code === "SESSIONEXPIRED" || err.code === "AUTHFAILED")) {
          this.shutdown("Expired", new CoordError("SESSIONEXPIRED", "the session expired"));
          throw err;
        }
        this.urlIndex++;
        if (fresh && attempt >= this.o.urls.length * 3) break;
        if (attempt > 0 && attempt % this.o.urls.length === 0) {
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, 1000);
        }
        // A session can only outlive a disconnection by its timeout (plus the cluster's margin).
        if (!fresh && Date.now() - started > 4 * this.timeoutMsV + 10_000) break;
      }
    }
    if (!this.closing) this.shutdown("Expired", new CoordError("SESSIONEXPIRED", "no replica reachable"));
    throw lastErr ?? new CoordError("CONNECTIONLOSS", "no replica reachable");
  }

  /** Opens a WebSocket to one replica and creates or resumes the session there. */
  private openOn(url: string, fresh: boolean): Promise<void> {
    const Ctor = this.Ctor as WebSocketCtor;
    return new Promise((resolve, reject) => {
      const ws = new Ctor(`${wsBase(url)}/v1/coord`);
      let settled = false;
      const handshakeTimer = setTimeout(
        () => fail(new CoordError("CONNECTIONLOSS", `no handshake from ${url}`)),
        Math.max(2000, this.o.sessionTimeoutMs),
      );
      const fail = (e: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(handshakeTimer);
        ws.onmessage = ws.onclose = null;
        // Closing a socket still connecting reports an error event (ws in Node): with no listener, the
        // event would be an uncaught exception in the application.
        ws.onerror = () => {};
        try {
          ws.close();
        } catch {
          // not open
        }
        reject(e);
      };
      ws.onerror = (ev) => fail(new CoordError("CONNECTIONLOSS", `cannot reach ${url}${why(ev)}`));
      ws.onclose = () => fail(new CoordError("CONNECTIONLOSS", `${url} closed the connection`));
      ws.onmessage = (ev) => {
        let m: Record<string, unknown>;
        try {
          m = JSON.parse(String(ev.data));
        } catch {
          return fail(new CoordError("MARSHALLINGERROR", "bad message from the replica"));
        }
        if (m.type === "hello") {
          if (typeof m.dataMaxBytes === "number") this.dataMax = m.dataMaxBytes;
          const hello = helloOf(m);
          if (typeof hello === "string") return fail(new CoordError("MARSHALLINGERROR", `${url}: ${hello}`));
          ws.send(JSON.stringify(this.handshake(hello, fresh)));
          return;
        }
        if (m.type === "error") {
          const code = isZkCode(m.code) ? m.code : "SYSTEMERROR";
          return fail(new CoordError(code, String(m.message ?? code)));
        }
        if (m.type === "connected") {
          settled = true;
          clearTimeout(handshakeTimer);
          this.sessionIdV = m.sessionId as number;
          this.timeoutMsV = m.timeoutMs as number;
          // Not this.seen(m.zxid): setWatches must be relative to what this client saw before moving.
          this.ws = ws;
          ws.onmessage = (e) => this.onMessage(ws, e.data);
          ws.onclose = () => this.onClosed(ws);
          ws.onerror = () => {};
          this.confirmedSentAt = Date.now();
          this.afterConnect(fresh);
          resolve();
        }
      };
    });
  }

  /**
   * The connect or resume message for a replica's hello: both are signed over the replica's id and its
   * challenge to this connection, so they are good on this connection only (docs/coord-protocol.md).
   */
  private handshake(
    hello: { replica: number; challenge: Uint8Array },
    fresh: boolean,
  ): Record<string, unknown> {
    if (fresh) {
      const payload = encodeOp({
        sessionId: 0,
        cxid: 0,
        body: {
          kind: OpKind.CREATE_SESSION,
          publicKey: this.key.publicKey,
          timeoutMs: this.o.sessionTimeoutMs,
          replica: hello.replica,
          challenge: hello.challenge,
        },
      });
      const sig = this.signer.sign(this.key.privateKey, opSigningBytes(payload));
      return { type: "connect", id: 0, op: toBase64(payload), sig: toBase64(sig) };
    }
    const signs = resumeSigningBytes(this.sessionIdV, hello.replica, hello.challenge);
    const sig = this.signer.sign(this.key.privateKey, signs);
    return { type: "resume", id: 0, sessionId: this.sessionIdV, zxid: this.lastZxidV, sig: toBase64(sig) };
  }

  /** Re-registers watches, sends what is unanswered again (writes in cxid order), pings. */
  private afterConnect(fresh: boolean): void {
    if (!fresh) {
      this.ws?.send(
        JSON.stringify({ type: "setWatches", id: -1, relZxid: this.lastZxidV, ...this.watches.paths() }),
      );
    }
    this.setState("SyncConnected");
    const out = [...this.pending.values()].sort((a, b) => (a.cxid ?? Infinity) - (b.cxid ?? Infinity));
    for (const p of out) this.transmit(p);
    this.ping();
  }

  private onClosed(ws: WebSocketLike): void {
    if (ws !== this.ws || this.closing) return;
    this.ws = null;
    if (this.stateV === "Expired" || this.stateV === "Closed") return;
    this.setState("Disconnected");
    this.urlIndex++;
    this.reconnect();
  }

  private reconnect(): void {
    if (this.reconnecting || this.closing) return;
    this.reconnecting = this.establish(false)
      .catch(() => {})
      .finally(() => {
        this.reconnecting = null;
      });
  }

  private onMessage(ws: WebSocketLike, data: unknown): void {
    if (ws !== this.ws) return;
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(String(data));
    } catch {
      return;
    }
    this.seen(m.zxid);
    switch (m.type) {
      case "result":
      case "error": {
        if (m.id === -1) return;
        const p = this.pending.get(m.id as number);
        if (!p) return;
        if (
          m.type === "error" &&
          (m.code === "OPERATIONTIMEOUT" || m.code === "THROTTLEDOP" || m.code === "UNKNOWNSESSION")
        ) {
          // This replica cannot serve it now: move to another one (the request goes again there).
          ws.close(4003, String(m.code));
          return;
        }
        this.pending.delete(m.id as number);
        if (p.cxid !== undefined && p.sentAt > this.confirmedSentAt) this.confirmedSentAt = p.sentAt;
        if (m.type === "error") {
          if (m.code === "SESSIONEXPIRED") {
            p.reject(new CoordError("SESSIONEXPIRED", "the session expired"));
            this.shutdown("Expired", new CoordError("SESSIONEXPIRED", "the session expired"));
            return;
          }
          p.reject(new CoordError(isZkCode(m.code) ? m.code : "SYSTEMERROR", String(m.message ?? m.code)));
          return;
        }
        p.onReply?.(m);
        p.resolve(m);
        return;
      }
      case "event":
        this.watches.deliver({ type: m.event as EventType, path: m.path as string, zxid: m.zxid as number });
        return;
      case "pong": {
        const sent = this.pingsInFlight.get(m.seq as number);
        this.pingsInFlight.delete(m.seq as number);
        if (sent !== undefined && sent > this.confirmedSentAt) this.confirmedSentAt = sent;
        if (this.stateV === "Suspended") this.setState("SyncConnected");
        return;
      }
      case "state":
        if (m.state === "Expired" || m.state === "Closed")
          this.shutdown(
            m.state,
            new CoordError("SESSIONEXPIRED", `the session is ${String(m.state).toLowerCase()}`),
          );
        return;
    }
  }

  private seen(z: unknown): void {
    if (typeof z === "number" && z > this.lastZxidV) this.lastZxidV = z;
  }

  private ping(): void {
    if (!this.ws || this.stateV === "Expired" || this.stateV === "Closed") return;
    const seq = ++this.pingSeq;
    const payload = encodeOp({ sessionId: this.sessionIdV, cxid: seq, body: { kind: OpKind.PING } });
    const sig = this.signer.sign(this.key.privateKey, opSigningBytes(payload));
    this.pingsInFlight.set(seq, Date.now());
    if (this.pingsInFlight.size > 64)
      this.pingsInFlight.delete(this.pingsInFlight.keys().next().value as number);
    try {
      this.ws.send(JSON.stringify({ type: "ping", op: toBase64(payload), sig: toBase64(sig) }));
    } catch {
      // reconnect follows
    }
  }

  private lastPingAt = 0;

  private tick(): void {
    if (this.stateV === "Expired" || this.stateV === "Closed") return;
    const now = Date.now();
    if (now - this.lastPingAt >= this.timeoutMsV / 3) {
      this.lastPingAt = now;
      this.ping();
    }
    if (now - this.confirmedSentAt > (2 * this.timeoutMsV) / 3 && this.stateV !== "Suspended")
      this.setState("Suspended");
    // An unanswered request means this replica is not serving us: move on (everything is sent again).
    const limit = this.o.requestTimeoutMs ?? (2 * this.timeoutMsV) / 3;
    if (this.ws && (this.stateV === "SyncConnected" || this.stateV === "Suspended")) {
      for (const p of this.pending.values())
        if (now - p.sentAt > limit) {
          this.ws.close(4004, "request timeout");
          break;
        }
    }
  }

  private setState(s: SessionState): void {
    if (this.stateV === s) return;
    this.stateV = s;
    for (const fn of [...this.stateWaiters]) fn();
    this.o.onState?.(s);
  }

  /** Resolves on the next state change. */
  nextState(): Promise<SessionState> {
    return new Promise((resolve) => {
      const fn = () => {
        this.stateWaiters.delete(fn);
        resolve(this.stateV);
      };
      this.stateWaiters.add(fn);
    });
  }

  protected shutdown(state: "Expired" | "Closed", err: CoordError): void {
    this.closing = true;
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    const ws = this.ws;
    this.ws = null;
    try {
      ws?.close(1000, "done");
    } catch {
      // closed
    }
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const b of this.backlog.splice(0)) b.reject(err);
    this.setState(state);
  }
}
