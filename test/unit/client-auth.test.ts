import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type ClientKeys,
  RequestVerifier,
  staticRegistry,
  VERIFIED_SIGNATURES_MAX,
} from "../../src/bft/client-auth.ts";
import { Digests } from "../../src/bft/digests.ts";
import { type ClientRequest, DEFAULT_LIMITS, type Limits } from "../../src/bft/types.ts";
import { generateEd25519KeyPair, nodeCrypto, signEd25519 } from "../../src/crypto/node-crypto.ts";

const N = 4;
const digests = new Digests(nodeCrypto);
const alice = generateEd25519KeyPair();
const mallory = generateEd25519KeyPair();
const op = new TextEncoder().encode("put /a 1");

/** Session keys of client "bob" with each replica (each replica knows only its own). */
const bobMacKeys = Array.from({ length: N }, (_, i) => new Uint8Array(32).fill(0x10 + i));

function registryOf(replica: number) {
  const entries: [string, ClientKeys][] = [
    ["alice", { ed25519PublicKey: alice.publicKey }],
    ["bob", { macKey: bobMacKeys[replica] as Uint8Array }],
  ];
  return staticRegistry(entries);
}

function verifier(replica = 0, limits: Limits = DEFAULT_LIMITS): RequestVerifier {
  return new RequestVerifier(replica, N, nodeCrypto, digests, registryOf(replica), limits);
}

type Unsigned = Omit<ClientRequest, "auth">;

function signed(r: Unsigned, seed: Uint8Array = alice.privateKey): ClientRequest {
  const placeholder: ClientRequest = { ...r, auth: { scheme: "ed25519", sig: new Uint8Array(64) } };
  // A request whose fields cannot even be encoded keeps its placeholder signature.
  if (!Number.isSafeInteger(r.reqNo) || r.reqNo < 0) return placeholder;
  return { ...r, auth: { scheme: "ed25519", sig: signEd25519(seed, digests.request(placeholder)) } };
}

function maced(r: Unsigned, keys: readonly Uint8Array[] = bobMacKeys): ClientRequest {
  const placeholder: ClientRequest = { ...r, auth: { scheme: "mac", macs: [] } };
  const d = digests.request(placeholder);
  return { ...r, auth: { scheme: "mac", macs: keys.map((k) => nodeCrypto.hmacSha256(k, d)) } };
}

const base: Unsigned = { clientId: "alice", reqNo: 1, op };

