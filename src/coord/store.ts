// The znode tree's copy in the replica's LevelDB: one record per znode, session and kept result, plus
// the tree's scalar state with the number of the last applied block. Its writes go into the same
// atomic batch as the block they come from, so the copy is always a snapshot of the tree as of
// `appliedBlock`; on start the tree is read back and any later block is replayed.
//
// A znode record is [data, czxid, mzxid, pzxid, ctime, mtime, version, cversion, ephemeralOwner, mode,
// ttlMs, aversion, acl as [perms, scheme, id] triples, or undefined for OPEN_ACL]; one written before
// ACLs (11 fields) reads back with aversion 0 and OPEN_ACL.
//
// A session record is [id, publicKey, timeoutMs, lastCxid, pingSeq, deadline, auth ids]; one written
// before addAuth (6 fields) reads back with no added ids.
//
// Keys: z/<path>  znode        q/<session id>  session        r/<session id>/<cxid>  kept result
//       k/tree    [appliedBlock, time, session clock, last scan, replica clocks, last zxid]

import { deserialize, serialize } from "node:v8";
import type { Level } from "level";
import { KEYSPACE } from "../storage/keyspace.ts";
import type { RawOp } from "../storage/level-store.ts";
import { OrdererError } from "../util/errors.ts";
import { aclFromRecord, aclRecord, OPEN_ACL } from "./acl.ts";
import type { OpResult, Session, TreeChanges, TreeMeta, ZNode, ZTree } from "./tree.ts";

const NODE = KEYSPACE.znode;
const SESSION = KEYSPACE.session;
const RESULT = KEYSPACE.result;
const META = KEYSPACE.treeMeta;

export class CoordStoreError extends OrdererError<"CORRUPT"> {
  override readonly name = "CoordStoreError";
  constructor(message: string) {
    super("CORRUPT", message);
  }
}

const pad = (n: number, w: number) => n.toString().padStart(w, "0");
const sessionKey = (id: number) => SESSION + pad(id, 16);
const resultKey = (sid: number, cxid: number) => `${RESULT}${pad(sid, 16)}/${pad(cxid, 10)}`;

/** The writes that bring the stored copy up to the tree's state (changes from takeChanges()). */
export function treeWrites(tree: ZTree, ch: TreeChanges): RawOp[] {
  const ops: RawOp[] = [];
  for (const path of ch.nodes) {
    const n = tree.get(path);
    if (!n) ops.push({ type: "del", key: NODE + path });
    else
      ops.push({
        type: "put",
        key: NODE + path,
        value: serialize([
          n.data,
          n.czxid,
          n.mzxid,
          n.pzxid,
          n.ctime,
          n.mtime,
          n.version,
          n.cversion,
          n.ephemeralOwner,
          n.mode,
          n.ttlMs,
          n.aversion,
          // Most nodes share OPEN_ACL: their record leaves the list out (read back as OPEN_ACL).
          n.acl === OPEN_ACL ? undefined : aclRecord(n.acl),
        ]),
      });
  }
  for (const id of ch.sessions) {
    const s = tree.session(id);
    if (!s) ops.push({ type: "del", key: sessionKey(id) });
    else
      ops.push({
        type: "put",
        key: sessionKey(id),
        value: serialize([s.id, s.publicKey, s.timeoutMs, s.lastCxid, s.pingSeq, s.deadline, s.auth]),
      });
  }
  for (const [sid, cxid, kept] of ch.results) {
    const r = kept ? tree.session(sid)?.results.get(cxid) : undefined;
    if (r) ops.push({ type: "put", key: resultKey(sid, cxid), value: serialize(r) });
    else ops.push({ type: "del", key: resultKey(sid, cxid) });
  }
  const m = tree.meta();
  ops.push({
    type: "put",
    key: META,
    value: serialize([m.appliedBlock, m.timeMs, m.sessionClockMs, m.lastScanMs, m.clocks, m.lastZxid]),
  });
  return ops;
}

