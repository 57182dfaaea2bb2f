// The trusted subsystem (USIG / TrInX-like): monotonic counters whose certificates make equivocation
// impossible. Each replica's subsystem has its own ed25519 key; a certificate is that key's signature
// over (subsystem, counter, value[, previous value], digest). The key lives with the counter (its own
// process, see src/counter/, or one day an enclave or TPM); a replica's host only asks it to certify.
// Anyone holding the subsystems' public keys verifies certificates: replicas, clients and auditors, so
// two certificates of one value with different digests are a proof of misbehaviour anyone can check.

import { ByteWriter, bytesEqual } from "./bytes.ts";
import type { SignatureVerifier } from "./crypto.ts";
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

/** Length of a certificate's signature (ed25519). */
export const CERT_SIG_BYTES = 64;

/**
 * A counter certificate. `prev` is present only on continuing certificates: it is the counter's value
 * just before this certificate was issued, so a receiver learns exactly what the sender certified last.
 * `sig` is the subsystem's signature over certBytes(cert, digest).
 */
export interface CounterCert {
  readonly subsystem: number;
  readonly counter: number;
  readonly value: CounterValue;
  readonly prev?: CounterValue;
  readonly sig: Uint8Array;
}

/**
 * The certifying side of one replica's trusted subsystem. Implemented in software by UsigCounter (run
 * in the counter process, src/counter/), by the replica's client of that process (RemoteCounter), and
 * by whatever an SGX enclave or a TPM would offer: the calls are synchronous and small on purpose.
 */
export interface TrustedCounter {
  readonly id: number;
  /** Certifies `digest` at `value`, which must be strictly greater than the counter's current value. */
  certifyIndependent(counter: number, value: CounterValue, digest: Uint8Array): CounterCert;
  /** Certifies `digest` at `value` >= current value; the certificate carries the previous value. */
  certifyContinuing(counter: number, value: CounterValue, digest: Uint8Array): CounterCert;
  /** The counter's current value (ZERO_VALUE before the first certificate). */
  current(counter: number): CounterValue;
}

/** Verifies certificates of any subsystem of the group (public keys only). */
export interface CertChecker {
  verifyCert(cert: CounterCert, digest: Uint8Array): boolean;
}

/** What a hybrid replica's core is given: its own counter, and a checker for everyone's. */
export interface TrustedSubsystem extends TrustedCounter, CertChecker {}

export function trustedSubsystem(counter: TrustedCounter, checker: CertChecker): TrustedSubsystem {
  return {
    id: counter.id,
    certifyIndependent: (c, v, d) => counter.certifyIndependent(c, v, d),
    certifyContinuing: (c, v, d) => counter.certifyContinuing(c, v, d),
    current: (c) => counter.current(c),
    verifyCert: (cert, d) => checker.verifyCert(cert, d),
  };
}

const TAG_INDEPENDENT = 1;
const TAG_CONTINUING = 2;
/** Domain separation: a counter key signs nothing but these bytes. */
const CERT_DOMAIN = "orderer-usig-v1";

/** Counters a subsystem may have: bounds the state a faulty host can make it allocate. */
export const COUNTERS_MAX = 64;

/** The bytes a certificate's signature covers. */
export function certBytes(
  cert: Pick<CounterCert, "subsystem" | "counter" | "value" | "prev">,
  digest: Uint8Array,
): Uint8Array {
  const w = new ByteWriter(128).str(CERT_DOMAIN);
  w.u8(cert.prev === undefined ? TAG_INDEPENDENT : TAG_CONTINUING)
    .u32(cert.subsystem)
    .u32(cert.counter)
    .u64(cert.value.view)
    .u64(cert.value.slot);
  if (cert.prev !== undefined) w.u64(cert.prev.view).u64(cert.prev.slot);
  return w.bytes(digest).finish();
}

/** Whether a certificate's fields are well-formed (not whether it verifies). */
export function certShapeOk(cert: CounterCert): boolean {
  return (
    !!cert &&
    typeof cert === "object" &&
    validId(cert.subsystem) &&
    Number.isInteger(cert.counter) &&
    cert.counter >= 0 &&
    cert.counter < COUNTERS_MAX &&
    validValue(cert.value) &&
    (cert.prev === undefined || (validValue(cert.prev) && compareValues(cert.value, cert.prev) >= 0)) &&
    cert.sig instanceof Uint8Array &&
    cert.sig.length === CERT_SIG_BYTES
  );
}

/**
 * A certificate a correct subsystem issues at most once per value: an independent one, or a continuing
 * one that moved the counter (prev < value). A continuing certificate with prev == value re-certifies
 * at the current value and says so, which is no equivocation.
 */
export function isFresh(cert: CounterCert): boolean {
  return cert.prev === undefined || compareValues(cert.value, cert.prev) > 0;
}

/** Checks certificates with each subsystem's ed25519 public key (index = subsystem id). */
export class UsigChecker implements CertChecker {
  readonly #keys: readonly Uint8Array[];
  readonly #sig: SignatureVerifier;

  constructor(publicKeys: readonly Uint8Array[], sig: SignatureVerifier) {
    this.#keys = publicKeys.map((k) => k.slice());
    this.#sig = sig;
  }

  verifyCert(cert: CounterCert, digest: Uint8Array): boolean {
    if (!certShapeOk(cert) || !(digest instanceof Uint8Array)) return false;
    const key = this.#keys[cert.subsystem];
    if (key === undefined) return false;
    return this.#sig.verifyEd25519(key, certBytes(cert, digest), cert.sig);
  }
}

