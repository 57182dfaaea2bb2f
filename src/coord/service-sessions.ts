// How a connection gets a session: connect (a new session) and resume (an existing one), and which
// connection holds which session at this replica.
//
// Why a recorded message is worth nothing (docs/coord-protocol.md, "Sessions are bound to a connection"):
// every coordination operation is in the public chain, and the wire may be read too. So nothing that
// attaches a connection to a session, or keeps a session alive, may be reusable:
//   - connect carries a CREATE_SESSION signed by the session key over this replica's id and its random
//     challenge to this connection (the hello). This replica takes it only on that connection (else
//     AUTHFAILED), and answers it only to the connection whose challenge it names. A copy sent again on
//     any other connection, to this replica or another, is refused before it is ordered.
//   - the tree takes a CREATE_SESSION only from an entry of the replica it names, and one for a key that
//     has a session attaches nothing and refreshes nothing (tree.ts): a copy that a Byzantine replica
//     orders again can at most recreate, within its own connections' reach, a session under a key whose
//     session ended, which only that key can use, which expires after its timeout, and which holds no node.
//   - resume is a signature over (session, this replica's id, this connection's challenge): never ordered,
//     good for one connection only.
//   - pings and writes are taken only on a connection already attached this way; in the tree a ping
//     counts only if its number is above the session's last one, and a write only once (its cxid).
// So only the holder of the session key can attach a connection to its session or keep it alive.

import { toHex } from "../bft/bytes.ts";
import type { ZkCode } from "./errors.ts";
import {
  CHALLENGE_BYTES,
  type Op,
  OpKind,
  resumeSigningBytes,
  type SignedOp,
  verifySignedOp,
} from "./ops.ts";
import type { CoordConn, PendingOp, ResolvedCoordServiceOptions } from "./service-types.ts";
import { b64, opBytes } from "./service-wire.ts";
import type { Effect, ZTree } from "./tree.ts";

/** What the session door needs of the service around it. */
export interface SessionHost {
  send(c: CoordConn, msg: Record<string, unknown>): void;
  fail(c: CoordConn, id: unknown, code: ZkCode | "MARSHALLINGERROR", message: string): void;
  drop(c: CoordConn, code: number, reason: string): void;
  /** Queues a createSession for proposal. */
  enqueue(p: PendingOp): void;
  /** Runs `run` once this replica has applied `zxid` (or answers OPERATIONTIMEOUT). */
  afterZxid(c: CoordConn, zxid: number, id: unknown, run: () => void): void;
  /** The signed operation of a message (throws when malformed). */
  signedOp(m: Record<string, unknown>): { op: Op; signed: SignedOp };
}

/** The service's counters kept here (the service's own stats object). */
export type SessionStats = Record<"badSignatures" | "unbound", number>;

/**
 * Why a createSession may not be taken on this connection, or null: it must name this replica and
 * carry this connection's challenge.
 */
export function bindingProblem(op: Op, self: number, challenge: Uint8Array): string | null {
  const b = op.body;
  if (b.kind !== OpKind.CREATE_SESSION || op.sessionId !== 0)
    return "connect carries a createSession operation";
  if (b.replica !== self) return `the createSession names replica ${b.replica}, this is replica ${self}`;
  if (b.challenge.length !== CHALLENGE_BYTES || toHex(b.challenge) !== toHex(challenge))
    return "the createSession is not bound to this connection's challenge";
  return null;
}

export class SessionDoor {
  /** The connection holding each session here. */
  readonly bySession = new Map<number, CoordConn>();
  /** Connections waiting for their createSession, by their challenge (hex). */
  private readonly connecting = new Map<string, CoordConn>();

  constructor(
    private readonly o: ResolvedCoordServiceOptions,
    private readonly tree: ZTree,
    private readonly stats: SessionStats,
    private readonly host: SessionHost,
  ) {}

