// A leader that keeps proposing, but slowly, is replaced by its followers' expectation of its pace
// (src/bft/leader-pace.ts) long before their request timers run out; a correct leader, a leader whose
// window is full and a leader with nothing to propose are not suspected.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  DEFAULT_LIMITS,
  LeaderPace,
  type Limits,
  type Mode,
  PACE_COMMIT_MULTIPLE,
  PACE_GAP_MULTIPLE,
  PACE_SAMPLES_MIN,
  PACE_STRIKES,
} from "../../src/bft/index.ts";
import { Cluster, type Envelope } from "./harness.ts";

const limits = (l: Partial<Limits> = {}): Limits => ({ ...DEFAULT_LIMITS, ...l });

describe("LeaderPace", () => {
  it("expects the floor until it learns, then a multiple of the p90 commit time, within floor and cap", () => {
    const l = limits({ requestTimeoutTicks: 200, leaderPaceFloorTicks: 5, batchTimeoutTicks: 1 });
    const p = new LeaderPace(l);
    assert.equal(p.gapTicks(), 5, "the floor before any sample (a slow leader from the start is caught)");
    for (let s = 1; s < PACE_SAMPLES_MIN; s++) {
      p.proposed(s, 0, 1);
      p.executed(s, 20);
    }
    assert.equal(p.gapTicks(), 5, "still the floor below PACE_SAMPLES_MIN samples");
    p.proposed(10, 0, 1);
    p.executed(10, 20);
    assert.equal(p.gapTicks(), PACE_COMMIT_MULTIPLE * 20, "a multiple of the p90 commit time");
    for (let s = 40; s < 100; s++) {
      p.proposed(s, 200, 1);
      p.executed(s, 400);
    }
    assert.equal(p.gapTicks(), 50, "never above the cap (a quarter of the request timeout)");
    const floorOfBatch = new LeaderPace(limits({ leaderPaceFloorTicks: 1, batchTimeoutTicks: 6 }));
    assert.equal(floorOfBatch.gapTicks(), 8, "the floor is at least two ticks above the batch timeout");
  });

  it("learns the gaps a correct leader takes, but never from a late proposal", () => {
    const p = new LeaderPace(limits({ requestTimeoutTicks: 200, leaderPaceFloorTicks: 5 }));
    let t = 0;
    let seq = 0;
    // Gaps of 4 ticks (within the floor of 5): learned; the expectation becomes 3 × 4 = 12.
    for (let k = 0; k < PACE_SAMPLES_MIN; k++) {
      for (let i = 0; i < 4; i++) assert.equal(p.tick(++t, true, 0), false);
      p.proposed(++seq, t, 1);
    }
    assert.equal(p.gapTicks(), PACE_GAP_MULTIPLE * 3, "3 × the p99 gap (waiting starts the tick after)");
    // A slow leader's gaps of 40 ticks strike and teach nothing: the expectation stays.
    let suspected = false;
    for (let k = 0; k < 3 && !suspected; k++) {
      for (let i = 0; i < 40 && !suspected; i++) suspected = p.tick(++t, true, 0);
      p.proposed(++seq, t, 1);
    }
    assert.ok(suspected, "suspected within three slow gaps");
    assert.equal(p.gapTicks(), PACE_GAP_MULTIPLE * 3, "late gaps were not learned");
  });

  /** A pace whose expectation is the floor (5 ticks); a streak must last 10 ticks (requestTimeoutTicks / 4). */
  function warmed(): LeaderPace {
    const p = new LeaderPace(
      limits({ leaderPaceFloorTicks: 5, batchTimeoutTicks: 1, requestTimeoutTicks: 40 }),
    );
    for (let s = 1; s <= PACE_SAMPLES_MIN; s++) {
      p.proposed(s, 0, 1);
      p.executed(s, 0);
    }
    p.enterView();
    return p;
  }

  /** Ticks `p` from `from` to `to` (inclusive) with requests waiting; true when it suspected. */
  function run(p: LeaderPace, from: number, to: number, stable = 0): boolean {
    let slow = false;
    for (let t = from; t <= to; t++) slow = p.tick(t, true, stable) || slow;
    return slow;
  }

  it(`suspects after ${PACE_STRIKES} late intervals in a row, and a late proposal does not clear them`, () => {
    const p = warmed();
    let t = 0;
    let seq = 0;
    let suspectedAt = -1;
    // The leader proposes every 7 ticks (the expectation is 5): each interval is late.
    for (let round = 0; round < 10 && suspectedAt < 0; round++) {
      for (let k = 0; k < 7; k++) if (p.tick(++t, true, 0)) suspectedAt = t;
      p.proposed(++seq, t, 1);
    }
    // Each interval starts at the tick after a proposal and strikes 6 ticks in (more than 5).
    assert.equal(suspectedAt, 3 * 7, "the third late interval");
  });

  it("a prompt proposal clears the count; a full window and nothing waiting excuse the leader", () => {
    const p = warmed();
    // The leader's window reaches seq 52: full while our stable checkpoint is 0, room once it is 16.
    p.proposed(48, 0, 1);
    const room = DEFAULT_LIMITS.checkpointInterval;
    // An interval of 7 ticks with requests waiting strikes once (more than 5 ticks).
    assert.equal(run(p, 1, 7, room), false, "one strike");
    p.proposed(49, 7, 1); // late: the count stays
    assert.equal(run(p, 8, 14, room), false, "two");
    p.proposed(50, 14, 1);
    assert.equal(run(p, 15, 17, room), false);
    p.proposed(51, 17, 1); // prompt: cleared
    assert.equal(run(p, 18, 24, room), false, "one strike after a prompt proposal");
    p.proposed(52, 24, 1);
    assert.equal(run(p, 25, 31, room), false, "two");
    for (let t = 32; t < 100; t++) assert.equal(p.tick(t, false, room), false, "nothing waits");
    assert.equal(run(p, 100, 200, 0), false, "a window that may be full at the leader excuses it");
    assert.equal(run(p, 201, 206, room), false, "with room again: within the gap");
    assert.equal(run(p, 207, 207, room), true, "the third strike");
  });

  it("a streak must also last a quarter of the request timeout: short pauses in a row depose nobody", () => {
    const p = new LeaderPace(
      limits({ leaderPaceFloorTicks: 5, batchTimeoutTicks: 1, requestTimeoutTicks: 200 }),
    );
    let t = 0;
    let seq = 0;
    let suspectedAt = -1;
    // Late by one tick each time (waits of 6 against 5): strikes pile up, but only 50 ticks of them depose.
    for (let round = 0; round < 20 && suspectedAt < 0; round++) {
      for (let k = 0; k < 7 && suspectedAt < 0; k++) if (p.tick(++t, true, 0)) suspectedAt = t;
      p.proposed(++seq, t, 1);
    }
    assert.ok(suspectedAt >= 50, `not before the streak lasted 50 ticks (at ${suspectedAt})`);
    assert.ok(suspectedAt <= 60, `soon after (at ${suspectedAt})`);
  });

  it("a full proposal excuses the gap after it (a backlog); the next partial one counts again", () => {
    const p = warmed();
    p.proposed(1, 0, 4, true);
    assert.equal(run(p, 1, 100), false, "a leader cutting full batches is working through a backlog");
    p.proposed(2, 100, 1, false);
    assert.equal(run(p, 101, 119), true, "three late intervals after a partial batch");
    const l = limits({ batchMaxCount: 4, batchMaxBytes: 100 });
    const req = (bytes: number) =>
      ({ clientId: "c", reqNo: 1, op: new Uint8Array(bytes), auth: { scheme: "mac", macs: [] } }) as const;
    const pace = new LeaderPace(l);
    assert.equal(
      pace.full({ requests: [req(1), req(1)] }, () => 2),
      true,
      "batchMaxCount of weight",
    );
    assert.equal(
      pace.full({ requests: [req(50)] }, () => 1),
      true,
      "half of batchMaxBytes",
    );
    assert.equal(
      pace.full({ requests: [req(49), req(1)] }, () => 1),
      true,
      "half of batchMaxBytes in two",
    );
    assert.equal(
      pace.full({ requests: [req(10)] }, () => 1),
      false,
      "room left",
    );
  });

  it("an empty proposal is no progress; leaderPaceFloorTicks 0 turns it off", () => {
    const p = warmed();
    let suspected = false;
    for (let t = 1; t <= 30 && !suspected; t++) {
      suspected = p.tick(t, true, 0);
      p.proposed(t, t, 0);
    }
    assert.ok(suspected, "proposals without requests do not keep waiting followers happy");
    const off = new LeaderPace(limits({ leaderPaceFloorTicks: 0 }));
    assert.equal(run(off, 1, 10_000), false, "off");
  });
});

