// The trusted subsystem (TrInX-like): monotonic counters whose certificates make equivocation
// impossible. A replica's host code can only ask its subsystem to certify; it never sees the secret.

import { ByteWriter, bytesEqual } from "./bytes.ts";
import type { Hashing, ReplicaAuthenticator } from "./crypto.ts";
import { CounterError } from "./errors.ts";

/** Counter values are (view, slot) pairs, ordered lexicographically. */
export interface CounterValue {
  readonly view: number;
  readonly slot: number;
}

export const ZERO_VALUE: CounterValue = Object.freeze({ view: 0, slot: 0 });

export function compareValues(a: CounterValue, b: CounterValue): number {
  if (a.view !== b.view) return a.view < b.view ? -1 : 1;
  if (a.slot !== b.slot) return a.slot < b.slot ? -1 : 1;
  return 0;
}

export function valuesEqual(a: CounterValue, b: CounterValue): boolean {
  return a.view === b.view && a.slot === b.slot;
}

/**
 * A counter certificate. `prev` is present only on continuing certificates: it is the counter's value
 * just before this certificate was issued, so a receiver learns exactly what the sender certified last.
 */
export interface CounterCert {
  readonly subsystem: number;
  readonly counter: number;
  readonly value: CounterValue;
  readonly prev?: CounterValue;
  readonly mac: Uint8Array;
}

/** What a hardware subsystem (SGX enclave, TPM) would implement as well. */
export interface TrustedSubsystem {
  readonly id: number;
  /** Certifies `digest` at `value`, which must be strictly greater than the counter's current value. */
  certifyIndependent(counter: number, value: CounterValue, digest: Uint8Array): CounterCert;
  /** Certifies `digest` at `value` >= current value; the certificate carries the previous value. */
  certifyContinuing(counter: number, value: CounterValue, digest: Uint8Array): CounterCert;
  /** A counter-less trusted MAC over `digest`, bound to this subsystem's id. */
  trustedMac(digest: Uint8Array): Uint8Array;
  /** Verifies a certificate issued by any subsystem of the group over `digest`. */
  verifyCert(cert: CounterCert, digest: Uint8Array): boolean;
  /** Verifies a trusted MAC of subsystem `subsystem` over `digest`. */
  verifyMac(subsystem: number, digest: Uint8Array, mac: Uint8Array): boolean;
  /** The counter's current value (ZERO_VALUE before the first certificate). */
  current(counter: number): CounterValue;
  /**
   * Verifies a client's PBFT-style MAC authenticator completely: macs[i] must be the HMAC of `digest`
   * under the session key of (clientId, replica i), which every subsystem derives from the group secret
   * (see deriveClientSessionKey). Hosts never see those keys, so they cannot forge requests, and every
   * correct replica reaches the same verdict on every entry.
   */
  verifyClientMacs(clientId: string, digest: Uint8Array, macs: readonly Uint8Array[]): boolean;
}

const TAG_INDEPENDENT = 1;
const TAG_CONTINUING = 2;
const TAG_MAC = 3;
const TAG_CLIENT_KEY = 4;

/** Derived client session keys a subsystem caches. */
export const CLIENT_KEY_CACHE_MAX = 4096;

/**
 * The session key a client shares with replica `replica`, derived from the group secret. Computed by
 * whoever provisions clients (the `orderer init` tool) and by the trusted subsystems; never by hosts.
 */
export function deriveClientSessionKey(
  hashing: Hashing,
  groupSecret: Uint8Array,
  clientId: string,
  replica: number,
): Uint8Array {
  return hashing.hmacSha256(
    groupSecret,
    new ByteWriter(64).u8(TAG_CLIENT_KEY).str(clientId).u32(replica).finish(),
  );
}

/** Counters a subsystem may have: bounds the state a faulty host can make it allocate. */
export const COUNTERS_MAX = 64;

