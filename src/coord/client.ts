// A client of the coordination service (Node and browsers), with a promise API close to the common
// ZooKeeper clients: create / getData / setData / getChildren / exists / delete / multi / sync, one-shot
// watchers, persistent and recursive watches, and automatic reconnection to another replica while
// keeping the session.
//
// Writes are exactly-once: each carries a session-local number (cxid) and the session's signature; a
// write not yet answered is sent again after a reconnect, and the cluster answers a repeat from the
// result it kept. Writes therefore never fail with a connection loss — only with the session's end.
// Reads never go back in time: every request carries the highest zxid this client has seen.
//
// Session safety: `suspended` (and the "Suspended" state) is set when no ping or write was confirmed
// through the order for 2/3 of the session timeout; from then on the session may expire at any moment,
// so a lock holder must stop acting as one (the lock recipe does).

import { ed25519 } from "@noble/curves/ed25519.js";
import { fromBase64, toBase64 } from "../ordering/block.ts";
import { loadWebSocket, type WebSocketCtor, type WebSocketLike, wsBase } from "../util/websocket.ts";
import { CoordError, isZkCode, type ZkCode } from "./errors.ts";
import {
  BUNDLE_OPS_MAX,
  type BundleProof,
  bundle,
  bundleSigningBytes,
  CreateMode,
  type CreateModeValue,
  encodeOp,
  isSequentialMode,
  type OpBody,
  OpKind,
  opSigningBytes,
  resumeSigningBytes,
  type SubOp,
} from "./ops.ts";
import { pathProblem, selfAndAncestors } from "./path.ts";

export type { Stat } from "./tree.ts";
export { CoordError, CreateMode };

import type { Stat } from "./tree.ts";

export type EventType = "NodeCreated" | "NodeDeleted" | "NodeDataChanged" | "NodeChildrenChanged";
export interface WatchedEvent {
  readonly type: EventType;
  readonly path: string;
  readonly zxid: number;
}
export type Watcher = (e: WatchedEvent) => void;

export type SessionState =
  | "Connecting"
  | "SyncConnected"
  | "Disconnected"
  | "Suspended"
  | "Expired"
  | "Closed";

/** Signs with ed25519 (noble by default; pass node:crypto's in Node for speed). */
export interface Signer {
  generate(): { publicKey: Uint8Array; privateKey: Uint8Array };
  sign(privateKey: Uint8Array, message: Uint8Array): Uint8Array;
}

export const nobleSigner: Signer = {
  generate() {
    const privateKey = ed25519.utils.randomSecretKey();
    return { privateKey, publicKey: ed25519.getPublicKey(privateKey) };
  },
  sign: (privateKey, message) => ed25519.sign(message, privateKey),
};

export interface CoordClientOptions {
  /** Replica API URLs (http://host:port); the client connects to one and moves on failure. */
  readonly urls: readonly string[];
  /** Requested session timeout (the cluster clamps it into its bounds; default 10 s). */
  readonly sessionTimeoutMs?: number;
  /** A request unanswered this long makes the client move to another replica (default 2/3 of the timeout). */
  readonly requestTimeoutMs?: number;
  /** Writes outstanding at once; more wait in the client (default 128, the cluster keeps 128 results). */
  readonly maxOutstandingWrites?: number;
  /**
   * Sign the writes issued together (in one turn of the event loop, up to BUNDLE_OPS_MAX) once, over a Merkle root, instead of
   * one signature each (default true). Replicas then check one signature per bundle, not per write.
   */
  readonly bundleWrites?: boolean;
  readonly signer?: Signer;
  readonly WebSocket?: WebSocketCtor;
  /** Called on every state change. */
  readonly onState?: (s: SessionState) => void;
  /** Index of the first replica to try (default: random). */
  readonly startAt?: number;
}

export type MultiOp =
  | { type: "create"; path: string; data?: Uint8Array | string; mode?: CreateModeValue; ttlMs?: number }
  | { type: "delete"; path: string; version?: number }
  | { type: "setData"; path: string; data: Uint8Array | string; version?: number }
  | { type: "check"; path: string; version: number };

export interface MultiResult {
  readonly code: ZkCode;
  readonly path?: string;
  readonly stat?: Stat;
}