describe("RequestVerifier, ed25519", () => {
  it("accepts a validly signed request at every replica", () => {
    const r = signed(base);
    for (let i = 0; i < N; i++) assert.equal(verifier(i).check(r), null);
  });

  it("accepts an empty op", () => {
    assert.equal(verifier().check(signed({ ...base, op: new Uint8Array(0) })), null);
  });

  it("refuses an altered op, reqNo or clientId, and an altered signature (BAD_SIGNATURE)", () => {
    const r = signed(base);
    const v = verifier();
    const otherOp = new TextEncoder().encode("put /a 2");
    assert.equal(v.check({ ...r, op: otherOp }), "BAD_SIGNATURE");
    assert.equal(v.check({ ...r, op: op.subarray(0, op.length - 1) }), "BAD_SIGNATURE");
    assert.equal(v.check({ ...r, reqNo: 2 }), "BAD_SIGNATURE");
    if (r.auth.scheme !== "ed25519") throw new Error("unreachable");
    const sig = r.auth.sig.slice();
    sig[10] = (sig[10] as number) ^ 0x40;
    assert.equal(v.check({ ...r, auth: { scheme: "ed25519", sig } }), "BAD_SIGNATURE");
    assert.equal(
      v.check({ ...r, auth: { scheme: "ed25519", sig: r.auth.sig.subarray(0, 63) } }),
      "BAD_SIGNATURE",
    );
    assert.equal(v.check({ ...r, auth: { scheme: "ed25519", sig: new Uint8Array(64) } }), "BAD_SIGNATURE");
  });

  it("refuses a request moved to another client id (BAD_SIGNATURE)", () => {
    const keys = new Map<string, ClientKeys>([
      ["alice", { ed25519PublicKey: alice.publicKey }],
      ["alice2", { ed25519PublicKey: alice.publicKey }],
    ]);
    const v = new RequestVerifier(0, N, nodeCrypto, digests, staticRegistry(keys), DEFAULT_LIMITS);
    const r = signed(base);
    assert.equal(v.check(r), null);
    assert.equal(v.check({ ...r, clientId: "alice2" }), "BAD_SIGNATURE");
  });

  it("refuses a request signed with another key (BAD_SIGNATURE)", () => {
    assert.equal(verifier().check(signed(base, mallory.privateKey)), "BAD_SIGNATURE");
  });

  it("refuses an ed25519 request from a client that only has a MAC key (BAD_SIGNATURE)", () => {
    assert.equal(verifier().check(signed({ ...base, clientId: "bob" })), "BAD_SIGNATURE");
  });

  it("refuses an unknown client (UNKNOWN_CLIENT)", () => {
    assert.equal(verifier().check(signed({ ...base, clientId: "carol" })), "UNKNOWN_CLIENT");
  });

  it("refuses reqNo 0, negative, non-integer or unsafe (BAD_REQ_NO)", () => {
    const v = verifier();
    for (const reqNo of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, Number.MAX_SAFE_INTEGER + 1]) {
      assert.equal(v.check(signed({ ...base, reqNo })), "BAD_REQ_NO", `reqNo ${reqNo}`);
    }
    assert.equal(v.check(signed({ ...base, reqNo: Number.MAX_SAFE_INTEGER })), null);
  });

  it("refuses an empty or oversized clientId (BAD_CLIENT_ID)", () => {
    const v = verifier();
    const max = DEFAULT_LIMITS.clientIdMaxBytes;
    assert.equal(v.check(signed({ ...base, clientId: "" })), "BAD_CLIENT_ID");
    assert.equal(v.check(signed({ ...base, clientId: "x".repeat(max + 1) })), "BAD_CLIENT_ID");
    // The bound is in UTF-8 bytes: max/2 + 1 two-byte characters exceed it.
    assert.equal(v.check(signed({ ...base, clientId: "é".repeat(max / 2 + 1) })), "BAD_CLIENT_ID");
    // At the bound the id is well-formed (and merely unknown here).
    assert.equal(v.check(signed({ ...base, clientId: "x".repeat(max) })), "UNKNOWN_CLIENT");
  });

  it("refuses an oversized op (OP_TOO_LARGE)", () => {
    const limits: Limits = { ...DEFAULT_LIMITS, requestMaxBytes: 16 };
    const v = verifier(0, limits);
    assert.equal(v.check(signed({ ...base, op: new Uint8Array(17) })), "OP_TOO_LARGE");
    assert.equal(v.check(signed({ ...base, op: new Uint8Array(16) })), null);
    assert.equal(
      verifier().check(signed({ ...base, op: new Uint8Array(DEFAULT_LIMITS.requestMaxBytes + 1) })),
      "OP_TOO_LARGE",
    );
  });

  it("gives the same answer for the same request object twice", () => {
    const v = verifier();
    const good = signed(base);
    const bad = { ...good, reqNo: 9 };
    assert.equal(v.check(good), null);
    assert.equal(v.check(good), null);
    assert.equal(v.check(bad), "BAD_SIGNATURE");
    assert.equal(v.check(bad), "BAD_SIGNATURE");
  });
});