export interface SoftwareSubsystemOptions {
  id: number;
  /** The group secret shared by every subsystem of the cluster (never exposed after construction). */
  secret: Uint8Array;
  hashing: Hashing;
  /** Counter values to resume from (a restarted subsystem must never go back). */
  counters?: ReadonlyMap<number, CounterValue>;
  /**
   * Called after a counter advances, before the certificate is returned. A driver persists the new
   * value in the same atomic write as the Ready that the certificate belongs to (nothing is sent before
   * that write), so after a crash the counters and the replica's state agree; a hardware subsystem
   * whose counters survive any crash instead leaves the replica to skip what it can no longer prove.
   */
  onAdvance?: (counter: number, value: CounterValue) => void;
}

/**
 * The software trusted subsystem: the secret lives in a private field of this module's class and no
 * method returns it. It protects against a faulty replica's protocol code, not against an attacker
 * who controls the process' memory; an SGX or TPM implementation of `TrustedSubsystem` closes that.
 */
export class SoftwareTrustedSubsystem implements TrustedSubsystem {
  readonly id: number;
  readonly #secret: Uint8Array;
  readonly #hashing: Hashing;
  readonly #counters = new Map<number, CounterValue>();
  readonly #onAdvance: ((counter: number, value: CounterValue) => void) | undefined;
  readonly #clientKeys = new Map<string, Uint8Array[]>();

  constructor(opts: SoftwareSubsystemOptions) {
    if (!validId(opts.id)) throw new CounterError("BAD_ID", "subsystem id must be >= 0");
    if (opts.secret.length < 16)
      throw new CounterError("WEAK_SECRET", "subsystem secret must have >= 16 bytes");
    this.id = opts.id;
    this.#secret = opts.secret.slice();
    this.#hashing = opts.hashing;
    this.#onAdvance = opts.onAdvance;
    for (const [c, v] of opts.counters ?? []) {
      if (!Number.isInteger(c) || c < 0 || c >= COUNTERS_MAX || !validValue(v)) {
        throw new CounterError("BAD_RESTORE", `restored counter ${c} has an invalid value`);
      }
      this.#counters.set(c, { view: v.view, slot: v.slot });
    }
  }

  current(counter: number): CounterValue {
    return this.#counters.get(counter) ?? ZERO_VALUE;
  }

