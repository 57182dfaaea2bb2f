// A client of the coordination service (Node and browsers), with a promise API close to the common
// ZooKeeper clients: create / getData / setData / getChildren / exists / delete / multi / sync / setACL /
// getACL, one-shot
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

//
// Beside this file: client-options.ts (options and types), client-connection.ts (the connection, its
// session and request tracking), client-watches.ts (the watchers). No Node built-in in any of them.

import { fromBase64, toBase64 } from "../ordering/block.ts";
import { withDefaults } from "../util/defaults.ts";
import { type Acl, aclProblem, addAuthSigningBytes, keyId, OPEN_ACL, Perms } from "./acl.ts";
import { CoordConnection } from "./client-connection.ts";
import type { CoordClientOptions, MultiOp, MultiResult, Watcher } from "./client-options.ts";
import { CoordError, type ZkCode } from "./errors.ts";
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
  type SubOp,
} from "./ops.ts";
import { pathProblem } from "./path.ts";
import type { Stat } from "./tree.ts";

export {
  COORD_CLIENT_DEFAULTS,
  type CoordClientOptions,
  type EventType,
  type MultiOp,
  type MultiResult,
  nobleSigner,
  type SessionState,
  type Signer,
  type WatchedEvent,
  type Watcher,
} from "./client-options.ts";
export type { Stat } from "./tree.ts";
export { type Acl, CoordError, CreateMode, OPEN_ACL, Perms };

const TEXT = new TextEncoder();
/** setImmediate where there is one (Node), else a zero timeout (browsers). */
const afterIo: (f: () => void) => void =
  typeof globalThis.setImmediate === "function" ? (f) => globalThis.setImmediate(f) : (f) => setTimeout(f, 0);
const bytesOf = (d: Uint8Array | string | undefined): Uint8Array =>
  d === undefined ? new Uint8Array(0) : typeof d === "string" ? TEXT.encode(d) : d;

/**
 * The defaults of a write's optional arguments: a persistent node, no TTL, ZooKeeper's OPEN_ACL_UNSAFE
 * (world:anyone, every permission), any version (-1).
 */
export const WRITE_DEFAULTS = Object.freeze({
  mode: CreateMode.PERSISTENT,
  ttlMs: 0,
  acl: OPEN_ACL,
  version: -1,
});

export class CoordClient extends CoordConnection {
  private nextId = 1;
  private nextCxid = 1;
  private writesOut = 0;
  /** Writes numbered but not yet signed: signed together at the end of this turn (sealPending). */
  private unsigned: { payload: Uint8Array; send: (sig: Uint8Array, proof?: BundleProof) => void }[] = [];
  private sealScheduled = false;

  private constructor(o: CoordClientOptions) {
    super(o);
  }

  /** Opens a new session through one of the replicas. */
  static async connect(o: CoordClientOptions): Promise<CoordClient> {
    if (o.urls.length === 0) throw new CoordError("BADARGUMENTS", "no replica URLs");
    const c = new CoordClient(o);
    await c.begin();
    return c;
  }

  // ------------------------------------------------------------------ the ZooKeeper API

  async create(
    path: string,
    data?: Uint8Array | string,
    opts: { mode?: CreateModeValue; ttlMs?: number; acl?: readonly Acl[] } = {},
  ): Promise<string> {
    const { mode, ttlMs, acl } = withDefaults(WRITE_DEFAULTS, opts);
    const r = await this.write({ kind: OpKind.CREATE, path, data: bytesOf(data), mode, ttlMs, acl }, path);
    return r.path as string;
  }

  /**
   * Replaces a node's ACL (needs ADMIN on it); `version` is the ACL version expected (stat.aversion, -1:
   * any). An `auth` entry stands for this session's key. Returns the new stat.
   */
  async setACL(path: string, acl: readonly Acl[], version: number = WRITE_DEFAULTS.version): Promise<Stat> {
    const r = await this.write({ kind: OpKind.SET_ACL, path, acl, version }, path);
    return r.stat as Stat;
  }

  /** A node's ACL and stat (needs READ or ADMIN on it). */
  async getACL(path: string, opts: { linearizable?: boolean } = {}): Promise<{ acl: Acl[]; stat: Stat }> {
    if (opts.linearizable) await this.sync(path);
    const r = await this.read({ type: "getACL", path });
    return { acl: r.acl as Acl[], stat: r.stat as Stat };
  }

