// The trusted subsystem: UsigCounter (monotonic counters that sign with their own ed25519 key),
// UsigChecker (verifies anyone's certificates with public keys only), and proofs of equivocation.
// Signatures here are real ed25519 (node:crypto).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inspect } from "node:util";
import { CounterError } from "../../src/bft/errors.ts";
import {
  CERT_SIG_BYTES,
  COUNTERS_MAX,
  type CounterCert,
  type CounterValue,
  certBytes,
  certShapeOk,
  checkEquivocation,
  compareValues,
  type EquivocationProof,
  isFresh,
  trustedSubsystem,
  UsigChecker,
  UsigCounter,
  type UsigCounterOptions,
  ZERO_VALUE,
} from "../../src/bft/trusted.ts";
import { ed25519PublicKeyOf, nodeCrypto, signEd25519 } from "../../src/crypto/node-crypto.ts";

const TEXT = new TextEncoder();
const DIGEST = nodeCrypto.sha256(TEXT.encode("message"));
const OTHER_DIGEST = nodeCrypto.sha256(TEXT.encode("other message"));

/** Subsystem i's private seed and public key. */
const SEEDS = [0, 1, 2, 3, 4].map((i) => new Uint8Array(32).map((_, k) => (i * 37 + k * 11 + 1) & 0xff));
const PUBLIC_KEYS = SEEDS.map((s) => ed25519PublicKeyOf(s));
const checker = new UsigChecker(PUBLIC_KEYS, nodeCrypto);

function signerOf(id: number): (bytes: Uint8Array) => Uint8Array {
  const seed = SEEDS[id] as Uint8Array;
  return (bytes) => signEd25519(seed, bytes);
}

/** A counter of subsystem `id` signing with that subsystem's key (or `keyOf`'s). */
function usig(id: number, opts: Partial<UsigCounterOptions> & { keyOf?: number } = {}): UsigCounter {
  return new UsigCounter({ id, sign: signerOf(opts.keyOf ?? id), ...opts });
}

function v(view: number, slot: number): CounterValue {
  return { view, slot };
}