describe("RequestVerifier, signatures checked once", () => {
  /** A verifier whose ed25519 checks are counted. */
  function counted(): { v: RequestVerifier; verifies: () => number } {
    let count = 0;
    const crypto = {
      ...nodeCrypto,
      verifyEd25519: (pk: Uint8Array, msg: Uint8Array, sig: Uint8Array) => {
        count++;
        return nodeCrypto.verifyEd25519(pk, msg, sig);
      },
    };
    const v = new RequestVerifier(0, N, crypto, digests, registryOf(0), DEFAULT_LIMITS);
    return { v, verifies: () => count };
  }
  /** The same request in a new object, as decoding it from another message gives. */
  const copy = (r: ClientRequest): ClientRequest => structuredClone(r);

  it("verifies a request met again in another object once (a PREPARE carrying a request already seen)", () => {
    const { v, verifies } = counted();
    const r = signed(base);
    assert.equal(v.check(r), null);
    assert.equal(v.check(copy(r)), null);
    assert.equal(v.check(copy(r)), null);
    assert.equal(verifies(), 1, "one signature check for three objects with the same content");
  });

  it("still checks a copy whose signature differs from the one verified, and refuses a bad one", () => {
    const { v, verifies } = counted();
    const r = signed(base);
    assert.equal(v.check(r), null);
    const forged = { ...copy(r), auth: { scheme: "ed25519" as const, sig: new Uint8Array(64).fill(7) } };
    assert.equal(v.check(forged), "BAD_SIGNATURE");
    const byMallory = signed(base, mallory.privateKey);
    assert.equal(v.check(byMallory), "BAD_SIGNATURE");
    assert.equal(verifies(), 3, "every signature not seen before is checked");
  });

  it("checks a replica's own requests once per client id, a bad first one refused", () => {
    const { v, verifies } = counted();
    const bad = signed({ ...base, reqNo: 1 }, mallory.privateKey);
    assert.equal(v.check(bad, true), "BAD_SIGNATURE", "a key that does not match the registry is refused");
    assert.equal(v.check(signed({ ...base, reqNo: 2 }), true), null);
    assert.equal(verifies(), 2);
    for (let i = 3; i < 10; i++) assert.equal(v.check(signed({ ...base, reqNo: i }), true), null);
    assert.equal(verifies(), 2, "after one verified own signature, no more checks for that client id");
    // The same requests from a peer (not own) are checked as usual, unless their content was seen.
    assert.equal(v.check(copy(signed({ ...base, reqNo: 5 }))), null);
    assert.equal(verifies(), 2, "reqNo 5 was remembered when it was proposed here");
    assert.equal(v.check(signed({ ...base, reqNo: 50 })), null);
    assert.equal(verifies(), 3, "a request from elsewhere is verified");
  });

  it("remembers at most VERIFIED_SIGNATURES_MAX signatures, the oldest forgotten first", () => {
    const { v, verifies } = counted();
    const first = signed({ ...base, reqNo: 1 });
    assert.equal(v.check(first), null);
    for (let i = 2; i <= VERIFIED_SIGNATURES_MAX + 1; i++)
      assert.equal(v.check(signed({ ...base, reqNo: i })), null);
    const n = verifies();
    assert.equal(v.check(copy(signed({ ...base, reqNo: VERIFIED_SIGNATURES_MAX + 1 }))), null);
    assert.equal(verifies(), n, "a recent one is remembered");
    assert.equal(v.check(copy(first)), null);
    assert.equal(verifies(), n + 1, "the oldest was forgotten and is checked again");
  });
});

