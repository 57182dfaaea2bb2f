// Authentication of client requests: ed25519 signatures or PBFT-style MAC authenticators.

import { bytesEqual, utf8Length } from "./bytes.ts";
import type { CoreCrypto } from "./crypto.ts";
import type { Digests } from "./digests.ts";
import type { ClientRequest, Limits, ReplicaId } from "./types.ts";

/** What a replica knows about a client: its public key and/or its MAC session key with this replica. */
export interface ClientKeys {
  readonly ed25519PublicKey?: Uint8Array;
  /** HMAC key shared between this client and this replica only. */
  readonly macKey?: Uint8Array;
}

/** Looks up client keys; a registry may be a static map from the cluster config or a live one. */
export interface ClientRegistry {
  keys(clientId: string): ClientKeys | undefined;
}

export function staticRegistry(entries: Iterable<[string, ClientKeys]>): ClientRegistry {
  const map = new Map(entries);
  return { keys: (id) => map.get(id) };
}

export type RequestProblem =
  | "BAD_CLIENT_ID"
  | "BAD_REQ_NO"
  | "OP_TOO_LARGE"
  | "OP_TOO_MANY"
  | "UNKNOWN_CLIENT"
  | "BAD_SIGNATURE"
  | "BAD_MAC"
  | "BAD_AUTH";

/** Signatures remembered as valid, by request digest (see RequestVerifier). */
export const VERIFIED_SIGNATURES_MAX = 4096;

/**
 * Verifies requests for one replica. Results are cached by request identity (an ordered request is
 * checked again when it executes), and valid ed25519 signatures by content: the same request met
 * again in another object (a follower's own request coming back in the leader's PREPARE) costs a hash,
 * not a signature check. A request signed by this replica itself (`own`) is trusted once its client id
 * has had one such signature verified: a key that does not match the registry is still refused at
 * once, and a replica does not check its own signature on every request after that.
 */
export class RequestVerifier {
  private readonly cache = new WeakMap<ClientRequest, RequestProblem | null>();
  /** Request digest (as a latin-1 string) → a signature verified over it; insertion order, at most VERIFIED_SIGNATURES_MAX. */
  private readonly verified = new Map<string, Uint8Array>();
  /** Client ids whose own (this replica's) signature was verified once. */
  private readonly ownChecked = new Set<string>();

  constructor(
    private readonly self: ReplicaId,
    private readonly n: number,
    private readonly crypto: CoreCrypto,
    private readonly digests: Digests,
    private readonly registry: ClientRegistry,
    private readonly limits: Limits,
    /** Entries a request stands for in a batch (see ReplicaDeps.requestWeight). */
    private readonly weight: (r: ClientRequest) => number = () => 1,
  ) {}

  /** null when the request is well-formed and authenticated for this replica. */
  check(r: ClientRequest, own = false): RequestProblem | null {
    const hit = this.cache.get(r);
    if (hit !== undefined) return hit;
    const problem = this.compute(r, own);
    this.cache.set(r, problem);
    return problem;
  }

  /**
   * Whether an ordered request may execute. Must give the same answer on every correct replica, so it
   * re-checks what all of them can check (shape, known client, ed25519 signature) but not MAC entries,
   * which only their own replica can verify (those were checked before voting).
   */
  executable(r: ClientRequest): boolean {
    const p = this.check(r);
    return p === null || p === "BAD_MAC";
  }

  private compute(r: ClientRequest, own: boolean): RequestProblem | null {
    if (typeof r.clientId !== "string" || r.clientId.length === 0) return "BAD_CLIENT_ID";
    if (
      r.clientId.length > this.limits.clientIdMaxBytes ||
      utf8Length(r.clientId) > this.limits.clientIdMaxBytes
    ) {
      return "BAD_CLIENT_ID";
    }
    if (!Number.isSafeInteger(r.reqNo) || r.reqNo < 1) return "BAD_REQ_NO";
    if (!(r.op instanceof Uint8Array) || r.op.length > this.limits.requestMaxBytes) return "OP_TOO_LARGE";
    if (this.weight(r) > this.limits.batchMaxCount) return "OP_TOO_MANY";
    const keys = this.registry.keys(r.clientId);
    if (!keys) return "UNKNOWN_CLIENT";
    const auth = r.auth;
    if (!auth || typeof auth !== "object") return "BAD_AUTH";
    if (auth.scheme === "ed25519") {
      if (!keys.ed25519PublicKey || !(auth.sig instanceof Uint8Array) || auth.sig.length !== 64) {
        return "BAD_SIGNATURE";
      }
      const digest = this.digests.request(r);
      const key = String.fromCharCode.apply(null, digest as unknown as number[]);
      const seen = this.verified.get(key);
      if (seen !== undefined && bytesEqual(seen, auth.sig)) return null;
      const trusted = own && this.ownChecked.has(r.clientId);
      if (!trusted && !this.crypto.verifyEd25519(keys.ed25519PublicKey, digest, auth.sig)) {
        return "BAD_SIGNATURE";
      }
      if (own) this.ownChecked.add(r.clientId);
      if (this.verified.size >= VERIFIED_SIGNATURES_MAX) {
        const oldest = this.verified.keys().next().value as string;
        this.verified.delete(oldest);
      }
      this.verified.set(key, auth.sig);
      return null;
    }
    if (auth.scheme === "mac") {
      if (!Array.isArray(auth.macs) || auth.macs.length !== this.n) return "BAD_AUTH";
      if (!auth.macs.every((m) => m instanceof Uint8Array && m.length === 32)) return "BAD_AUTH";
      if (!keys.macKey) return "BAD_AUTH";
      const mine = auth.macs[this.self] as Uint8Array;
      const expect = this.crypto.hmacSha256(keys.macKey, this.digests.request(r));
      return bytesEqual(expect, mine) ? null : "BAD_MAC";
    }
    return "BAD_AUTH";
  }
}
