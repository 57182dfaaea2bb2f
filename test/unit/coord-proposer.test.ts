// The coordination proposer under a slow order: an entry not applied within inFlightTimeoutMs goes to the
// core again as the same request (never a second copy of its operations, never out of order), and a write
// the order put before its predecessor waits while that predecessor is still held here
// (docs/coord-protocol.md). The core is a stub that records what it is handed; time is injected.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ClientRequest } from "../../src/bft/index.ts";
import { decodeEntry, decodeOp, ENTRY_HEADER_BYTES, ENTRY_OP_OVERHEAD, OpKind } from "../../src/coord/ops.ts";
import { EntryProposer, type ProposerStats } from "../../src/coord/service-proposer.ts";
import { COORD_SERVICE_DEFAULTS, type PendingOp } from "../../src/coord/service-types.ts";
import { opBytes } from "../../src/coord/service-wire.ts";
import type { Effect } from "../../src/coord/tree.ts";
import { verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { withDefaults } from "../../src/util/defaults.ts";
import { create, TestSession, TreeHarness } from "../util/coord-harness.ts";

const TIMEOUT_MS = 5000;
const tick = () => new Promise((r) => setImmediate(r));

function setup() {
  const h = new TreeHarness();
  const s = new TestSession();
  h.open(s);
  const clock = { now: 1_000_000 };
  const core = { handed: [] as ClientRequest[], verdict: "pending" as string };
  const failed: PendingOp[] = [];
  const stats: ProposerStats = {
    entriesProposed: 0,
    opsProposed: 0,
    refused: 0,
    deferredRetries: 0,
    deferredFailed: 0,
    inFlightTimeouts: 0,
  };
  const op = (cxid: number): PendingOp => {
    const signed = s.sign(s.id, cxid, create(`/n${cxid}`, "x".repeat(100)));
    return { sessionId: s.id, cxid, kind: OpKind.CREATE, signed, bytes: opBytes(signed), attempts: 0 };
  };
  // Room for one operation per entry, so each write travels in its own request.
  const entryMaxBytes = ENTRY_HEADER_BYTES + ENTRY_OP_OVERHEAD + op(1).bytes + 8;
  const o = withDefaults(COORD_SERVICE_DEFAULTS, {
    tree: h.tree,
    self: 0,
    propose: (r: ClientRequest) => {
      core.handed.push(r);
      return core.verdict;
    },
    signRequest: (reqNo: number, bytes: Uint8Array): ClientRequest => ({
      clientId: "coord-0",
      reqNo,
      op: bytes,
      auth: { scheme: "ed25519", sig: new Uint8Array(64) },
    }),
    verify: verifyEd25519,
    entryMaxBytes,
    inFlightTimeoutMs: TIMEOUT_MS,
  });
  const proposer = new EntryProposer(o, h.tree, () => clock.now, stats, {
    hasSession: () => true,
    pong: () => {},
    deferredFailed: (p) => failed.push(p),
  });
  /** The cxids an entry carries. */
  const cxids = (r: ClientRequest) => decodeEntry(r.op).ops.map((so) => decodeOp(so.payload).cxid);
  return { h, s, clock, core, failed, stats, op, proposer, cxids };
}

describe("coordination proposer, a slow order", () => {
  it("hands a late entry to the core again as the same request, in the order first proposed", async () => {
    const { clock, core, stats, op, proposer, cxids } = setup();
    proposer.enqueue(op(1));
    await tick();
    proposer.enqueue(op(2));
    await tick();
    assert.equal(core.handed.length, 2, "two entries, one write each");
    const first = core.handed.map((r) => r.reqNo);

    clock.now += TIMEOUT_MS - 1;
    proposer.onTimer(clock.now, 250);
    assert.equal(core.handed.length, 2, "nothing is late yet");

    clock.now += 2;
    proposer.onTimer(clock.now, 250);
    const again = core.handed.slice(2);
    assert.deepEqual(
      again.map((r) => r.reqNo),
      first,
      "the same two requests again, in their order (no new request number: the core never orders a copy)",
    );
    assert.deepEqual(again.map(cxids), [[1], [2]], "carrying the same writes");
    assert.equal(stats.entriesProposed, 2, "no new entry was proposed");
    assert.equal(stats.inFlightTimeouts, 2, "two late entries counted");

    clock.now += TIMEOUT_MS - 1;
    proposer.onTimer(clock.now, 250);
    assert.equal(core.handed.length, 4, "a handed-again entry waits a whole timeout before the next try");
  });

  it("gives back the writes of an entry the core executed unseen, in their first order", async () => {
    const { clock, core, op, proposer, cxids } = setup();
    proposer.enqueue(op(1));
    await tick();
    proposer.enqueue(op(2));
    await tick();
    const first = new Set(core.handed.map((r) => r.reqNo));
    core.verdict = "duplicate";
    clock.now += TIMEOUT_MS + 1;
    proposer.onTimer(clock.now, 250);
    const fresh = core.handed.filter((r) => !first.has(r.reqNo));
    assert.deepEqual(
      fresh.map(cxids),
      [[1], [2]],
      "proposed again under new numbers, write 1 before write 2",
    );
  });

  it("lets a deferred write wait for a predecessor still held here, however slow the order", async () => {
    const { h, s, clock, failed, stats, op, proposer } = setup();
    const one = op(1);
    const two = op(2);
    proposer.enqueue(one);
    proposer.enqueue(two);
    await tick();
    // The order puts write 2 first: the tree defers it.
    const fx = h.apply([two.signed]);
    const deferred = fx.find((e): e is Extract<Effect, { kind: "deferred" }> => e.kind === "deferred");
    assert.ok(deferred, "write 2 is deferred by the tree");
    proposer.deferredByOrder(deferred);

    clock.now += 3 * TIMEOUT_MS;
    proposer.retryDeferred();
    assert.equal(failed.length, 0, "write 2 is not failed while write 1 is held here");

    // Write 1 is applied (its result releases it here); write 2 is proposed again.
    h.apply([one.signed]);
    proposer.unpropose(`${s.id}:1`);
    proposer.retryDeferred();
    assert.equal(stats.deferredRetries, 1, "write 2 proposed again once write 1 is in");
    assert.equal(failed.length, 0, "and never failed");
  });

  it("fails a deferred write whose predecessor is not held here once the timeout passes", async () => {
    const { h, clock, failed, op, proposer } = setup();
    const two = op(2);
    proposer.enqueue(two);
    await tick();
    const deferred = h
      .apply([two.signed])
      .find((e): e is Extract<Effect, { kind: "deferred" }> => e.kind === "deferred");
    assert.ok(deferred, "write 2 is deferred by the tree");
    proposer.deferredByOrder(deferred);
    clock.now += TIMEOUT_MS - 1;
    proposer.retryDeferred();
    assert.equal(failed.length, 0, "within the timeout it waits");
    clock.now += 2;
    proposer.retryDeferred();
    assert.deepEqual(
      failed.map((p) => p.cxid),
      [2],
      "past it, write 2 gets its error",
    );
  });
});