describe("RequestVerifier, MAC authenticators", () => {
  const bob: Unsigned = { clientId: "bob", reqNo: 1, op };

  it("accepts a valid authenticator at each replica (its own entry)", () => {
    const r = maced(bob);
    for (let i = 0; i < N; i++) assert.equal(verifier(i).check(r), null, `replica ${i}`);
  });

  it("refuses a wrong entry for the replica (BAD_MAC)", () => {
    const keys = bobMacKeys.slice();
    keys[2] = new Uint8Array(32).fill(0xee);
    const r = maced(bob, keys);
    assert.equal(verifier(2).check(r), "BAD_MAC");
    assert.equal(verifier(1).check(r), null);
  });

  it("refuses an authenticator whose macs are for another request (BAD_MAC)", () => {
    const r = maced(bob);
    assert.equal(verifier(0).check({ ...r, reqNo: 2 }), "BAD_MAC");
    assert.equal(verifier(0).check({ ...r, op: new Uint8Array(1) }), "BAD_MAC");
  });

  it("refuses a malformed authenticator: wrong number of macs (BAD_AUTH)", () => {
    const r = maced(bob);
    if (r.auth.scheme !== "mac") throw new Error("unreachable");
    const macs = r.auth.macs;
    assert.equal(
      verifier(0).check({ ...r, auth: { scheme: "mac", macs: macs.slice(0, N - 1) } }),
      "BAD_AUTH",
    );
    assert.equal(
      verifier(0).check({ ...r, auth: { scheme: "mac", macs: [...macs, macs[0] as Uint8Array] } }),
      "BAD_AUTH",
    );
    assert.equal(verifier(0).check({ ...r, auth: { scheme: "mac", macs: [] } }), "BAD_AUTH");
    assert.equal(verifier(0).executable({ ...r, auth: { scheme: "mac", macs: [] } }), false);
  });

  it("refuses MACs from a client that only has an ed25519 key (BAD_AUTH)", () => {
    assert.equal(verifier(0).check(maced({ ...bob, clientId: "alice" })), "BAD_AUTH");
  });

  it("a request valid for replica 0 but with a bad MAC for replica 1 passes at 0 and fails at 1", () => {
    const r = maced(bob);
    if (r.auth.scheme !== "mac") throw new Error("unreachable");
    const macs = r.auth.macs.slice();
    const bad = (macs[1] as Uint8Array).slice();
    bad[0] = (bad[0] as number) ^ 0xff;
    macs[1] = bad;
    const mixed: ClientRequest = { ...r, auth: { scheme: "mac", macs } };
    assert.equal(verifier(0).check(mixed), null);
    assert.equal(verifier(1).check(mixed), "BAD_MAC");
    assert.equal(verifier(2).check(mixed), null);
  });

  it("checks well-formedness before authentication", () => {
    assert.equal(verifier(0).check(maced({ ...bob, reqNo: 0 })), "BAD_REQ_NO");
    assert.equal(verifier(0).check(maced({ ...bob, clientId: "" })), "BAD_CLIENT_ID");
  });
});

describe("RequestVerifier, unknown schemes", () => {
  it("refuses an unknown auth scheme (BAD_AUTH)", () => {
    const r = { ...base, auth: { scheme: "rsa", sig: new Uint8Array(64) } } as unknown as ClientRequest;
    assert.equal(verifier().check(r), "BAD_AUTH");
  });
});

describe("RequestVerifier.executable", () => {
  const bob: Unsigned = { clientId: "bob", reqNo: 1, op };

  it("accepts authenticated requests", () => {
    assert.equal(verifier(0).executable(signed(base)), true);
    assert.equal(verifier(0).executable(maced(bob)), true);
  });

  it("refuses what every replica can check: shape, unknown client, ed25519 signature", () => {
    assert.equal(verifier(0).executable(signed({ ...base, reqNo: 0 })), false);
    assert.equal(verifier(0).executable(signed({ ...base, clientId: "carol" })), false);
    assert.equal(verifier(0).executable({ ...signed(base), reqNo: 2 }), false);
  });

  it("tolerates a wrong MAC entry of its own replica (other replicas cannot see it)", () => {
    const keys = bobMacKeys.slice();
    keys[1] = new Uint8Array(32).fill(0xee);
    const r = maced(bob, keys);
    assert.equal(verifier(1).check(r), "BAD_MAC");
    assert.equal(verifier(1).executable(r), true);
    assert.equal(verifier(0).executable(r), true);
  });
});
