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
//
// Beside this file: tree-types.ts (the data, configuration and zxids), tree-nodes.ts (the znodes and the
// operations on them, TTL nodes and containers).

import { toHex } from "../bft/bytes.ts";
import { aclRecord } from "./acl.ts";
import {
  type CoordEntry,
  decodeEntry,
  decodeOp,
  type HashFn,
  isTtlMode,
  type Op,
  type OpBody,
  OpKind,
  type SignedOp,
  verifySignedOp,
} from "./ops.ts";
import { nameOf, parentOf, pathProblem } from "./path.ts";
import { newNode, statOf, ZNodes } from "./tree-nodes.ts";
import {
  type Effect,
  type OpResult,
  type Session,
  type TreeChanges,
  type TreeConfig,
  type TreeMeta,
  type VerifyFn,
  type ZNode,
  ZXID_PER_BLOCK,
  zxidOf,
} from "./tree-types.ts";

export { statOf } from "./tree-nodes.ts";
export {
  blockOfZxid,
  type Effect,
  type OpResult,
  type Session,
  type Stat,
  TREE_DEFAULTS,
  type TreeChanges,
  type TreeConfig,
  type TreeMeta,
  TTL_MAX_MS,
  type VerifyFn,
  type WatchEventType,
  type ZNode,
  ZXID_PER_BLOCK,
  zxidOf,
} from "./tree-types.ts";

/** The fields every result effect of one operation shares. */
type ResultBase = {
  readonly proposer: number;
  readonly sessionId: number;
  readonly cxid: number;
  readonly opKind: number;
  readonly duplicate: boolean;
};

/** The replicated state machine: blocks, the agreed clock, sessions and persistence, over ZNodes (tree-nodes.ts). */
export class ZTree extends ZNodes {
  private readonly verify: VerifyFn;
  private readonly sessionByKey = new Map<string, number>();
  private clocks: number[];
  private sessionClockMs = 0;
  private lastScanMs = 0;
  private appliedBlockV = 0;
  private lastZxidV = 0;
  private block = 0;
  private index = 0;
  private dirtySessions = new Set<number>();
  private dirtyResults: [number, number, boolean][] = [];
  readonly stats = {
    badEntries: 0,
    badOps: 0,
    badSignatures: 0,
    deferred: 0,
    duplicates: 0,
    /** createSessions in an entry of another replica than the one they name. */
    misdirected: 0,
  };

  /** SHA-256 for bundle proofs (default @noble/hashes). */
  private readonly hash: HashFn | undefined;

  constructor(cfg: TreeConfig, verify: VerifyFn, hash?: HashFn) {
    super(cfg);
    this.verify = verify;
    this.hash = hash;
    this.clocks = new Array<number>(cfg.n).fill(0);
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
    const at = this.sessions.size > 0 ? this.timeMsV : this.nodesDeadlineMs();
    this.deadlineCache = { block: this.appliedBlockV, at };
    return at;
  }

  private deadlineCache: { block: number; at: number } | null = null;

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
      this.applyCreateSession(so, op, b, base, fx);
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

  /**
   * A createSession: a new session, or the existing one of the same key (the client lost its connection
   * before the answer and asks again through another replica). It counts only in an entry of the replica
   * it names (the one whose challenge it signed), and it never refreshes an existing session: a copy
   * taken from the chain is worth nothing (service-sessions.ts has the whole argument).
   */
  private applyCreateSession(
    so: SignedOp,
    op: Op,
    b: Extract<OpBody, { kind: 1 }>,
    base: ResultBase,
    fx: Effect[],
  ): void {
    if (b.replica !== base.proposer) {
      this.stats.misdirected++;
      return;
    }
    if (op.sessionId !== 0 || !verifySignedOp(this.verify, b.publicKey, so, this.hash)) {
      this.stats.badSignatures++;
      return;
    }
    const keyHex = toHex(b.publicKey);
    const challengeHex = toHex(b.challenge);
    const existing = this.sessionByKey.get(keyHex);
    const known = existing === undefined ? undefined : this.sessions.get(existing);
    if (known) {
      fx.push({
        kind: "result",
        ...base,
        zxid: this.lastZxidV,
        challengeHex,
        duplicate: true,
        result: { code: "OK", sessionId: known.id, timeoutMs: known.timeoutMs },
      });
      return;
    }
    if (this.sessions.size >= this.cfg.sessionsMax) {
      fx.push({
        kind: "result",
        ...base,
        zxid: this.lastZxidV,
        challengeHex,
        result: { code: "THROTTLEDOP" },
      });
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
      auth: [],
      lastCxid: 0,
      pingSeq: 0,
      deadline: 0,
      ephemerals: new Set(),
      results: new Map(),
    };
    this.sessions.set(zxid, s);
    this.sessionByKey.set(keyHex, zxid);
    this.touch(s);
    fx.push({
      kind: "result",
      ...base,
      zxid,
      challengeHex,
      result: { code: "OK", sessionId: zxid, timeoutMs },
    });
  }

  private keepResult(s: Session, cxid: number, r: OpResult): void {
    s.results.set(cxid, r);
    this.dirtyResults.push([s.id, cxid, true]);
    const old = cxid - this.cfg.resultsKept;
    if (s.results.delete(old)) this.dirtyResults.push([s.id, old, false]);
  }

  protected dirtySession(id: number): void {
    this.dirtySessions.add(id);
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
      case OpKind.MULTI:
        return this.applyMulti(s, b.ops, zxid, fx);
      case OpKind.CREATE:
      case OpKind.DELETE:
      case OpKind.SET_DATA:
      case OpKind.CHECK:
        return this.applySub(s, b, zxid, null, fx);
      case OpKind.SET_ACL:
        return this.setAcl(s, b.path, b.acl, b.version);
      case OpKind.ADD_AUTH:
        return this.addAuth(s, b.scheme, b.credential, this.verify);
      default:
        return { code: "UNIMPLEMENTED" };
    }
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
    for (const p of this.doomedNodes()) {
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
      return [p, toHex(n.data), statOf(n), n.mode, n.ttlMs, aclRecord(n.acl)];
    });
    const sessions = [...this.sessions.values()]
      .sort((a, b) => a.id - b.id)
      .map((s) => [s.id, toHex(s.publicKey), s.timeoutMs, s.lastCxid, s.pingSeq, s.deadline, s.auth]);
    return JSON.stringify({ meta: this.meta(), nodes, sessions });
  }
}
