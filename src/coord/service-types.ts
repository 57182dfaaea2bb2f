// The shapes the coordination service works with: its options, a client connection as the service sees
// it, an operation held for proposal, and what prepare() hands to written(). service.ts re-exports the
// public ones.

import type { ClientRequest } from "../bft/types.ts";
import type { WithDefaults } from "../util/defaults.ts";
import type { HashFn, SignedOp } from "./ops.ts";
import type { Effect, VerifyFn, ZTree } from "./tree.ts";

export { COORD_PROTOCOL } from "./ops.ts";

/** How the service talks to one client connection (the API server adapts its WebSocket). */
export interface CoordSocket {
  send(msg: Record<string, unknown>): void;
  close(code: number, reason: string): void;
}

export interface CoordServiceOptions {
  readonly tree: ZTree;
  readonly self: number;
  /**
   * Hands a request to the core; throws RequestError when refused. Returns the core's verdict ("accepted",
   * "pending": held already, "duplicate": executed already); only "duplicate" is acted on.
   */
  readonly propose: (req: ClientRequest) => unknown;
  /** Signs a request of this replica's coordination client identity. */
  readonly signRequest: (reqNo: number, op: Uint8Array) => ClientRequest;
  readonly verify: VerifyFn;
  /** SHA-256 for bundle proofs (default @noble/hashes; replicas pass node:crypto's). */
  readonly hash?: HashFn;
  /** Largest entry the core accepts (the cluster's absoluteMaxBytes). */
  readonly entryMaxBytes: number;
  readonly now?: () => number;
  /** A replica proposes its clock at least this often while anything depends on time (default 250 ms). */
  readonly clockPeriodMs?: number;
  /** A read waiting for this replica to catch up fails after this long (default 10 s). */
  readonly readWaitMs?: number;
  /** Entries of this replica in the core at once (default 8). */
  readonly inFlightMax?: number;
  /** An entry not applied within this time is handed to the core again (default 5 s). */
  readonly inFlightTimeoutMs?: number;
  /** Writes one connection may have waiting for their result (default 1024). */
  readonly connWritesMax?: number;
  /** Operations queued for proposal at this replica (default 100 000). */
  readonly queueMax?: number;
  /** Bytes of the operations queued, in flight or deferred here (default 256 MiB). */
  readonly queueMaxBytes?: number;
  /** Watches one connection may hold (default 100 000). */
  readonly connWatchesMax?: number;
  /** Connections at once (default 10 000). */
  readonly connectionsMax?: number;
}

/** The service's option defaults (see CoordServiceOptions): the one place they are written. */
export const COORD_SERVICE_DEFAULTS = Object.freeze({
  /** How often a replica proposes its clock while sessions or TTL/container nodes exist (ms). */
  clockPeriodMs: 250,
  readWaitMs: 10_000,
  inFlightMax: 8,
  inFlightTimeoutMs: 5000,
  connWritesMax: 1024,
  queueMax: 100_000,
  /** Bytes of operations a replica holds for proposal (queued, in flight, deferred). */
  queueMaxBytes: 256 * 1024 * 1024,
  connWatchesMax: 100_000,
  connectionsMax: 10_000,
}) satisfies Partial<CoordServiceOptions>;

/** CoordServiceOptions with every default filled in (CoordService resolves them). */
export type ResolvedCoordServiceOptions = WithDefaults<CoordServiceOptions, typeof COORD_SERVICE_DEFAULTS>;

export interface CoordConn {
  readonly io: CoordSocket;
  /** The replica's random challenge to this connection (its hello): what connect and resume sign. */
  readonly nonce: Uint8Array;
  sessionId: number;
  timeoutMs: number;
  /** Highest zxid this client has seen from us. */
  zxid: number;
  lastHeardMs: number;
  /** cxid -> request id of writes waiting for their result. */
  readonly waiting: Map<number, unknown>;
  /** A connect waiting for its session: this connection's challenge (hex) and the request id. */
  connect: { challengeHex: string; id: unknown } | null;
  reads: number;
  closed: boolean;
}

/** A client's signed operation held by this replica until the order has it. */
export interface PendingOp {
  readonly sessionId: number;
  readonly cxid: number;
  readonly kind: number;
  readonly signed: SignedOp;
  readonly bytes: number;
  attempts: number;
}

/** What prepare() hands to written(): the effects of each applied block and which of our entries it held. */
export interface AppliedBlocks {
  readonly blocks: readonly {
    readonly number: number;
    readonly fx: readonly Effect[];
    readonly ownEntries: ReadonlySet<number>;
    readonly ownRequests: readonly number[];
  }[];
}
