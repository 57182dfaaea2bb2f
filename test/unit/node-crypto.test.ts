import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import { ConfigError } from "../../src/bft/errors.ts";
import {
  cachingVerifier,
  ED25519_PUBLIC_KEY_BYTES,
  ED25519_SEED_BYTES,
  ED25519_SIGNATURE_BYTES,
  ed25519PublicKeyOf,
  ed25519ReplicaAuthenticator,
  generateEd25519KeyPair,
  KEY_CACHE_MAX,
  keyCacheSizes,
  nodeCrypto,
  sha256,
  signEd25519,
} from "../../src/crypto/node-crypto.ts";

const TEXT = new TextEncoder();

function hex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, "hex"));
}

function toHex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

function flipped(b: Uint8Array, index: number): Uint8Array {
  const c = b.slice();
  c[index] = (c[index] as number) ^ 0x01;
  return c;
}

describe("sha256", () => {
  it("matches the known vectors", () => {
    assert.equal(
      toHex(nodeCrypto.sha256(new Uint8Array(0))),
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
    assert.equal(
      toHex(nodeCrypto.sha256(TEXT.encode("abc"))),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });

  it("returns a plain 32-byte Uint8Array", () => {
    const d = nodeCrypto.sha256(TEXT.encode("x"));
    assert.equal(Object.getPrototypeOf(d), Uint8Array.prototype);
    assert.equal(d.length, 32);
    assert.deepEqual(d, nodeCrypto.sha256(TEXT.encode("x")));
  });

  it("hashes only the view it is given", () => {
    const big = TEXT.encode("xxabcxx");
    assert.deepEqual(nodeCrypto.sha256(big.subarray(2, 5)), nodeCrypto.sha256(TEXT.encode("abc")));
  });

  it("digests kept in the shared buffer pool stay intact while thousands more are made; hex agrees", () => {
    const inputs = Array.from({ length: 5000 }, (_, i) => TEXT.encode(`input ${i}`));
    const kept = inputs.map((x) => nodeCrypto.sha256(x));
    for (let i = 0; i < 5000; i++) Buffer.from(`noise ${i}`.repeat(8)); // more pool allocations
    inputs.forEach((x, i) => {
      const expected = nobleSha256(x);
      assert.deepEqual(kept[i], expected);
      assert.equal(sha256.hex(x), toHex(expected));
    });
  });
});

describe("hmacSha256", () => {
  it("matches RFC 4231 test case 1", () => {
    const key = new Uint8Array(20).fill(0x0b);
    assert.equal(
      toHex(nodeCrypto.hmacSha256(key, TEXT.encode("Hi There"))),
      "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    );
  });

  it("matches RFC 4231 test case 2", () => {
    assert.equal(
      toHex(nodeCrypto.hmacSha256(TEXT.encode("Jefe"), TEXT.encode("what do ya want for nothing?"))),
      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    );
  });

  it("returns a plain 32-byte Uint8Array that depends on the key", () => {
    const m = nodeCrypto.hmacSha256(new Uint8Array(16), TEXT.encode("m"));
    assert.equal(Object.getPrototypeOf(m), Uint8Array.prototype);
    assert.equal(m.length, 32);
    assert.notDeepEqual(m, nodeCrypto.hmacSha256(new Uint8Array(16).fill(1), TEXT.encode("m")));
  });
});

describe("ed25519", () => {
  // RFC 8032 section 7.1, TEST 1 (empty message).
  const rfcSeed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  const rfcPublic = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  const rfcSig = hex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
  );

  it("matches RFC 8032 test 1", () => {
    assert.deepEqual(signEd25519(rfcSeed, new Uint8Array(0)), rfcSig);
    assert.deepEqual(ed25519PublicKeyOf(rfcSeed), rfcPublic);
    assert.equal(nodeCrypto.verifyEd25519(rfcPublic, new Uint8Array(0), rfcSig), true);
  });

  it("generates raw 32-byte key pairs whose public key matches the seed", () => {
    const a = generateEd25519KeyPair();
    const b = generateEd25519KeyPair();
    assert.equal(a.publicKey.length, ED25519_PUBLIC_KEY_BYTES);
    assert.equal(a.privateKey.length, ED25519_SEED_BYTES);
    assert.notDeepEqual(a.privateKey, b.privateKey);
    assert.notDeepEqual(a.publicKey, b.publicKey);
    assert.deepEqual(ed25519PublicKeyOf(a.privateKey), a.publicKey);
  });

  it("signs and verifies a roundtrip", () => {
    const { publicKey, privateKey } = generateEd25519KeyPair();
    const msg = TEXT.encode("hello");
    const sig = signEd25519(privateKey, msg);
    assert.equal(sig.length, ED25519_SIGNATURE_BYTES);
    assert.deepEqual(signEd25519(privateKey, msg), sig, "ed25519 is deterministic");
    assert.equal(nodeCrypto.verifyEd25519(publicKey, msg, sig), true);
    assert.equal(nodeCrypto.verifyEd25519(publicKey, TEXT.encode("hellO"), sig), false);
    assert.equal(nodeCrypto.verifyEd25519(publicKey, msg, flipped(sig, 0)), false);
    assert.equal(nodeCrypto.verifyEd25519(publicKey, msg, flipped(sig, 63)), false);
  });

  it("returns false, without throwing, for a wrong key, bad lengths and garbage", () => {
    const { publicKey, privateKey } = generateEd25519KeyPair();
    const other = generateEd25519KeyPair();
    const msg = TEXT.encode("m");
    const sig = signEd25519(privateKey, msg);
    const cases: [string, Uint8Array, Uint8Array][] = [
      ["wrong key", other.publicKey, sig],
      ["short signature", publicKey, sig.subarray(0, 63)],
      ["long signature", publicKey, new Uint8Array([...sig, 0])],
      ["empty signature", publicKey, new Uint8Array(0)],
      ["zero signature", publicKey, new Uint8Array(64)],
      ["short key", publicKey.subarray(0, 31), sig],
      ["long key", new Uint8Array([...publicKey, 0]), sig],
      ["empty key", new Uint8Array(0), sig],
      ["zero key", new Uint8Array(32), sig],
      ["0xff key", new Uint8Array(32).fill(0xff), sig],
      ["random key", new Uint8Array(randomBytes(32)), sig],
      ["seed as key", privateKey, sig],
    ];
    for (const [name, key, s] of cases) {
      assert.doesNotThrow(() => nodeCrypto.verifyEd25519(key, msg, s), name);
      assert.equal(nodeCrypto.verifyEd25519(key, msg, s), false, name);
    }
    const notBytes = "not bytes" as unknown as Uint8Array;
    assert.equal(nodeCrypto.verifyEd25519(notBytes, msg, sig), false);
    assert.equal(nodeCrypto.verifyEd25519(publicKey, notBytes, sig), false);
    assert.equal(nodeCrypto.verifyEd25519(publicKey, msg, notBytes), false);
    assert.equal(
      nodeCrypto.verifyEd25519(publicKey, msg, sig),
      true,
      "a good key still verifies after garbage",
    );
  });

  it("refuses a malformed seed when signing", () => {
    assert.throws(() => signEd25519(new Uint8Array(31), TEXT.encode("m")), ConfigError);
    assert.throws(() => signEd25519(new Uint8Array(64), TEXT.encode("m")), ConfigError);
  });

  it("keeps its KeyObject caches bounded", () => {
    const msg = TEXT.encode("m");
    const sig = new Uint8Array(64);
    for (let i = 0; i < KEY_CACHE_MAX + 50; i++) {
      nodeCrypto.verifyEd25519(nodeCrypto.sha256(TEXT.encode(`key ${i}`)), msg, sig);
    }
    const sizes = keyCacheSizes();
    assert.ok(sizes.publicKeys <= KEY_CACHE_MAX, `${sizes.publicKeys} public keys cached`);
    assert.ok(sizes.privateKeys <= KEY_CACHE_MAX, "sizes.privateKeys <= KEY_CACHE_MAX");
    // Evicted keys still work (they are rebuilt).
    const { publicKey, privateKey } = generateEd25519KeyPair();
    assert.equal(nodeCrypto.verifyEd25519(publicKey, msg, signEd25519(privateKey, msg)), true);
  });

  it("nodeCrypto is a frozen CoreCrypto", () => {
    assert.ok(Object.isFrozen(nodeCrypto), "Object.isFrozen(nodeCrypto)");
    assert.deepEqual(Object.keys(nodeCrypto).sort(), ["hmacSha256", "sha256", "verifyEd25519"]);
  });
});

describe("ed25519ReplicaAuthenticator", () => {
  const pairs = Array.from({ length: 4 }, () => generateEd25519KeyPair());
  const publicKeys = pairs.map((p) => p.publicKey);
  const auths = pairs.map((p) => ed25519ReplicaAuthenticator(p.privateKey, publicKeys));
  const digest = nodeCrypto.sha256(TEXT.encode("checkpoint 16"));

  it("signs with the replica's own key and verifies at every replica", () => {
    for (let i = 0; i < pairs.length; i++) {
      const sig = (auths[i] as (typeof auths)[number]).sign(digest);
      assert.equal(sig.length, ED25519_SIGNATURE_BYTES);
      for (const a of auths) assert.equal(a.verify(i, digest, sig), true, `signed by ${i}`);
    }
  });

  it("rejects a signature attributed to another replica, or over another digest", () => {
    const a0 = auths[0] as (typeof auths)[number];
    const sig = a0.sign(digest);
    assert.equal(a0.verify(1, digest, sig), false);
    assert.equal(a0.verify(0, flipped(digest, 3), sig), false);
    assert.equal(a0.verify(0, digest, flipped(sig, 7)), false);
  });

  it("returns false for unknown replica indexes and bad lengths", () => {
    const a0 = auths[0] as (typeof auths)[number];
    const sig = a0.sign(digest);
    for (const replica of [-1, 4, 100, 0.5, Number.NaN]) {
      assert.equal(a0.verify(replica, digest, sig), false, `replica ${replica}`);
    }
    assert.equal(a0.verify(0, digest, sig.subarray(0, 63)), false);
    assert.equal(a0.verify(0, digest, new Uint8Array(0)), false);
    assert.equal(a0.verify(0, digest, new Uint8Array([...sig, 1])), false);
  });

  it("returns false for a malformed public key in the list", () => {
    const keys = [publicKeys[0] as Uint8Array, new Uint8Array(31), new Uint8Array(0)];
    const a = ed25519ReplicaAuthenticator((pairs[1] as (typeof pairs)[number]).privateKey, keys);
    const sig = a.sign(digest);
    assert.equal(a.verify(1, digest, sig), false);
    assert.equal(a.verify(2, digest, sig), false);
  });

  it("copies its keys: later changes to the caller's arrays have no effect", () => {
    const keys = publicKeys.map((k) => k.slice());
    const seed = (pairs[2] as (typeof pairs)[number]).privateKey.slice();
    const a = ed25519ReplicaAuthenticator(seed, keys);
    const sig = a.sign(digest);
    seed.fill(0);
    keys[2] = new Uint8Array(32);
    assert.deepEqual(a.sign(digest), sig);
    assert.equal(a.verify(2, digest, sig), true);
  });

  it("refuses a malformed own seed", () => {
    assert.throws(() => ed25519ReplicaAuthenticator(new Uint8Array(16), publicKeys), ConfigError);
  });
});

describe("cachingVerifier", () => {
  const { publicKey, privateKey: seed } = generateEd25519KeyPair();
  const msgs = Array.from({ length: 5 }, (_, i) => TEXT.encode(`write ${i}`));
  const sigs = msgs.map((m) => signEd25519(seed, m));

  function counting(max: number) {
    let calls = 0;
    const v = cachingVerifier(max, (pk, m, s) => {
      calls++;
      return nodeCrypto.verifyEd25519(pk, m, s);
    });
    return { v, calls: () => calls };
  }

  it("accepts bytes it verified before without verifying them again", () => {
    const { v, calls } = counting(8);
    assert.equal(v(publicKey, msgs[0]!, sigs[0]!), true);
    assert.equal(calls(), 1);
    assert.equal(v(publicKey, msgs[0]!, sigs[0]!), true);
    assert.equal(v(publicKey, msgs[0]!, sigs[0]!), true);
    assert.equal(calls(), 1);
  });

  it("never lets a remembered signature vouch for other bytes, another key, or a forgery", () => {
    const { v } = counting(8);
    assert.equal(v(publicKey, msgs[0]!, sigs[0]!), true);
    assert.equal(v(publicKey, msgs[1]!, sigs[0]!), false);
    assert.equal(v(generateEd25519KeyPair().publicKey, msgs[0]!, sigs[0]!), false);
    assert.equal(v(publicKey, msgs[0]!, flipped(sigs[0]!, 3)), false);
    assert.equal(v(publicKey, msgs[1]!, flipped(sigs[1]!, 0)), false);
    assert.equal(
      v(publicKey, msgs[1]!, flipped(sigs[1]!, 0)),
      false,
      "an invalid verdict is not remembered as valid",
    );
    assert.equal(v(publicKey, msgs[2]!, sigs[2]!), true);
  });

  it("remembers at most max, forgetting the least recently used", () => {
    const { v, calls } = counting(2);
    for (let i = 0; i < 3; i++) assert.equal(v(publicKey, msgs[i]!, sigs[i]!), true);
    const before = calls();
    assert.equal(v(publicKey, msgs[2]!, sigs[2]!), true);
    assert.equal(v(publicKey, msgs[1]!, sigs[1]!), true);
    assert.equal(calls(), before);
    assert.equal(v(publicKey, msgs[0]!, sigs[0]!), true); // forgotten: verified again (and 2 evicted)
    assert.equal(calls(), before + 1);
    assert.equal(v(publicKey, msgs[1]!, sigs[1]!), true); // used most recently before 0: kept
    assert.equal(calls(), before + 1);
  });
});
