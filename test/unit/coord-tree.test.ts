// The znode tree state machine: every operation and error code, sequential naming, multi rollback,
// sessions (expiry through the agreed clock, ephemerals), container and TTL cleanup, retransmissions,
// determinism and restore.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { OpKind, type SignedOp } from "../../src/coord/ops.ts";
import { pathProblem, sequenceSuffix } from "../../src/coord/path.ts";
import { type Effect, ZTree, ZXID_PER_BLOCK, zxidOf } from "../../src/coord/tree.ts";
import { verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { check, create, del, enc, set, TestSession, TreeHarness } from "../util/coord-harness.ts";

const text = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);
const watches = (fx: Effect[]) =>
  fx
    .filter((e) => e.kind === "watch")
    .map((e) => `${(e as { type: string }).type} ${(e as { path: string }).path}`);

function setup(cfg = {}) {
  const h = new TreeHarness(cfg);
  const s = new TestSession();
  h.open(s);
  return { h, s, t: h.tree };
}

describe("paths", () => {
  it("accepts ZooKeeper's valid paths and refuses the rest with a reason", () => {
    for (const p of ["/", "/a", "/a/b", "/a.b", "/...", "/a b", "/ü/ß"])
      assert.equal(pathProblem(p), null, p);
    for (const p of [
      "",
      "a",
      "/a/",
      "//",
      "/a//b",
      "/./a",
      "/a/..",
      "/a\u0000",
      "/a\u0001",
      "/\u007f",
      "/\ud800x",
      "/\ufff5",
    ])
      assert.notEqual(pathProblem(p), null, JSON.stringify(p));
    assert.equal(pathProblem("/q/", true), null, "a sequential create may end with /");
    assert.notEqual(pathProblem("/q/"), null);
  });

  it("formats sequence numbers as 10 zero-padded digits", () => {
    assert.equal(sequenceSuffix(0), "0000000000");
    assert.equal(sequenceSuffix(42), "0000000042");
    assert.equal(sequenceSuffix(2 ** 31 - 1), "2147483647");
    assert.equal(sequenceSuffix(2 ** 31), "-2147483648");
  });

  it("answers invalid paths with BADARGUMENTS, never an exception", () => {
    const { h, s } = setup();
    const r = h.run(
      s.op(create("a")),
      s.op(create("/a/")),
      s.op(create("/a//b")),
      s.op(set("/..", "x")),
      s.op(del("/a\u0000")),
      s.op({ kind: OpKind.SYNC, path: "x" }),
      s.op(check("", 0)),
    );
    assert.deepEqual(
      r.map((x) => x.code),
      Array(7).fill("BADARGUMENTS"),
    );
  });
});

