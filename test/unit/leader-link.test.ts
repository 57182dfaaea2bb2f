// A follower whose connection to the leader closes suspects the leader after limits.leaderLinkGraceTicks
// instead of waiting for a request to time out (a killed leader's sockets close at once), in both modes.
// A link that reopens within the grace, or one never seen open (a replica still starting), suspects
// nobody.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Mode } from "../../src/bft/index.ts";
import { Cluster, isolate } from "./harness.ts";

const GRACE = 3;
/** Far longer than the grace: a view change before it comes from the link, not from a request timer. */
const REQUEST_TIMEOUT = 400;

function cluster(mode: Mode): Cluster {
  return new Cluster({
    mode,
    f: 1,
    limits: {
      leaderLinkGraceTicks: GRACE,
      requestTimeoutTicks: REQUEST_TIMEOUT,
      viewChangeTimeoutTicks: REQUEST_TIMEOUT,
    },
  });
}

const followers = (c: Cluster) => Array.from({ length: c.n - 1 }, (_, i) => i + 1);

for (const mode of ["hybrid", "pbft"] as const) {
  describe(`leader link (${mode})`, () => {
    it("a leader whose connections close is replaced after the grace, long before a request times out", () => {
      const c = cluster(mode);
      for (const i of followers(c)) c.r(i).link(0, true);
      c.commitRequest();
      // The leader dies: its messages stop and every follower's link to it closes.
      c.filter = isolate(0);
      for (const i of followers(c)) {
        c.propose(i, c.request());
        c.r(i).link(0, false);
      }
      c.tick(GRACE - 1, followers(c));
      for (const i of followers(c)) assert.equal(c.r(i).vcTarget, null, `replica ${i} waits out the grace`);
      c.tick(1, followers(c));
      for (const i of followers(c)) {
        assert.ok(
          c.events[i]?.some((e) => e.kind === "view-change-started" && /connection closed/.test(e.reason)),
          `replica ${i} suspects the leader by its link`,
        );
      }
      c.tick(20, followers(c));
      for (const i of followers(c)) {
        assert.equal(c.r(i).view, 1, `replica ${i} is in view 1`);
        assert.equal(c.r(i).vcTarget, null, `replica ${i} finished the view change`);
      }
      const req = c.commitRequest(c.request(), [1]);
      for (const i of followers(c))
        assert.ok(
          c.commits[i]?.some((cb) => cb.batch.requests.some((r) => r.reqNo === req.reqNo)),
          `replica ${i} commits in the new view`,
        );
    });

    it("a link that reopens within the grace, or one never seen open, suspects nobody", () => {
      const c = cluster(mode);
      // Never open (the leader is still starting): closed reports count for nothing.
      c.r(1).link(0, false);
      c.tick(GRACE * 4);
      assert.equal(c.r(1).vcTarget, null, "a link never seen open suspects nobody");
      // A blip: closed for less than the grace.
      c.r(1).link(0, true);
      c.r(1).link(0, false);
      c.tick(GRACE - 1);
      c.r(1).link(0, true);
      c.tick(GRACE * 4);
      assert.equal(c.r(1).vcTarget, null, "a link back within the grace suspects nobody");
      assert.equal(c.r(1).view, 0);
      // A closed link to a follower is not a reason either.
      c.r(1).link(2, true);
      c.r(1).link(2, false);
      c.tick(GRACE * 4);
      assert.equal(c.r(1).vcTarget, null, "only the leader's link counts");
    });

    it("leaderLinkGraceTicks 0 turns it off", () => {
      const c = new Cluster({
        mode,
        f: 1,
        limits: { leaderLinkGraceTicks: 0, requestTimeoutTicks: REQUEST_TIMEOUT },
      });
      c.r(1).link(0, true);
      c.r(1).link(0, false);
      c.tick(50);
      assert.equal(c.r(1).vcTarget, null);
    });
  });
}
