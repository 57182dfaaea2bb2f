// Cheap, deterministic crypto for the simulator. SHA-256 and HMAC are real (node:crypto); signatures
// are modelled by an oracle: sign(secret) = HMAC(secret, msg) and verify looks the secret up by public
// key. Adversary code only ever holds its own secrets, so it cannot forge, as with ed25519.

import { createHash, createHmac } from "node:crypto";
import { bytesEqual, type CoreCrypto, type ReplicaAuthenticator, toHex } from "../../src/bft/index.ts";

export class SimCrypto implements CoreCrypto {
  private readonly secrets = new Map<string, Uint8Array>();
  private counter = 0;

  sha256(data: Uint8Array): Uint8Array {
    return new Uint8Array(createHash("sha256").update(data).digest());
  }

  hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
    return new Uint8Array(createHmac("sha256", key).update(data).digest());
  }

  /** A new signing identity: the public key goes in configs, the secret to its owner only. */
  newIdentity(label: string): { publicKey: Uint8Array; secret: Uint8Array } {
    const secret = this.sha256(new TextEncoder().encode(`secret:${label}:${this.counter++}`));
    const publicKey = this.sha256(secret);
    this.secrets.set(toHex(publicKey), secret);
    return { publicKey, secret };
  }

  sign(secret: Uint8Array, message: Uint8Array): Uint8Array {
    const mac = this.hmacSha256(secret, message);
    const sig = new Uint8Array(64);
    sig.set(mac);
    sig.set(mac, 32);
    return sig;
  }

  verifyEd25519(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
    const secret = this.secrets.get(toHex(publicKey));
    if (!secret || signature.length !== 64) return false;
    return bytesEqual(this.sign(secret, message), signature);
  }

  authenticator(ownSecret: Uint8Array, publicKeys: readonly Uint8Array[]): ReplicaAuthenticator {
    return {
      sign: (digest) => this.sign(ownSecret, digest),
      verify: (replica, digest, sig) => {
        const pk = publicKeys[replica];
        return pk !== undefined && sig instanceof Uint8Array && this.verifyEd25519(pk, digest, sig);
      },
    };
  }
}