describe("create, getData, setData, delete", () => {
  it("creates with ZooKeeper's stat and updates the parent", () => {
    const { h, s, t } = setup();
    const parentBefore = t.stat("/");
    const [r] = h.run(s.op(create("/app", "hello")));
    assert.equal(r?.code, "OK");
    assert.equal(r?.path, "/app");
    const st = t.stat("/app");
    assert.ok(st, "st");
    assert.equal(st.czxid, st.mzxid);
    assert.equal(st.czxid, st.pzxid);
    assert.equal(Math.floor(st.czxid / ZXID_PER_BLOCK), h.block, "zxid derived from the block");
    assert.equal(st.ctime, h.now);
    assert.equal(st.mtime, h.now);
    assert.equal(st.version, 0);
    assert.equal(st.cversion, 0);
    assert.equal(st.aversion, 0);
    assert.equal(st.ephemeralOwner, 0);
    assert.equal(st.dataLength, 5);
    assert.equal(st.numChildren, 0);
    assert.deepEqual(r?.stat, st);
    const root = t.stat("/");
    assert.equal(root?.cversion, (parentBefore?.cversion ?? 0) + 1);
    assert.equal(root?.pzxid, st.czxid);
    assert.equal(root?.numChildren, 1);
    assert.equal(text(t.get("/app")?.data), "hello");
  });

  it("refuses NODEEXISTS, NONODE parent, NOCHILDRENFOREPHEMERALS and oversized data", () => {
    const { h, s } = setup({ dataMaxBytes: 16 });
    const r = h.run(
      s.op(create("/a")),
      s.op(create("/a")),
      s.op(create("/missing/child")),
      s.op(create("/e", "", 1)),
      s.op(create("/e/child")),
      s.op(create("/big", "x".repeat(17))),
      s.op(create("/")),
      s.op(set("/a", "y".repeat(17))),
      s.op(create("/ok", "z".repeat(16))),
    );
    assert.deepEqual(
      r.map((x) => x.code),
      [
        "OK",
        "NODEEXISTS",
        "NONODE",
        "OK",
        "NOCHILDRENFOREPHEMERALS",
        "BADARGUMENTS",
        "NODEEXISTS",
        "BADARGUMENTS",
        "OK",
      ],
    );
  });

  it("setData checks the version, bumps it and mzxid/mtime; delete checks version and children", () => {
    const { h, s, t } = setup();
    h.run(s.op(create("/n", "a")), s.op(create("/n/c")));
    const c0 = t.stat("/n");
    h.now += 1000;
    const r = h.run(
      s.op(set("/n", "b", 5)),
      s.op(set("/n", "b", 0)),
      s.op(set("/n", "c", -1)),
      s.op(set("/nope", "c")),
      s.op(del("/n")),
      s.op(del("/n/c", 3)),
      s.op(del("/n/c", 0)),
      s.op(del("/n/c")),
      s.op(del("/")),
    );
    assert.deepEqual(
      r.map((x) => x.code),
      ["BADVERSION", "OK", "OK", "NONODE", "NOTEMPTY", "BADVERSION", "OK", "NONODE", "BADARGUMENTS"],
    );
    const st = t.stat("/n");
    assert.equal(st?.version, 2);
    assert.equal(text(t.get("/n")?.data), "c");
    assert.equal(st?.czxid, c0?.czxid);
    assert.ok((st?.mzxid ?? 0) > (c0?.mzxid ?? 0), "(st?.mzxid ?? 0) > (c0?.mzxid ?? 0)");
    assert.equal(st?.mtime, h.now);
    assert.equal(st?.ctime, c0?.ctime);
    assert.equal(st?.cversion, 2, "child created and deleted");
    assert.equal(st?.numChildren, 0);
    assert.deepEqual(r[1]?.stat?.version, 1);
  });

  it("getChildren lists names sorted; exists is undefined for a missing node", () => {
    const { h, s, t } = setup();
    h.run(s.op(create("/p")), s.op(create("/p/b")), s.op(create("/p/a")), s.op(create("/p/c")));
    assert.deepEqual(t.children("/p"), ["a", "b", "c"]);
    assert.equal(t.stat("/p/zzz"), undefined);
    assert.equal(t.children("/nope"), undefined);
  });

  it("sync answers with its path through the order", () => {
    const { h, s } = setup();
    const [r] = h.run(s.op({ kind: OpKind.SYNC, path: "/" }));
    assert.deepEqual(r, { code: "OK", path: "/" });
  });
});

describe("sequential nodes", () => {
  it("suffixes the parent's cversion as 10 digits, which grows on every child create and delete", () => {
    const { h, s } = setup();
    h.run(s.op(create("/q")));
    const r = h.run(
      s.op(create("/q/job-", "", 2)),
      s.op(create("/q/job-", "", 2)),
      s.op(create("/q/x")),
      s.op(del("/q/x")),
      s.op(create("/q/", "", 3)),
      s.op(create("/q/job-", "", 2)),
    );
    assert.deepEqual(
      r.map((x) => x.path ?? x.code),
      ["/q/job-0000000000", "/q/job-0000000001", "/q/x", "OK", "/q/0000000004", "/q/job-0000000005"],
    );
  });

  it("ephemeral-sequential nodes belong to the session", () => {
    const { h, s, t } = setup();
    h.run(s.op(create("/l")));
    const [r] = h.run(s.op(create("/l/lock-", "", 3)));
    assert.equal(t.stat(r?.path ?? "")?.ephemeralOwner, s.id);
  });
});

