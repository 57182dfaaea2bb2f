// The request timer follows the cluster (src/bft/request-intake.ts): a multiple of the recent p99 of
// forward-to-execute times, never below requestTimeoutTicks, doubled for each view after the first
// entered without progress, reset when a batch executes. A correct leader whose commits have grown
// slow under load is not deposed by a timer set for an idle cluster.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type ClientRequest,
  DEFAULT_LIMITS,
  type Limits,
  type Mode,
  REQUEST_SAMPLES_MIN,
  REQUEST_TIMEOUT_CAP,
  REQUEST_TIMEOUT_MULTIPLE,
} from "../../src/bft/index.ts";
import { RequestIntake, requestKey } from "../../src/bft/request-intake.ts";
import { Cluster, type Envelope } from "./harness.ts";

const req = (reqNo: number): ClientRequest => ({
  clientId: "c",
  reqNo,
  op: new Uint8Array(8),
  auth: { scheme: "mac", macs: [] },
});

/** Waits for `count` requests, each executed `wait` ticks after the replica started waiting for it. */
function waited(intake: RequestIntake, count: number, wait: number, from = 1): void {
  for (let k = 0; k < count; k++) {
    const r = req(from + k);
    intake.setTimer(requestKey(r), { req: r, since: 1000 * k, deadline: 1000 * k + intake.timeoutTicks });
    intake.settle([r], 1000 * k + wait);
  }
}

describe("the request timeout", () => {
  const limits: Limits = { ...DEFAULT_LIMITS, requestTimeoutTicks: 20 };

  it("grows with the p99 of forward-to-execute times, never below requestTimeoutTicks, at most the cap", () => {
    const intake = new RequestIntake(limits, () => 1);
    assert.equal(intake.timeoutTicks, 20, "the configured value to start with");
    waited(intake, REQUEST_SAMPLES_MIN - 1, 50);
    assert.equal(intake.timeoutTicks, 20, "not before REQUEST_SAMPLES_MIN samples");
    waited(intake, 1, 50, 100);
    assert.equal(intake.timeoutTicks, REQUEST_TIMEOUT_MULTIPLE * 50, "a multiple of the p99");
    const fast = new RequestIntake(limits, () => 1);
    waited(fast, 64, 2);
    assert.equal(fast.timeoutTicks, 20, "fast commits never shorten it below the configured value");
    waited(fast, 64, 10_000, 1000);
    assert.equal(fast.timeoutTicks, REQUEST_TIMEOUT_CAP * 20, "capped");
  });

  it("doubles for each view entered after the first without progress; an execution resets it", () => {
    const intake = new RequestIntake(limits, () => 1);
    intake.viewEntered();
    assert.equal(intake.timeoutTicks, 20, "the first view change is an ordinary failover");
    intake.viewEntered();
    assert.equal(intake.timeoutTicks, 40, "a second without progress");
    intake.viewEntered();
    assert.equal(intake.timeoutTicks, 80, "a third");
    intake.settle([], 0);
    assert.equal(intake.timeoutTicks, 20, "progress resets it");
    for (let v = 0; v < 20; v++) intake.viewEntered();
    assert.equal(intake.timeoutTicks, REQUEST_TIMEOUT_CAP * 20, "capped");
  });

  it("the leader learns from its own proposals' execution times", () => {
    const intake = new RequestIntake(limits, () => 1);
    for (let seq = 1; seq <= REQUEST_SAMPLES_MIN; seq++) {
      intake.proposedHere(seq, 100 * seq);
      intake.settle([], 100 * seq + 30, seq);
    }
    assert.equal(intake.timeoutTicks, REQUEST_TIMEOUT_MULTIPLE * 30);
  });
});

const proposalType = (mode: Mode) => (mode === "hybrid" ? "h-prepare" : "p-pre-prepare");

/**
 * Requests from replica 1, one at a time, each proposal held `hold` ticks before it reaches anyone (a
 * loaded cluster: every request takes that long to execute). Returns whether any view change started.
 */
function slowCommits(c: Cluster, mode: Mode, count: number, hold: number): boolean {
  const type = proposalType(mode);
  c.filter = (e: Envelope) => (e.msg.type === type ? "hold" : "deliver");
  for (let k = 0; k < count; k++) {
    const r = c.request();
    c.propose(1, r);
    c.deliverAll();
    c.tick(hold);
    c.filter = () => "deliver";
    c.release();
    c.tick(1);
    c.filter = (e: Envelope) => (e.msg.type === type ? "hold" : "deliver");
    const done = c.commits[1]?.some((cb) => cb.batch.requests.some((x) => x.reqNo === r.reqNo));
    assert.ok(done, `request ${k} executed at replica 1`);
  }
  c.filter = () => "deliver";
  return c.events.some((ev) => ev.some((e) => e.kind === "view-change-started"));
}

for (const mode of ["hybrid", "pbft"] as const) {
  describe(`the request timer under load (${mode})`, () => {
    // The pace rule is off: this is about the request and progress timers alone.
    const limits = { requestTimeoutTicks: 20, viewChangeTimeoutTicks: 40, leaderPaceFloorTicks: 0 };

    it("commits that grew slower than requestTimeoutTicks, gradually, depose nobody", () => {
      const c = new Cluster({ mode, limits });
      assert.equal(slowCommits(c, mode, REQUEST_SAMPLES_MIN + 2, 12), false, "12 ticks per commit");
      assert.equal(slowCommits(c, mode, 3, 30), false, "30 ticks per commit: beyond the configured 20");
      for (let i = 0; i < c.n; i++) assert.equal(c.r(i).view, 0, `replica ${i} in view 0`);
    });

    it("a leader that stops proposing is still replaced after the learned timeout", () => {
      const c = new Cluster({ mode, limits });
      slowCommits(c, mode, REQUEST_SAMPLES_MIN + 2, 12);
      c.filter = (e: Envelope) => (e.from === 0 ? "drop" : "deliver");
      c.propose(1, c.request());
      c.propose(2, c.request());
      c.tick(200, [1, 2, ...(c.n > 3 ? [3] : [])]);
      for (let i = 1; i < c.n; i++) assert.ok(c.r(i).view >= 1, `replica ${i} left view 0`);
    });
  });
}
