// GET /health's verdict (healthOf): a replica is ok while it has a quorum, is not halted, and is not
// stuck in a view change it cannot finish.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_LIMITS } from "../../src/bft/types.ts";
import { healthOf, type MetricsSource, viewChangeStuckMs } from "../../src/node/metrics.ts";

function source(o: { vcTarget: number | null; viewChangingMs: number; quorum?: boolean }): MetricsSource {
  return {
    id: 1,
    mode: "hybrid",
    core: { view: 20, leader: 2, vcTarget: o.vcTarget, lastExecuted: 9, stable: { seq: 8 }, halted: null },
    ledger: { height: 10, certifiedHeight: 10 },
    coord: { connections: 0 },
    tree: { sessionCount: 0, nodeCount: 1 },
    livePeers: () => 1,
    hasQuorum: () => o.quorum ?? true,
    viewChangingMs: () => o.viewChangingMs,
    viewChangeStuckMs: viewChangeStuckMs({}, 10),
  } as unknown as MetricsSource;
}

describe("health", () => {
  it("a view change that lasts past the stuck bound makes the replica unhealthy", () => {
    const stuck = viewChangeStuckMs({}, 10);
    assert.equal(stuck, Math.max(10_000, 8 * DEFAULT_LIMITS.viewChangeTimeoutTicks * 10));
    assert.equal(healthOf(source({ vcTarget: null, viewChangingMs: 0 })).ok, true);
    const starting = healthOf(source({ vcTarget: 21, viewChangingMs: 500 }));
    assert.equal(starting.ok, true, "a view change under way is normal");
    assert.equal(starting.viewChangingMs, 500);
    const h = healthOf(source({ vcTarget: 21, viewChangingMs: stuck + 1 }));
    assert.equal(h.ok, false);
    assert.equal(h.viewChanging, true);
    assert.equal(h.viewChangingMs, stuck + 1);
    assert.equal(healthOf(source({ vcTarget: null, viewChangingMs: 0, quorum: false })).ok, false);
  });
});
