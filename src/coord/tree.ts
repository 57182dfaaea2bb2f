// The znode tree: a pure, deterministic state machine fed by the ledger's coordination entries, with
// ZooKeeper 3.8 semantics (docs/coord-protocol.md lists where we differ and why).
//
// Every correct replica applies the same blocks in the same order and ends in the same state: no
// clocks, no randomness, no I/O. Signature checks come in as a function.
//
// zxid = block × 2^21 + index of the operation in the block (1, 2, …): monotone, from the order.
// Time: each entry carries its proposer's wall clock; the tree keeps the latest clock of every
// replica and its time is the (f+1)-th highest of them, never going back. At least one correct
// replica's clock is at or past it, so a Byzantine replica can neither push time forward nor hold it
// back on its own. Session expiry runs on a session clock that follows the tree's time but advances at
// most `clockStepMaxMs` per block, so a cluster that could not order anything for a while (a view
// change, an outage) does not expire every session the moment it resumes.

import { toHex } from "../bft/bytes.ts";
import type { ZkCode } from "./errors.ts";
import {
  type CoordEntry,
  decodeEntry,
  decodeOp,
  type HashFn,
  isEphemeralMode,
  isSequentialMode,
  isTtlMode,
  type OpBody,
  OpKind,
  type SignedOp,
  type SubOp,
  verifySignedOp,
} from "./ops.ts";
import { nameOf, parentOf, pathProblem, sequenceSuffix } from "./path.ts";

export const ZXID_PER_BLOCK = 2 ** 21;
/** ZooKeeper's largest TTL (2^40 - 1 ms). */
export const TTL_MAX_MS = 2 ** 40 - 1;

export const zxidOf = (block: number, index: number): number => block * ZXID_PER_BLOCK + index;
export const blockOfZxid = (zxid: number): number => Math.floor(zxid / ZXID_PER_BLOCK);

export interface TreeConfig {
  /** Replicas and tolerated faults: time is the (f+1)-th highest replica clock. */
  readonly n: number;
  readonly f: number;
  /** Largest data of one znode (ZooKeeper's jute.maxbuffer default: 1 MiB). */
  readonly dataMaxBytes?: number;
  readonly nodesMax?: number;
  readonly sessionsMax?: number;
  readonly sessionTimeoutMinMs?: number;
  readonly sessionTimeoutMaxMs?: number;
  /** The session clock advances at most this much per block. */
  readonly clockStepMaxMs?: number;
  /** Expiry, TTL and container checks run when the session clock moved this far since the last. */
  readonly scanIntervalMs?: number;
  /** Results kept per session for retransmitted operations (a client's outstanding writes must fit). */
  readonly resultsKept?: number;
}

export const TREE_DEFAULTS = {
  dataMaxBytes: 1024 * 1024,
  nodesMax: 2_000_000,
  sessionsMax: 10_000,
  sessionTimeoutMinMs: 2_000,
  sessionTimeoutMaxMs: 120_000,
  clockStepMaxMs: 1_000,
  scanIntervalMs: 100,
  resultsKept: 128,
} as const;

export interface Stat {
  readonly czxid: number;
  readonly mzxid: number;
  readonly pzxid: number;
  readonly ctime: number;
  readonly mtime: number;
  readonly version: number;
  readonly cversion: number;
  readonly aversion: number;
  readonly ephemeralOwner: number;
  readonly dataLength: number;
  readonly numChildren: number;
}

export interface ZNode {
  data: Uint8Array;
  czxid: number;
  mzxid: number;
  pzxid: number;
  ctime: number;
  mtime: number;
  version: number;
  cversion: number;
  ephemeralOwner: number;
  /** CreateMode value. */
  mode: number;
  ttlMs: number;
  readonly children: Set<string>;
}

export interface Session {
  readonly id: number;
  readonly publicKey: Uint8Array;
  readonly timeoutMs: number;
  lastCxid: number;
  pingSeq: number;
  /** Session-clock time after which the session expires. */
  deadline: number;
  readonly ephemerals: Set<string>;
  /** Results of the latest operations, by cxid (answers to retransmissions). */
  readonly results: Map<number, OpResult>;
}

