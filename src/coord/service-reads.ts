// Reads and watches of the coordination service: reads served from the local tree once it has what the
// client saw (waiting for it otherwise), with ZooKeeper 3.8's ACL checks (getData and getChildren need
// READ, getACL READ or ADMIN, exists none), and the watches of the connections (getData/exists/getChildren
// watches, setWatches after a reconnect, addWatch and removeWatches).

import { aclRecord, allowed, Perms } from "./acl.ts";
import type { ZkCode } from "./errors.ts";
import { pathProblem } from "./path.ts";
import type { CoordConn } from "./service-types.ts";
import type { Stat, ZTree } from "./tree.ts";
import { type WatchKind, WatchRegistry } from "./watches.ts";

const READ_QUEUE_PER_CONN_MAX = 1024;
const SETWATCHES_MAX = 100_000;

/** What reads need of the service around them. */
export interface ReadHost {
  send(c: CoordConn, msg: Record<string, unknown>): void;
  fail(c: CoordConn, id: unknown, code: ZkCode | "MARSHALLINGERROR", message: string): void;
  /** Blocks applied but not yet announced (nothing is read meanwhile). */
  applying(): number;
}

export class ReadServer {
  readonly watches: WatchRegistry<CoordConn>;
  private readonly waiters: { conn: CoordConn; need: number; deadline: number; run: () => void }[] = [];

  constructor(
    private readonly tree: ZTree,
    private readonly now: () => number,
    private readonly readWaitMs: number,
    connWatchesMax: number,
    private readonly host: ReadHost,
  ) {
    this.watches = new WatchRegistry(connWatchesMax);
  }

  /** Reads waiting for this replica to catch up. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Runs `fn` once this replica has applied `zxid` and no block is half-announced. */
  afterZxid(c: CoordConn, zxid: number, id: unknown, fn: () => void): void {
    const need = Math.max(zxid, c.zxid);
    if (this.host.applying() === 0 && this.tree.appliedZxid >= need) {
      fn();
      return;
    }
    if (c.reads >= READ_QUEUE_PER_CONN_MAX) {
      this.host.fail(c, id, "THROTTLEDOP", "too many reads waiting");
      return;
    }
    c.reads++;
    this.waiters.push({ conn: c, need, deadline: this.now() + this.readWaitMs, run: fn });
  }

  /** Runs the waiting reads this replica can now serve (none while a block is half-announced). */
  serve(): void {
    if (this.host.applying() > 0 || this.waiters.length === 0) return;
    const ready = this.waiters.filter((w) => this.tree.appliedZxid >= w.need);
    if (ready.length === 0) return;
    const rest = this.waiters.filter((w) => this.tree.appliedZxid < w.need);
    this.waiters.length = 0;
    this.waiters.push(...rest);
    for (const w of ready) {
      w.conn.reads--;
      if (!w.conn.closed) w.run();
    }
  }

  /** getData, exists, getChildren (with a one-shot watch when asked) or getACL. */
  read(c: CoordConn, id: unknown, m: Record<string, unknown>): void {
    const path = m.path;
    const minZxid = m.minZxid ?? 0;
    if (!Number.isSafeInteger(minZxid)) throw new Error("minZxid must be an integer");
    const watch = m.watch === true;
    this.afterZxid(c, minZxid as number, id, () => {
      const zxid = this.tree.appliedZxid;
      if (typeof path !== "string" || pathProblem(path)) {
        this.host.send(c, { type: "result", id, zxid, code: "BADARGUMENTS" });
        return;
      }
      const node = this.tree.get(path);
      const session = this.tree.session(c.sessionId);
      if (!session) {
        this.host.send(c, { type: "result", id, zxid, code: "SESSIONEXPIRED" });
        return;
      }
      if (m.type === "exists") {
        if (watch && !this.watches.add(c, "data", path))
          return this.host.fail(c, id, "THROTTLEDOP", "too many watches");
        this.host.send(c, { type: "result", id, zxid, code: "OK", stat: node ? this.tree.stat(path) : null });
        return;
      }
      if (!node) {
        this.host.send(c, { type: "result", id, zxid, code: "NONODE" });
        return;
      }
      const perm = m.type === "getACL" ? Perms.READ | Perms.ADMIN : Perms.READ;
      if (!allowed(node.acl, perm, session)) {
        this.host.send(c, { type: "result", id, zxid, code: "NOAUTH" });
        return;
      }
      if (m.type === "getACL") {
        const acl = aclRecord(node.acl).map(([perms, scheme, id]) => ({ perms, scheme, id }));
        this.host.send(c, { type: "result", id, zxid, code: "OK", acl, stat: this.tree.stat(path) });
        return;
      }
      const kind: WatchKind = m.type === "getData" ? "data" : "child";
      if (watch && !this.watches.add(c, kind, path))
        return this.host.fail(c, id, "THROTTLEDOP", "too many watches");
      const stat = this.tree.stat(path) as Stat;
      if (m.type === "getData")
        this.host.send(c, {
          type: "result",
          id,
          zxid,
          code: "OK",
          data: Buffer.from(node.data).toString("base64"),
          stat,
        });
      else
        this.host.send(c, { type: "result", id, zxid, code: "OK", children: this.tree.children(path), stat });
    });
  }