  connect(c: CoordConn, id: unknown, m: Record<string, unknown>): void {
    if (c.sessionId || c.connect)
      return this.host.fail(c, id, "APIERROR", "this connection already has a session");
    const { op, signed } = this.host.signedOp(m);
    const b = op.body;
    if (b.kind !== OpKind.CREATE_SESSION || op.sessionId !== 0)
      return this.host.fail(c, id, "MARSHALLINGERROR", "connect carries a createSession operation");
    const problem = bindingProblem(op, this.o.self, c.nonce);
    if (problem !== null) {
      this.stats.unbound++;
      return this.host.fail(c, id, "AUTHFAILED", problem);
    }
    if (!verifySignedOp(this.o.verify, b.publicKey, signed, this.o.hash)) {
      this.stats.badSignatures++;
      return this.host.fail(c, id, "AUTHFAILED", "bad signature");
    }
    const challengeHex = toHex(c.nonce);
    c.connect = { challengeHex, id };
    this.connecting.set(challengeHex, c);
    this.host.enqueue({ sessionId: 0, cxid: 0, kind: b.kind, signed, bytes: opBytes(signed), attempts: 0 });
  }

  resume(c: CoordConn, id: unknown, m: Record<string, unknown>): void {
    if (c.sessionId || c.connect)
      return this.host.fail(c, id, "APIERROR", "this connection already has a session");
    const sid = m.sessionId;
    const zxid = m.zxid ?? 0;
    if (!Number.isSafeInteger(sid) || !Number.isSafeInteger(zxid) || typeof m.sig !== "string")
      throw new Error("resume needs sessionId, zxid and sig");
    const sig = b64(m.sig, "sig");
    this.host.afterZxid(c, zxid as number, id, () => {
      const s = this.tree.session(sid as number);
      if (!s) {
        this.host.send(c, { type: "error", id, code: "SESSIONEXPIRED", message: "the session expired" });
        return;
      }
      const signs = resumeSigningBytes(s.id, this.o.self, c.nonce);
      if (sig.length !== 64 || !this.o.verify(s.publicKey, signs, sig)) {
        this.stats.badSignatures++;
        this.host.fail(
          c,
          id,
          "AUTHFAILED",
          "bad signature (a resume is signed for one replica and connection)",
        );
        return;
      }
      this.attach(c, s.id, s.timeoutMs);
      this.host.send(c, {
        type: "connected",
        id,
        sessionId: s.id,
        timeoutMs: s.timeoutMs,
        zxid: this.tree.appliedZxid,
      });
    });
  }

  /** The answer to a createSession: to the connection of ours whose challenge it signed, if still here. */
  created(e: Extract<Effect, { kind: "result" }>): void {
    if (e.proposer !== this.o.self || e.challengeHex === undefined) return;
    const c = this.connecting.get(e.challengeHex);
    if (!c?.connect) return;
    this.connecting.delete(e.challengeHex);
    const id = c.connect.id;
    c.connect = null;
    if (e.result.code !== "OK" || e.result.sessionId === undefined) {
      this.host.send(c, { type: "error", id, code: e.result.code, message: "the session was refused" });
      return;
    }
    this.attach(c, e.result.sessionId, e.result.timeoutMs ?? 0);
    this.host.send(c, {
      type: "connected",
      id,
      sessionId: e.result.sessionId,
      timeoutMs: e.result.timeoutMs,
      zxid: Math.max(e.zxid, this.tree.appliedZxid),
    });
  }

  /** The connection is gone: it holds no session and waits for none. */
  closed(c: CoordConn): void {
    if (c.sessionId && this.bySession.get(c.sessionId) === c) this.bySession.delete(c.sessionId);
    if (c.connect && this.connecting.get(c.connect.challengeHex) === c)
      this.connecting.delete(c.connect.challengeHex);
  }

  private attach(c: CoordConn, sessionId: number, timeoutMs: number): void {
    const prev = this.bySession.get(sessionId);
    if (prev && prev !== c) this.host.drop(prev, 4000, "the session moved to another connection");
    c.sessionId = sessionId;
    c.timeoutMs = timeoutMs;
    this.bySession.set(sessionId, c);
  }
}