describe("multi", () => {
  it("applies every operation under one zxid", () => {
    const { h, s, t } = setup();
    h.run(s.op(create("/m", "0")));
    const [r] = h.run(
      s.op({ kind: OpKind.MULTI, ops: [check("/m", 0), create("/m/a"), set("/m", "1", 0), create("/m/b")] }),
    );
    assert.equal(r?.code, "OK");
    assert.deepEqual(
      r?.results?.map((x) => x.code),
      ["OK", "OK", "OK", "OK"],
    );
    assert.equal(t.stat("/m/a")?.czxid, t.stat("/m/b")?.czxid);
    assert.equal(t.stat("/m")?.mzxid, t.stat("/m/a")?.czxid);
    assert.equal(t.stat("/m")?.version, 1);
  });

  it("rolls everything back when one operation fails (OK before, the code, RUNTIMEINCONSISTENCY after)", () => {
    const { h, s, t } = setup();
    h.run(s.op(create("/m", "0")), s.op(create("/m/keep")));
    const before = t.dump();
    const fx = h.apply([
      s.op({
        kind: OpKind.MULTI,
        ops: [
          create("/m/new", "", 1),
          set("/m", "changed"),
          del("/m/keep"),
          check("/m", 0),
          create("/m/after"),
        ],
      }),
    ]);
    const r = fx.find((e) => e.kind === "result") as Extract<Effect, { kind: "result" }>;
    assert.equal(r.result.code, "BADVERSION");
    assert.deepEqual(
      r.result.results?.map((x) => x.code),
      ["OK", "OK", "OK", "BADVERSION", "RUNTIMEINCONSISTENCY"],
    );
    assert.deepEqual(watches(fx), [], "no watch fires for a failed multi");
    const after = JSON.parse(t.dump());
    const b = JSON.parse(before);
    assert.deepEqual(after.nodes, b.nodes, "tree unchanged");
    assert.equal(t.session(s.id)?.ephemerals.size, 0);
    // A later sequential create sees the parent's counter as if the multi never happened.
    const [seq] = h.run(s.op(create("/m/s-", "", 2)));
    assert.equal(seq?.path, "/m/s-0000000001");
  });
});

