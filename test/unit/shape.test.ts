// The structural check of peer messages (src/bft/shape.ts) and what ReplicaCore.step() does with it:
// everything replicas really send passes; anything of the wrong shape, at any depth, is dropped as
// "malformed" without a throw; and an exception from a handler is a bug that step() no longer hides.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inspect } from "node:util";
import { type Message, type Mode, messageShapeProblem, type ReplicaCore } from "../../src/bft/index.ts";
import { Cluster, TEST_LIMITS } from "./harness.ts";

/** A cluster of `mode` that commits requests, changes view twice (0 → 1 → 2) and commits again. */
function busyCluster(mode: Mode): Cluster {
  const c = new Cluster({ mode, limits: { statusTicks: 7 } });
  for (let k = 0; k < 5; k++) c.commitRequest();
  for (const dead of [0, 1]) {
    // The leader is cut off: a request forwarded to it times out and the others change view.
    c.filter = (e) => (e.from === dead || e.to === dead ? "drop" : "deliver");
    c.propose((dead + 2) % c.n, c.request());
    c.deliverAll();
    c.tick(TEST_LIMITS.requestTimeoutTicks as number);
    c.tick(TEST_LIMITS.viewChangeTimeoutTicks as number);
    c.filter = () => "deliver";
    c.tick(20); // STATUS gossip brings the cut-off replica along
    c.deliverAll();
  }
  for (let k = 0; k < 5; k++) c.commitRequest(c.request(), [2]);
  c.tick(20);
  c.deliverAll();
  return c;
}

const clusters = new Map<Mode, Cluster>();
function cluster(mode: Mode): Cluster {
  let c = clusters.get(mode);
  if (!c) {
    c = busyCluster(mode);
    clusters.set(mode, c);
  }
  return c;
}

/** Up to `per` logged messages of each type. */
function samples(c: Cluster, per: number): Message[] {
  const byType = new Map<string, Message[]>();
  for (const e of c.log) {
    const list = byType.get(e.msg.type) ?? [];
    if (list.length < per) list.push(e.msg);
    byType.set(e.msg.type, list);
  }
  return [...byType.values()].flat();
}

type Path = readonly (string | number)[];

/** Every path into `x` (fields and array elements, not bytes inside a Uint8Array). */
function paths(x: unknown, at: Path = []): Path[] {
  if (x === null || typeof x !== "object" || x instanceof Uint8Array) return [];
  return Object.entries(x).flatMap(([k, v]) => {
    const p = [...at, Array.isArray(x) ? Number(k) : k];
    return [p, ...paths(v, p)];
  });
}

function get(x: unknown, path: Path): unknown {
  return path.reduce<unknown>((o, k) => (o as Record<string | number, unknown>)[k], x);
}

/** A copy of `x` with the value at `path` replaced. */
function replaced(x: unknown, path: Path, value: unknown): unknown {
  if (path.length === 0) return value;
  const [k, ...rest] = path as [string | number, ...Path];
  const copy = (Array.isArray(x) ? [...x] : { ...(x as object) }) as Record<string | number, unknown>;
  copy[k] = replaced(copy[k], rest, value);
  return copy;
}

function stepsAsMalformed(r: ReplicaCore, from: number, msg: unknown, what: string): void {
  const before = r.dropped.get("malformed") ?? 0;
  assert.doesNotThrow(() => r.step(from, msg as Message), what);
  assert.equal(r.dropped.get("malformed") ?? 0, before + 1, `dropped as malformed: ${what}`);
}