export interface OpResult {
  readonly code: ZkCode;
  /** create: the created path (with its sequence suffix); sync: the path. */
  readonly path?: string;
  readonly stat?: Stat;
  /** multi: one result per operation. */
  readonly results?: readonly OpResult[];
  /** createSession */
  readonly sessionId?: number;
  readonly timeoutMs?: number;
}

export type WatchEventType = "NodeCreated" | "NodeDeleted" | "NodeDataChanged" | "NodeChildrenChanged";

export type Effect =
  /** A watch trigger, in order with the results. */
  | { readonly kind: "watch"; readonly zxid: number; readonly type: WatchEventType; readonly path: string }
  /** The outcome of a session's operation (duplicate: a retransmission answered from the kept result). */
  | {
      readonly kind: "result";
      readonly zxid: number;
      readonly proposer: number;
      readonly sessionId: number;
      readonly cxid: number;
      readonly opKind: number;
      readonly result: OpResult;
      readonly duplicate: boolean;
      /** createSession: the session key (hex), which is how the proposer finds the waiting client. */
      readonly keyHex?: string;
    }
  /** An operation that arrived before an earlier one of its session: its proposer proposes it again. */
  | {
      readonly kind: "deferred";
      readonly proposer: number;
      readonly sessionId: number;
      readonly cxid: number;
    }
  | {
      readonly kind: "closed";
      readonly zxid: number;
      readonly sessionId: number;
      readonly reason: "closed" | "expired";
    };

/** What changed since the last takeChanges(), for the store. */
export interface TreeChanges {
  readonly nodes: ReadonlySet<string>;
  readonly sessions: ReadonlySet<number>;
  /** [sessionId, cxid, kept] — kept false: delete the result. */
  readonly results: readonly (readonly [number, number, boolean])[];
}

export type VerifyFn = (publicKey: Uint8Array, message: Uint8Array, sig: Uint8Array) => boolean;

type Undo = (() => void)[];

/** Persisted form of the tree's scalar state. */
export interface TreeMeta {
  readonly appliedBlock: number;
  readonly timeMs: number;
  readonly sessionClockMs: number;
  readonly lastScanMs: number;
  readonly clocks: readonly number[];
  readonly lastZxid: number;
}

export class ZTree {
  readonly cfg: Required<TreeConfig>;
  private readonly verify: VerifyFn;
  private readonly nodes = new Map<string, ZNode>();
  private readonly sessions = new Map<number, Session>();
  private readonly sessionByKey = new Map<string, number>();
  private readonly ttlNodes = new Set<string>();
  private readonly containers = new Set<string>();
  private clocks: number[];
  private timeMsV = 0;
  private sessionClockMs = 0;
  private lastScanMs = 0;
  private appliedBlockV = 0;
  private lastZxidV = 0;
  private block = 0;
  private index = 0;
  private dirtyNodes = new Set<string>();
  private dirtySessions = new Set<number>();
  private dirtyResults: [number, number, boolean][] = [];
  readonly stats = { badEntries: 0, badOps: 0, badSignatures: 0, deferred: 0, duplicates: 0 };

  /** SHA-256 for bundle proofs (default @noble/hashes). */
  private readonly hash: HashFn | undefined;

  constructor(cfg: TreeConfig, verify: VerifyFn, hash?: HashFn) {
    this.cfg = { ...TREE_DEFAULTS, ...cfg };
    this.verify = verify;
    this.hash = hash;
    this.clocks = new Array<number>(cfg.n).fill(0);
    this.nodes.set("/", newNode(new Uint8Array(0), 0, 0, 0, 0, 0));
  }

  // ------------------------------------------------------------------ reading

  /** The last block whose coordination entries are applied (0: only genesis). */
  get appliedBlock(): number {
    return this.appliedBlockV;
  }