const REQUEST_TIMEOUT = 200;
const proposalType = (mode: Mode) => (mode === "hybrid" ? "h-prepare" : "p-pre-prepare");

function cluster(mode: Mode, extra: Partial<Limits> = {}): Cluster {
  return new Cluster({
    mode,
    limits: {
      requestTimeoutTicks: REQUEST_TIMEOUT,
      viewChangeTimeoutTicks: REQUEST_TIMEOUT,
      leaderPaceFloorTicks: 5,
      batchTimeoutTicks: 1,
      batchMaxCount: 64,
      ...extra,
    },
  });
}

const followers = (c: Cluster) => Array.from({ length: c.n - 1 }, (_, i) => i + 1);

const paceSuspicions = (c: Cluster, i: number) =>
  (c.events[i] ?? []).filter((e) => e.kind === "view-change-started" && /too slowly/.test(e.reason));

const anyViewChange = (c: Cluster) => c.events.some((ev) => ev.some((e) => e.kind === "view-change-started"));

/** Commits enough requests through every follower that each has its commit-time samples. */
function warm(c: Cluster): void {
  for (let k = 0; k < PACE_SAMPLES_MIN + 2; k++) {
    for (const i of followers(c)) c.propose(i, c.request());
    c.tick(1);
  }
}

for (const mode of ["hybrid", "pbft"] as const) {
  describe(`a slow leader (${mode})`, () => {
    it("a leader that sends each proposal 10 ticks after the last is replaced by its followers' pace", () => {
      const c = cluster(mode);
      warm(c);
      assert.ok(!anyViewChange(c), "no view change while the leader is correct");
      const type = proposalType(mode);
      // From now on replica 0 holds its proposals and lets one out every 10 ticks.
      c.filter = (e: Envelope) => (e.from === 0 && e.msg.type === type ? "hold" : "deliver");
      let t = 0;
      for (; t < REQUEST_TIMEOUT && !followers(c).every((i) => c.r(i).view >= 1); t++) {
        for (const i of followers(c)) c.propose(i, c.request());
        c.tick(1);
        if (t % 10 === 9 && c.r(0).view === 0) {
          const first = c.sent(type, () => true, c.held)[0];
          if (first)
            c.release((e) => e.msg.type === type && (e.msg as { seq: number }).seq === first.msg.seq);
        }
      }
      for (const i of followers(c))
        assert.ok(paceSuspicions(c, i).length > 0, `replica ${i} suspected the leader's pace`);
      assert.ok(
        t < REQUEST_TIMEOUT / 2,
        `replaced after ${t} ticks, long before the request timeout (${REQUEST_TIMEOUT})`,
      );
      c.filter = () => "deliver";
      c.release();
      c.tick(5);
      for (const i of followers(c)) assert.equal(c.r(i).view, 1, `replica ${i} is in view 1`);
      const req = c.commitRequest(c.request(), [2]);
      for (const i of followers(c))
        assert.ok(
          c.commits[i]?.some((cb) => cb.batch.requests.some((r) => r.reqNo === req.reqNo)),
          `replica ${i} commits in the new view`,
        );
    });

    it("a correct leader under steady load is never suspected", () => {
      const c = cluster(mode);
      warm(c);
      for (let t = 0; t < 300; t++) {
        for (const i of followers(c)) c.propose(i, c.request());
        c.tick(1);
      }
      assert.ok(!anyViewChange(c), "no view change in 300 ticks of load");
    });

    it("a leader whose window is full is not suspected by its pace", () => {
      const c = cluster(mode);
      warm(c);
      // Nothing commits any more (the followers' votes are lost): the leader fills its window and waits.
      const votes = mode === "hybrid" ? ["h-commit"] : ["p-prepare", "p-commit"];
      c.filter = (e: Envelope) => (votes.includes(e.msg.type) ? "drop" : "deliver");
      for (let t = 0; t < REQUEST_TIMEOUT / 2; t++) {
        for (const i of followers(c)) c.propose(i, c.request());
        c.tick(1);
      }
      for (const i of followers(c)) assert.equal(paceSuspicions(c, i).length, 0, `replica ${i}`);
    });

    it("leaderPaceFloorTicks 0: a slow leader waits for the request timer", () => {
      const c = cluster(mode, { leaderPaceFloorTicks: 0 });
      warm(c);
      const type = proposalType(mode);
      c.filter = (e: Envelope) => (e.from === 0 && e.msg.type === type ? "hold" : "deliver");
      for (let t = 0; t < 100; t++) {
        for (const i of followers(c)) c.propose(i, c.request());
        c.tick(1);
        if (t % 10 === 9) c.release((e) => e === c.held[0]);
      }
      assert.ok(!anyViewChange(c), "no view change without the pace rule");
    });
  });
}
