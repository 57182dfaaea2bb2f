// What a coordination client is given and hands back: its options and signer, the session states, watch
// events and multi operations. client.ts re-exports all of it (the package's orderer/coord-client);
// bundled for browsers like the client, so no Node built-in here.

import { ed25519 } from "@noble/curves/ed25519.js";
import type { WithDefaults } from "../util/defaults.ts";
import type { WebSocketCtor } from "../util/websocket.ts";
import type { Acl } from "./acl.ts";
import type { ZkCode } from "./errors.ts";
import type { CreateModeValue } from "./ops.ts";
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
  /** Replica API URLs (http://host:port, or https://); the client connects to one and moves on failure. */
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
  /**
   * Node only: the CA certificate(s), PEM, that the replicas' TLS certificates (wss:// from https:// URLs)
   * must chain to, instead of the system's roots; a replica whose certificate does not is never used.
   * Browsers use their own trust store (the option is refused there). Not used when `WebSocket` is given.
   */
  readonly ca?: string | Uint8Array;
  /** Called on every state change. */
  readonly onState?: (s: SessionState) => void;
  /** Index of the first replica to try (default: random). */
  readonly startAt?: number;
}

/** The coordination client's option defaults (see CoordClientOptions): the one place they are written. */
export const COORD_CLIENT_DEFAULTS = Object.freeze({
  sessionTimeoutMs: 10_000,
  maxOutstandingWrites: 128,
  bundleWrites: true,
  signer: nobleSigner,
}) satisfies Partial<CoordClientOptions>;

/** CoordClientOptions with every default filled in (the client resolves them when it is made). */
export type ResolvedCoordClientOptions = WithDefaults<CoordClientOptions, typeof COORD_CLIENT_DEFAULTS>;

export type MultiOp =
  | {
      type: "create";
      path: string;
      data?: Uint8Array | string;
      mode?: CreateModeValue;
      ttlMs?: number;
      /** Default OPEN_ACL (world:anyone, every permission). */
      acl?: readonly Acl[];
    }
  | { type: "delete"; path: string; version?: number }
  | { type: "setData"; path: string; data: Uint8Array | string; version?: number }
  | { type: "check"; path: string; version: number };

export interface MultiResult {
  readonly code: ZkCode;
  readonly path?: string;
  readonly stat?: Stat;
}
