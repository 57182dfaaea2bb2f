// The tree's data: znodes, sessions, operation results and the effects a block has, its configuration
// and the zxid arithmetic. tree.ts re-exports all of it; tree-nodes.ts and tree.ts work on it.

import type { Acl } from "./acl.ts";
import type { ZkCode } from "./errors.ts";

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
  /** Changes of the ACL (setACL). */
  aversion: number;
  /** Frozen; nodes with ZooKeeper's OPEN_ACL_UNSAFE share OPEN_ACL (acl.ts). */
  acl: readonly Acl[];
  readonly children: Set<string>;
}

export interface Session {
  readonly id: number;
  readonly publicKey: Uint8Array;
  /** Ids (hex ed25519 keys) the session added with addAuth, in order; at most AUTH_IDS_MAX. */
  auth: readonly string[];
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
      /**
       * createSession: the challenge it signed (hex), the proposer's challenge to the connection waiting
       * for this answer: how the proposer finds that connection.
       */
      readonly challengeHex?: string;
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

/** Persisted form of the tree's scalar state. */
export interface TreeMeta {
  readonly appliedBlock: number;
  readonly timeMs: number;
  readonly sessionClockMs: number;
  readonly lastScanMs: number;
  readonly clocks: readonly number[];
  readonly lastZxid: number;
}
