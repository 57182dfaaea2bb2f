// A submission that is never ordered is answered with TIMEOUT close to timeoutMs (one sweep for all
// waiting submissions), in submission order, and the sweep stops once nothing waits.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Digests } from "../../src/bft/digests.ts";
import { nodeCrypto, sha256 } from "../../src/crypto/node-crypto.ts";
import type { ApiError } from "../../src/ordering/errors.ts";
import { Gateway } from "../../src/ordering/gateway.ts";
import type { Ledger } from "../../src/ordering/ledger.ts";

/** A ledger that never builds a block: the core swallows every request. */
const silentLedger = {
  height: 1,
  onBuilt: () => {},
  onCertified: () => {},
} as unknown as Ledger;

function gateway(timeoutMs: number, pendingMaxBytes?: number) {
  const proposed: string[] = [];
  const g = new Gateway({
    ledger: silentLedger,
    propose: (req) => {
      proposed.push(req.clientId);
      return "accepted";
    },
    clientId: "gw-test",
    sign: () => new Uint8Array(64),
    digests: new Digests(nodeCrypto),
    hash: sha256,
    txMaxBytes: 1024,
    batchMaxCount: 10,
    batchMaxBytes: 4096,
    pendingMax: 100,
    ...(pendingMaxBytes !== undefined ? { pendingMaxBytes } : {}),
    timeoutMs,
    quorumOk: () => true,
  });
  return { g, proposed };
}

describe("gateway timeouts", () => {
  it("each never-ordered submission gets TIMEOUT within timeoutMs plus one sweep period, oldest first", async () => {
    const { g, proposed } = gateway(200);
    const t0 = performance.now();
    const order: number[] = [];
    const settled = [0, 1, 2].map(async (i) => {
      if (i > 0) await new Promise((r) => setTimeout(r, 60 * i));
      try {
        await g.submit(new TextEncoder().encode(`tx ${i}`));
        assert.fail("a submission that was never ordered resolved");
      } catch (err) {
        assert.equal((err as ApiError).code, "TIMEOUT");
        order.push(i);
        return performance.now() - t0;
      }
    });
    // The sweep does not hold the process open (a server's sockets do): this test holds it.
    const hold = setInterval(() => {}, 1000);
    const at = await Promise.all(settled).finally(() => clearInterval(hold));
    assert.ok(proposed.length >= 1, "the submissions were proposed");
    assert.deepEqual(order, [0, 1, 2]);
    at.forEach((ms, i) => {
      const due = 200 + 60 * i;
      assert.ok(
        ms >= due - 5 && ms <= due + 50 + 100,
        `submission ${i} timed out at ${ms.toFixed(0)} ms, due ${due}`,
      );
    });
    assert.equal(g.pending, 0);
    assert.equal(g.stats.timeouts, 3);
  });

  it("holds at most pendingMaxBytes of submissions; a settled one frees its bytes", async () => {
    const { g } = gateway(150, 2500);
    const tx = (i: number) => new TextEncoder().encode(`${i}`.padEnd(1000, "x"));
    const first = [0, 1].map((i) => g.submit(tx(i)).catch((err: ApiError) => err.code));
    assert.equal(g.pendingBytes, 2000, "two submissions of 1000 bytes wait");
    await assert.rejects(
      g.submit(tx(2)),
      (err: ApiError) => err.code === "OVERLOADED" && /pendingMaxBytes 2500/.test(err.message),
      "a third would hold 3000 bytes",
    );
    const hold = setInterval(() => {}, 1000);
    const codes = await Promise.all(first).finally(() => clearInterval(hold));
    assert.deepEqual(codes, ["TIMEOUT", "TIMEOUT"], "the two time out (never ordered)");
    assert.equal(g.pendingBytes, 0, "their bytes are given back");
    const again = g.submit(tx(3)).catch((err: ApiError) => err.code);
    assert.equal(g.pendingBytes, 1000, "room again");
    g.close();
    assert.equal(await again, "SHUTTING_DOWN", "closed");
  });
});
