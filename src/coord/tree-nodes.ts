// The znodes of the tree and the operations on them: create (with sequential naming), delete, setData,
// check and multi (all or nothing, through undo steps), setACL and addAuth, and the bookkeeping of TTL
// nodes and containers. Each operation checks the caller's permission as ZooKeeper 3.8 does (acl.ts):
// create needs CREATE on the parent, delete DELETE on the parent, setData WRITE, check READ, setACL
// ADMIN; refused: NOAUTH.
// ZTree (tree.ts) builds on it with blocks, sessions, time and persistence; nothing here reads a clock.

import {
  type Acl,
  AUTH_IDS_MAX,
  aclProblem,
  addAuthSigningBytes,
  allowed,
  fixAcl,
  keyId,
  OPEN_ACL,
  Perms,
} from "./acl.ts";
import type { ZkCode } from "./errors.ts";
import { isEphemeralMode, isSequentialMode, isTtlMode, OpKind, type SubOp } from "./ops.ts";
import { nameOf, parentOf, pathProblem, sequenceSuffix } from "./path.ts";
import {
  type Effect,
  type OpResult,
  type Session,
  type Stat,
  TREE_DEFAULTS,
  type TreeConfig,
  TTL_MAX_MS,
  type VerifyFn,
  type ZNode,
} from "./tree-types.ts";

/** Steps that take back the changes of a multi's operations, run last to first when one fails. */
export type Undo = (() => void)[];

/** The znodes and sessions of the tree, and what operations do to the znodes. */
export abstract class ZNodes {
  readonly cfg: Required<TreeConfig>;
  protected readonly nodes = new Map<string, ZNode>();
  protected readonly sessions = new Map<number, Session>();
  protected readonly ttlNodes = new Set<string>();
  protected readonly containers = new Set<string>();
  /** The agreed time (ms since the epoch): ctime and mtime of the nodes changed now. */
  protected timeMsV = 0;
  protected dirtyNodes = new Set<string>();

  protected constructor(cfg: TreeConfig) {
    this.cfg = { ...TREE_DEFAULTS, ...cfg };
    this.nodes.set("/", newNode(new Uint8Array(0), 0, 0, 0, 0, 0));
  }

  get nodeCount(): number {
    return this.nodes.size;
  }

  get(path: string): ZNode | undefined {
    return this.nodes.get(path);
  }

  stat(path: string): Stat | undefined {
    const n = this.nodes.get(path);
    return n ? statOf(n) : undefined;
  }

  /** Children names, sorted. */
  children(path: string): string[] | undefined {
    const n = this.nodes.get(path);
    return n ? [...n.children].sort() : undefined;
  }

  // ------------------------------------------------------------------ TTL nodes and containers

  /** The agreed time at which a node is next due to go: now for an emptied container, or a TTL's end. */
  protected nodesDeadlineMs(): number {
    let at = Number.POSITIVE_INFINITY;
    for (const p of this.containers) {
      const n = this.nodes.get(p) as ZNode;
      if (n.cversion > 0 && n.children.size === 0) at = Math.min(at, this.timeMsV);
    }
    for (const p of this.ttlNodes) {
      const n = this.nodes.get(p) as ZNode;
      if (n.children.size === 0) at = Math.min(at, n.mtime + n.ttlMs + 1);
    }
    return at;
  }

  /** Emptied containers and childless TTL nodes past their TTL, sorted (each goes with its own zxid). */
  protected doomedNodes(): string[] {
    const doomed: string[] = [];
    for (const p of this.containers) {
      const n = this.nodes.get(p) as ZNode;
      if (n.cversion > 0 && n.children.size === 0) doomed.push(p);
    }
    for (const p of this.ttlNodes) {
      const n = this.nodes.get(p) as ZNode;
      if (n.children.size === 0 && this.timeMsV - n.mtime > n.ttlMs) doomed.push(p);
    }
    return doomed.sort();
  }

  // ------------------------------------------------------------------ operations

  /** A multi: every operation under one zxid, or none (the failed one's code, the rest rolled back). */
  protected applyMulti(s: Session, ops: readonly SubOp[], zxid: number, fx: Effect[]): OpResult {
    const undo: Undo = [];
    const local: Effect[] = [];
    const results: OpResult[] = [];
    let failed: ZkCode | null = null;
    for (const sub of ops) {
      if (failed) {
        results.push({ code: "RUNTIMEINCONSISTENCY" });
        continue;
      }
      const r = this.applySub(s, sub, zxid, undo, local);
      if (r.code !== "OK") {
        failed = r.code;
        for (let i = undo.length - 1; i >= 0; i--) (undo[i] as () => void)();
        for (let i = 0; i < results.length; i++) results[i] = { code: "OK" };
      }
      results.push(r);
    }
    if (failed) return { code: failed, results };
    fx.push(...local);
    return { code: "OK", results };
  }