  /** Every counter's value, for the driver to persist (see SoftwareSubsystemOptions.onAdvance). */
  counters(): Map<number, CounterValue> {
    return new Map(this.#counters);
  }

  certifyIndependent(counter: number, value: CounterValue, digest: Uint8Array): CounterCert {
    this.#checkCounter(counter, value);
    const cur = this.current(counter);
    if (compareValues(value, cur) <= 0) {
      throw new CounterError(
        "NOT_INCREASING",
        `counter ${counter} is at (${cur.view},${cur.slot}); independent value (${value.view},${value.slot}) must be greater`,
      );
    }
    this.#advance(counter, value);
    const mac = this.#mac(independentBytes(this.id, counter, value, digest));
    return { subsystem: this.id, counter, value: { ...value }, mac };
  }

  certifyContinuing(counter: number, value: CounterValue, digest: Uint8Array): CounterCert {
    this.#checkCounter(counter, value);
    const cur = this.current(counter);
    if (compareValues(value, cur) < 0) {
      throw new CounterError(
        "GOES_BACK",
        `counter ${counter} is at (${cur.view},${cur.slot}); continuing value (${value.view},${value.slot}) is lower`,
      );
    }
    this.#advance(counter, value);
    const mac = this.#mac(continuingBytes(this.id, counter, value, cur, digest));
    return { subsystem: this.id, counter, value: { ...value }, prev: { ...cur }, mac };
  }

  trustedMac(digest: Uint8Array): Uint8Array {
    return this.#mac(macBytes(this.id, digest));
  }

  verifyCert(cert: CounterCert, digest: Uint8Array): boolean {
    if (!cert || !(cert.mac instanceof Uint8Array) || !(digest instanceof Uint8Array)) return false;
    if (!validValue(cert.value) || (cert.prev !== undefined && !validValue(cert.prev))) return false;
    if (!validId(cert.subsystem)) return false;
    if (!Number.isInteger(cert.counter) || cert.counter < 0 || cert.counter >= COUNTERS_MAX) return false;
    const bytes =
      cert.prev === undefined
        ? independentBytes(cert.subsystem, cert.counter, cert.value, digest)
        : continuingBytes(cert.subsystem, cert.counter, cert.value, cert.prev, digest);
    if (cert.prev !== undefined && compareValues(cert.value, cert.prev) < 0) return false;
    return bytesEqual(this.#mac(bytes), cert.mac);
  }

  verifyMac(subsystem: number, digest: Uint8Array, mac: Uint8Array): boolean {
    if (!validId(subsystem) || !(mac instanceof Uint8Array) || !(digest instanceof Uint8Array)) return false;
    return bytesEqual(this.#mac(macBytes(subsystem, digest)), mac);
  }

  verifyClientMacs(clientId: string, digest: Uint8Array, macs: readonly Uint8Array[]): boolean {
    if (typeof clientId !== "string" || !(digest instanceof Uint8Array) || !Array.isArray(macs)) return false;
    let keys = this.#clientKeys.get(clientId);
    if (!keys || keys.length < macs.length) {
      keys = macs.map((_, i) => deriveClientSessionKey(this.#hashing, this.#secret, clientId, i));
      if (this.#clientKeys.size >= CLIENT_KEY_CACHE_MAX) {
        this.#clientKeys.delete(this.#clientKeys.keys().next().value as string);
      }
      this.#clientKeys.set(clientId, keys);
    }
    for (let i = 0; i < macs.length; i++) {
      const mac = macs[i];
      if (
        !(mac instanceof Uint8Array) ||
        !bytesEqual(this.#hashing.hmacSha256(keys[i] as Uint8Array, digest), mac)
      ) {
        return false;
      }
    }
    return true;
  }

  #checkCounter(counter: number, value: CounterValue): void {
    if (!Number.isInteger(counter) || counter < 0 || counter >= COUNTERS_MAX) {
      throw new CounterError("BAD_COUNTER", `counter id ${counter} out of range`);
    }
    if (!validValue(value))
      throw new CounterError("BAD_VALUE", "counter values are non-negative safe integers");
  }

  #advance(counter: number, value: CounterValue): void {
    this.#counters.set(counter, { view: value.view, slot: value.slot });
    this.#onAdvance?.(counter, value);
  }

  #mac(data: Uint8Array): Uint8Array {
    return this.#hashing.hmacSha256(this.#secret, data);
  }
}

function validId(id: number): boolean {
  return Number.isInteger(id) && id >= 0 && id <= 0xffff_ffff;
}

function validValue(v: CounterValue): boolean {
  return !!v && Number.isSafeInteger(v.view) && v.view >= 0 && Number.isSafeInteger(v.slot) && v.slot >= 0;
}

function independentBytes(sub: number, counter: number, value: CounterValue, digest: Uint8Array): Uint8Array {
  return new ByteWriter(80)
    .u8(TAG_INDEPENDENT)
    .u32(sub)
    .u32(counter)
    .u64(value.view)
    .u64(value.slot)
    .bytes(digest)
    .finish();
}

function continuingBytes(
  sub: number,
  counter: number,
  value: CounterValue,
  prev: CounterValue,
  digest: Uint8Array,
): Uint8Array {
  return new ByteWriter(96)
    .u8(TAG_CONTINUING)
    .u32(sub)
    .u32(counter)
    .u64(value.view)
    .u64(value.slot)
    .u64(prev.view)
    .u64(prev.slot)
    .bytes(digest)
    .finish();
}

function macBytes(sub: number, digest: Uint8Array): Uint8Array {
  return new ByteWriter(48).u8(TAG_MAC).u32(sub).bytes(digest).finish();
}

/** Hybrid mode's transferable authenticator: the trusted subsystem's counter-less MAC. */
export function trustedAuthenticator(sub: TrustedSubsystem): ReplicaAuthenticator {
  return {
    sign: (digest) => sub.trustedMac(digest),
    verify: (replica, digest, sig) => sub.verifyMac(replica, digest, sig),
  };
}