describe("sessions", () => {
  it("expire through the agreed clock and take their ephemerals with them, firing watches", () => {
    const { h, s, t } = setup();
    const other = new TestSession();
    h.open(other, 2000);
    h.run(s.op(create("/svc")));
    other.cxid = 0;
    h.run(other.op(create("/svc/member", "", 1)));
    assert.ok(t.get("/svc/member"), 't.get("/svc/member")');
    // Keep `s` alive with pings; `other` stays silent.
    let fx: Effect[] = [];
    for (let i = 0; i < 15; i++) {
      h.now += 200;
      fx = fx.concat(h.apply([s.keepAlive()]));
    }
    assert.equal(t.get("/svc/member"), undefined);
    assert.equal(t.session(other.id), undefined);
    assert.ok(t.session(s.id), "the pinging session lives");
    const closed = fx.filter((e) => e.kind === "closed");
    assert.deepEqual(
      closed.map((e) => [(e as { sessionId: number }).sessionId, (e as { reason: string }).reason]),
      [[other.id, "expired"]],
    );
    assert.deepEqual(watches(fx), ["NodeDeleted /svc/member", "NodeChildrenChanged /svc"]);
    // Operations of the expired session are answered SESSIONEXPIRED.
    const [r] = h.run(other.op(create("/late")));
    assert.equal(r?.code, "SESSIONEXPIRED");
  });

  it("a single replica's clock cannot expire sessions (time is the f+1-th highest clock)", () => {
    const { h, t } = setup();
    const victim = new TestSession();
    h.open(victim, 2000);
    const far = h.now + 3_600_000;
    for (let i = 0; i < 20; i++) h.apply([], [far + i, h.now, h.now]);
    assert.ok(t.session(victim.id), "one fast clock moved nothing");
    assert.equal(t.timeMs, h.now);
  });

  it("the session clock advances at most clockStepMaxMs per block: an ordering stall expires nobody at once", () => {
    const { h, s, t } = setup({ clockStepMaxMs: 500 });
    const idle = new TestSession();
    h.open(idle, 3000);
    h.now += 60_000; // a minute without any block
    h.apply([]);
    assert.ok(t.session(idle.id), "not expired right after the stall");
    assert.ok(t.session(s.id), "t.session(s.id)");
    h.advance(4000, 200);
    assert.equal(t.session(idle.id), undefined, "expires once its timeout passed in session time");
  });

  it("closeSession removes the session and its ephemerals under one zxid", () => {
    const { h, s, t } = setup();
    h.run(s.op(create("/e1", "", 1)), s.op(create("/e2", "", 3)));
    const fx = h.apply([s.op({ kind: OpKind.CLOSE_SESSION })]);
    assert.equal(t.session(s.id), undefined);
    assert.deepEqual(t.children("/"), []);
    const zs = fx.filter((e) => e.kind === "watch").map((e) => (e as { zxid: number }).zxid);
    assert.equal(new Set(zs).size, 1);
  });

  it("negotiates the timeout into the configured bounds", () => {
    const h = new TreeHarness({ sessionTimeoutMinMs: 4000, sessionTimeoutMaxMs: 40_000 });
    const a = new TestSession();
    const b = new TestSession();
    const [ra] = h.run(a.open(100));
    const [rb] = h.run(b.open(10_000_000));
    assert.equal(ra?.timeoutMs, 4000);
    assert.equal(rb?.timeoutMs, 40_000);
  });

  it("refuses sessions beyond sessionsMax with THROTTLEDOP", () => {
    const h = new TreeHarness({ sessionsMax: 1 });
    h.open(new TestSession());
    const [r] = h.run(new TestSession().open());
    assert.equal(r?.code, "THROTTLEDOP");
  });

  it("reopening with the same key returns the same session", () => {
    const h = new TreeHarness();
    const s = new TestSession();
    const id = h.open(s);
    const [r] = h.run(s.open());
    assert.equal(r?.sessionId, id);
    assert.equal(h.tree.sessionCount, 1);
  });
});