function decode(key: string, v: Uint8Array): unknown[] {
  try {
    const d = deserialize(v);
    if (!Array.isArray(d)) throw new Error("not a record");
    return d;
  } catch (err) {
    throw new CoordStoreError(`corrupt coordination record ${key}: ${(err as Error).message}`);
  }
}

const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/** Reads the stored copy into `tree`; returns false when there is none (a fresh replica). */
export async function loadTree(db: Level<string, Uint8Array>, tree: ZTree): Promise<boolean> {
  const rawMeta = await db.get(META);
  if (rawMeta === undefined) return false;
  const m = decode(META, rawMeta);
  if (!m.slice(0, 4).every(isNum) || !Array.isArray(m[4]) || !isNum(m[5]))
    throw new CoordStoreError("corrupt coordination state k/tree");
  const meta: TreeMeta = {
    appliedBlock: m[0] as number,
    timeMs: m[1] as number,
    sessionClockMs: m[2] as number,
    lastScanMs: m[3] as number,
    clocks: m[4] as number[],
    lastZxid: m[5] as number,
  };
  const nodes: [string, Omit<ZNode, "children">][] = [];
  for await (const [key, v] of db.iterator({ gte: NODE, lt: "z0" })) {
    const r = decode(key, v);
    const acl = aclFromRecord(r[12]);
    if (
      !(r[0] instanceof Uint8Array) ||
      !r.slice(1, 11).every(isNum) ||
      !(r[11] === undefined || isNum(r[11]))
    )
      throw new CoordStoreError(`corrupt znode record ${key}`);
    if (acl === null) throw new CoordStoreError(`corrupt ACL in znode record ${key}`);
    const [data, czxid, mzxid, pzxid, ctime, mtime, version, cversion, ephemeralOwner, mode, ttlMs] = r as [
      Uint8Array,
      ...number[],
    ];
    const aversion = (r[11] as number | undefined) ?? 0;
    const rec = { data, czxid, mzxid, pzxid, ctime, mtime, version, cversion, ephemeralOwner, mode, ttlMs };
    nodes.push([key.slice(NODE.length), { ...rec, aversion, acl } as Omit<ZNode, "children">]);
  }
  const sessions: Omit<Session, "ephemerals" | "results">[] = [];
  for await (const [key, v] of db.iterator({ gte: SESSION, lt: "q0" })) {
    const r = decode(key, v);
    const auth = r[6] ?? [];
    if (
      !(r[1] instanceof Uint8Array) ||
      ![r[0], r[2], r[3], r[4], r[5]].every(isNum) ||
      !Array.isArray(auth) ||
      !auth.every((a) => typeof a === "string")
    )
      throw new CoordStoreError(`corrupt session record ${key}`);
    sessions.push({
      id: r[0] as number,
      publicKey: r[1],
      timeoutMs: r[2] as number,
      lastCxid: r[3] as number,
      pingSeq: r[4] as number,
      deadline: r[5] as number,
      auth: Object.freeze([...(auth as string[])]),
    });
  }
  const results: [number, number, OpResult][] = [];
  for await (const [key, v] of db.iterator({ gte: RESULT, lt: "r0" })) {
    const [sid, cxid] = key.slice(RESULT.length).split("/").map(Number);
    let r: unknown;
    try {
      r = deserialize(v);
    } catch {
      throw new CoordStoreError(`corrupt result record ${key}`);
    }
    if (!isNum(sid) || !isNum(cxid) || !r || typeof r !== "object")
      throw new CoordStoreError(`corrupt result record ${key}`);
    results.push([sid, cxid, r as OpResult]);
  }
  try {
    tree.restore(meta, nodes, sessions, results);
  } catch (err) {
    throw new CoordStoreError(`the stored tree is inconsistent: ${(err as Error).message}`);
  }
  return true;
}
