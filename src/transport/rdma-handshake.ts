// The rdma transport's handshake (see rdma.ts): over a new connection's SEND channel both sides send an
// ephemeral X25519 key (HELLO), then an ed25519 signature by their configured replica key over both
// ephemerals and both ids (AUTH); an authenticated connection's slot MAC keys, one per direction, are
// derived from the X25519 secret. Timers, the provider and the links stay rdma.ts's.

import { createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, type KeyObject } from "node:crypto";
import type { ReplicaId } from "../bft/types.ts";
import { signEd25519, verifyEd25519 } from "../crypto/node-crypto.ts";

/** Message types on the SEND channel (KEY and CREDIT, 3 and 4, are the data path's). */
export const MSG_HELLO = 1;
export const MSG_AUTH = 2;
const VERSION = 2;
const AUTH_LABEL = new TextEncoder().encode("orderer-rdma-auth-v1");
const X25519_SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");

/** A connection before (and while) it is bound to a replica. */
export interface Conn {
  readonly id: number;
  readonly connector: boolean;
  /** The replica dialled (connector) or claimed in HELLO (acceptor). */
  peer: ReplicaId | null;
  readonly eph: KeyObject;
  readonly ephPub: Buffer;
  peerEph: Buffer | null;
  authSent: boolean;
  authed: boolean;
  readonly timer: ReturnType<typeof setTimeout>;
}

/**
 * A new connection's handshake state, with a fresh ephemeral X25519 key and a timer (not keeping the
 * process alive) that calls `onTimeout` after `handshakeMs` unless the caller clears it.
 */
export function newConn(
  id: number,
  connector: boolean,
  peer: ReplicaId | null,
  handshakeMs: number,
  onTimeout: () => void,
): Conn {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  const spki = publicKey.export({ format: "der", type: "spki" });
  const c: Conn = {
    id,
    connector,
    peer,
    eph: privateKey,
    ephPub: spki.subarray(spki.length - 32),
    peerEph: null,
    authSent: false,
    authed: false,
    timer: setTimeout(onTimeout, handshakeMs),
  };
  c.timer.unref?.();
  return c;
}

/** HELLO: type u8, version u8, our id u32 BE, our ephemeral public key (32 bytes). */
export function helloMessage(self: ReplicaId, c: Conn): Uint8Array {
  const hello = new Uint8Array(1 + 1 + 4 + 32);
  hello[0] = MSG_HELLO;
  hello[1] = VERSION;
  new DataView(hello.buffer).setUint32(2, self);
  hello.set(c.ephPub, 6);
  return hello;
}

/**
 * Takes the peer's HELLO into `c`: a connector checks that it came from the replica dialled, an
 * acceptor that the claimed id is lower than ours (the lower id connects). False: drop the connection.
 */
export function takeHello(self: ReplicaId, c: Conn, m: Buffer): boolean {
  if (m.length !== 38 || m[1] !== VERSION) return false;
  const claimed = m.readUInt32BE(2);
  if (c.connector ? claimed !== c.peer : !(claimed < self)) return false;
  c.peer = claimed;
  c.peerEph = Buffer.from(m.subarray(6, 38));
  return true;
}

/** AUTH: type u8, our ed25519 signature over the transcript and our role (0 connector, 1 acceptor). */
export function authMessage(self: ReplicaId, seed: Uint8Array, c: Conn): Uint8Array {
  const role = c.connector ? 0 : 1;
  const sig = signEd25519(seed, Buffer.concat([transcript(self, c), Buffer.from([role])]));
  const auth = new Uint8Array(1 + 64);
  auth[0] = MSG_AUTH;
  auth.set(sig, 1);
  return auth;
}

/** Whether the peer's AUTH carries its signature, by `publicKey` (its configured key), over the transcript. */
export function verifyAuth(self: ReplicaId, c: Conn, m: Buffer, publicKey: Uint8Array | undefined): boolean {
  const peerRole = c.connector ? 1 : 0;
  return (
    m.length === 65 &&
    publicKey !== undefined &&
    verifyEd25519(publicKey, Buffer.concat([transcript(self, c), Buffer.from([peerRole])]), m.subarray(1))
  );
}

/** The slot MAC keys of an authenticated connection: ours to send with, the peer's to check. */
export function deriveMacKeys(self: ReplicaId, c: Conn): { sendMac: Buffer; recvMac: Buffer } {
  const secret = diffieHellman({
    privateKey: c.eph,
    publicKey: createPublicKey({
      key: Buffer.concat([X25519_SPKI_PREFIX, c.peerEph as Buffer]),
      format: "der",
      type: "spki",
    }),
  });
  const okm = Buffer.from(hkdfSync("sha256", secret, transcript(self, c), "orderer-rdma-mac", 64));
  const toAcceptor = okm.subarray(0, 32);
  const toConnector = okm.subarray(32, 64);
  return {
    sendMac: Buffer.from(c.connector ? toAcceptor : toConnector),
    recvMac: Buffer.from(c.connector ? toConnector : toAcceptor),
  };
}

/** What both sides sign and derive keys from: the label, both ids, both ephemeral keys. */
function transcript(self: ReplicaId, c: Conn): Uint8Array {
  const connectorId = c.connector ? self : (c.peer as number);
  const acceptorId = c.connector ? (c.peer as number) : self;
  const ephC = c.connector ? c.ephPub : (c.peerEph as Buffer);
  const ephA = c.connector ? (c.peerEph as Buffer) : c.ephPub;
  const t = new Uint8Array(AUTH_LABEL.length + 8 + 64);
  t.set(AUTH_LABEL, 0);
  const dv = new DataView(t.buffer);
  dv.setUint32(AUTH_LABEL.length, connectorId);
  dv.setUint32(AUTH_LABEL.length + 4, acceptorId);
  t.set(ephC, AUTH_LABEL.length + 8);
  t.set(ephA, AUTH_LABEL.length + 40);
  return t;
}