interface Pending {
  readonly msg: Record<string, unknown>;
  readonly resolve: (m: Record<string, unknown>) => void;
  readonly reject: (e: Error) => void;
  sentAt: number;
  readonly cxid?: number;
  /** Called with the response before resolve (to register a watcher in order). */
  readonly onReply?: (m: Record<string, unknown>) => void;
}

const TEXT = new TextEncoder();
/** setImmediate where there is one (Node), else a zero timeout (browsers). */
const afterIo: (f: () => void) => void =
  typeof globalThis.setImmediate === "function" ? (f) => globalThis.setImmediate(f) : (f) => setTimeout(f, 0);
const bytesOf = (d: Uint8Array | string | undefined): Uint8Array =>
  d === undefined ? new Uint8Array(0) : typeof d === "string" ? TEXT.encode(d) : d;

function hexToBytes(h: string): Uint8Array {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export class CoordClient {
  private readonly o: CoordClientOptions;
  private readonly signer: Signer;
  private readonly key: { publicKey: Uint8Array; privateKey: Uint8Array };
  private ws: WebSocketLike | null = null;
  private Ctor: WebSocketCtor | null = null;
  private urlIndex: number;
  private sessionIdV = 0;
  private timeoutMsV = 0;
  private stateV: SessionState = "Connecting";
  private lastZxidV = 0;
  private nextId = 1;
  private nextCxid = 1;
  private pingSeq = 0;
  private readonly pending = new Map<number, Pending>();
  /** Writes beyond maxOutstandingWrites, not sent yet (their cxid is assigned when sent). */
  private readonly backlog: { go: () => void; reject: (e: Error) => void }[] = [];
  private writesOut = 0;
  /** Writes numbered but not yet signed: signed together at the end of this turn (sealPending). */
  private unsigned: { payload: Uint8Array; send: (sig: Uint8Array, proof?: BundleProof) => void }[] = [];
  private sealScheduled = false;
  private readonly oneShot = {
    data: new Map<string, Set<Watcher>>(),
    exist: new Map<string, Set<Watcher>>(),
    child: new Map<string, Set<Watcher>>(),
  };
  private readonly persistent = new Map<string, Set<Watcher>>();
  private readonly recursive = new Map<string, Set<Watcher>>();
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private pingsInFlight = new Map<number, number>();
  /** Send time of the newest ping or write the order confirmed. */
  private confirmedSentAt = 0;
  private reconnecting: Promise<void> | null = null;
  private closing = false;
  private readonly stateWaiters = new Set<() => void>();

  private constructor(o: CoordClientOptions) {
    this.o = o;
    this.signer = o.signer ?? nobleSigner;
    this.key = this.signer.generate();
    this.urlIndex = o.startAt ?? Math.floor(Math.random() * o.urls.length);
  }

  /** Opens a new session through one of the replicas. */
  static async connect(o: CoordClientOptions): Promise<CoordClient> {
    if (o.urls.length === 0) throw new CoordError("BADARGUMENTS", "no replica URLs");
    const c = new CoordClient(o);
    c.Ctor = await loadWebSocket(o.WebSocket);
    await c.establish(true);
    c.pingTimer = setInterval(() => c.tick(), Math.max(20, Math.floor(c.timeoutMsV / 10)));
    return c;
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

  /** True when the session may have expired without this client knowing (see the file comment). */
  get suspended(): boolean {
    return this.stateV === "Suspended" || this.stateV === "Expired" || this.stateV === "Closed";
  }

  // ------------------------------------------------------------------ the ZooKeeper API

  async create(
    path: string,
    data?: Uint8Array | string,
    opts: { mode?: CreateModeValue; ttlMs?: number } = {},
  ): Promise<string> {
    const mode = opts.mode ?? CreateMode.PERSISTENT;
    const r = await this.write(
      { kind: OpKind.CREATE, path, data: bytesOf(data), mode, ttlMs: opts.ttlMs ?? 0 },
      path,
    );
    return r.path as string;
  }

  async delete(path: string, version = -1): Promise<void> {
    await this.write({ kind: OpKind.DELETE, path, version }, path);
  }

  async setData(path: string, data: Uint8Array | string, version = -1): Promise<Stat> {
    const r = await this.write({ kind: OpKind.SET_DATA, path, data: bytesOf(data), version }, path);
    return r.stat as Stat;
  }

  /** Waits until this client's replica has everything ordered before the call (ZooKeeper's sync). */
  async sync(path = "/"): Promise<void> {
    await this.write({ kind: OpKind.SYNC, path }, path);
  }

  /** All or nothing; on failure throws a CoordError whose `results` says which operation failed. */
  async multi(ops: readonly MultiOp[]): Promise<MultiResult[]> {
    const subs: SubOp[] = ops.map((op) => {
      switch (op.type) {
        case "create":
          return {
            kind: OpKind.CREATE,
            path: op.path,
            data: bytesOf(op.data),
            mode: op.mode ?? 0,
            ttlMs: op.ttlMs ?? 0,
          };
        case "delete":
          return { kind: OpKind.DELETE, path: op.path, version: op.version ?? -1 };
        case "setData":
          return { kind: OpKind.SET_DATA, path: op.path, data: bytesOf(op.data), version: op.version ?? -1 };
        default:
          return { kind: OpKind.CHECK, path: op.path, version: op.version };
      }
    });
    const r = await this.write({ kind: OpKind.MULTI, ops: subs });
    return (r.results as MultiResult[]) ?? [];
  }

  async getData(
    path: string,
    opts: { watch?: Watcher; linearizable?: boolean } = {},
  ): Promise<{ data: Uint8Array; stat: Stat }> {
    if (opts.linearizable) await this.sync(path);
    const r = await this.read({ type: "getData", path, watch: !!opts.watch }, (m) => {
      if (m.code === "OK" && opts.watch) this.addOneShot("data", path, opts.watch);
    });
    return { data: fromBase64(r.data as string), stat: r.stat as Stat };
  }

  async exists(path: string, opts: { watch?: Watcher; linearizable?: boolean } = {}): Promise<Stat | null> {
    if (opts.linearizable) await this.sync(path);
    const r = await this.read({ type: "exists", path, watch: !!opts.watch }, (m) => {
      if (m.code === "OK" && opts.watch) this.addOneShot(m.stat ? "data" : "exist", path, opts.watch);
    });
    return (r.stat as Stat | null) ?? null;
  }

  async getChildren(path: string, opts: { watch?: Watcher; linearizable?: boolean } = {}): Promise<string[]> {
    return (await this.getChildren2(path, opts)).children;
  }

  async getChildren2(
    path: string,
    opts: { watch?: Watcher; linearizable?: boolean } = {},
  ): Promise<{ children: string[]; stat: Stat }> {
    if (opts.linearizable) await this.sync(path);
    const r = await this.read({ type: "getChildren", path, watch: !!opts.watch }, (m) => {
      if (m.code === "OK" && opts.watch) this.addOneShot("child", path, opts.watch);
    });
    return { children: r.children as string[], stat: r.stat as Stat };
  }

  /** ZooKeeper 3.6 addWatch: a watch that stays until removed (recursive: the whole subtree). */
  async addWatch(path: string, mode: "persistent" | "persistentRecursive", watcher: Watcher): Promise<void> {
    await this.read({ type: "addWatch", path, mode }, (m) => {
      if (m.code !== "OK") return;
      const t = mode === "persistent" ? this.persistent : this.recursive;
      const set = t.get(path) ?? new Set<Watcher>();
      t.set(path, set);
      set.add(watcher);
    });
  }

  async removeWatches(
    path: string,
    kind: "data" | "child" | "persistent" | "persistentRecursive" | "any" = "any",
  ): Promise<void> {
    await this.read({ type: "removeWatches", path, kind }, () => {
      if (kind === "data" || kind === "any") {
        this.oneShot.data.delete(path);
        this.oneShot.exist.delete(path);
      }
      if (kind === "child" || kind === "any") this.oneShot.child.delete(path);
      if (kind === "persistent" || kind === "any") this.persistent.delete(path);
      if (kind === "persistentRecursive" || kind === "any") this.recursive.delete(path);
    });
  }

  /** Ends the session (its ephemeral nodes go) and the connection. */
  async close(): Promise<void> {
    if (this.closing) return;
    if (this.stateV !== "Expired" && this.stateV !== "Closed") {
      try {
        await Promise.race([
          this.write({ kind: OpKind.CLOSE_SESSION }),
          new Promise((r) => setTimeout(r, this.timeoutMsV)),
        ]);
      } catch {
        // expired meanwhile
      }
    }
    this.shutdown("Closed", new CoordError("SESSIONEXPIRED", "the client was closed"));
  }

  /** Drops the connection without ending the session (tests: simulate a network failure). */
  disconnect(): void {
    this.ws?.close(4002, "client-side disconnect");
  }

  // ------------------------------------------------------------------ requests

  private write(body: OpBody, path?: string): Promise<Record<string, unknown>> {
    if (this.stateV === "Expired" || this.stateV === "Closed")
      return Promise.reject(new CoordError("SESSIONEXPIRED", "the session ended", path));
    const problem = this.validate(body);
    if (problem) return Promise.reject(new CoordError("BADARGUMENTS", problem, path));
    return new Promise((resolve, reject) => {
      const go = () => {
        this.writesOut++;
        const cxid = this.nextCxid++;
        const payload = encodeOp({ sessionId: this.sessionIdV, cxid, body });
        const done = () => {
          this.writesOut--;
          this.backlog.shift()?.go();
        };
        this.sealLater(payload, (sig, proof) => {
          if (this.stateV === "Expired" || this.stateV === "Closed") {
            done();
            reject(new CoordError("SESSIONEXPIRED", "the session ended", path));
            return;
          }
          const msg: Record<string, unknown> = {
            type: "write",
            id: this.nextId++,
            op: toBase64(payload),
            sig: toBase64(sig),
          };
          if (proof) msg.proof = { i: proof.index, n: proof.size, path: proof.path.map(toBase64) };
          this.request(
            msg,
            (m) => {
              done();
              const code = m.code as ZkCode;
              if (code !== "OK") {
                const e = new CoordError(code, `${code}${path ? ` for ${path}` : ""}`, path) as CoordError & {
                  results?: unknown;
                };
                if (m.results) e.results = m.results;
                reject(e);
              } else resolve(m);
            },
            (e) => {
              done();
              reject(e);
            },
            cxid,
          );
        });
      };
      if (this.writesOut < (this.o.maxOutstandingWrites ?? 128)) go();
      else this.backlog.push({ go, reject });
    });
  }

  /** Queues a numbered write for signing at the end of this turn, with whatever else is issued in it. */
  private sealLater(payload: Uint8Array, send: (sig: Uint8Array, proof?: BundleProof) => void): void {
    this.unsigned.push({ payload, send });
    if (this.sealScheduled) return;
    this.sealScheduled = true;
    // After the I/O events of this turn (several answers read together each start a write), not after
    // the current microtasks: every write issued in this turn goes into one bundle.
    afterIo(() => this.sealPending());
  }

  /** Signs the queued writes (in cxid order): alone, or in bundles of up to BUNDLE_OPS_MAX. */
  private sealPending(): void {
    this.sealScheduled = false;
    const all = this.unsigned;
    this.unsigned = [];
    const per = this.o.bundleWrites === false ? 1 : BUNDLE_OPS_MAX;
    for (let i = 0; i < all.length; i += per) {
      const chunk = all.slice(i, i + per);
      if (chunk.length === 1) {
        const w = chunk[0] as (typeof all)[number];
        w.send(this.signer.sign(this.key.privateKey, opSigningBytes(w.payload)));
        continue;
      }
      const { root, proofs } = bundle(chunk.map((w) => w.payload));
      const sig = this.signer.sign(this.key.privateKey, bundleSigningBytes(root));
      for (let j = 0; j < chunk.length; j++) (chunk[j] as (typeof all)[number]).send(sig, proofs[j]);
    }
  }

  /** Refuses locally what would be refused by the cluster without consuming a cxid on bad input. */
  private validate(body: OpBody): string | null {
    const check = (op: SubOp): string | null => {
      const p = pathProblem(op.path, op.kind === OpKind.CREATE && isSequentialMode(op.mode));
      if (p) return p;
      if ((op.kind === OpKind.CREATE || op.kind === OpKind.SET_DATA) && op.data.length > this.dataMax)
        return `data of ${op.data.length} bytes exceeds the cluster's limit of ${this.dataMax}`;
      return null;
    };
    if (body.kind === OpKind.MULTI) {
      for (const s of body.ops) {
        const p = check(s);
        if (p) return p;
      }
      return null;
    }
    if (body.kind === OpKind.SYNC) return pathProblem(body.path);
    if (
      body.kind === OpKind.CREATE ||
      body.kind === OpKind.DELETE ||
      body.kind === OpKind.SET_DATA ||
      body.kind === OpKind.CHECK
    )
      return check(body);
    return null;
  }

  private dataMax = 1024 * 1024;

  private read(
    msg: Record<string, unknown>,
    onReply?: (m: Record<string, unknown>) => void,
  ): Promise<Record<string, unknown>> {
    if (this.stateV === "Expired" || this.stateV === "Closed")
      return Promise.reject(new CoordError("SESSIONEXPIRED", "the session ended"));
    const path = msg.path as string | undefined;
    if (path !== undefined && pathProblem(path))
      return Promise.reject(new CoordError("BADARGUMENTS", pathProblem(path) as string, path));
    return new Promise((resolve, reject) => {
      this.request(
        { ...msg, id: this.nextId++ },
        (m) => {
          const code = m.code as ZkCode;
          if (code !== "OK") reject(new CoordError(code, `${code}${path ? ` for ${path}` : ""}`, path));
          else resolve(m);
        },
        reject,
        undefined,
        onReply,
      );
    });
  }

  private request(
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
        Math.max(2000, this.o.sessionTimeoutMs ?? 10_000),
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
      ws.onerror = () => fail(new CoordError("CONNECTIONLOSS", `cannot reach ${url}`));
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
          const nonce = hexToBytes(String(m.nonce ?? ""));
          if (fresh) {
            const payload = encodeOp({
              sessionId: 0,
              cxid: 0,
              body: {
                kind: OpKind.CREATE_SESSION,
                publicKey: this.key.publicKey,
                timeoutMs: this.o.sessionTimeoutMs ?? 10_000,
                nonce: crypto.getRandomValues(new Uint8Array(16)),
              },
            });
            const sig = this.signer.sign(this.key.privateKey, opSigningBytes(payload));
            ws.send(JSON.stringify({ type: "connect", id: 0, op: toBase64(payload), sig: toBase64(sig) }));
          } else {
            const sig = this.signer.sign(this.key.privateKey, resumeSigningBytes(this.sessionIdV, nonce));
            ws.send(
              JSON.stringify({
                type: "resume",
                id: 0,
                sessionId: this.sessionIdV,
                zxid: this.lastZxidV,
                sig: toBase64(sig),
              }),
            );
          }
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

  /** Re-registers watches, sends what is unanswered again (writes in cxid order), pings. */
  private afterConnect(fresh: boolean): void {
    if (!fresh) {
      const keys = (m: Map<string, Set<Watcher>>) => [...m.keys()];
      this.ws?.send(
        JSON.stringify({
          type: "setWatches",
          id: -1,
          relZxid: this.lastZxidV,
          data: keys(this.oneShot.data),
          exist: keys(this.oneShot.exist),
          child: keys(this.oneShot.child),
          persistent: keys(this.persistent),
          persistentRecursive: keys(this.recursive),
        }),
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
        this.deliver({ type: m.event as EventType, path: m.path as string, zxid: m.zxid as number });
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

  private addOneShot(kind: "data" | "exist" | "child", path: string, w: Watcher): void {
    const t = this.oneShot[kind];
    const set = t.get(path) ?? new Set<Watcher>();
    t.set(path, set);
    set.add(w);
  }

  /** One event: every one-shot watcher it concerns fires once and is forgotten; persistent ones stay. */
  private deliver(e: WatchedEvent): void {
    const fire = new Set<Watcher>();
    const take = (kind: "data" | "exist" | "child") => {
      const set = this.oneShot[kind].get(e.path);
      if (!set) return;
      this.oneShot[kind].delete(e.path);
      for (const w of set) fire.add(w);
    };
    if (e.type === "NodeChildrenChanged") take("child");
    else {
      take("data");
      take("exist");
      if (e.type === "NodeDeleted") take("child");
    }
    for (const w of this.persistent.get(e.path) ?? []) fire.add(w);
    if (e.type !== "NodeChildrenChanged")
      for (const p of selfAndAncestors(e.path)) for (const w of this.recursive.get(p) ?? []) fire.add(w);
    for (const w of fire) {
      try {
        w(e);
      } catch {
        // a watcher's failure is its own
      }
    }
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

  private shutdown(state: "Expired" | "Closed", err: CoordError): void {
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