  protected applySub(s: Session, op: SubOp, zxid: number, undo: Undo | null, fx: Effect[]): OpResult {
    switch (op.kind) {
      case OpKind.CREATE:
        return this.create(s, op, zxid, undo, fx);
      case OpKind.DELETE: {
        if (pathProblem(op.path) || op.path === "/") return { code: "BADARGUMENTS" };
        const parent = this.nodes.get(parentOf(op.path));
        if (!parent) return { code: "NONODE" };
        if (!allowed(parent.acl, Perms.DELETE, s)) return { code: "NOAUTH" };
        const n = this.nodes.get(op.path);
        if (!n) return { code: "NONODE" };
        if (op.version !== -1 && op.version !== n.version) return { code: "BADVERSION" };
        if (n.children.size > 0) return { code: "NOTEMPTY" };
        this.removeNode(op.path, zxid, undo, fx);
        return { code: "OK" };
      }
      case OpKind.SET_DATA: {
        if (pathProblem(op.path)) return { code: "BADARGUMENTS" };
        if (op.data.length > this.cfg.dataMaxBytes) return { code: "BADARGUMENTS" };
        const n = this.nodes.get(op.path);
        if (!n) return { code: "NONODE" };
        if (!allowed(n.acl, Perms.WRITE, s)) return { code: "NOAUTH" };
        if (op.version !== -1 && op.version !== n.version) return { code: "BADVERSION" };
        const before = { data: n.data, version: n.version, mzxid: n.mzxid, mtime: n.mtime };
        n.data = op.data;
        n.version++;
        n.mzxid = zxid;
        n.mtime = this.timeMsV;
        this.dirtyNodes.add(op.path);
        undo?.push(() => Object.assign(n, before));
        fx.push({ kind: "watch", zxid, type: "NodeDataChanged", path: op.path });
        return { code: "OK", stat: statOf(n) };
      }
      case OpKind.CHECK: {
        if (pathProblem(op.path)) return { code: "BADARGUMENTS" };
        const n = this.nodes.get(op.path);
        if (!n) return { code: "NONODE" };
        if (!allowed(n.acl, Perms.READ, s)) return { code: "NOAUTH" };
        if (op.version !== -1 && op.version !== n.version) return { code: "BADVERSION" };
        return { code: "OK" };
      }
    }
  }

  /**
   * addAuth: scheme "ed25519" adds the key whose signature over addAuthSigningBytes(this session) the
   * credential carries (raw publicKey[32] ‖ raw sig[64]); anything else is AUTHFAILED, as ZooKeeper
   * answers an unknown scheme or a bad credential (the session stays). Adding a key held already is OK.
   */
  protected addAuth(s: Session, scheme: string, credential: Uint8Array, verify: VerifyFn): OpResult {
    if (scheme !== "ed25519" || credential.length !== 32 + 64) return { code: "AUTHFAILED" };
    const key = credential.subarray(0, 32);
    if (!verify(key, addAuthSigningBytes(s.id, s.publicKey), credential.subarray(32)))
      return { code: "AUTHFAILED" };
    const id = keyId(new Uint8Array(key));
    if (id === keyId(s.publicKey) || s.auth.includes(id)) return { code: "OK" };
    if (s.auth.length >= AUTH_IDS_MAX) return { code: "BADARGUMENTS" };
    s.auth = Object.freeze([...s.auth, id]);
    this.dirtySession(s.id);
    return { code: "OK" };
  }

  /** The store must write this session again. */
  protected abstract dirtySession(id: number): void;

  /**
   * setACL: ADMIN on the node; `version` is the aversion expected (−1: any). Checked in ZooKeeper's
   * order: the path, the ACL (INVALIDACL), the node, the permission, the version.
   */
  protected setAcl(s: Session, path: string, acl: readonly Acl[], version: number): OpResult {
    if (pathProblem(path)) return { code: "BADARGUMENTS" };
    const fixed = aclProblem(acl) === null ? fixAcl(acl, s) : null;
    if (fixed === null) return { code: "INVALIDACL" };
    const n = this.nodes.get(path);
    if (!n) return { code: "NONODE" };
    if (!allowed(n.acl, Perms.ADMIN, s)) return { code: "NOAUTH" };
    if (version !== -1 && version !== n.aversion) return { code: "BADVERSION" };
    n.acl = fixed;
    n.aversion++;
    // As ZooKeeper: mzxid stays, and no watch fires.
    this.dirtyNodes.add(path);
    return { code: "OK", stat: statOf(n) };
  }