describe("message shapes", () => {
  for (const mode of ["hybrid", "pbft"] as Mode[]) {
    it(`every message a ${mode} cluster sends passes, through view changes`, () => {
      const c = cluster(mode);
      const types = new Set(c.log.map((e) => e.msg.type));
      const prefix = mode === "hybrid" ? "h-" : "p-";
      const expected = ["request", "status", "checkpoint"].concat(
        mode === "hybrid"
          ? ["h-prepare", "h-commit", "h-view-change", "h-new-view", "h-commit-nv"]
          : ["p-pre-prepare", "p-prepare", "p-commit", "p-view-change", "p-new-view"],
      );
      for (const t of expected) assert.ok(types.has(t as Message["type"]), `the run sent a ${t}`);
      assert.ok(
        c.log.some((e) => e.msg.type === `${prefix}view-change` && "newView" in e.msg && e.msg.newView === 2),
        "the run changed view twice",
      );
      for (const e of c.log) {
        assert.equal(messageShapeProblem(e.msg), null, `${e.msg.type} from ${e.from}: ${inspect(e.msg)}`);
      }
    });

    it(`${mode}: any field of a real message replaced by one of the wrong type is a problem, and dropped`, () => {
      const c = cluster(mode);
      const target = new Cluster({ mode });
      let tried = 0;
      for (const msg of samples(c, 2)) {
        for (const path of paths(msg)) {
          const old = get(msg, path);
          const junk = typeof old === "string" ? 5 : "junk";
          const bad = replaced(msg, path, junk);
          const what = `${msg.type} with ${path.join(".")} = ${inspect(junk)}`;
          assert.notEqual(messageShapeProblem(bad), null, what);
          // A missing field too (an absent `prev` is a certificate that is not continuing: fine).
          if (path.at(-1) !== "prev" && !Array.isArray(get(msg, path.slice(0, -1)))) {
            assert.notEqual(messageShapeProblem(replaced(msg, path, undefined)), null, `${what} (missing)`);
          }
          stepsAsMalformed(target.r(1), 2, bad, what);
          tried++;
        }
      }
      assert.ok(tried > 200, `tried ${tried} mutations`);
    });
  }

  const bytes = new Uint8Array(32);
  const cert = { subsystem: 0, counter: 0, value: { view: 0, slot: 1 }, sig: new Uint8Array(64) };
  const cp = { seq: 0, stateDigest: bytes, clientsDigest: bytes, sigs: [] };
  const vc = { type: "h-view-change", replica: 1, newView: 1, checkpoint: cp, nv: null, entries: [] };
  const okVc = { ...vc, chain: [{ cert, digest: bytes }], proofs: [] };
  const nv = { type: "h-new-view", view: 1, vcs: [okVc], cert };
  const req = { clientId: "c", reqNo: 1, op: bytes, auth: { scheme: "ed25519", sig: bytes } };
  const pref = { view: 0, seq: 1, batchDigest: bytes, sig: bytes };
  const pvc = { type: "p-view-change", replica: 1, newView: 1, checkpoint: cp, prepared: [], sig: bytes };
  const table: [string, unknown][] = [
    ["null", null],
    ["a number", 42],
    ["an array", [{ type: "status" }]],
    ["no type", {}],
    ["an unknown type", { type: "bogus" }],
    ["an inherited name as type", { type: "constructor" }],
    // The simulator's Byzantine "garbage" (test/sim/byzantine.ts).
    ["sim: bare PREPARE", { type: "h-prepare" }],
    [
      "sim: p-view-change",
      { type: "p-view-change", replica: 1, newView: 3, checkpoint: null, prepared: [{}], sig: 5 },
    ],
    [
      "sim: h-view-change",
      { type: "h-view-change", replica: 1, newView: 2, chain: [{ cert: null }], entries: "x" },
    ],
    [
      "sim: state",
      { type: "state", checkpoint: { seq: 4, stateDigest: bytes, sigs: [] }, fromSeq: 1, batches: [{}] },
    ],
    ["sim: checkpoint", { type: "checkpoint", seq: 4, stateDigest: "zz", sig: null }],
    ["sim: nonsense", { type: "nonsense" }],
    ["a negative view", { type: "status", view: -1, target: 0, lastExecuted: 0, stableSeq: 0 }],
    ["an unsafe integer", { type: "status", view: 2 ** 60, target: 0, lastExecuted: 0, stableSeq: 0 }],
    ["a digest as an array", { type: "batch-fetch", digests: [[1, 2, 3]] }],
    ["a sparse list", { type: "batch-fetch", digests: new Array(2) }],
    ["a sparse list of proofs", { ...okVc, proofs: new Array(1) }],
    ["a digest as a Buffer-like object", { type: "batch-fetch", digests: [{ length: 32 }] }],
    ["an unknown auth scheme", { type: "request", request: { ...req, auth: { scheme: "rsa", sig: bytes } } }],
    ["macs of numbers", { type: "request", request: { ...req, auth: { scheme: "mac", macs: [1, 2] } } }],
    ["a null prev", { type: "h-commit-nv", view: 1, nvDigest: bytes, cert: { ...cert, prev: null } }],
    ["a replica id above u32", { ...pvc, replica: 2 ** 32 }],
    ["a VIEW-CHANGE without proofs", { type: "h-new-view", view: 1, vcs: [vc], cert }],
    ["a null summary field", { ...okVc, nv: { view: 1, checkpointSeq: 0, certs: [] } }],
    ["a proof's VIEW-CHANGE with proofs", { ...okVc, proofs: [{ ...nv, vcs: [{ ...okVc, proofs: [nv] }] }] }],
    ["a proof that is a VIEW-CHANGE", { ...okVc, proofs: [okVc] }],
    [
      "a PREPARE typed as a COMMIT",
      { ...pvc, prepared: [{ prePrepare: pref, prepares: [{ type: "p-commit" }] }] },
    ],
    ["a null pre-prepare ref", { type: "p-new-view", view: 1, vcs: [pvc], prePrepares: [null], sig: bytes }],
    ["a proof without sides", { type: "h-proof", culprit: 0, proof: { a: { cert, digest: bytes } } }],
    ["a short client entry", { type: "snapshot", checkpoint: cp, clients: [["c", 0, [], 0]] }],
    ["a client entry with a bad reply", { type: "snapshot", checkpoint: cp, clients: [["c", 0, [], 0, {}]] }],
  ];

  it("the hand-made pieces of the table are well-formed where they are meant to be", () => {
    assert.equal(messageShapeProblem(okVc), null, "a VIEW-CHANGE");
    assert.equal(messageShapeProblem({ ...okVc, proofs: [nv] }), null, "a VIEW-CHANGE with a proof");
    assert.equal(messageShapeProblem(nv), null, "a NEW-VIEW");
    assert.equal(messageShapeProblem(pvc), null, "a PBFT VIEW-CHANGE");
    assert.equal(messageShapeProblem({ type: "request", request: req }), null, "a request");
    const clients = [["c", 0, [2, 3], 0, { reqNo: 1, data: bytes }]];
    assert.equal(messageShapeProblem({ type: "snapshot", checkpoint: cp, clients }), null, "a snapshot");
  });

  for (const mode of ["hybrid", "pbft"] as Mode[]) {
    it(`${mode}: a table of malformed objects, each a problem, each dropped as malformed`, () => {
      const r = new Cluster({ mode }).r(1);
      for (const [what, msg] of table) {
        const problem = messageShapeProblem(msg);
        assert.ok(problem !== null, `${what} is a problem`);
        stepsAsMalformed(r, 2, msg, `${what} (${problem})`);
      }
      assert.equal(r.droppedTotal(), table.length, "nothing but malformed drops");
      assert.equal(r.ready().send.length, 0, "nothing sent in answer");
    });
  }
});

describe("step() and handler bugs", () => {
  for (const mode of ["hybrid", "pbft"] as Mode[]) {
    it(`${mode}: an exception from a handler propagates out of step() (it is a bug, not a bad peer)`, () => {
      const c = cluster(mode);
      const msg = c.log.find((e) => e.msg.type === (mode === "hybrid" ? "h-commit" : "p-prepare"))?.msg;
      assert.ok(msg !== undefined, "a protocol message from the run");
      assert.equal(messageShapeProblem(msg), null, "it is well-formed");
      const r = new Cluster({ mode }).r(1);
      (r as unknown as { dispatchProtocol: () => void }).dispatchProtocol = () => {
        throw new TypeError("a bug in a handler");
      };
      assert.throws(() => r.step(2, msg), TypeError);
      assert.equal(r.droppedTotal(), 0, "not counted as a peer's fault");
    });
  }
});
