// Crypto enters the core only through these interfaces, so the simulator can run thousands of seeds
// with cheap primitives and production can use node:crypto (or noble in a browser).

/** SHA-256 and HMAC-SHA256. */
export interface Hashing {
  sha256(data: Uint8Array): Uint8Array;
  hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array;
}

/** Verifies ed25519 signatures (client requests). */
export interface SignatureVerifier {
  verifyEd25519(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean;
}

export type CoreCrypto = Hashing & SignatureVerifier;

/**
 * Transferable authentication of replica messages (checkpoints, PBFT phases, view changes).
 * Both modes implement it with ed25519 replica keys (hybrid mode's ordering messages carry counter
 * certificates instead, see trusted.ts).
 */
export interface ReplicaAuthenticator {
  /** Authenticates `digest` as coming from this replica. */
  sign(digest: Uint8Array): Uint8Array;
  /** True when `sig` authenticates `digest` as coming from `replica`. */
  verify(replica: number, digest: Uint8Array, sig: Uint8Array): boolean;
}