  /**
   * ZooKeeper's addAuth, ordered: from now on this session also holds the identity `ed25519:<hex of
   * key.publicKey>` (the only scheme; `key` signs a proof bound to this session, so the copy the ledger
   * keeps is worth nothing to another). Throws AUTHFAILED for another scheme.
   */
  async addAuth(scheme: "ed25519", key: { publicKey: Uint8Array; privateKey: Uint8Array }): Promise<void> {
    const sig = this.signer.sign(key.privateKey, addAuthSigningBytes(this.sessionIdV, this.key.publicKey));
    const credential = new Uint8Array(key.publicKey.length + sig.length);
    credential.set(key.publicKey);
    credential.set(sig, key.publicKey.length);
    await this.write({ kind: OpKind.ADD_AUTH, scheme, credential });
  }

  /** This session's ed25519 identity: `{ scheme: "ed25519", id }` names it in an ACL. */
  get aclId(): string {
    return keyId(this.key.publicKey);
  }

  async delete(path: string, version: number = WRITE_DEFAULTS.version): Promise<void> {
    await this.write({ kind: OpKind.DELETE, path, version }, path);
  }

  async setData(
    path: string,
    data: Uint8Array | string,
    version: number = WRITE_DEFAULTS.version,
  ): Promise<Stat> {
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
            mode: op.mode ?? WRITE_DEFAULTS.mode,
            ttlMs: op.ttlMs ?? WRITE_DEFAULTS.ttlMs,
            acl: op.acl ?? WRITE_DEFAULTS.acl,
          };
        case "delete":
          return { kind: OpKind.DELETE, path: op.path, version: op.version ?? WRITE_DEFAULTS.version };
        case "setData":
          return {
            kind: OpKind.SET_DATA,
            path: op.path,
            data: bytesOf(op.data),
            version: op.version ?? WRITE_DEFAULTS.version,
          };
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
      if (m.code === "OK" && opts.watch) this.watches.addOneShot("data", path, opts.watch);
    });
    return { data: fromBase64(r.data as string), stat: r.stat as Stat };
  }

  async exists(path: string, opts: { watch?: Watcher; linearizable?: boolean } = {}): Promise<Stat | null> {
    if (opts.linearizable) await this.sync(path);
    const r = await this.read({ type: "exists", path, watch: !!opts.watch }, (m) => {
      if (m.code === "OK" && opts.watch) this.watches.addOneShot(m.stat ? "data" : "exist", path, opts.watch);
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
      if (m.code === "OK" && opts.watch) this.watches.addOneShot("child", path, opts.watch);
    });
    return { children: r.children as string[], stat: r.stat as Stat };
  }

  /** ZooKeeper 3.6 addWatch: a watch that stays until removed (recursive: the whole subtree). */
  async addWatch(path: string, mode: "persistent" | "persistentRecursive", watcher: Watcher): Promise<void> {
    await this.read({ type: "addWatch", path, mode }, (m) => {
      if (m.code === "OK") this.watches.addPersistent(mode, path, watcher);
    });
  }

  async removeWatches(
    path: string,
    kind: "data" | "child" | "persistent" | "persistentRecursive" | "any" = "any",
  ): Promise<void> {
    await this.read({ type: "removeWatches", path, kind }, () => this.watches.remove(path, kind));
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

  // ------------------------------------------------------------------ requests

  private write(body: OpBody, path?: string): Promise<Record<string, unknown>> {
    if (this.stateV === "Expired" || this.stateV === "Closed")
      return Promise.reject(new CoordError("SESSIONEXPIRED", "the session ended", path));
    const problem = this.validate(body);
    if (problem) return Promise.reject(new CoordError("BADARGUMENTS", problem, path));
    const aclBad = badAcl(body);
    if (aclBad) return Promise.reject(new CoordError("INVALIDACL", aclBad, path));
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
      if (this.writesOut < this.o.maxOutstandingWrites) go();
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
    const per = this.o.bundleWrites ? BUNDLE_OPS_MAX : 1;
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
    if (body.kind === OpKind.SYNC || body.kind === OpKind.SET_ACL) return pathProblem(body.path);
    if (
      body.kind === OpKind.CREATE ||
      body.kind === OpKind.DELETE ||
      body.kind === OpKind.SET_DATA ||
      body.kind === OpKind.CHECK
    )
      return check(body);
    return null;
  }

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
}

/** What is wrong with the ACL lists of a write, or null (refused locally, as the cluster would). */
function badAcl(body: OpBody): string | null {
  const subs = body.kind === OpKind.MULTI ? body.ops : [body];
  for (const op of subs) {
    const acl = op.kind === OpKind.CREATE || op.kind === OpKind.SET_ACL ? op.acl : undefined;
    const p = acl === undefined ? null : aclProblem(acl);
    if (p) return p;
  }
  return null;
}