  /** zxid of the last change (or of the last applied block's end when nothing changed since). */
  get lastZxid(): number {
    return this.lastZxidV;
  }

  /** Every zxid of blocks up to appliedBlock is visible: a client's read needs appliedZxid ≥ its zxid. */
  get appliedZxid(): number {
    return zxidOf(this.appliedBlockV + 1, 0) - 1;
  }

  /** The agreed time (ms since the epoch). */
  get timeMs(): number {
    return this.timeMsV;
  }

  get nodeCount(): number {
    return this.nodes.size;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /**
   * The agreed time (ms) at which time passing next changes the tree, or +Infinity: now for an emptied
   * container, the expiry of a childless TTL node, and, while sessions exist, now (a session's deadline
   * is on the session clock, which advances at most clockStepMaxMs per block, so its blocks must keep
   * coming at a steady pace while any session lives). Cached until the next block is applied.
   */
  timeDeadlineMs(): number {
    if (this.deadlineCache?.block === this.appliedBlockV) return this.deadlineCache.at;
    let at = Number.POSITIVE_INFINITY;
    if (this.sessions.size > 0) at = this.timeMsV;
    else {
      for (const p of this.containers) {
        const n = this.nodes.get(p) as ZNode;
        if (n.cversion > 0 && n.children.size === 0) at = Math.min(at, this.timeMsV);
      }
      for (const p of this.ttlNodes) {
        const n = this.nodes.get(p) as ZNode;
        if (n.children.size === 0) at = Math.min(at, n.mtime + n.ttlMs + 1);
      }
    }
    this.deadlineCache = { block: this.appliedBlockV, at };
    return at;
  }

  private deadlineCache: { block: number; at: number } | null = null;

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

  session(id: number): Session | undefined {
    return this.sessions.get(id);
  }

  sessionIds(): number[] {
    return [...this.sessions.keys()];
  }

  /** The clock each replica last reported through the order. */
  replicaClock(id: number): number {
    return this.clocks[id] ?? 0;
  }

  // ------------------------------------------------------------------ applying

  /**
   * Applies one block's coordination entries (bytes as in the block, in order). A block at or below
   * appliedBlock is ignored (replay after restart). Returns the effects in order.
   */
  applyBlock(number: number, entries: readonly Uint8Array[]): Effect[] {
    const fx: Effect[] = [];
    if (number <= this.appliedBlockV) return fx;
    this.block = number;
    this.index = 0;
    const timeBefore = this.timeMsV;
    for (const bytes of entries) {
      let e: CoordEntry;
      try {
        e = decodeEntry(bytes);
      } catch {
        this.stats.badEntries++;
        continue;
      }
      if (e.proposer >= this.cfg.n) {
        this.stats.badEntries++;
        continue;
      }
      this.observeClock(e.proposer, e.clockMs);
      for (const so of e.ops) this.applySigned(e.proposer, so, fx);
    }
    this.sessionClockMs += Math.min(this.timeMsV - timeBefore, this.cfg.clockStepMaxMs);
    if (this.sessionClockMs >= this.lastScanMs + this.cfg.scanIntervalMs) {
      this.lastScanMs = this.sessionClockMs;
      this.scan(fx);
    }
    this.appliedBlockV = number;
    return fx;
  }

  private observeClock(proposer: number, clockMs: number): void {
    if (clockMs <= (this.clocks[proposer] as number)) return;
    this.clocks[proposer] = clockMs;
    const sorted = [...this.clocks].sort((a, b) => b - a);
    const t = sorted[this.cfg.f] as number;
    if (t > this.timeMsV) this.timeMsV = t;
  }

  private nextZxid(): number | undefined {
    if (this.index + 1 >= ZXID_PER_BLOCK) return undefined;
    this.index++;
    this.lastZxidV = zxidOf(this.block, this.index);
    return this.lastZxidV;
  }

  private applySigned(proposer: number, so: SignedOp, fx: Effect[]): void {
    let op: ReturnType<typeof decodeOp>;
    try {
      op = decodeOp(so.payload, this.cfg.dataMaxBytes + 1);
    } catch {
      this.stats.badOps++;
      return;
    }
    const b = op.body;
    const base = { proposer, sessionId: op.sessionId, cxid: op.cxid, opKind: b.kind, duplicate: false };
    if (b.kind === OpKind.CREATE_SESSION) {
      if (op.sessionId !== 0 || !verifySignedOp(this.verify, b.publicKey, so, this.hash)) {
        this.stats.badSignatures++;
        return;
      }
      const keyHex = toHex(b.publicKey);
      const existing = this.sessionByKey.get(keyHex);
      const known = existing === undefined ? undefined : this.sessions.get(existing);
      if (known) {
        this.touch(known);
        fx.push({
          kind: "result",
          ...base,
          zxid: this.lastZxidV,
          keyHex,
          duplicate: true,
          result: { code: "OK", sessionId: known.id, timeoutMs: known.timeoutMs },
        });
        return;
      }
      if (this.sessions.size >= this.cfg.sessionsMax) {
        fx.push({ kind: "result", ...base, zxid: this.lastZxidV, keyHex, result: { code: "THROTTLEDOP" } });
        return;
      }
      const zxid = this.nextZxid();
      if (zxid === undefined) return;
      const timeoutMs = Math.min(
        Math.max(b.timeoutMs, this.cfg.sessionTimeoutMinMs),
        this.cfg.sessionTimeoutMaxMs,
      );
      const s: Session = {
        id: zxid,
        publicKey: b.publicKey,
        timeoutMs,
        lastCxid: 0,
        pingSeq: 0,
        deadline: 0,
        ephemerals: new Set(),
        results: new Map(),
      };
      this.sessions.set(zxid, s);
      this.sessionByKey.set(keyHex, zxid);
      this.touch(s);
      fx.push({ kind: "result", ...base, zxid, keyHex, result: { code: "OK", sessionId: zxid, timeoutMs } });
      return;
    }
    const s = this.sessions.get(op.sessionId);
    if (!s) {
      // Unknown or expired: no key to check the signature with; the answer reveals nothing new.
      if (b.kind !== OpKind.PING)
        fx.push({ kind: "result", ...base, zxid: this.lastZxidV, result: { code: "SESSIONEXPIRED" } });
      return;
    }
    if (!verifySignedOp(this.verify, s.publicKey, so, this.hash)) {
      this.stats.badSignatures++;
      return;
    }
    if (b.kind === OpKind.PING) {
      if (op.cxid > s.pingSeq) {
        s.pingSeq = op.cxid;
        this.touch(s);
      }
      return;
    }
    if (op.cxid <= s.lastCxid) {
      this.stats.duplicates++;
      const kept = s.results.get(op.cxid);
      fx.push({
        kind: "result",
        ...base,
        zxid: this.lastZxidV,
        duplicate: true,
        result: kept ?? { code: "RUNTIMEINCONSISTENCY" },
      });
      return;
    }
    if (op.cxid !== s.lastCxid + 1) {
      this.stats.deferred++;
      fx.push({ kind: "deferred", proposer, sessionId: s.id, cxid: op.cxid });
      return;
    }
    const zxid = this.nextZxid();
    if (zxid === undefined) {
      this.stats.deferred++;
      fx.push({ kind: "deferred", proposer, sessionId: s.id, cxid: op.cxid });
      return;
    }
    s.lastCxid = op.cxid;
    this.touch(s);
    const result = this.execute(s, b, zxid, fx);
    if (b.kind !== OpKind.CLOSE_SESSION) this.keepResult(s, op.cxid, result);
    fx.push({ kind: "result", ...base, zxid, result });
    if (b.kind === OpKind.CLOSE_SESSION) fx.push({ kind: "closed", zxid, sessionId: s.id, reason: "closed" });
  }

  private keepResult(s: Session, cxid: number, r: OpResult): void {
    s.results.set(cxid, r);
    this.dirtyResults.push([s.id, cxid, true]);
    const old = cxid - this.cfg.resultsKept;
    if (s.results.delete(old)) this.dirtyResults.push([s.id, old, false]);
  }

  private touch(s: Session): void {
    s.deadline = this.sessionClockMs + s.timeoutMs;
    this.dirtySessions.add(s.id);
  }

  private execute(s: Session, b: OpBody, zxid: number, fx: Effect[]): OpResult {
    switch (b.kind) {
      case OpKind.CLOSE_SESSION:
        // Announced after the result, so the client gets its answer before the connection closes.
        this.closeSession(s, zxid, "closed", fx, false);
        return { code: "OK" };
      case OpKind.SYNC: {
        const bad = pathProblem(b.path);
        return bad ? { code: "BADARGUMENTS" } : { code: "OK", path: b.path };
      }
      case OpKind.MULTI: {
        const undo: Undo = [];
        const local: Effect[] = [];
        const results: OpResult[] = [];
        let failed: ZkCode | null = null;
        for (const sub of b.ops) {
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
      case OpKind.CREATE:
      case OpKind.DELETE:
      case OpKind.SET_DATA:
      case OpKind.CHECK:
        return this.applySub(s, b, zxid, null, fx);
      default:
        return { code: "UNIMPLEMENTED" };
    }
  }

  private applySub(s: Session, op: SubOp, zxid: number, undo: Undo | null, fx: Effect[]): OpResult {
    switch (op.kind) {
      case OpKind.CREATE:
        return this.create(s, op, zxid, undo, fx);
      case OpKind.DELETE: {
        if (pathProblem(op.path) || op.path === "/") return { code: "BADARGUMENTS" };
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
        if (op.version !== -1 && op.version !== n.version) return { code: "BADVERSION" };
        return { code: "OK" };
      }
    }
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
    if (op.path === "/") return { code: "NODEEXISTS" };
    const parentPath = parentOf(sequential ? `${op.path}1` : op.path);
    const parent = this.nodes.get(parentPath);
    if (!parent) return { code: "NONODE" };
    if (parent.ephemeralOwner !== 0) return { code: "NOCHILDRENFOREPHEMERALS" };
    const path = sequential ? op.path + sequenceSuffix(parent.cversion) : op.path;
    if (this.nodes.has(path)) return { code: "NODEEXISTS" };
    if (this.nodes.size >= this.cfg.nodesMax) return { code: "QUOTAEXCEEDED" };
    const owner = isEphemeralMode(op.mode) ? s.id : 0;
    const n = newNode(op.data, zxid, this.timeMsV, owner, op.mode, op.ttlMs);
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

  private removeNode(path: string, zxid: number, undo: Undo | null, fx: Effect[]): void {
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

  /** One zxid for the whole close (as ZooKeeper's closeSession txn): every ephemeral goes with it. */
  private closeSession(
    s: Session,
    zxid: number,
    reason: "closed" | "expired",
    fx: Effect[],
    announce = true,
  ): void {
    for (const p of [...s.ephemerals].sort()) this.removeNode(p, zxid, null, fx);
    this.sessions.delete(s.id);
    this.sessionByKey.delete(toHex(s.publicKey));
    for (const cxid of s.results.keys()) this.dirtyResults.push([s.id, cxid, false]);
    this.dirtySessions.add(s.id);
    if (announce) fx.push({ kind: "closed", zxid, sessionId: s.id, reason });
  }

  /** Expired sessions, then TTL nodes past their TTL and emptied containers (each change its own zxid). */
  private scan(fx: Effect[]): void {
    const expired = [...this.sessions.values()]
      .filter((s) => s.deadline < this.sessionClockMs)
      .sort((a, b) => a.id - b.id);
    for (const s of expired) {
      const zxid = this.nextZxid();
      if (zxid === undefined) return;
      this.closeSession(s, zxid, "expired", fx);
    }
    const doomed: string[] = [];
    for (const p of this.containers) {
      const n = this.nodes.get(p) as ZNode;
      if (n.cversion > 0 && n.children.size === 0) doomed.push(p);
    }
    for (const p of this.ttlNodes) {
      const n = this.nodes.get(p) as ZNode;
      if (n.children.size === 0 && this.timeMsV - n.mtime > n.ttlMs) doomed.push(p);
    }
    for (const p of doomed.sort()) {
      const zxid = this.nextZxid();
      if (zxid === undefined) return;
      this.removeNode(p, zxid, null, fx);
    }
  }

  // ------------------------------------------------------------------ persistence support

  /** Nodes, sessions and results changed since the last call. */
  takeChanges(): TreeChanges {
    const c = { nodes: this.dirtyNodes, sessions: this.dirtySessions, results: this.dirtyResults };
    this.dirtyNodes = new Set();
    this.dirtySessions = new Set();
    this.dirtyResults = [];
    return c;
  }

  meta(): TreeMeta {
    return {
      appliedBlock: this.appliedBlockV,
      timeMs: this.timeMsV,
      sessionClockMs: this.sessionClockMs,
      lastScanMs: this.lastScanMs,
      clocks: [...this.clocks],
      lastZxid: this.lastZxidV,
    };
  }

  /** Restores the tree from stored records: meta, then nodes (any order), sessions, results. */
  restore(
    meta: TreeMeta,
    nodes: Iterable<readonly [string, Omit<ZNode, "children">]>,
    sessions: Iterable<Omit<Session, "ephemerals" | "results">>,
    results: Iterable<readonly [number, number, OpResult]>,
  ): void {
    this.deadlineCache = null;
    this.appliedBlockV = meta.appliedBlock;
    this.timeMsV = meta.timeMs;
    this.sessionClockMs = meta.sessionClockMs;
    this.lastScanMs = meta.lastScanMs;
    this.clocks = [...meta.clocks];
    this.lastZxidV = meta.lastZxid;
    this.nodes.clear();
    this.sessions.clear();
    this.sessionByKey.clear();
    this.ttlNodes.clear();
    this.containers.clear();
    for (const [path, rec] of nodes) this.nodes.set(path, { ...rec, children: new Set() });
    if (!this.nodes.has("/")) this.nodes.set("/", newNode(new Uint8Array(0), 0, 0, 0, 0, 0));
    for (const s of sessions) {
      this.sessions.set(s.id, { ...s, ephemerals: new Set(), results: new Map() });
      this.sessionByKey.set(toHex(s.publicKey), s.id);
    }
    for (const [path, n] of this.nodes) {
      if (path === "/") continue;
      const parent = this.nodes.get(parentOf(path));
      if (!parent) throw new Error(`znode ${path} has no parent in the store`);
      parent.children.add(nameOf(path));
      if (n.ephemeralOwner !== 0) this.sessions.get(n.ephemeralOwner)?.ephemerals.add(path);
      if (isTtlMode(n.mode)) this.ttlNodes.add(path);
      if (n.mode === 4) this.containers.add(path);
    }
    for (const [sid, cxid, r] of results) this.sessions.get(sid)?.results.set(cxid, r);
    this.takeChanges();
  }

  /** A canonical dump of the replicated state (tests compare replicas with it). */
  dump(): string {
    const nodes = [...this.nodes.keys()].sort().map((p) => {
      const n = this.nodes.get(p) as ZNode;
      return [p, toHex(n.data), statOf(n), n.mode, n.ttlMs];
    });
    const sessions = [...this.sessions.values()]
      .sort((a, b) => a.id - b.id)
      .map((s) => [s.id, toHex(s.publicKey), s.timeoutMs, s.lastCxid, s.pingSeq, s.deadline]);
    return JSON.stringify({ meta: this.meta(), nodes, sessions });
  }
}

function newNode(
  data: Uint8Array,
  zxid: number,
  time: number,
  owner: number,
  mode: number,
  ttlMs: number,
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
    aversion: 0,
    ephemeralOwner: n.ephemeralOwner,
    dataLength: n.data.length,
    numChildren: n.children.size,
  };
}