  /** ZooKeeper's setWatches after a reconnect: fire what changed since relZxid, register the rest. */
  setWatches(c: CoordConn, id: unknown, m: Record<string, unknown>): void {
    const rel = m.relZxid ?? 0;
    if (!Number.isSafeInteger(rel)) throw new Error("relZxid must be an integer");
    const lists: Record<string, string[]> = {};
    let total = 0;
    for (const k of ["data", "exist", "child", "persistent", "persistentRecursive"]) {
      const v = m[k] ?? [];
      if (!Array.isArray(v) || !v.every((p) => typeof p === "string" && !pathProblem(p)))
        throw new Error(`${k} must be a list of valid paths`);
      total += v.length;
      lists[k] = v as string[];
    }
    if (total > SETWATCHES_MAX) throw new Error(`at most ${SETWATCHES_MAX} watches at once`);
    this.afterZxid(c, rel as number, id, () => {
      const ev = (event: string, path: string) =>
        this.host.send(c, { type: "event", event, path, zxid: this.tree.appliedZxid });
      for (const p of lists.data as string[]) {
        const n = this.tree.get(p);
        if (!n) ev("NodeDeleted", p);
        else if (n.mzxid > (rel as number)) ev("NodeDataChanged", p);
        else this.watches.add(c, "data", p);
      }
      for (const p of lists.exist as string[]) {
        if (this.tree.get(p)) ev("NodeCreated", p);
        else this.watches.add(c, "data", p);
      }
      for (const p of lists.child as string[]) {
        const n = this.tree.get(p);
        if (!n) ev("NodeDeleted", p);
        else if (n.pzxid > (rel as number)) ev("NodeChildrenChanged", p);
        else this.watches.add(c, "child", p);
      }
      for (const p of lists.persistent as string[]) this.watches.add(c, "persistent", p);
      for (const p of lists.persistentRecursive as string[]) this.watches.add(c, "persistentRecursive", p);
      this.host.send(c, { type: "result", id, zxid: this.tree.appliedZxid, code: "OK" });
    });
  }

  /** addWatch: a persistent or recursive watch. */
  addWatch(c: CoordConn, id: unknown, m: Record<string, unknown>): void {
    const path = m.path;
    const mode = m.mode;
    if (
      typeof path !== "string" ||
      pathProblem(path) ||
      (mode !== "persistent" && mode !== "persistentRecursive")
    ) {
      this.host.send(c, { type: "result", id, zxid: this.tree.appliedZxid, code: "BADARGUMENTS" });
      return;
    }
    const ok = this.watches.add(c, mode, path);
    this.host.send(c, { type: "result", id, zxid: this.tree.appliedZxid, code: ok ? "OK" : "THROTTLEDOP" });
  }

  /** removeWatches: the connection's watches of a path, of one kind or all. */
  removeWatches(c: CoordConn, id: unknown, m: Record<string, unknown>): void {
    const path = m.path;
    const kind = m.kind ?? "any";
    const kinds: Record<string, WatchKind[]> = {
      data: ["data"],
      child: ["child"],
      persistent: ["persistent"],
      persistentRecursive: ["persistentRecursive"],
      any: ["data", "child", "persistent", "persistentRecursive"],
    };
    const list = typeof kind === "string" ? kinds[kind] : undefined;
    if (typeof path !== "string" || pathProblem(path) || !list) {
      this.host.send(c, { type: "result", id, zxid: this.tree.appliedZxid, code: "BADARGUMENTS" });
      return;
    }
    let removed = false;
    for (const k of list) removed = this.watches.remove(c, k, path) || removed;
    this.host.send(c, {
      type: "result",
      id,
      zxid: this.tree.appliedZxid,
      code: removed ? "OK" : "NOWATCHER",
    });
  }

  /** Reads that waited longer than readWaitMs fail (the client tries another replica). */
  expire(now: number): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i] as (typeof this.waiters)[number];
      if (now < w.deadline) continue;
      this.waiters.splice(i, 1);
      w.conn.reads--;
      this.host.send(w.conn, {
        type: "error",
        code: "OPERATIONTIMEOUT",
        message: `this replica has not reached zxid ${w.need} yet; try another replica`,
      });
    }
  }
}