export interface UsigCounterOptions {
  id: number;
  /** Signs certBytes with this subsystem's private key (which never leaves the closure). */
  sign: (bytes: Uint8Array) => Uint8Array;
  /** Counter values to resume from (a restarted subsystem must never go back). */
  counters?: ReadonlyMap<number, CounterValue>;
  /**
   * Called after a counter advances, before the certificate exists. The counter process makes the new
   * value durable here (write + fdatasync); if it throws, no certificate is issued and the value stays
   * burnt in memory, so a value is never certified that a restart could certify again.
   */
  onAdvance?: (counter: number, value: CounterValue, all: ReadonlyMap<number, CounterValue>) => void;
}

/**
 * The software USIG: monotonic counters and a signing function. Safe against its host only when it runs
 * where the host cannot reach it (the counter process under its own user, or an enclave).
 */
export class UsigCounter implements TrustedCounter {
  readonly id: number;
  readonly #sign: (bytes: Uint8Array) => Uint8Array;
  readonly #counters = new Map<number, CounterValue>();
  readonly #onAdvance: UsigCounterOptions["onAdvance"];

  constructor(opts: UsigCounterOptions) {
    if (!validId(opts.id)) throw new CounterError("BAD_ID", "subsystem id must be >= 0");
    this.id = opts.id;
    this.#sign = opts.sign;
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

  /** Every counter's value (a copy). */
  counters(): Map<number, CounterValue> {
    return new Map(this.#counters);
  }

  certifyIndependent(counter: number, value: CounterValue, digest: Uint8Array): CounterCert {
    checkRequest(counter, value, digest);
    const cur = this.current(counter);
    if (compareValues(value, cur) <= 0) {
      throw new CounterError(
        "NOT_INCREASING",
        `counter ${counter} is at (${cur.view},${cur.slot}); independent value (${value.view},${value.slot}) must be greater`,
      );
    }
    this.#advance(counter, value);
    const cert = { subsystem: this.id, counter, value: { view: value.view, slot: value.slot } };
    return { ...cert, sig: this.#sign(certBytes(cert, digest)) };
  }

  certifyContinuing(counter: number, value: CounterValue, digest: Uint8Array): CounterCert {
    checkRequest(counter, value, digest);
    const cur = this.current(counter);
    if (compareValues(value, cur) < 0) {
      throw new CounterError(
        "GOES_BACK",
        `counter ${counter} is at (${cur.view},${cur.slot}); continuing value (${value.view},${value.slot}) is lower`,
      );
    }
    this.#advance(counter, value);
    const cert = {
      subsystem: this.id,
      counter,
      value: { view: value.view, slot: value.slot },
      prev: { view: cur.view, slot: cur.slot },
    };
    return { ...cert, sig: this.#sign(certBytes(cert, digest)) };
  }

  #advance(counter: number, value: CounterValue): void {
    this.#counters.set(counter, { view: value.view, slot: value.slot });
    this.#onAdvance?.(counter, value, new Map(this.#counters));
  }
}

function checkRequest(counter: number, value: CounterValue, digest: Uint8Array): void {
  if (!Number.isInteger(counter) || counter < 0 || counter >= COUNTERS_MAX) {
    throw new CounterError("BAD_COUNTER", `counter id ${counter} out of range`);
  }
  if (!validValue(value))
    throw new CounterError("BAD_VALUE", "counter values are non-negative safe integers");
  if (!(digest instanceof Uint8Array) || digest.length === 0 || digest.length > 64) {
    throw new CounterError("BAD_DIGEST", "a digest has 1..64 bytes");
  }
}

export function validId(id: number): boolean {
  return Number.isInteger(id) && id >= 0 && id <= 0xffff_ffff;
}

export function validValue(v: CounterValue): boolean {
  return (
    !!v &&
    typeof v === "object" &&
    Number.isSafeInteger(v.view) &&
    v.view >= 0 &&
    Number.isSafeInteger(v.slot) &&
    v.slot >= 0
  );
}

// ---------------------------------------------------------------- proofs of equivocation

/** One certified statement: a certificate and the digest it covers. */
export interface CertifiedDigest {
  readonly cert: CounterCert;
  readonly digest: Uint8Array;
}

/**
 * Transferable proof that subsystem `a.cert.subsystem` certified two different digests with one fresh
 * value: impossible for a correct subsystem, so its key (its counter) is compromised.
 */
export interface EquivocationProof {
  readonly a: CertifiedDigest;
  readonly b: CertifiedDigest;
}

/** Why a proof is not one, or null when it proves equivocation (checked with public keys only). */
export function checkEquivocation(proof: EquivocationProof, checker: CertChecker): string | null {
  const a = proof?.a;
  const b = proof?.b;
  if (!a || !b || !certShapeOk(a.cert) || !certShapeOk(b.cert)) return "malformed";
  if (!(a.digest instanceof Uint8Array) || !(b.digest instanceof Uint8Array)) return "malformed";
  if (a.cert.subsystem !== b.cert.subsystem || a.cert.counter !== b.cert.counter) return "different-counters";
  if (!valuesEqual(a.cert.value, b.cert.value)) return "different-values";
  if (!isFresh(a.cert) || !isFresh(b.cert)) return "not-fresh";
  if (bytesEqual(certBytes(a.cert, a.digest), certBytes(b.cert, b.digest))) return "same-statement";
  if (!checker.verifyCert(a.cert, a.digest) || !checker.verifyCert(b.cert, b.digest)) return "bad-signature";
  return null;
}