describe("retransmissions, ordering and forgeries", () => {
  it("answers a retransmitted operation from the kept result without applying it again", () => {
    const { h, s, t } = setup();
    const op = s.op(create("/seq-", "", 2));
    const [first] = h.run(op);
    const fx = h.apply([op]);
    const again = fx.find((e) => e.kind === "result") as Extract<Effect, { kind: "result" }>;
    assert.equal(again.duplicate, true);
    assert.deepEqual(again.result, first);
    assert.deepEqual(t.children("/"), ["seq-0000000000"]);
  });

  it("defers an operation that overtook an earlier one of its session", () => {
    const { h, s, t } = setup();
    const a = s.op(create("/a"));
    const b = s.op(create("/a/b"));
    const fx = h.apply([b]);
    assert.deepEqual(
      fx.map((e) => e.kind),
      ["deferred"],
    );
    assert.equal(t.get("/a/b"), undefined);
    assert.deepEqual(
      h.run(a, b).map((r) => r.code),
      ["OK", "OK"],
    );
  });

  it("ignores operations with a bad signature or signed by another key", () => {
    const { h, s, t } = setup();
    const mallory = new TestSession();
    const forged = mallory.sign(s.id, s.cxid + 1, create("/forged"));
    const bent = s.sign(s.id, s.cxid + 1, create("/bent"));
    bent.sig[0] = (bent.sig[0] as number) ^ 1;
    const fx = h.apply([forged, bent]);
    assert.deepEqual(fx, []);
    assert.equal(t.get("/forged"), undefined);
    assert.equal(t.stats.badSignatures, 2);
    assert.equal(t.session(s.id)?.lastCxid, 0, "no cxid consumed");
  });

  it("applies bundled operations (one signature over their Merkle root) like singly signed ones", () => {
    const { h, s, t } = setup();
    const ops = s.bundle([create("/b1"), create("/b2"), create("/b3")]);
    assert.equal(new Set(ops.map((o) => o.sig)).size, 1, "one signature for the bundle");
    assert.deepEqual(
      h.run(...ops).map((r) => r.code),
      ["OK", "OK", "OK"],
    );
    assert.equal(t.session(s.id)?.lastCxid, 3);
    // Ordered apart (one per block) they still verify: each carries its own proof.
    const [a, b] = s.bundle([create("/c1"), create("/c2")]);
    assert.equal(h.run(a as SignedOp)[0]?.code, "OK");
    assert.equal(h.run(b as SignedOp)[0]?.code, "OK");
    assert.equal(t.stats.badSignatures, 0);
  });

  it("refuses a bundled operation that is forged, altered, moved to another session or replayed", () => {
    const { h, s, t } = setup();
    const other = new TestSession();
    h.open(other);
    const [a, b] = s.bundle([create("/x1"), create("/x2")]) as [SignedOp, SignedOp];
    // Altered: another payload under the bundle's signature and a's proof.
    const altered = { ...a, payload: s.sign(s.id, 1, create("/evil")).payload };
    // Forged: a proof that points at another index, and one with a bent sibling hash.
    const wrongIndex = { ...a, proof: { index: 1, size: 2, path: a.proof?.path ?? [] } };
    const bentPath = {
      ...a,
      proof: { index: 0, size: 2, path: (a.proof?.path ?? []).map((p) => p.map((x, i) => (i ? x : x ^ 1))) },
    };
    // Moved: the same operation, its session id rewritten to another session's.
    const moved = { ...a, payload: other.sign(other.id, 1, create("/x1")).payload };
    const fx = h.apply([altered, wrongIndex, bentPath, moved]);
    assert.deepEqual(fx, []);
    assert.equal(t.stats.badSignatures, 4);
    assert.equal(t.get("/evil"), undefined);
    assert.equal(t.session(s.id)?.lastCxid, 0, "no cxid consumed");
    assert.equal(t.session(other.id)?.lastCxid, 0);
    // The genuine pair applies once; replayed, it is answered from the results, not applied again.
    assert.deepEqual(
      h.run(a, b).map((r) => r.code),
      ["OK", "OK"],
    );
    const before = t.get("/x1")?.mzxid;
    const again = h.apply([a, b]).filter((e) => e.kind === "result");
    assert.ok(
      again.every((e) => (e as { duplicate?: boolean }).duplicate === true),
      "a replayed bundled operation is a duplicate",
    );
    assert.equal(t.get("/x1")?.mzxid, before);
  });

  it("skips garbage entries and operations without failing the block", () => {
    const { h, s, t } = setup();
    const garbage = { payload: Uint8Array.of(1, 2, 3), sig: new Uint8Array(64) };
    const fx = h.tree.applyBlock(++h.block, [
      Uint8Array.of(0, 0x5a, 0x4b, 1, 9),
      h.entry(7, [s.op(create("/x"))]),
      h.entry(0, [garbage]),
    ]);
    assert.deepEqual(fx, []);
    assert.equal(t.stats.badEntries, 2);
    assert.equal(t.stats.badOps, 1);
  });
});

