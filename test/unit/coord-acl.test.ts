// ZooKeeper-style ACLs on znodes: each operation kind refused with NOAUTH without its permission (in the
// tree, and on a replica's local reads), the owner's key and world:anyone allowed, setACL's aversion and
// BADVERSION, the `auth` scheme, addAuth (a key proven for this session only), malformed ACLs refused with
// INVALIDACL, the encoding's versions, determinism, and ACLs and added keys kept through the store (a
// restart) and the tree's dump.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { serialize } from "node:v8";
import { Level } from "level";
import {
  ACL_ENTRIES_MAX,
  type Acl,
  AUTH_IDS_MAX,
  addAuthSigningBytes,
  keyId,
  OPEN_ACL,
  Perms,
} from "../../src/coord/acl.ts";
import { decodeOp, encodeOp, type OpBody, OpCodecError, OpKind, type SubOp } from "../../src/coord/ops.ts";
import { ReadServer } from "../../src/coord/service-reads.ts";
import type { CoordConn } from "../../src/coord/service-types.ts";
import { loadTree, treeWrites } from "../../src/coord/store.ts";
import { ZTree } from "../../src/coord/tree.ts";
import { generateEd25519KeyPair, signEd25519, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { KEYSPACE } from "../../src/storage/keyspace.ts";
import { writeBatch } from "../../src/storage/level-store.ts";
import { check, create, del, set, TestSession, TreeHarness } from "../util/coord-harness.ts";

const keyOf = (s: TestSession): string => keyId(s.key.publicKey);
const only = (s: TestSession, perms: number = Perms.ALL): Acl[] => [
  { perms, scheme: "ed25519", id: keyOf(s) },
];
const createAcl = (path: string, acl: readonly Acl[], data = ""): SubOp => ({
  ...(create(path, data) as Extract<SubOp, { kind: 4 }>),
  acl,
});
const setAcl = (path: string, acl: readonly Acl[], version = -1): OpBody => ({
  kind: OpKind.SET_ACL,
  path,
  acl,
  version,
});

/** An addAuth of `key` for session `s` (its credential: the key and its signature bound to `s`). */
function addAuth(s: TestSession, key = generateEd25519KeyPair(), forId = s.id, scheme = "ed25519"): OpBody {
  const sig = signEd25519(key.privateKey, addAuthSigningBytes(forId, s.key.publicKey));
  const credential = new Uint8Array([...key.publicKey, ...sig]);
  return { kind: OpKind.ADD_AUTH, scheme, credential };
}

/** A tree with an owner session and a stranger; /p belongs to the owner alone, /p/c is open. */
function setup() {
  const h = new TreeHarness();
  const owner = new TestSession();
  const other = new TestSession();
  h.open(owner);
  h.open(other);
  const r = h.run(owner.op(createAcl("/p", only(owner), "secret")), owner.op(create("/p/c")));
  assert.deepEqual(
    r.map((x) => x.code),
    ["OK", "OK"],
    "the owner creates its node and a child",
  );
  return { h, owner, other, t: h.tree };
}

/** A ReadServer over `tree` answering into `out`, and a connection of `s`. */
function reader(tree: ZTree, s: TestSession) {
  const out: Record<string, unknown>[] = [];
  const rs = new ReadServer(tree, () => 0, 1000, 100, {
    send: (_c, m) => out.push(m),
    fail: (_c, id, code) => out.push({ type: "error", id, code }),
    applying: () => 0,
  });
  const c = { sessionId: s.id, zxid: 0, reads: 0, closed: false } as unknown as CoordConn;
  const read = (type: string, path: string) => {
    rs.read(c, 1, { type, path });
    return out.pop() as Record<string, unknown>;
  };
  return { read, rs };
}

describe("ACL checks in the tree", () => {
  it("refuses every write kind without its permission with NOAUTH and changes nothing", () => {
    const { h, other, t } = setup();
    const before = t.dump();
    const r = h.run(
      other.op(create("/p/x")), // CREATE on the parent
      other.op(del("/p/c")), // DELETE on the parent
      other.op(set("/p", "mine")), // WRITE
      other.op(setAcl("/p", OPEN_ACL)), // ADMIN
      other.op({ kind: OpKind.MULTI, ops: [create("/free"), check("/p", 0)] }), // check: READ
      other.op({ kind: OpKind.MULTI, ops: [create("/free"), set("/p", "x")] }),
    );
    assert.deepEqual(
      r.map((x) => x.code),
      Array(6).fill("NOAUTH"),
      "each refused",
    );
    assert.deepEqual(
      r[4]?.results?.map((x) => x.code),
      ["OK", "NOAUTH"],
      "the multi names the refused operation",
    );
    assert.equal(t.get("/free"), undefined, "the multi's create was rolled back");
    const after = JSON.parse(t.dump());
    const was = JSON.parse(before);
    assert.deepEqual(after.nodes, was.nodes, "no node changed");
  });

  it("lets the owner's key do all of it", () => {
    const { h, owner, t } = setup();
    const r = h.run(
      owner.op(create("/p/x")),
      owner.op(set("/p", "new")),
      owner.op({ kind: OpKind.MULTI, ops: [check("/p", 1), del("/p/x")] }),
      owner.op(del("/p/c")),
      owner.op(setAcl("/p", OPEN_ACL)),
      owner.op(del("/p")),
    );
    assert.deepEqual(
      r.map((x) => x.code),
      Array(6).fill("OK"),
      "every operation allowed",
    );
    assert.equal(t.get("/p"), undefined, "gone");
  });

  it("grants world:anyone exactly the permissions it carries", () => {
    const { h, owner, other } = setup();
    const readCreate = [{ perms: Perms.READ | Perms.CREATE, scheme: "world", id: "anyone" }];
    assert.equal(h.run(owner.op(createAcl("/w", readCreate)))[0]?.code, "OK", "created");
    const r = h.run(
      other.op(create("/w/mine")),
      other.op({ kind: OpKind.MULTI, ops: [check("/w", 0)] }),
      other.op(set("/w", "x")),
      other.op(del("/w/mine")),
    );
    assert.deepEqual(
      r.map((x) => x.code),
      ["OK", "OK", "NOAUTH", "NOAUTH"],
      "create and read yes; write and delete no",
    );
  });

  it("refuses an operation on a missing node with NONODE before NOAUTH, as ZooKeeper", () => {
    const { h, other } = setup();
    const r = h.run(other.op(set("/nope", "x")), other.op(create("/nope/x")), other.op(del("/p/nope")));
    assert.deepEqual(
      r.map((x) => x.code),
      ["NONODE", "NONODE", "NOAUTH"],
      "delete checks the parent first",
    );
  });
});

describe("setACL", () => {
  it("counts ACL changes in aversion and refuses a stale one with BADVERSION", () => {
    const { h, owner, other, t } = setup();
    const st0 = t.stat("/p");
    assert.equal(st0?.aversion, 0, "a new node's aversion is 0");
    const grant = [...only(owner), { perms: Perms.READ | Perms.WRITE, scheme: "ed25519", id: keyOf(other) }];
    const [r1] = h.run(owner.op(setAcl("/p", grant, 0)));
    assert.equal(r1?.code, "OK", "setACL at aversion 0");
    assert.equal(r1?.stat?.aversion, 1, "the result's stat has the new aversion");
    assert.equal(t.stat("/p")?.mzxid, st0?.mzxid, "setACL does not change mzxid");
    assert.equal(t.stat("/p")?.version, 0, "nor the data version");
    assert.equal(h.run(owner.op(setAcl("/p", grant, 0)))[0]?.code, "BADVERSION", "aversion 0 is stale");
    assert.equal(h.run(other.op(set("/p", "now I may")))[0]?.code, "OK", "the grant works");
    assert.equal(h.run(other.op(setAcl("/p", OPEN_ACL)))[0]?.code, "NOAUTH", "but not ADMIN");
    assert.equal(h.run(owner.op(setAcl("/p", OPEN_ACL, 1)))[0]?.code, "OK", "aversion 1 is current");
    assert.equal(t.stat("/p")?.aversion, 2, "two changes");
    assert.equal(t.get("/p")?.acl, OPEN_ACL, "an open list is stored as the shared OPEN_ACL");
  });

  it("turns an auth entry into the caller's key and drops duplicates", () => {
    const { h, owner, t } = setup();
    const auth = { perms: Perms.ALL, scheme: "auth", id: "" };
    const [r] = h.run(owner.op(createAcl("/a", [auth, ...only(owner)])));
    assert.equal(r?.code, "OK", "created");
    assert.deepEqual(t.get("/a")?.acl, only(owner), "one ed25519 entry for the owner's key");
  });
});

describe("addAuth", () => {
  it("adds a key the session proves it holds; the ACLs naming it then let the session in", () => {
    const { h, owner, other, t } = setup();
    const role = generateEd25519KeyPair();
    const roleAcl = [{ perms: Perms.READ | Perms.WRITE, scheme: "ed25519", id: keyId(role.publicKey) }];
    assert.equal(h.run(owner.op(createAcl("/r", [...only(owner), ...roleAcl])))[0]?.code, "OK", "created");
    assert.equal(h.run(other.op(set("/r", "x")))[0]?.code, "NOAUTH", "not yet");
    const [r] = h.run(other.op(addAuth(other, role)));
    assert.equal(r?.code, "OK", "addAuth with the role key");
    assert.deepEqual(t.session(other.id)?.auth, [keyId(role.publicKey)], "the session holds the role id");
    assert.equal(h.run(other.op(set("/r", "x")))[0]?.code, "OK", "now it may write");
    assert.equal(h.run(other.op(addAuth(other, role)))[0]?.code, "OK", "adding it again changes nothing");
    assert.equal(t.session(other.id)?.auth.length, 1, "still one id");
    // The `auth` scheme names every identity of the caller.
    const [c] = h.run(other.op(createAcl("/mine", [{ perms: 31, scheme: "auth", id: "" }])));
    assert.equal(c?.code, "OK", "created with auth");
    assert.deepEqual(
      t.get("/mine")?.acl.map((a) => a.id),
      [keyOf(other), keyId(role.publicKey)],
      "own key and role key",
    );
  });

  it("refuses a proof for another session, a bad signature and other schemes with AUTHFAILED", () => {
    const { h, owner, other, t } = setup();
    const role = generateEd25519KeyPair();
    // The owner's proof, copied from the ledger into the other session's addAuth.
    const copied = addAuth(owner, role);
    const forged = addAuth(other, role, other.id + 1);
    const r = h.run(
      other.op(copied),
      other.op(forged),
      other.op(addAuth(other, role, other.id, "digest")),
      other.op({ kind: OpKind.ADD_AUTH, scheme: "ed25519", credential: new Uint8Array(5) }),
    );
    assert.deepEqual(
      r.map((x) => x.code),
      Array(4).fill("AUTHFAILED"),
      "each refused",
    );
    assert.deepEqual(t.session(other.id)?.auth, [], "nothing added");
    assert.ok(t.session(other.id), "the session stays");
  });

  it(`holds at most ${AUTH_IDS_MAX} added keys`, () => {
    const { h, other } = setup();
    const r = h.run(...Array.from({ length: AUTH_IDS_MAX + 1 }, () => other.op(addAuth(other))));
    assert.deepEqual(
      r.map((x) => x.code),
      [...Array(AUTH_IDS_MAX).fill("OK"), "BADARGUMENTS"],
      "the last one is over the bound",
    );
  });
});

describe("malformed ACLs", () => {
  const bad: [string, Acl[]][] = [
    ["empty", []],
    ["unknown scheme", [{ perms: 31, scheme: "digest", id: "u:x" }]],
    ["world but not anyone", [{ perms: 31, scheme: "world", id: "everyone" }]],
    ["short key", [{ perms: 31, scheme: "ed25519", id: "abcd" }]],
    ["upper-case key", [{ perms: 31, scheme: "ed25519", id: "A".repeat(64) }]],
    ["auth with an id", [{ perms: 31, scheme: "auth", id: "x" }]],
    ["perms over 31", [{ perms: 32, scheme: "world", id: "anyone" }]],
    [
      "too many",
      Array.from({ length: ACL_ENTRIES_MAX + 1 }, (_, i) => ({
        perms: i % 32,
        scheme: "world",
        id: "anyone",
      })),
    ],
  ];
  it("refuses each in create and setACL with INVALIDACL", () => {
    const { h, owner, t } = setup();
    for (const [why, acl] of bad) {
      const r = h.run(owner.op(createAcl("/bad", acl)), owner.op(setAcl("/p", acl)));
      assert.deepEqual(
        r.map((x) => x.code),
        ["INVALIDACL", "INVALIDACL"],
        why,
      );
    }
    assert.equal(t.get("/bad"), undefined, "nothing created");
    assert.equal(t.stat("/p")?.aversion, 0, "no ACL changed");
  });

  it("bounds the list and its strings in the codec with a typed error", () => {
    const many = Array.from({ length: 257 }, () => ({ perms: 1, scheme: "world", id: "anyone" }));
    const body = { kind: OpKind.SET_ACL, path: "/p", acl: many, version: -1 } as const;
    assert.throws(() => encodeOp({ sessionId: 1, cxid: 1, body }), RangeError, "the encoder refuses");
    const ok = encodeOp({ sessionId: 1, cxid: 1, body: { ...body, acl: many.slice(0, 256) } });
    assert.equal(decodeOp(ok).body.kind, OpKind.SET_ACL, "256 entries decode (the tree refuses them)");
    const long = encodeOp({
      sessionId: 1,
      cxid: 1,
      body: setAcl("/p", [{ perms: 1, scheme: "ed25519", id: "a".repeat(257) }]),
    });
    assert.throws(
      () => decodeOp(long),
      (e: unknown) => e instanceof OpCodecError,
      "an id over 256 bytes is a codec error",
    );
  });
});

describe("ACL encoding versions", () => {
  it("writes version 3; a version-2 create still decodes, with no ACL (OPEN_ACL)", () => {
    const v3 = encodeOp({ sessionId: 5, cxid: 2, body: create("/a", "d") });
    assert.equal(v3[0], 3, "version 3");
    // A version-2 create: the same fields up to the TTL, no ACL list.
    const v2 = Uint8Array.from(v3.subarray(0, v3.length - 4 - (1 + 4 + 5 + 4 + 6)));
    v2[0] = 2;
    const op = decodeOp(v2);
    assert.equal(op.body.kind, OpKind.CREATE, "a create");
    assert.equal((op.body as { acl?: unknown }).acl, undefined, "no ACL: the tree uses OPEN_ACL");
    assert.deepEqual((decodeOp(v3).body as { acl?: unknown }).acl, OPEN_ACL, "version 3 carries the list");
  });

  it("refuses a setACL in a version-2 payload", () => {
    const p = encodeOp({ sessionId: 5, cxid: 2, body: setAcl("/a", OPEN_ACL) });
    p[0] = 2;
    assert.throws(
      () => decodeOp(p),
      (e: unknown) => e instanceof OpCodecError && e.code === "BAD_VALUE",
      "setACL needs version 3",
    );
  });
});

describe("ACL checks on local reads", () => {
  it("getData and getChildren need READ, getACL READ or ADMIN, exists nothing", () => {
    const { h, owner, other, t } = setup();
    const adminOnly = [{ perms: Perms.ADMIN, scheme: "ed25519", id: keyOf(other) }, ...only(owner)];
    assert.equal(h.run(owner.op(createAcl("/adm", adminOnly)))[0]?.code, "OK", "created");
    const stranger = reader(t, other);
    assert.equal(stranger.read("getData", "/p").code, "NOAUTH", "getData");
    assert.equal(stranger.read("getChildren", "/p").code, "NOAUTH", "getChildren");
    assert.equal(stranger.read("getACL", "/p").code, "NOAUTH", "getACL");
    assert.equal(stranger.read("exists", "/p").code, "OK", "exists is not checked (ZooKeeper 3.8)");
    assert.equal(stranger.read("getData", "/adm").code, "NOAUTH", "ADMIN alone does not read data");
    const acl = stranger.read("getACL", "/adm");
    assert.equal(acl.code, "OK", "ADMIN reads the ACL");
    assert.deepEqual(acl.acl, adminOnly, "the ACL as set");
    assert.equal((acl.stat as { aversion: number }).aversion, 0, "with the stat");
    const mine = reader(t, owner);
    assert.equal(mine.read("getData", "/p").code, "OK", "the owner reads");
    assert.deepEqual(mine.read("getChildren", "/p").children, ["c"], "and lists");
    assert.equal(mine.read("getACL", "/nope").code, "NONODE", "a missing node");
  });
});

describe("ACLs persist", () => {
  it("two trees fed the same blocks with ACL operations end identical", () => {
    const h = new TreeHarness();
    const twin = new ZTree({ n: 3, f: 1 }, verifyEd25519);
    const a = new TestSession();
    const b = new TestSession();
    const feed = (ops: ReturnType<TestSession["op"]>[]) => {
      const entries = [h.entry(0, ops), h.entry(1, []), h.entry(2, [])];
      const fx = h.tree.applyBlock(++h.block, entries);
      assert.deepEqual(twin.applyBlock(h.block, entries), fx, `the same effects in block ${h.block}`);
    };
    feed([a.open(), b.open()]);
    [a.id, b.id] = h.tree.sessionIds() as [number, number];
    feed([a.op(createAcl("/x", [{ perms: 31, scheme: "auth", id: "" }])), b.op(addAuth(b))]);
    feed([
      b.op({ kind: OpKind.MULTI, ops: [create("/y"), create("/x/z")] }),
      a.op(setAcl("/x", OPEN_ACL, 0)),
    ]);
    feed([b.op(create("/x/z"))]);
    assert.equal(twin.dump(), h.tree.dump(), "the same state, ACLs and added keys included");
    assert.equal(h.tree.stat("/x")?.numChildren, 1, "the last create went through after the setACL");
  });

  it("a tree dump shows ACLs, and a restored tree keeps ACLs and aversion and enforces them", async () => {
    const { h, owner, other, t } = setup();
    h.run(owner.op(setAcl("/p", only(owner, Perms.ALL & ~Perms.DELETE), 0)));
    const role = generateEd25519KeyPair();
    assert.equal(h.run(other.op(addAuth(other, role)))[0]?.code, "OK", "the other adds a key");
    assert.match(t.dump(), new RegExp(keyOf(owner)), "the dump (replicas compare it) carries the ACL");
    const dir = mkdtempSync(join(tmpdir(), "orderer-acl-"));
    const db = new Level<string, Uint8Array>(dir, { keyEncoding: "utf8", valueEncoding: "view" });
    try {
      await db.open();
      await writeBatch(db, treeWrites(t, t.takeChanges()), false);
      // A record written before ACLs: 11 fields.
      const n = t.get("/p/c");
      assert.ok(n, "the child exists");
      const old = [n.data, n.czxid, n.mzxid, n.pzxid, n.ctime, n.mtime, n.version, n.cversion, 0, 0, 0];
      await db.put(`${KEYSPACE.znode}/p/c`, serialize(old));
      const copy = new ZTree({ n: 3, f: 1 }, verifyEd25519);
      assert.equal(await loadTree(db, copy), true, "loaded");
      assert.equal(copy.dump(), t.dump(), "the same tree, ACLs included");
      assert.equal(copy.stat("/p")?.aversion, 1, "aversion kept");
      assert.equal(copy.get("/p/c")?.acl, OPEN_ACL, "an old record reads as OPEN_ACL");
      assert.deepEqual(copy.session(other.id)?.auth, [keyId(role.publicKey)], "the added key is kept");
      const more = [other.op(create("/p/y")), owner.op(del("/p/c"))];
      const entries = [h.entry(0, more), h.entry(1, []), h.entry(2, [])];
      const codes = (fx: ReturnType<ZTree["applyBlock"]>) =>
        fx.filter((e) => e.kind === "result").map((e) => (e as { result: { code: string } }).result.code);
      assert.deepEqual(codes(copy.applyBlock(h.block + 1, entries)), ["NOAUTH", "NOAUTH"], "still enforced");
      assert.deepEqual(codes(t.applyBlock(h.block + 1, entries)), ["NOAUTH", "NOAUTH"], "as on the original");
    } finally {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
