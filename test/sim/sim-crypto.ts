// Cheap, deterministic crypto for the simulator. SHA-256 and HMAC are real (node:crypto); signatures
// are modelled by an oracle: sign(secret) = HMAC(secret, msg) and verify looks the secret up by public
// key. Adversary code only ever holds its own secrets, so it cannot forge, as with ed25519. Every
// signing key is such an identity: replicas', clients' and each trusted counter's (a compromised
// counter is simulated by handing its secret to the adversary).

import { createHash, createHmac } from "node:crypto";
import { bytesEqual, type CoreCrypto, type ReplicaAuthenticator, toHex } from "../../src/bft/index.ts";

/** A verification already done, kept with copies of its inputs (arrays can be changed in place). */
interface Verified {
  readonly publicKey: Uint8Array;
  readonly message: Uint8Array;
  readonly signature: Uint8Array;
  readonly ok: boolean;
}

export class SimCrypto implements CoreCrypto {
  private readonly secrets = new Map<string, Uint8Array>();
  private counter = 0;
  /**
   * Results by signature object. A simulated message is one object shared by all its receivers, so
   * most signatures (certificates, checkpoint votes) are checked several times; a hit is only used
   * when key, message and signature are byte-for-byte the ones checked, so results never change.
   */
  private readonly verified = new WeakMap<Uint8Array, Verified>();

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
    if (!(signature instanceof Uint8Array) || !(publicKey instanceof Uint8Array)) return false;
    const hit = this.verified.get(signature);
    if (
      hit !== undefined &&
      bytesEqual(hit.signature, signature) &&
      bytesEqual(hit.message, message) &&
      bytesEqual(hit.publicKey, publicKey)
    )
      return hit.ok;
    const secret = this.secrets.get(toHex(publicKey));
    if (!secret) return false; // not cached: the identity may be created later
    const ok = signature.length === 64 && bytesEqual(this.sign(secret, message), signature);
    this.verified.set(signature, {
      publicKey: publicKey.slice(),
      message: message.slice(),
      signature: signature.slice(),
      ok,
    });
    return ok;
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