describe("containers and TTL nodes", () => {
  it("removes a container once its last child is gone, never before it had one", () => {
    const { h, s, t } = setup();
    h.run(s.op(create("/c", "", 4)));
    h.advance(1000);
    assert.ok(t.get("/c"), "an empty new container stays");
    h.run(s.op(create("/c/x")));
    h.advance(1000);
    assert.ok(t.get("/c"), 't.get("/c")');
    h.run(s.op(del("/c/x")));
    const fx = h.advance(300);
    assert.equal(t.get("/c"), undefined);
    assert.deepEqual(watches(fx), ["NodeDeleted /c", "NodeChildrenChanged /"]);
  });

  it("removes a TTL node not modified within its TTL and without children", () => {
    const { h, s, t } = setup();
    const r = h.run(
      s.op(create("/t", "", 5, 2000)),
      s.op(create("/t2", "", 5, 2000)),
      s.op(create("/t2/child")),
      s.op(create("/bad", "", 5, 0)),
      s.op(create("/bad2", "", 0, 100)),
    );
    assert.deepEqual(
      r.map((x) => x.code),
      ["OK", "OK", "OK", "BADARGUMENTS", "BADARGUMENTS"],
    );
    h.advance(1500);
    h.run(s.op(set("/t", "touch")));
    h.advance(1500);
    assert.ok(t.get("/t"), "modified within its TTL");
    h.advance(1000);
    assert.equal(t.get("/t"), undefined);
    assert.ok(t.get("/t2"), "has a child");
    const [seq] = h.run(s.op(create("/t2/s-", "", 6, 500)));
    assert.match(seq?.path ?? "", /^\/t2\/s-\d{10}$/);
  });
});

describe("when time is due (the replicas propose their clocks only then)", () => {
  it("never without sessions, TTL nodes or emptied containers; at a TTL's expiry; now for an emptied container", () => {
    const h = new TreeHarness();
    const t = h.tree;
    assert.equal(t.timeDeadlineMs(), Number.POSITIVE_INFINITY, "an empty tree needs no time");
    // A session creates the nodes, then closes: the tree holds no session afterwards.
    const s = new TestSession();
    h.open(s);
    assert.equal(t.timeDeadlineMs(), t.timeMs, "a live session: time is due at every period");
    h.run(s.op(create("/c", "", 4)), s.op(create("/c/x")), s.op(create("/t", "", 5, 2000)));
    h.run(s.op({ kind: OpKind.CLOSE_SESSION }));
    assert.equal(t.stat("/t")?.mtime, t.timeMs, "created at the agreed time");
    assert.equal(t.timeDeadlineMs(), (t.stat("/t")?.mtime as number) + 2001, "the TTL's expiry");
    h.apply([]);
    assert.equal(t.get("/c/x") !== undefined, true);
    const s2 = new TestSession();
    h.open(s2);
    h.run(s2.op(del("/c/x")));
    h.run(s2.op({ kind: OpKind.CLOSE_SESSION }));
    // The emptied container is removed by the scan of this block or is due now.
    assert.ok(!t.get("/c") || t.timeDeadlineMs() === t.timeMs, "the emptied container is gone or due now");
    h.advance(2500, 500);
    assert.equal(t.get("/t"), undefined, "the TTL node expired");
    assert.equal(t.get("/c"), undefined, "the emptied container is gone");
    assert.equal(t.timeDeadlineMs(), Number.POSITIVE_INFINITY, "nothing is due any more");
  });
});

