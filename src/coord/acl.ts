// ZooKeeper-style ACLs on znodes (browser-safe, pure): the permission bits, the schemes this service
// knows, their validation and the check every replica makes, deterministically, before an operation.
//
// Schemes:
//   world:anyone          everybody
//   ed25519:<hex key>     the session whose key is this ed25519 public key (64 lowercase hex digits)
//   auth:                 in a create or setACL only: replaced by every identity of the caller's session
//                         (its own key and the keys it added), as ZooKeeper's `auth` scheme
// A session's identities: its own key, and the ed25519 keys it proved it holds with an ordered addAuth
// (ADD_AUTH: the other key's signature over ADD_AUTH_DOMAIN ‖ u64 sessionId ‖ the session's key, so a
// copy from the public ledger is worth nothing to any other session). ZooKeeper's `digest`
// (user:password) scheme is not offered: its addAuth would write the password, in the clear, to the
// ledger that every replica and reader holds (docs/coord-protocol.md).

import { ByteWriter, toHex } from "../bft/bytes.ts";

/** ZooKeeper's permission bits (ZooDefs.Perms). */
export const Perms = {
  READ: 1,
  WRITE: 2,
  CREATE: 4,
  DELETE: 8,
  ADMIN: 16,
  ALL: 31,
} as const;

export interface Acl {
  /** An OR of Perms bits. */
  readonly perms: number;
  readonly scheme: string;
  readonly id: string;
}

/** Entries of one ACL list at most (ZooKeeper has no small limit; 64 is plenty for a znode). */
export const ACL_ENTRIES_MAX = 64;
/** Bytes (UTF-8) of a scheme or an id read from an operation at most (the codec's bound). */
export const ACL_FIELD_BYTES_MAX = 256;

/** ZooKeeper's OPEN_ACL_UNSAFE: world:anyone with every permission (the default of create). */
export const OPEN_ACL: readonly Acl[] = Object.freeze([
  Object.freeze({ perms: Perms.ALL, scheme: "world", id: "anyone" }),
]);

const KEY_HEX = /^[0-9a-f]{64}$/;

/** Keys a session may add with addAuth at most (besides its own). */
export const AUTH_IDS_MAX = 16;
/** What a key signs to lend its identity to one session (addAuth "ed25519"). */
export const ADD_AUTH_DOMAIN = new TextEncoder().encode("orderer/coord/addauth/v1\0");

/** Who a session is: its own key and the ids (hex keys) it added with addAuth. */
export interface Identity {
  readonly publicKey: Uint8Array;
  readonly auth: readonly string[];
}

/** The message `key` signs so that session `sessionId` (with key `sessionKey`) holds its identity. */
export function addAuthSigningBytes(sessionId: number, sessionKey: Uint8Array): Uint8Array {
  return new ByteWriter(96).raw(ADD_AUTH_DOMAIN).u64(sessionId).raw(sessionKey).finish();
}

/** What is wrong with an ACL list as given in a create or setACL, or null (then `fixAcl` can run). */
export function aclProblem(acl: readonly Acl[]): string | null {
  if (acl.length === 0) return "an ACL list holds at least one entry";
  if (acl.length > ACL_ENTRIES_MAX) return `an ACL list holds at most ${ACL_ENTRIES_MAX} entries`;
  for (const a of acl) {
    if (!Number.isInteger(a.perms) || a.perms < 0 || a.perms > Perms.ALL)
      return `permissions ${a.perms} are not ZooKeeper's bits (0 to 31)`;
    if (a.scheme === "world") {
      if (a.id !== "anyone") return "the world scheme has the one id anyone";
    } else if (a.scheme === "ed25519") {
      if (!KEY_HEX.test(a.id)) return "an ed25519 id is a public key in 64 lowercase hex digits";
    } else if (a.scheme === "auth") {
      if (a.id !== "") return "the auth scheme takes an empty id";
    } else return `unknown ACL scheme ${JSON.stringify(a.scheme).slice(0, 40)}`;
  }
  return null;
}

/** The session key's ed25519 id (hex), cached per key object. */
const keyHexCache = new WeakMap<Uint8Array, string>();
export function keyId(publicKey: Uint8Array): string {
  let hex = keyHexCache.get(publicKey);
  if (hex === undefined) {
    hex = toHex(publicKey);
    keyHexCache.set(publicKey, hex);
  }
  return hex;
}

/**
 * The ACL stored for a valid list (aclProblem null): `auth` entries become the caller's identities,
 * duplicates go (as ZooKeeper's fixupACL). A list equal to OPEN_ACL is OPEN_ACL itself (shared). Null:
 * the identities make the list longer than ACL_ENTRIES_MAX (INVALIDACL).
 */
export function fixAcl(acl: readonly Acl[], who: Identity): readonly Acl[] | null {
  const out: Acl[] = [];
  const seen = new Set<string>();
  const ids = [keyId(who.publicKey), ...who.auth];
  for (const a of acl) {
    const entries = a.scheme === "auth" ? ids.map((id) => ({ perms: a.perms, scheme: "ed25519", id })) : [a];
    for (const e of entries) {
      const k = `${e.perms}:${e.scheme}:${e.id}`;
      if (seen.has(k)) continue;
      seen.add(k);
      out.push(Object.freeze({ perms: e.perms, scheme: e.scheme, id: e.id }));
    }
  }
  if (out.length > ACL_ENTRIES_MAX) return null;
  if (isOpen(out)) return OPEN_ACL;
  return Object.freeze(out);
}

const isOpen = (acl: readonly Acl[]): boolean =>
  acl.length === 1 && acl[0]?.scheme === "world" && acl[0].id === "anyone" && acl[0].perms === Perms.ALL;

/**
 * Whether a session with this identity holds any of the `perm` bits on a node with this ACL (ZooKeeper's
 * checkACL: one matching entry carrying one of the bits suffices).
 */
export function allowed(acl: readonly Acl[], perm: number, who: Identity): boolean {
  for (const a of acl) {
    if ((a.perms & perm) === 0) continue;
    if (a.scheme === "world" && a.id === "anyone") return true;
    if (a.scheme === "ed25519" && (a.id === keyId(who.publicKey) || who.auth.includes(a.id))) return true;
  }
  return false;
}

/** An ACL list as persisted and dumped: [perms, scheme, id] triples. */
export const aclRecord = (acl: readonly Acl[]): [number, string, string][] =>
  acl.map((a) => [a.perms, a.scheme, a.id]);

/** An ACL list back from its record (undefined: a record written before ACLs, i.e. OPEN_ACL). */
export function aclFromRecord(r: unknown): readonly Acl[] | null {
  if (r === undefined) return OPEN_ACL;
  if (!Array.isArray(r)) return null;
  const acl: Acl[] = [];
  for (const e of r) {
    if (!Array.isArray(e) || typeof e[0] !== "number" || typeof e[1] !== "string" || typeof e[2] !== "string")
      return null;
    acl.push({ perms: e[0], scheme: e[1], id: e[2] });
  }
  if (aclProblem(acl) !== null || acl.some((a) => a.scheme === "auth")) return null;
  return isOpen(acl) ? OPEN_ACL : Object.freeze(acl);
}
