// ZooKeeper-style ACLs through the real service: a live 3-replica hybrid cluster in this process (real
// WebSockets and LevelDB), two sessions on different replicas: the owner's ACL keeps the other out with
// NOAUTH, world READ lets it read, setACL with aversion grants more, addAuth lends a session a role key's
// rights, and a malformed ACL is INVALIDACL
// both at the client and, sent raw, from the cluster.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Acl, type CoordError, OPEN_ACL, Perms } from "../../src/coord/client.ts";
import { OpKind } from "../../src/coord/ops.ts";
import { generateEd25519KeyPair } from "../../src/crypto/node-crypto.ts";
import { InProcessCluster, rawSession } from "../util/coord-cluster.ts";
import { waitFor } from "../util/wait.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const code = (c: string) => (e: CoordError) => e.code === c;

/** A raw session (sends what the client library would refuse to send) and its first `n` results by id. */
async function rawSessionWithResults(url: string) {
  const r = await rawSession(url, 4000);
  const results = async (n: number) => {
    const got = () => r.msgs.filter((m) => m.type === "result" || m.type === "error");
    await waitFor("results", () => got().length >= n, { timeoutMs: 10_000, intervalMs: 20 });
    return got().sort((a, b) => (a.id as number) - (b.id as number));
  };
  return { ...r, results };
}

describe("coordination ACLs (3 hybrid replicas in-process)", () => {
  let cl: InProcessCluster;

  before(async () => {
    cl = await InProcessCluster.start("orderer-coord-acl-");
  });

  after(async () => {
    await cl?.stop();
  });

  it("enforces a node's ACL for another session, on writes and on a replica's local reads", async () => {
    const owner = await cl.connect(0);
    const other = await cl.connect(1);
    const acl: Acl[] = [
      { perms: Perms.ALL, scheme: "auth", id: "" },
      { perms: Perms.READ, scheme: "world", id: "anyone" },
    ];
    assert.equal(await owner.create("/acl", "cfg", { acl }), "/acl");
    const mine = await owner.getACL("/acl");
    assert.deepEqual(
      mine.acl,
      [
        { perms: Perms.ALL, scheme: "ed25519", id: owner.aclId },
        { perms: Perms.READ, scheme: "world", id: "anyone" },
      ],
      "auth became the owner's key",
    );
    assert.equal(mine.stat.aversion, 0, "aversion 0");
    await other.sync("/acl");
    assert.equal(text((await other.getData("/acl")).data), "cfg", "world may read");
    assert.deepEqual((await other.getACL("/acl")).acl, mine.acl, "READ lets it read the ACL");
    await assert.rejects(other.setData("/acl", "x"), code("NOAUTH"), "no WRITE");
    await assert.rejects(other.create("/acl/x"), code("NOAUTH"), "no CREATE");
    await assert.rejects(other.setACL("/acl", OPEN_ACL), code("NOAUTH"), "no ADMIN");
    await assert.rejects(
      other.multi([
        { type: "create", path: "/free" },
        { type: "setData", path: "/acl", data: "x" },
      ]),
      code("NOAUTH"),
      "a multi with one refused operation",
    );
    assert.equal(await other.exists("/free"), null, "rolled back");
    // A node nobody else may read.
    await owner.create("/acl/private", "p", { acl: [{ perms: Perms.ALL, scheme: "auth", id: "" }] });
    await other.sync("/acl/private");
    await assert.rejects(other.getData("/acl/private"), code("NOAUTH"), "getData needs READ");
    await assert.rejects(other.getChildren("/acl/private"), code("NOAUTH"), "getChildren needs READ");
    await assert.rejects(other.getACL("/acl/private"), code("NOAUTH"), "getACL needs READ or ADMIN");
    assert.ok(await other.exists("/acl/private"), "exists is not checked");
    // The owner grants WRITE, at the current aversion.
    const grant = [...mine.acl, { perms: Perms.WRITE, scheme: "ed25519", id: other.aclId }];
    await assert.rejects(owner.setACL("/acl", grant, 5), code("BADVERSION"), "a stale aversion");
    const st = await owner.setACL("/acl", grant, 0);
    assert.equal(st.aversion, 1, "aversion counts the change");
    const st2 = await other.setData("/acl", "theirs");
    assert.equal(st2.version, 1, "the grant lets the other write");
    assert.equal(st2.aversion, 1, "and its stat shows the aversion");
    // A third session gets in by proving it holds a role key (an ordered addAuth).
    const role = generateEd25519KeyPair();
    const roleId = Buffer.from(role.publicKey).toString("hex");
    await owner.setACL("/acl", [...grant, { perms: Perms.CREATE, scheme: "ed25519", id: roleId }], 1);
    const third = await cl.connect(2);
    await third.sync("/acl");
    await assert.rejects(third.create("/acl/r"), code("NOAUTH"), "not before addAuth");
    await third.addAuth("ed25519", role);
    assert.equal(await third.create("/acl/r"), "/acl/r", "after addAuth the role key's CREATE applies");
  });

  it("refuses a malformed ACL with INVALIDACL, at the client and from the cluster", async () => {
    const zk = await cl.connect(2);
    const bad: Acl[] = [{ perms: Perms.ALL, scheme: "digest", id: "u:x" }];
    await assert.rejects(zk.create("/bad", "", { acl: bad }), code("INVALIDACL"), "refused locally");
    await assert.rejects(zk.create("/bad", "", { acl: [] }), code("INVALIDACL"), "an empty list");
    // Past the client's check (a raw session): the cluster answers the same.
    const r = await rawSessionWithResults(cl.urls[1] as string);
    r.write(1, 1, { kind: OpKind.SET_ACL, path: "/", acl: bad, version: -1 });
    r.write(2, 2, { kind: OpKind.CREATE, path: "/bad", data: new Uint8Array(0), mode: 0, ttlMs: 0, acl: [] });
    const results = await r.results(2);
    assert.deepEqual(
      results.map((m) => m.code),
      ["INVALIDACL", "INVALIDACL"],
      "the tree refuses them too",
    );
    r.ws.close();
    assert.equal((await zk.getACL("/")).stat.aversion, 0, "the root's ACL is untouched");
    assert.equal(await zk.exists("/bad"), null, "nothing created");
  });
});