describe("zxids, time, watches, determinism, restore", () => {
  it("zxids grow with the order and time is the f+1-th highest replica clock", () => {
    const { h, s, t } = setup();
    const [a, b] = h.run(s.op(create("/a")), s.op(create("/b")));
    assert.ok((b?.stat?.czxid ?? 0) > (a?.stat?.czxid ?? 0), "(b?.stat?.czxid ?? 0) > (a?.stat?.czxid ?? 0)");
    const [c] = h.run(s.op(create("/c")));
    assert.equal(c?.stat?.czxid, zxidOf(h.block, 1));
    h.apply([], [h.now + 5000, h.now + 3000, h.now + 1000]);
    assert.equal(t.timeMs, h.now + 3000);
    h.apply([], [h.now, h.now, h.now]);
    assert.equal(t.timeMs, h.now + 3000, "never goes back");
  });

  it("emits the watch triggers of an operation before its result", () => {
    const { h, s } = setup();
    h.run(s.op(create("/w")));
    const fx = h.apply([s.op(create("/w/c")), s.op(set("/w", "x")), s.op(del("/w/c"))]);
    assert.deepEqual(
      fx.map((e) => (e.kind === "watch" ? `${e.type} ${e.path}` : e.kind)),
      [
        "NodeCreated /w/c",
        "NodeChildrenChanged /w",
        "result",
        "NodeDataChanged /w",
        "result",
        "NodeDeleted /w/c",
        "NodeChildrenChanged /w",
        "result",
      ],
    );
  });

  it("two trees fed the same blocks are identical; a restored tree continues identically", () => {
    const h = new TreeHarness();
    const twin = new ZTree({ n: 3, f: 1 }, verifyEd25519);
    const s = new TestSession();
    const blocks: Uint8Array[][] = [];
    const feed = (ops: ReturnType<TestSession["op"]>[]) => {
      const entries = [h.entry(0, ops), h.entry(1, []), h.entry(2, [])];
      blocks.push(entries);
      h.tree.applyBlock(++h.block, entries);
      twin.applyBlock(h.block, entries);
    };
    feed([s.open(3000)]);
    s.id = h.tree.sessionIds()[0] as number;
    feed([s.op(create("/a", "1")), s.op(create("/a/e-", "", 3)), s.op(create("/c", "", 4))]);
    feed([s.op(set("/a", "2")), s.op(create("/c/x"))]);
    assert.equal(h.tree.dump(), twin.dump());
    // Restore a third tree from the records the store would keep.
    const copy = new ZTree({ n: 3, f: 1 }, verifyEd25519);
    const t = h.tree;
    const nodes = JSON.parse(t.dump()).nodes.map((n: [string]) => n[0]) as string[];
    copy.restore(
      t.meta(),
      nodes.map((p) => {
        const { children: _c, ...rest } = t.get(p) as NonNullable<ReturnType<typeof t.get>>;
        return [p, rest] as const;
      }),
      t.sessionIds().map((id) => {
        const {
          ephemerals: _e,
          results: _r,
          ...rest
        } = t.session(id) as NonNullable<ReturnType<typeof t.session>>;
        return rest;
      }),
      t
        .sessionIds()
        .flatMap((id) => [...(t.session(id)?.results ?? [])].map(([c, r]) => [id, c, r] as const)),
    );
    assert.equal(copy.dump(), t.dump());
    const next = [
      h.entry(0, [s.op(del("/c/x"))]),
      h.entry(1, [], h.now + 9000),
      h.entry(2, [], h.now + 9000),
    ];
    const fa = t.applyBlock(h.block + 1, next);
    const fb = copy.applyBlock(h.block + 1, next);
    assert.deepEqual(fa, fb);
    assert.equal(copy.dump(), t.dump());
    assert.equal(copy.applyBlock(h.block + 1, next).length, 0, "an applied block is not applied twice");
  });

  it("data bytes survive as given", () => {
    const { h, s, t } = setup();
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    h.run(s.op({ kind: OpKind.CREATE, path: "/bin", data: bytes, mode: 0, ttlMs: 0 }));
    assert.deepEqual(t.get("/bin")?.data, bytes);
    assert.deepEqual(enc("x"), Uint8Array.of(120));
  });
});

describe("limits", () => {
  it("refuses creates beyond nodesMax with QUOTAEXCEEDED", () => {
    const { h, s } = setup({ nodesMax: 3 });
    const r = h.run(s.op(create("/a")), s.op(create("/b")), s.op(create("/c")));
    assert.deepEqual(
      r.map((x) => x.code),
      ["OK", "OK", "QUOTAEXCEEDED"],
    );
  });
});