function counterError(code: string): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof CounterError, `expected CounterError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  };
}

function flipped(b: Uint8Array, index = 0): Uint8Array {
  const c = b.slice();
  c[index] = (c[index] as number) ^ 0x01;
  return c;
}

describe("compareValues", () => {
  it("orders (view, slot) pairs lexicographically", () => {
    assert.equal(compareValues(v(1, 0), v(0, 99)), 1);
    assert.equal(compareValues(v(0, 99), v(1, 0)), -1);
    assert.equal(compareValues(v(1, 2), v(1, 3)), -1);
    assert.equal(compareValues(v(1, 3), v(1, 3)), 0);
  });
});

describe("UsigCounter construction", () => {
  it("refuses a negative, fractional or too large id", () => {
    for (const id of [-1, 1.5, Number.NaN, 2 ** 32])
      assert.throws(() => usig(id, { keyOf: 0 }), counterError("BAD_ID"));
    assert.doesNotThrow(() => usig(0));
  });

  it("starts every counter at ZERO_VALUE", () => {
    const s = usig(0);
    assert.deepEqual(s.current(0), ZERO_VALUE);
    assert.deepEqual(s.current(COUNTERS_MAX - 1), ZERO_VALUE);
    assert.deepEqual(s.counters(), new Map());
  });

  it("refuses restored counters with bad ids or values", () => {
    const bad: [number, CounterValue][] = [
      [-1, v(0, 1)],
      [COUNTERS_MAX, v(0, 1)],
      [0.5, v(0, 1)],
      [0, v(-1, 0)],
      [0, v(0, 1.5)],
      [0, null as unknown as CounterValue],
    ];
    for (const entry of bad) {
      assert.throws(
        () => usig(0, { counters: new Map([entry]) }),
        counterError("BAD_RESTORE"),
        String(entry[0]),
      );
    }
  });
});

describe("independent certificates", () => {
  it("are strictly increasing: never the same value twice, nor a lower one", () => {
    const s = usig(0);
    s.certifyIndependent(0, v(0, 1), DIGEST);
    assert.throws(() => s.certifyIndependent(0, v(0, 1), DIGEST), counterError("NOT_INCREASING"));
    assert.throws(() => s.certifyIndependent(0, v(0, 1), OTHER_DIGEST), counterError("NOT_INCREASING"));
    assert.throws(() => s.certifyIndependent(0, v(0, 0), DIGEST), counterError("NOT_INCREASING"));
    s.certifyIndependent(0, v(2, 0), DIGEST);
    assert.throws(() => s.certifyIndependent(0, v(1, 50), DIGEST), counterError("NOT_INCREASING"));
    assert.throws(() => s.certifyIndependent(0, v(2, 0), DIGEST), counterError("NOT_INCREASING"));
  });

  it("refuse ZERO_VALUE on a fresh counter", () => {
    assert.throws(() => usig(0).certifyIndependent(0, ZERO_VALUE, DIGEST), counterError("NOT_INCREASING"));
  });

  it("allow gaps", () => {
    const s = usig(0);
    const a = s.certifyIndependent(0, v(0, 5), DIGEST);
    const b = s.certifyIndependent(0, v(0, 100), DIGEST);
    const c = s.certifyIndependent(0, v(7, 3), DIGEST);
    assert.deepEqual([a.value, b.value, c.value], [v(0, 5), v(0, 100), v(7, 3)]);
    assert.deepEqual(s.current(0), v(7, 3));
  });

  it("carry no prev, the subsystem and counter ids, and a 64-byte ed25519 signature over certBytes", () => {
    const s = usig(3);
    const cert = s.certifyIndependent(2, v(0, 1), DIGEST);
    assert.equal(cert.prev, undefined);
    assert.equal("prev" in cert, false, "no prev key at all");
    assert.equal(cert.subsystem, 3);
    assert.equal(cert.counter, 2);
    assert.equal(cert.sig.length, CERT_SIG_BYTES);
    assert.equal(
      nodeCrypto.verifyEd25519(PUBLIC_KEYS[3] as Uint8Array, certBytes(cert, DIGEST), cert.sig),
      true,
    );
  });

  it("hand the signing function exactly certBytes, nothing else", () => {
    const signed: Uint8Array[] = [];
    const s = new UsigCounter({
      id: 1,
      sign: (bytes) => {
        signed.push(bytes.slice());
        return signerOf(1)(bytes);
      },
    });
    const a = s.certifyIndependent(0, v(0, 1), DIGEST);
    const b = s.certifyContinuing(0, v(1, 0), OTHER_DIGEST);
    assert.deepEqual(signed, [certBytes(a, DIGEST), certBytes(b, OTHER_DIGEST)]);
  });

  it("keep counters independent of each other", () => {
    const s = usig(0);
    s.certifyIndependent(0, v(0, 10), DIGEST);
    s.certifyIndependent(1, v(0, 1), DIGEST);
    assert.deepEqual(s.current(0), v(0, 10));
    assert.deepEqual(s.current(1), v(0, 1));
    assert.deepEqual(
      s.counters(),
      new Map([
        [0, v(0, 10)],
        [1, v(0, 1)],
      ]),
    );
  });

  it("do not advance the counter when refused", () => {
    const s = usig(0);
    s.certifyIndependent(0, v(1, 1), DIGEST);
    assert.throws(() => s.certifyIndependent(0, v(1, 0), DIGEST), counterError("NOT_INCREASING"));
    assert.deepEqual(s.current(0), v(1, 1));
  });

  it("refuse bad counter ids, bad values and bad digests", () => {
    const s = usig(0);
    for (const c of [-1, COUNTERS_MAX, 1.5, Number.NaN]) {
      assert.throws(() => s.certifyIndependent(c, v(0, 1), DIGEST), counterError("BAD_COUNTER"));
      assert.throws(() => s.certifyContinuing(c, v(0, 1), DIGEST), counterError("BAD_COUNTER"));
    }
    for (const bad of [v(-1, 5), v(0, -1), v(0.5, 1), v(1, Number.NaN), v(Number.MAX_SAFE_INTEGER + 1, 0)]) {
      assert.throws(() => s.certifyIndependent(0, bad, DIGEST), counterError("BAD_VALUE"));
      assert.throws(() => s.certifyContinuing(0, bad, DIGEST), counterError("BAD_VALUE"));
    }
    for (const d of [new Uint8Array(0), new Uint8Array(65), "digest" as unknown as Uint8Array]) {
      assert.throws(() => s.certifyIndependent(0, v(0, 1), d), counterError("BAD_DIGEST"));
      assert.throws(() => s.certifyContinuing(0, v(0, 1), d), counterError("BAD_DIGEST"));
    }
    assert.deepEqual(s.current(0), ZERO_VALUE);
  });

  it("are not affected by later changes to the value object passed in", () => {
    const s = usig(0);
    const value = { view: 1, slot: 1 };
    const cert = s.certifyIndependent(0, value, DIGEST);
    value.slot = 99;
    assert.deepEqual(cert.value, v(1, 1));
    assert.deepEqual(s.current(0), v(1, 1));
    assert.equal(checker.verifyCert(cert, DIGEST), true);
  });
});

describe("continuing certificates", () => {
  it("expose the previous value exactly", () => {
    const s = usig(0);
    const first = s.certifyContinuing(0, v(0, 3), DIGEST);
    assert.deepEqual(first.prev, ZERO_VALUE);
    s.certifyIndependent(0, v(0, 9), DIGEST);
    const cont = s.certifyContinuing(0, v(1, 0), DIGEST);
    assert.deepEqual(cont.prev, v(0, 9));
    assert.deepEqual(cont.value, v(1, 0));
    assert.deepEqual(s.current(0), v(1, 0));
  });

  it("allow new == current (>=), reporting prev == value", () => {
    const s = usig(0);
    s.certifyIndependent(0, v(2, 4), DIGEST);
    const cert = s.certifyContinuing(0, v(2, 4), OTHER_DIGEST);
    assert.deepEqual(cert.prev, v(2, 4));
    assert.deepEqual(cert.value, v(2, 4));
    const again = s.certifyContinuing(0, v(2, 4), DIGEST);
    assert.deepEqual(again.prev, v(2, 4));
    assert.equal(isFresh(cert), false);
    assert.equal(isFresh(again), false);
  });

  it("refuse a lower value with GOES_BACK", () => {
    const s = usig(0);
    s.certifyIndependent(0, v(2, 4), DIGEST);
    assert.throws(() => s.certifyContinuing(0, v(2, 3), DIGEST), counterError("GOES_BACK"));
    assert.throws(() => s.certifyContinuing(0, v(1, 100), DIGEST), counterError("GOES_BACK"));
    assert.deepEqual(s.current(0), v(2, 4));
  });

  it("advance the counter, so an independent certificate must go beyond them", () => {
    const s = usig(0);
    s.certifyContinuing(0, v(3, 0), DIGEST);
    assert.throws(() => s.certifyIndependent(0, v(3, 0), DIGEST), counterError("NOT_INCREASING"));
    s.certifyIndependent(0, v(3, 1), DIGEST);
  });
});

describe("restored counters", () => {
  it("resume where they were and never go back", () => {
    const restored = new Map<number, CounterValue>([
      [0, v(2, 5)],
      [3, v(0, 9)],
    ]);
    const s = usig(0, { counters: restored });
    assert.deepEqual(s.current(0), v(2, 5));
    assert.deepEqual(s.current(3), v(0, 9));
    assert.deepEqual(s.current(1), ZERO_VALUE);
    for (const lower of [v(2, 5), v(2, 4), v(1, 100), ZERO_VALUE]) {
      assert.throws(() => s.certifyIndependent(0, lower, DIGEST), counterError("NOT_INCREASING"));
    }
    assert.throws(() => s.certifyContinuing(0, v(2, 4), DIGEST), counterError("GOES_BACK"));
    assert.deepEqual(s.certifyContinuing(0, v(2, 5), DIGEST).prev, v(2, 5));
    assert.throws(() => s.certifyIndependent(3, v(0, 9), DIGEST), counterError("NOT_INCREASING"));
    s.certifyIndependent(3, v(0, 10), DIGEST);
  });

  it("are copied: changing the map or its values afterwards has no effect", () => {
    const value = { view: 1, slot: 1 };
    const restored = new Map<number, CounterValue>([[0, value]]);
    const s = usig(0, { counters: restored });
    restored.set(0, ZERO_VALUE);
    value.view = 0;
    assert.deepEqual(s.current(0), v(1, 1));
    assert.throws(() => s.certifyIndependent(0, v(1, 1), DIGEST), counterError("NOT_INCREASING"));
  });

  it("counters() is a copy: changing it does not move the counter", () => {
    const s = usig(0);
    s.certifyIndependent(0, v(0, 4), DIGEST);
    const snapshot = s.counters();
    snapshot.set(0, ZERO_VALUE);
    assert.deepEqual(s.current(0), v(0, 4));
  });

  it("a counter restarted from what onAdvance saved never certifies a value again", () => {
    let saved = new Map<number, CounterValue>();
    const save = (_c: number, _v: CounterValue, all: ReadonlyMap<number, CounterValue>) => {
      saved = new Map([...all].map(([k, x]) => [k, { ...x }]));
    };
    const first = usig(0, { onAdvance: save });
    first.certifyIndependent(0, v(0, 1), DIGEST);
    first.certifyIndependent(0, v(0, 2), DIGEST);
    first.certifyContinuing(1, v(1, 0), DIGEST);
    const second = usig(0, { counters: saved, onAdvance: save });
    assert.throws(() => second.certifyIndependent(0, v(0, 2), OTHER_DIGEST), counterError("NOT_INCREASING"));
    assert.throws(() => second.certifyIndependent(1, v(1, 0), OTHER_DIGEST), counterError("NOT_INCREASING"));
    assert.deepEqual(second.certifyContinuing(1, v(1, 0), OTHER_DIGEST).prev, v(1, 0), "not fresh");
    assert.deepEqual(second.certifyIndependent(0, v(0, 3), DIGEST).value, v(0, 3));
  });
});

describe("onAdvance", () => {
  it("is called with each new value and all counters, and not on refusals", () => {
    const calls: [number, CounterValue, [number, CounterValue][]][] = [];
    const s = usig(0, {
      onAdvance: (counter, value, all) =>
        calls.push([counter, { ...value }, [...all].map(([k, x]) => [k, { ...x }])]),
    });
    s.certifyIndependent(0, v(0, 1), DIGEST);
    s.certifyIndependent(0, v(0, 3), DIGEST);
    assert.throws(() => s.certifyIndependent(0, v(0, 2), DIGEST), counterError("NOT_INCREASING"));
    s.certifyIndependent(1, v(0, 1), DIGEST);
    s.certifyContinuing(0, v(1, 0), DIGEST);
    assert.throws(() => s.certifyContinuing(0, v(0, 9), DIGEST), counterError("GOES_BACK"));
    s.certifyContinuing(0, v(1, 0), DIGEST);
    assert.deepEqual(calls, [
      [0, v(0, 1), [[0, v(0, 1)]]],
      [0, v(0, 3), [[0, v(0, 3)]]],
      [
        1,
        v(0, 1),
        [
          [0, v(0, 3)],
          [1, v(0, 1)],
        ],
      ],
      [
        0,
        v(1, 0),
        [
          [0, v(1, 0)],
          [1, v(0, 1)],
        ],
      ],
      [
        0,
        v(1, 0),
        [
          [0, v(1, 0)],
          [1, v(0, 1)],
        ],
      ],
    ]);
  });

  it("runs after the counter moved and before the certificate exists (nothing signed yet)", () => {
    const log: string[] = [];
    const s = new UsigCounter({
      id: 0,
      sign: (bytes) => {
        log.push("sign");
        return signerOf(0)(bytes);
      },
      onAdvance: (counter, value) => {
        log.push(`advance ${counter} (${value.view},${value.slot}) current ${s.current(counter).slot}`);
      },
    });
    s.certifyIndependent(0, v(0, 1), DIGEST);
    s.certifyContinuing(0, v(0, 2), DIGEST);
    assert.deepEqual(log, ["advance 0 (0,1) current 1", "sign", "advance 0 (0,2) current 2", "sign"]);
  });

  it("when it throws, no certificate is issued (nothing signed) and the value stays burnt", () => {
    let fail = true;
    let signatures = 0;
    const s = new UsigCounter({
      id: 0,
      sign: (bytes) => {
        signatures++;
        return signerOf(0)(bytes);
      },
      onAdvance: () => {
        if (fail) throw new Error("disk full");
      },
    });
    assert.throws(() => s.certifyIndependent(0, v(0, 1), DIGEST), /disk full/);
    assert.throws(() => s.certifyContinuing(0, v(0, 3), DIGEST), /disk full/);
    assert.equal(signatures, 0, "nothing was signed");
    fail = false;
    assert.deepEqual(s.current(0), v(0, 3));
    assert.throws(() => s.certifyIndependent(0, v(0, 1), DIGEST), counterError("NOT_INCREASING"));
    assert.throws(() => s.certifyIndependent(0, v(0, 3), DIGEST), counterError("NOT_INCREASING"));
    // Re-certifying the burnt value says so (prev == value): not a fresh certificate.
    const again = s.certifyContinuing(0, v(0, 3), OTHER_DIGEST);
    assert.deepEqual(again.prev, v(0, 3));
    assert.equal(isFresh(again), false);
    assert.deepEqual(s.certifyIndependent(0, v(0, 4), DIGEST).value, v(0, 4));
    assert.equal(signatures, 2);
  });
});

describe("UsigChecker", () => {
  const issuer = usig(1);
  const ind = issuer.certifyIndependent(0, v(0, 1), DIGEST);
  issuer.certifyIndependent(0, v(0, 4), DIGEST);
  const cont = issuer.certifyContinuing(0, v(1, 0), DIGEST);
  const ok = (cert: CounterCert, digest = DIGEST) => checker.verifyCert(cert, digest);

  it("accepts genuine independent and continuing certificates, with public keys only", () => {
    assert.equal(ok(ind), true);
    assert.equal(ok(cont), true);
    // Any party holding the public keys agrees (a fresh checker, a copy of the keys).
    const auditor = new UsigChecker(
      PUBLIC_KEYS.map((k) => k.slice()),
      nodeCrypto,
    );
    assert.equal(auditor.verifyCert(ind, DIGEST), true);
    assert.equal(auditor.verifyCert(cont, DIGEST), true);
  });

  it("rejects a changed digest", () => {
    for (const d of [OTHER_DIGEST, flipped(DIGEST, 31), DIGEST.subarray(0, 31), new Uint8Array(0)]) {
      assert.equal(ok(ind, d), false);
      assert.equal(ok(cont, d), false);
    }
    assert.equal(ok(ind, "digest" as unknown as Uint8Array), false);
  });

  it("rejects a changed value", () => {
    for (const value of [v(0, 2), v(1, 1), v(0, 0)]) assert.equal(ok({ ...ind, value }), false);
    for (const value of [v(1, 1), v(2, 0)]) assert.equal(ok({ ...cont, value }), false);
  });

  it("rejects a changed prev, a prev removed or added, and a prev above the value", () => {
    for (const prev of [v(0, 3), v(0, 1), ZERO_VALUE, v(1, 0)]) assert.equal(ok({ ...cont, prev }), false);
    const { prev: _prev, ...asIndependent } = cont;
    assert.equal(ok(asIndependent), false);
    assert.equal(ok({ ...cont, prev: undefined }), false);
    assert.equal(ok({ ...ind, prev: ZERO_VALUE }), false);
    assert.equal(ok({ ...ind, prev: ind.value }), false);
    assert.equal(ok({ ...cont, prev: v(1, 1) }), false);
  });

  it("rejects a changed subsystem id, and ids without a key", () => {
    for (const subsystem of [0, 2, 4, PUBLIC_KEYS.length, -1, 1.5, Number.NaN]) {
      assert.equal(ok({ ...ind, subsystem }), false, `subsystem ${subsystem}`);
      assert.equal(ok({ ...cont, subsystem }), false, `subsystem ${subsystem}`);
    }
    assert.equal(new UsigChecker(PUBLIC_KEYS.slice(0, 1), nodeCrypto).verifyCert(ind, DIGEST), false);
  });

  it("rejects a changed counter id and bad counter ids", () => {
    for (const counter of [1, COUNTERS_MAX - 1, -1, COUNTERS_MAX, COUNTERS_MAX + 1, 0.5, Number.NaN]) {
      assert.equal(ok({ ...ind, counter }), false, `counter ${counter}`);
    }
  });

  it("rejects a changed, truncated, extended or swapped signature", () => {
    for (const sig of [
      flipped(ind.sig, 0),
      flipped(ind.sig, 31),
      flipped(ind.sig, 63),
      ind.sig.subarray(0, 32),
      Uint8Array.of(...ind.sig, 0),
      new Uint8Array(0),
      new Uint8Array(64),
      cont.sig,
    ]) {
      assert.equal(ok({ ...ind, sig }), false);
    }
  });

  it("rejects certificates made with another subsystem's key", () => {
    // Subsystem 2's key certifying as subsystem 1 (a replica forging for another).
    const forged = usig(1, { keyOf: 2 }).certifyIndependent(0, v(0, 1), DIGEST);
    assert.equal(ok(forged), false);
    // ... and a genuine certificate of subsystem 2 relabelled as subsystem 1's.
    const of2 = usig(2).certifyIndependent(0, v(0, 1), DIGEST);
    assert.equal(ok(of2), true);
    assert.equal(ok({ ...of2, subsystem: 1 }), false);
    // A checker with the keys in the wrong places accepts none of them.
    const shuffled = new UsigChecker(
      [PUBLIC_KEYS[0], PUBLIC_KEYS[2], PUBLIC_KEYS[1]] as Uint8Array[],
      nodeCrypto,
    );
    assert.equal(shuffled.verifyCert(ind, DIGEST), false);
    assert.equal(shuffled.verifyCert(of2, DIGEST), false);
  });

  it("rejects a plain signature of the digest (certificates are domain-separated)", () => {
    const plain = signEd25519(SEEDS[1] as Uint8Array, DIGEST);
    assert.equal(ok({ ...ind, sig: plain }), false);
    const value = signEd25519(SEEDS[1] as Uint8Array, Uint8Array.of(...new Uint8Array(8), ...DIGEST));
    assert.equal(ok({ ...ind, sig: value }), false);
  });

  it("rejects malformed shapes without throwing", () => {
    const shapes: unknown[] = [
      null,
      undefined,
      42,
      "cert",
      {},
      { ...ind, value: null },
      { ...ind, value: { view: 0 } },
      { ...ind, value: v(-1, 1) },
      { ...ind, value: v(0, 1.5) },
      { ...cont, prev: v(0, -4) },
      { ...cont, prev: "x" },
      { ...ind, sig: null },
      { ...ind, sig: [...ind.sig] },
      { ...ind, sig: "00".repeat(64) },
      { ...ind, counter: "0" },
      { ...ind, subsystem: "1" },
    ];
    for (const shape of shapes) {
      const cert = shape as CounterCert;
      assert.doesNotThrow(() => checker.verifyCert(cert, DIGEST));
      assert.equal(checker.verifyCert(cert, DIGEST), false, inspect(shape));
      assert.equal(certShapeOk(cert), false, inspect(shape));
    }
    assert.equal(certShapeOk(ind), true);
    assert.equal(certShapeOk(cont), true);
  });

  it("keeps its own copy of the public keys", () => {
    const keys: Uint8Array[] = PUBLIC_KEYS.map((k) => k.slice());
    const mine = new UsigChecker(keys, nodeCrypto);
    (keys[1] as Uint8Array).fill(0);
    keys[1] = PUBLIC_KEYS[2] as Uint8Array;
    assert.equal(mine.verifyCert(ind, DIGEST), true);
  });
});

describe("trustedSubsystem", () => {
  it("certifies with the counter and verifies everyone's certificates with the checker", () => {
    const counter = usig(2);
    const sub = trustedSubsystem(counter, checker);
    assert.equal(sub.id, 2);
    const cert = sub.certifyIndependent(0, v(0, 1), DIGEST);
    assert.deepEqual(counter.current(0), v(0, 1), "the counter itself moved");
    assert.deepEqual(sub.current(0), v(0, 1));
    assert.deepEqual(sub.certifyContinuing(0, v(1, 0), DIGEST).prev, v(0, 1));
    assert.equal(sub.verifyCert(cert, DIGEST), true);
    assert.equal(sub.verifyCert(usig(0).certifyIndependent(0, v(0, 1), DIGEST), DIGEST), true);
    assert.equal(sub.verifyCert({ ...cert, sig: flipped(cert.sig) }, DIGEST), false);
    assert.throws(() => sub.certifyIndependent(0, v(0, 1), DIGEST), counterError("NOT_INCREASING"));
  });
});

describe("the signing key", () => {
  const seed = new Uint8Array(32).map((_, i) => 0xa0 + i);
  const hex = Buffer.from(seed).toString("hex");
  const counter = new UsigCounter({ id: 4, sign: (bytes) => signEd25519(seed, bytes) });
  const sub = trustedSubsystem(counter, new UsigChecker([ed25519PublicKeyOf(seed)], nodeCrypto));
  counter.certifyIndependent(0, v(0, 1), DIGEST);

  /** Every value reachable from `root` through own properties (enumerable or not), functions included. */
  function reachable(root: unknown): unknown[] {
    const seen = new Set<unknown>();
    const visit = (x: unknown): void => {
      if (x === null || (typeof x !== "object" && typeof x !== "function") || seen.has(x)) return;
      seen.add(x);
      if (x instanceof Uint8Array) return;
      for (const key of Reflect.ownKeys(x as object)) {
        const desc = Object.getOwnPropertyDescriptor(x, key);
        if (desc && "value" in desc) visit(desc.value);
      }
      if (x instanceof Map) for (const [k, val] of x) [k, val].forEach(visit);
    };
    visit(root);
    return [...seen];
  }

  it("is not reachable through own or enumerable properties of the counter or the subsystem", () => {
    for (const root of [counter, sub]) {
      for (const x of reachable(root)) {
        if (x instanceof Uint8Array) {
          assert.equal(Buffer.from(x).toString("hex").includes(hex), false, "seed bytes found");
        }
      }
    }
    assert.deepEqual(Object.keys(counter), ["id"]);
    assert.deepEqual(Object.keys(sub).sort(), [
      "certifyContinuing",
      "certifyIndependent",
      "current",
      "id",
      "verifyCert",
    ]);
    for (const key in counter) assert.notEqual(key, "sign");
    assert.equal("sign" in counter, false, "no sign property, not even inherited");
  });

  it("does not appear in JSON.stringify or util.inspect", () => {
    assert.equal(JSON.stringify(counter), '{"id":4}');
    for (const root of [counter, sub]) {
      const shown = inspect(root, { depth: 10, showHidden: true });
      assert.equal(shown.includes("160, 161, 162"), false, shown);
      assert.equal(shown.includes(hex), false, shown);
      assert.equal(shown.includes("a0a1a2"), false, shown);
    }
  });
});

describe("checkEquivocation", () => {
  const value = v(3, 7);
  /** Two counters with subsystem 0's key: each certifies `value` once, so together twice. */
  const a = usig(0).certifyIndependent(0, value, DIGEST);
  const b = usig(0).certifyIndependent(0, value, OTHER_DIGEST);
  const proof = (x: CounterCert, dx: Uint8Array, y: CounterCert, dy: Uint8Array): EquivocationProof => ({
    a: { cert: x, digest: dx },
    b: { cert: y, digest: dy },
  });

  it("accepts two fresh certificates of one value over different digests, checked with public keys", () => {
    assert.equal(checkEquivocation(proof(a, DIGEST, b, OTHER_DIGEST), checker), null);
    assert.equal(checkEquivocation(proof(b, OTHER_DIGEST, a, DIGEST), checker), null);
    const auditor = new UsigChecker(
      PUBLIC_KEYS.map((k) => k.slice()),
      nodeCrypto,
    );
    assert.equal(checkEquivocation(proof(a, DIGEST, b, OTHER_DIGEST), auditor), null);
  });

  it("accepts continuing certificates that moved the counter to that value (fresh)", () => {
    const c1 = usig(0).certifyContinuing(0, value, OTHER_DIGEST);
    assert.deepEqual(c1.prev, ZERO_VALUE);
    assert.equal(checkEquivocation(proof(a, DIGEST, c1, OTHER_DIGEST), checker), null);
    // Even over the same digest: a correct counter moves to a value once, independent or continuing.
    const c2 = usig(0).certifyContinuing(0, value, DIGEST);
    assert.equal(checkEquivocation(proof(a, DIGEST, c2, DIGEST), checker), null);
    // Two continuing certificates from different previous values.
    const other = usig(0, { counters: new Map([[0, v(3, 1)]]) }).certifyContinuing(0, value, DIGEST);
    assert.equal(checkEquivocation(proof(c2, DIGEST, other, DIGEST), checker), null);
  });

  it("refuses the same statement twice", () => {
    assert.equal(checkEquivocation(proof(a, DIGEST, a, DIGEST), checker), "same-statement");
    assert.equal(checkEquivocation(proof(a, DIGEST, { ...a }, DIGEST.slice()), checker), "same-statement");
    const again = usig(0).certifyIndependent(0, value, DIGEST);
    assert.equal(checkEquivocation(proof(a, DIGEST, again, DIGEST), checker), "same-statement");
  });

  it("refuses certificates of different values", () => {
    const later = usig(0).certifyIndependent(0, v(3, 8), OTHER_DIGEST);
    assert.equal(checkEquivocation(proof(a, DIGEST, later, OTHER_DIGEST), checker), "different-values");
    const otherView = usig(0).certifyIndependent(0, v(4, 7), OTHER_DIGEST);
    assert.equal(checkEquivocation(proof(a, DIGEST, otherView, OTHER_DIGEST), checker), "different-values");
  });

  it("refuses certificates of different subsystems or counters", () => {
    const of1 = usig(1).certifyIndependent(0, value, OTHER_DIGEST);
    assert.equal(checkEquivocation(proof(a, DIGEST, of1, OTHER_DIGEST), checker), "different-counters");
    const counter1 = usig(0).certifyIndependent(1, value, OTHER_DIGEST);
    assert.equal(checkEquivocation(proof(a, DIGEST, counter1, OTHER_DIGEST), checker), "different-counters");
  });

  it("refuses a continuing certificate that re-certifies the current value (prev == value): not fresh", () => {
    // What a correct counter does after a restart: says it is at the value already.
    const s = usig(0);
    const first = s.certifyIndependent(0, value, DIGEST);
    const recert = s.certifyContinuing(0, value, OTHER_DIGEST);
    assert.equal(checker.verifyCert(recert, OTHER_DIGEST), true);
    assert.equal(checkEquivocation(proof(first, DIGEST, recert, OTHER_DIGEST), checker), "not-fresh");
    assert.equal(checkEquivocation(proof(recert, OTHER_DIGEST, first, DIGEST), checker), "not-fresh");
  });

  it("refuses bad signatures: forged, altered, or a digest that is not the certified one", () => {
    const forged = usig(0, { keyOf: 1 }).certifyIndependent(0, value, OTHER_DIGEST);
    assert.equal(checkEquivocation(proof(a, DIGEST, forged, OTHER_DIGEST), checker), "bad-signature");
    const altered = { ...b, sig: flipped(b.sig, 5) };
    assert.equal(checkEquivocation(proof(a, DIGEST, altered, OTHER_DIGEST), checker), "bad-signature");
    assert.equal(checkEquivocation(proof(altered, OTHER_DIGEST, a, DIGEST), checker), "bad-signature");
    // a's certificate with b's digest: looks like two statements, but a never certified OTHER_DIGEST.
    assert.equal(checkEquivocation(proof(a, DIGEST, a, OTHER_DIGEST), checker), "bad-signature");
    const wrongKeys = new UsigChecker([PUBLIC_KEYS[1], ...PUBLIC_KEYS.slice(1)] as Uint8Array[], nodeCrypto);
    assert.equal(checkEquivocation(proof(a, DIGEST, b, OTHER_DIGEST), wrongKeys), "bad-signature");
  });

  it("refuses malformed proofs without throwing", () => {
    const bad: unknown[] = [
      null,
      undefined,
      {},
      { a: { cert: a, digest: DIGEST } },
      { a: { cert: a, digest: DIGEST }, b: null },
      { a: { cert: a, digest: DIGEST }, b: { cert: null, digest: OTHER_DIGEST } },
      { a: { cert: a, digest: DIGEST }, b: { cert: { ...b, sig: b.sig.subarray(1) }, digest: OTHER_DIGEST } },
      { a: { cert: a, digest: "d" }, b: { cert: b, digest: OTHER_DIGEST } },
      { a: { cert: a, digest: DIGEST }, b: { cert: b } },
    ];
    for (const p of bad) {
      assert.equal(checkEquivocation(p as EquivocationProof, checker), "malformed", inspect(p));
    }
  });

  it("a correct counter never yields a proof, whatever it is asked", () => {
    // A pseudo-random workload on one honest counter; every pair of its certificates is checked.
    const s = usig(0);
    const issued: { cert: CounterCert; digest: Uint8Array }[] = [];
    let x = 12345;
    const next = (m: number) => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return (x >>> 16) % m;
    };
    for (let k = 0; k < 150; k++) {
      // Around the current value: equal, one below, one or two above, or the next view.
      const cur = s.current(0);
      const pick = next(5);
      const val = pick === 4 ? v(cur.view + 1, 0) : v(cur.view, Math.max(0, cur.slot + [0, -1, 1, 2][pick]!));
      const digest = nodeCrypto.sha256(Uint8Array.of(next(3)));
      try {
        const cert =
          next(2) === 0 ? s.certifyIndependent(0, val, digest) : s.certifyContinuing(0, val, digest);
        issued.push({ cert, digest });
      } catch (e) {
        assert.ok(e instanceof CounterError, String(e));
      }
    }
    assert.ok(issued.length > 50, `only ${issued.length} certificates issued`);
    let sameValue = 0;
    for (const p of issued) {
      for (const q of issued) {
        if (p === q || compareValues(p.cert.value, q.cert.value) !== 0) continue;
        sameValue++;
        assert.notEqual(checkEquivocation({ a: p, b: q }, checker), null, inspect({ p, q }));
      }
    }
    assert.ok(sameValue > 10, `the workload re-certified values ${sameValue} times (prev == value)`);
  });
});