  private create(
    s: Session,
    op: Extract<SubOp, { kind: 4 }>,
    zxid: number,
    undo: Undo | null,
    fx: Effect[],
  ): OpResult {
    const sequential = isSequentialMode(op.mode);
    if (pathProblem(op.path, sequential)) return { code: "BADARGUMENTS" };
    if (isTtlMode(op.mode) ? op.ttlMs <= 0 || op.ttlMs > TTL_MAX_MS : op.ttlMs !== 0)
      return { code: "BADARGUMENTS" };
    if (op.data.length > this.cfg.dataMaxBytes) return { code: "BADARGUMENTS" };
    const acl = op.acl === undefined ? OPEN_ACL : aclProblem(op.acl) === null ? fixAcl(op.acl, s) : null;
    if (acl === null) return { code: "INVALIDACL" };
    if (op.path === "/") return { code: "NODEEXISTS" };
    const parentPath = parentOf(sequential ? `${op.path}1` : op.path);
    const parent = this.nodes.get(parentPath);
    if (!parent) return { code: "NONODE" };
    if (!allowed(parent.acl, Perms.CREATE, s)) return { code: "NOAUTH" };
    if (parent.ephemeralOwner !== 0) return { code: "NOCHILDRENFOREPHEMERALS" };
    const path = sequential ? op.path + sequenceSuffix(parent.cversion) : op.path;
    if (this.nodes.has(path)) return { code: "NODEEXISTS" };
    if (this.nodes.size >= this.cfg.nodesMax) return { code: "QUOTAEXCEEDED" };
    const owner = isEphemeralMode(op.mode) ? s.id : 0;
    const n = newNode(op.data, zxid, this.timeMsV, owner, op.mode, op.ttlMs, acl);
    this.nodes.set(path, n);
    const before = { cversion: parent.cversion, pzxid: parent.pzxid };
    parent.children.add(nameOf(path));
    parent.cversion++;
    parent.pzxid = zxid;
    if (owner !== 0) s.ephemerals.add(path);
    if (isTtlMode(op.mode)) this.ttlNodes.add(path);
    if (op.mode === 4) this.containers.add(path);
    this.dirtyNodes.add(path);
    this.dirtyNodes.add(parentPath);
    undo?.push(() => {
      this.nodes.delete(path);
      parent.children.delete(nameOf(path));
      Object.assign(parent, before);
      s.ephemerals.delete(path);
      this.ttlNodes.delete(path);
      this.containers.delete(path);
    });
    fx.push({ kind: "watch", zxid, type: "NodeCreated", path });
    fx.push({ kind: "watch", zxid, type: "NodeChildrenChanged", path: parentPath });
    return { code: "OK", path, stat: statOf(n) };
  }

  protected removeNode(path: string, zxid: number, undo: Undo | null, fx: Effect[]): void {
    const n = this.nodes.get(path) as ZNode;
    const parentPath = parentOf(path);
    const parent = this.nodes.get(parentPath) as ZNode;
    const before = { cversion: parent.cversion, pzxid: parent.pzxid };
    this.nodes.delete(path);
    parent.children.delete(nameOf(path));
    parent.cversion++;
    parent.pzxid = zxid;
    const owner = n.ephemeralOwner !== 0 ? this.sessions.get(n.ephemeralOwner) : undefined;
    owner?.ephemerals.delete(path);
    const wasTtl = this.ttlNodes.delete(path);
    const wasContainer = this.containers.delete(path);
    this.dirtyNodes.add(path);
    this.dirtyNodes.add(parentPath);
    undo?.push(() => {
      this.nodes.set(path, n);
      parent.children.add(nameOf(path));
      Object.assign(parent, before);
      owner?.ephemerals.add(path);
      if (wasTtl) this.ttlNodes.add(path);
      if (wasContainer) this.containers.add(path);
    });
    fx.push({ kind: "watch", zxid, type: "NodeDeleted", path });
    fx.push({ kind: "watch", zxid, type: "NodeChildrenChanged", path: parentPath });
  }
}

export function newNode(
  data: Uint8Array,
  zxid: number,
  time: number,
  owner: number,
  mode: number,
  ttlMs: number,
  acl: readonly Acl[] = OPEN_ACL,
): ZNode {
  return {
    data,
    czxid: zxid,
    mzxid: zxid,
    pzxid: zxid,
    ctime: time,
    mtime: time,
    version: 0,
    cversion: 0,
    ephemeralOwner: owner,
    mode,
    ttlMs,
    aversion: 0,
    acl,
    children: new Set(),
  };
}

export function statOf(n: ZNode): Stat {
  return {
    czxid: n.czxid,
    mzxid: n.mzxid,
    pzxid: n.pzxid,
    ctime: n.ctime,
    mtime: n.mtime,
    version: n.version,
    cversion: n.cversion,
    aversion: n.aversion,
    ephemeralOwner: n.ephemeralOwner,
    dataLength: n.data.length,
    numChildren: n.children.size,
  };
}
