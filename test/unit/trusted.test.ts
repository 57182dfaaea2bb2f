import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inspect } from "node:util";
import { CounterError } from "../../src/bft/errors.ts";
import {
  COUNTERS_MAX,
  type CounterCert,
  type CounterValue,
  compareValues,
  deriveClientSessionKey,
  SoftwareTrustedSubsystem,
  trustedAuthenticator,
  ZERO_VALUE,
} from "../../src/bft/trusted.ts";
import { nodeCrypto } from "../../src/crypto/node-crypto.ts";

const SECRET = new Uint8Array(32).map((_, i) => i + 1);
const OTHER_SECRET = new Uint8Array(32).map((_, i) => 200 - i);
const DIGEST = nodeCrypto.sha256(new TextEncoder().encode("message"));
const OTHER_DIGEST = nodeCrypto.sha256(new TextEncoder().encode("other message"));

function subsystem(
  id: number,
  secret: Uint8Array = SECRET,
  extra: { counters?: Map<number, CounterValue> } = {},
) {
  return new SoftwareTrustedSubsystem({ id, secret, hashing: nodeCrypto, ...extra });
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

describe("SoftwareTrustedSubsystem construction", () => {
  it("refuses a secret shorter than 16 bytes", () => {
    assert.throws(() => subsystem(0, new Uint8Array(15)), counterError("WEAK_SECRET"));
    assert.throws(() => subsystem(0, new Uint8Array(0)), counterError("WEAK_SECRET"));
    assert.doesNotThrow(() => subsystem(0, new Uint8Array(16)));
  });

  it("refuses a negative or non-integer id", () => {
    assert.throws(() => subsystem(-1), counterError("BAD_ID"));
    assert.throws(() => subsystem(1.5), counterError("BAD_ID"));
  });

  it("starts every counter at ZERO_VALUE", () => {
    const s = subsystem(0);
    assert.deepEqual(s.current(0), ZERO_VALUE);
    assert.deepEqual(s.current(COUNTERS_MAX - 1), ZERO_VALUE);
  });
});

describe("independent certificates", () => {
  it("never certify the same value twice, nor a lower one", () => {
    const s = subsystem(0);
    s.certifyIndependent(0, v(0, 1), DIGEST);
    assert.throws(() => s.certifyIndependent(0, v(0, 1), DIGEST), counterError("NOT_INCREASING"));
    assert.throws(() => s.certifyIndependent(0, v(0, 1), OTHER_DIGEST), counterError("NOT_INCREASING"));
    assert.throws(() => s.certifyIndependent(0, v(0, 0), DIGEST), counterError("NOT_INCREASING"));
    s.certifyIndependent(0, v(2, 0), DIGEST);
    assert.throws(() => s.certifyIndependent(0, v(1, 50), DIGEST), counterError("NOT_INCREASING"));
    assert.throws(() => s.certifyIndependent(0, v(2, 0), DIGEST), counterError("NOT_INCREASING"));
  });

  it("refuse ZERO_VALUE on a fresh counter", () => {
    assert.throws(
      () => subsystem(0).certifyIndependent(0, ZERO_VALUE, DIGEST),
      counterError("NOT_INCREASING"),
    );
  });

  it("allow gaps", () => {
    const s = subsystem(0);
    const a = s.certifyIndependent(0, v(0, 5), DIGEST);
    const b = s.certifyIndependent(0, v(0, 100), DIGEST);
    const c = s.certifyIndependent(0, v(7, 3), DIGEST);
    assert.deepEqual([a.value, b.value, c.value], [v(0, 5), v(0, 100), v(7, 3)]);
    assert.deepEqual(s.current(0), v(7, 3));
  });

  it("carry no prev, and the subsystem and counter ids", () => {
    const s = subsystem(3);
    const cert = s.certifyIndependent(2, v(0, 1), DIGEST);
    assert.equal(cert.prev, undefined);
    assert.ok(!("prev" in cert), '!("prev" in cert)');
    assert.equal(cert.subsystem, 3);
    assert.equal(cert.counter, 2);
    assert.equal(cert.mac.length, 32);
  });

  it("keep counters independent of each other", () => {
    const s = subsystem(0);
    s.certifyIndependent(0, v(0, 10), DIGEST);
    s.certifyIndependent(1, v(0, 1), DIGEST);
    assert.deepEqual(s.current(0), v(0, 10));
    assert.deepEqual(s.current(1), v(0, 1));
  });

  it("do not advance the counter when refused", () => {
    const s = subsystem(0);
    s.certifyIndependent(0, v(1, 1), DIGEST);
    assert.throws(() => s.certifyIndependent(0, v(1, 0), DIGEST));
    assert.deepEqual(s.current(0), v(1, 1));
  });

  it("refuse bad counter ids and bad values", () => {
    const s = subsystem(0);
    for (const c of [-1, COUNTERS_MAX, 1.5, Number.NaN]) {
      assert.throws(() => s.certifyIndependent(c, v(0, 1), DIGEST), counterError("BAD_COUNTER"));
      assert.throws(() => s.certifyContinuing(c, v(0, 1), DIGEST), counterError("BAD_COUNTER"));
    }
    for (const bad of [v(-1, 5), v(0, -1), v(0.5, 1), v(1, Number.NaN), v(Number.MAX_SAFE_INTEGER + 1, 0)]) {
      assert.throws(() => s.certifyIndependent(0, bad, DIGEST), counterError("BAD_VALUE"));
      assert.throws(() => s.certifyContinuing(0, bad, DIGEST), counterError("BAD_VALUE"));
    }
    assert.deepEqual(s.current(0), ZERO_VALUE);
  });

  it("are not affected by later changes to the value object passed in", () => {
    const s = subsystem(0);
    const value = { view: 1, slot: 1 };
    const cert = s.certifyIndependent(0, value, DIGEST);
    value.slot = 99;
    assert.deepEqual(cert.value, v(1, 1));
    assert.deepEqual(s.current(0), v(1, 1));
  });
});

describe("continuing certificates", () => {
  it("expose the previous value exactly", () => {
    const s = subsystem(0);
    const first = s.certifyContinuing(0, v(0, 3), DIGEST);
    assert.deepEqual(first.prev, ZERO_VALUE);
    s.certifyIndependent(0, v(0, 9), DIGEST);
    const cont = s.certifyContinuing(0, v(1, 0), DIGEST);
    assert.deepEqual(cont.prev, v(0, 9));
    assert.deepEqual(cont.value, v(1, 0));
    assert.deepEqual(s.current(0), v(1, 0));
  });

  it("allow new == current, reporting prev == value", () => {
    const s = subsystem(0);
    s.certifyIndependent(0, v(2, 4), DIGEST);
    const cert = s.certifyContinuing(0, v(2, 4), OTHER_DIGEST);
    assert.deepEqual(cert.prev, v(2, 4));
    assert.deepEqual(cert.value, v(2, 4));
    const again = s.certifyContinuing(0, v(2, 4), DIGEST);
    assert.deepEqual(again.prev, v(2, 4));
  });

  it("refuse a lower value with GOES_BACK", () => {
    const s = subsystem(0);
    s.certifyIndependent(0, v(2, 4), DIGEST);
    assert.throws(() => s.certifyContinuing(0, v(2, 3), DIGEST), counterError("GOES_BACK"));
    assert.throws(() => s.certifyContinuing(0, v(1, 100), DIGEST), counterError("GOES_BACK"));
    assert.deepEqual(s.current(0), v(2, 4));
  });

  it("advance the counter, so an independent certificate must go beyond them", () => {
    const s = subsystem(0);
    s.certifyContinuing(0, v(3, 0), DIGEST);
    assert.throws(() => s.certifyIndependent(0, v(3, 0), DIGEST), counterError("NOT_INCREASING"));
    s.certifyIndependent(0, v(3, 1), DIGEST);
  });
});

describe("verifyCert", () => {
  const issuer = subsystem(1);
  const ind = issuer.certifyIndependent(0, v(0, 1), DIGEST);
  issuer.certifyIndependent(0, v(0, 4), DIGEST);
  const cont = issuer.certifyContinuing(0, v(1, 0), DIGEST);
  const verifier = subsystem(2);
  const stranger = subsystem(1, OTHER_SECRET);

  it("accepts certificates of another subsystem sharing the secret, and its own", () => {
    assert.ok(verifier.verifyCert(ind, DIGEST), "verifier.verifyCert(ind, DIGEST)");
    assert.ok(verifier.verifyCert(cont, DIGEST), "verifier.verifyCert(cont, DIGEST)");
    assert.ok(issuer.verifyCert(ind, DIGEST), "issuer.verifyCert(ind, DIGEST)");
    assert.ok(issuer.verifyCert(cont, DIGEST), "issuer.verifyCert(cont, DIGEST)");
  });

  it("rejects a changed digest", () => {
    assert.ok(!verifier.verifyCert(ind, OTHER_DIGEST), "!verifier.verifyCert(ind, OTHER_DIGEST)");
    assert.ok(!verifier.verifyCert(cont, OTHER_DIGEST), "!verifier.verifyCert(cont, OTHER_DIGEST)");
    assert.ok(
      !verifier.verifyCert(ind, flipped(DIGEST, 31)),
      "!verifier.verifyCert(ind, flipped(DIGEST, 31))",
    );
    assert.ok(
      !verifier.verifyCert(ind, DIGEST.subarray(0, 31)),
      "!verifier.verifyCert(ind, DIGEST.subarray(0, 31))",
    );
    assert.ok(!verifier.verifyCert(ind, new Uint8Array(0)), "!verifier.verifyCert(ind, new Uint8Array(0))");
  });

  it("rejects a changed value", () => {
    assert.ok(
      !verifier.verifyCert({ ...ind, value: v(0, 2) }, DIGEST),
      "!verifier.verifyCert({ ...ind, value: v(0, 2) }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...ind, value: v(1, 1) }, DIGEST),
      "!verifier.verifyCert({ ...ind, value: v(1, 1) }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...cont, value: v(1, 1) }, DIGEST),
      "!verifier.verifyCert({ ...cont, value: v(1, 1) }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...cont, value: v(2, 0) }, DIGEST),
      "!verifier.verifyCert({ ...cont, value: v(2, 0) }, DIGEST)",
    );
  });

  it("rejects a changed prev", () => {
    assert.ok(
      !verifier.verifyCert({ ...cont, prev: v(0, 3) }, DIGEST),
      "!verifier.verifyCert({ ...cont, prev: v(0, 3) }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...cont, prev: v(0, 1) }, DIGEST),
      "!verifier.verifyCert({ ...cont, prev: v(0, 1) }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...cont, prev: ZERO_VALUE }, DIGEST),
      "!verifier.verifyCert({ ...cont, prev: ZERO_VALUE }, DIGEST)",
    );
  });

  it("rejects a continuing certificate with its prev removed, and an independent one with a prev added", () => {
    const { prev: _prev, ...asIndependent } = cont;
    assert.ok(!verifier.verifyCert(asIndependent, DIGEST), "!verifier.verifyCert(asIndependent, DIGEST)");
    assert.ok(
      !verifier.verifyCert({ ...cont, prev: undefined }, DIGEST),
      "!verifier.verifyCert({ ...cont, prev: undefined }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...ind, prev: ZERO_VALUE }, DIGEST),
      "!verifier.verifyCert({ ...ind, prev: ZERO_VALUE }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...ind, prev: ind.value }, DIGEST),
      "!verifier.verifyCert({ ...ind, prev: ind.value }, DIGEST)",
    );
  });

  it("rejects a prev above the value", () => {
    assert.ok(
      !verifier.verifyCert({ ...cont, prev: v(1, 1) }, DIGEST),
      "!verifier.verifyCert({ ...cont, prev: v(1, 1) }, DIGEST)",
    );
  });

  it("rejects a changed subsystem id", () => {
    assert.ok(
      !verifier.verifyCert({ ...ind, subsystem: 2 }, DIGEST),
      "!verifier.verifyCert({ ...ind, subsystem: 2 }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...ind, subsystem: 0 }, DIGEST),
      "!verifier.verifyCert({ ...ind, subsystem: 0 }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...cont, subsystem: 2 }, DIGEST),
      "!verifier.verifyCert({ ...cont, subsystem: 2 }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...ind, subsystem: -1 }, DIGEST),
      "!verifier.verifyCert({ ...ind, subsystem: -1 }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...ind, subsystem: 1.5 }, DIGEST),
      "!verifier.verifyCert({ ...ind, subsystem: 1.5 }, DIGEST)",
    );
  });

  it("rejects a changed counter id and bad counter ids", () => {
    assert.ok(
      !verifier.verifyCert({ ...ind, counter: 1 }, DIGEST),
      "!verifier.verifyCert({ ...ind, counter: 1 }, DIGEST)",
    );
    for (const counter of [-1, COUNTERS_MAX, COUNTERS_MAX + 1, 0.5, Number.NaN]) {
      assert.ok(!verifier.verifyCert({ ...ind, counter }, DIGEST), `counter ${counter}`);
    }
  });

  it("rejects malformed values", () => {
    assert.ok(
      !verifier.verifyCert({ ...ind, value: v(-1, 1) }, DIGEST),
      "!verifier.verifyCert({ ...ind, value: v(-1, 1) }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...ind, value: v(0, 1.5) }, DIGEST),
      "!verifier.verifyCert({ ...ind, value: v(0, 1.5) }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...cont, prev: v(0, -4) }, DIGEST),
      "!verifier.verifyCert({ ...cont, prev: v(0, -4) }, DIGEST)",
    );
  });

  it("rejects a changed or truncated mac", () => {
    assert.ok(
      !verifier.verifyCert({ ...ind, mac: flipped(ind.mac, 0) }, DIGEST),
      "!verifier.verifyCert({ ...ind, mac: flipped(ind.mac, 0) }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...ind, mac: flipped(ind.mac, 31) }, DIGEST),
      "!verifier.verifyCert({ ...ind, mac: flipped(ind.mac, 31) }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...ind, mac: ind.mac.subarray(0, 16) }, DIGEST),
      "!verifier.verifyCert({ ...ind, mac: ind.mac.subarray(0, 16) }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...ind, mac: new Uint8Array(0) }, DIGEST),
      "!verifier.verifyCert({ ...ind, mac: new Uint8Array(0) }, DIGEST)",
    );
    assert.ok(
      !verifier.verifyCert({ ...ind, mac: cont.mac }, DIGEST),
      "!verifier.verifyCert({ ...ind, mac: cont.mac }, DIGEST)",
    );
  });

  it("rejects certificates of a subsystem with another secret, both ways", () => {
    const forged = stranger.certifyIndependent(0, v(0, 1), DIGEST);
    assert.ok(!verifier.verifyCert(forged, DIGEST), "!verifier.verifyCert(forged, DIGEST)");
    assert.ok(!stranger.verifyCert(ind, DIGEST), "!stranger.verifyCert(ind, DIGEST)");
    assert.ok(!stranger.verifyCert(cont, DIGEST), "!stranger.verifyCert(cont, DIGEST)");
  });
});

describe("trustedMac / verifyMac", () => {
  const a = subsystem(0);
  const b = subsystem(1);
  const stranger = subsystem(0, OTHER_SECRET);
  const mac = a.trustedMac(DIGEST);

  it("verifies at any subsystem sharing the secret", () => {
    assert.ok(b.verifyMac(0, DIGEST, mac), "b.verifyMac(0, DIGEST, mac)");
    assert.ok(a.verifyMac(0, DIGEST, mac), "a.verifyMac(0, DIGEST, mac)");
  });

  it("is deterministic and bound to the subsystem id", () => {
    assert.deepEqual(a.trustedMac(DIGEST), mac);
    assert.notDeepEqual(b.trustedMac(DIGEST), mac);
    assert.ok(!b.verifyMac(1, DIGEST, mac), "!b.verifyMac(1, DIGEST, mac)");
    assert.ok(!b.verifyMac(2, DIGEST, mac), "!b.verifyMac(2, DIGEST, mac)");
  });

  it("rejects a changed digest or mac", () => {
    assert.ok(!b.verifyMac(0, OTHER_DIGEST, mac), "!b.verifyMac(0, OTHER_DIGEST, mac)");
    assert.ok(!b.verifyMac(0, DIGEST, flipped(mac, 5)), "!b.verifyMac(0, DIGEST, flipped(mac, 5))");
    assert.ok(!b.verifyMac(0, DIGEST, mac.subarray(0, 31)), "!b.verifyMac(0, DIGEST, mac.subarray(0, 31))");
    assert.ok(!b.verifyMac(0, DIGEST, new Uint8Array(0)), "!b.verifyMac(0, DIGEST, new Uint8Array(0))");
  });

  it("rejects bad subsystem ids", () => {
    assert.ok(!b.verifyMac(-1, DIGEST, mac), "!b.verifyMac(-1, DIGEST, mac)");
    assert.ok(!b.verifyMac(0.5, DIGEST, mac), "!b.verifyMac(0.5, DIGEST, mac)");
    assert.ok(!b.verifyMac(Number.NaN, DIGEST, mac), "!b.verifyMac(Number.NaN, DIGEST, mac)");
  });

  it("rejects macs of a subsystem with another secret", () => {
    assert.ok(
      !b.verifyMac(0, DIGEST, stranger.trustedMac(DIGEST)),
      "!b.verifyMac(0, DIGEST, stranger.trustedMac(DIGEST))",
    );
    assert.ok(!stranger.verifyMac(0, DIGEST, mac), "!stranger.verifyMac(0, DIGEST, mac)");
  });

  it("cannot be confused with a counter certificate's mac", () => {
    const s = subsystem(0);
    const cert = s.certifyIndependent(0, v(0, 1), DIGEST);
    assert.ok(!b.verifyMac(0, DIGEST, cert.mac), "!b.verifyMac(0, DIGEST, cert.mac)");
    const fake: CounterCert = { subsystem: 0, counter: 0, value: v(0, 1), mac };
    assert.ok(!b.verifyCert(fake, DIGEST), "!b.verifyCert(fake, DIGEST)");
  });

  it("backs trustedAuthenticator", () => {
    const authA = trustedAuthenticator(a);
    const authB = trustedAuthenticator(b);
    const sig = authA.sign(DIGEST);
    assert.ok(authB.verify(0, DIGEST, sig), "authB.verify(0, DIGEST, sig)");
    assert.ok(!authB.verify(1, DIGEST, sig), "!authB.verify(1, DIGEST, sig)");
    assert.ok(!authB.verify(0, OTHER_DIGEST, sig), "!authB.verify(0, OTHER_DIGEST, sig)");
  });
});

describe("restored counters", () => {
  it("resume where they were and never go back", () => {
    const restored = new Map<number, CounterValue>([
      [0, v(2, 5)],
      [3, v(0, 9)],
    ]);
    const s = subsystem(0, SECRET, { counters: restored });
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

  it("are copied: changing the map afterwards has no effect", () => {
    const restored = new Map<number, CounterValue>([[0, v(1, 1)]]);
    const s = subsystem(0, SECRET, { counters: restored });
    restored.set(0, ZERO_VALUE);
    assert.deepEqual(s.current(0), v(1, 1));
    assert.throws(() => s.certifyIndependent(0, v(1, 1), DIGEST), counterError("NOT_INCREASING"));
  });
});

describe("onAdvance", () => {
  it("is called with each new value, and not on refusals", () => {
    const calls: [number, CounterValue][] = [];
    const s = new SoftwareTrustedSubsystem({
      id: 0,
      secret: SECRET,
      hashing: nodeCrypto,
      onAdvance: (counter, value) => calls.push([counter, { ...value }]),
    });
    s.certifyIndependent(0, v(0, 1), DIGEST);
    s.certifyIndependent(0, v(0, 3), DIGEST);
    assert.throws(() => s.certifyIndependent(0, v(0, 2), DIGEST));
    s.certifyIndependent(1, v(0, 1), DIGEST);
    s.certifyContinuing(0, v(1, 0), DIGEST);
    assert.throws(() => s.certifyContinuing(0, v(0, 9), DIGEST));
    s.certifyContinuing(0, v(1, 0), DIGEST);
    assert.deepEqual(calls, [
      [0, v(0, 1)],
      [0, v(0, 3)],
      [1, v(0, 1)],
      [0, v(1, 0)],
      [0, v(1, 0)],
    ]);
  });

  it("runs before the certificate is returned: when it throws, no certificate and the value stays burnt", () => {
    let fail = true;
    const s = new SoftwareTrustedSubsystem({
      id: 0,
      secret: SECRET,
      hashing: nodeCrypto,
      onAdvance: () => {
        if (fail) throw new Error("disk full");
      },
    });
    assert.throws(() => s.certifyIndependent(0, v(0, 1), DIGEST), /disk full/);
    fail = false;
    assert.throws(() => s.certifyIndependent(0, v(0, 1), DIGEST), counterError("NOT_INCREASING"));
    s.certifyIndependent(0, v(0, 2), DIGEST);
  });
});

describe("the secret", () => {
  const secret = new Uint8Array(24).map((_, i) => 0xa0 + i);
  const hex = Buffer.from(secret).toString("hex");
  const s = new SoftwareTrustedSubsystem({ id: 4, secret, hashing: nodeCrypto });

  it("is not reachable through enumerable or own properties", () => {
    const seen = new Set<unknown>();
    const visit = (x: unknown): void => {
      if (x === null || typeof x !== "object" || seen.has(x)) return;
      seen.add(x);
      if (x instanceof Uint8Array) {
        assert.notEqual(Buffer.from(x).toString("hex").includes(hex), true, "secret bytes found");
        return;
      }
      for (const key of Reflect.ownKeys(x)) {
        const desc = Object.getOwnPropertyDescriptor(x, key);
        if (desc && "value" in desc) visit(desc.value);
      }
    };
    visit(s);
    assert.deepEqual(Object.keys(s).sort(), ["id"]);
    for (const key in s) assert.notEqual(key, "secret");
  });

  it("does not appear in JSON.stringify or util.inspect", () => {
    assert.equal(JSON.stringify(s), '{"id":4}');
    const shown = inspect(s, { depth: 10, showHidden: true });
    assert.ok(!shown.includes("160, 161, 162"), shown);
    assert.ok(!shown.includes(hex), shown);
  });

  it("is copied: changing the caller's array does not change the macs", () => {
    const own = new Uint8Array(16).fill(7);
    const a = new SoftwareTrustedSubsystem({ id: 0, secret: own, hashing: nodeCrypto });
    const before = a.trustedMac(DIGEST);
    own.fill(9);
    assert.deepEqual(a.trustedMac(DIGEST), before);
  });
});

describe("SoftwareTrustedSubsystem: client MAC authenticators", () => {
  const n = 3;
  const macsFor = (clientId: string, digest: Uint8Array, secret = SECRET) =>
    [...Array(n).keys()].map((i) =>
      nodeCrypto.hmacSha256(deriveClientSessionKey(nodeCrypto, secret, clientId, i), digest),
    );
  const sub = (id: number, secret = SECRET) =>
    new SoftwareTrustedSubsystem({ id, secret, hashing: nodeCrypto });

  it("every subsystem of the group accepts a complete, correct authenticator", () => {
    const macs = macsFor("alice", DIGEST);
    for (let i = 0; i < n; i++) assert.equal(sub(i).verifyClientMacs("alice", DIGEST, macs), true);
  });

  it("refuses one bad entry, another client's keys, another digest, or another group's keys", () => {
    const s = sub(0);
    const macs = macsFor("alice", DIGEST);
    const bad = macs.slice();
    bad[2] = new Uint8Array(32);
    assert.equal(s.verifyClientMacs("alice", DIGEST, bad), false);
    assert.equal(s.verifyClientMacs("bob", DIGEST, macs), false);
    assert.equal(s.verifyClientMacs("alice", OTHER_DIGEST, macs), false);
    assert.equal(s.verifyClientMacs("alice", DIGEST, macsFor("alice", DIGEST, OTHER_SECRET)), false);
  });

  it("session keys differ per client and per replica", () => {
    const a0 = deriveClientSessionKey(nodeCrypto, SECRET, "alice", 0);
    assert.notDeepEqual(a0, deriveClientSessionKey(nodeCrypto, SECRET, "alice", 1));
    assert.notDeepEqual(a0, deriveClientSessionKey(nodeCrypto, SECRET, "bob", 0));
  });
});
