// View changes name batches by digest (src/bft/batch-fetch.ts): their messages stay small however
// large the batches, the batches follow on request, and a peer that withholds one cannot stall a
// new leader.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BatchFetch, pickViewChanges } from "../../src/bft/batch-fetch.ts";
import {
  type Batch,
  DEFAULT_LIMITS,
  Digests,
  type HNewView,
  type MemoryStorage,
  type Message,
  StateFormatError,
} from "../../src/bft/index.ts";
import { encodeMessage } from "../../src/transport/codec.ts";
import { SimCrypto } from "../sim/sim-crypto.ts";
import { Cluster, TEST_LIMITS } from "./harness.ts";

const BIG = 300_000;
// The view change must come from the request timers (all replicas at once, the leader's own included):
// the scenarios need the old leader's VIEW-CHANGE in the new view's quorum, so the pace rule is off.
const LIMITS = { ...TEST_LIMITS, requestMaxBytes: 1 << 20, batchMaxBytes: 1 << 20, leaderPaceFloorTicks: 0 };

/** Encoded sizes of every message of `type` sent so far. */
function sizes(c: Cluster, type: Message["type"]): number[] {
  return c.log.filter((e) => e.msg.type === type).map((e) => encodeMessage(e.msg).length);
}

/** Whether replica i executed the request with this op. */
function executed(c: Cluster, i: number, op: Uint8Array): boolean {
  return (c.commits[i] ?? []).some((cb) =>
    cb.batch.requests.some((r, k) => r.op.length === op.length && cb.executed[k]),
  );
}

describe("view changes name batches by digest", () => {
  for (const mode of ["pbft", "hybrid"] as const) {
    it(`${mode}: VIEW-CHANGE and NEW-VIEW stay small with 900 KB of batches in flight; the batches follow`, () => {
      const c = new Cluster({ mode, f: 1, limits: LIMITS });
      const n = c.n;
      // Nothing commits in view 0: every batch is in flight when the view changes. PBFT: the backups
      // prepare but never commit; hybrid: only the leader holds the batches (its PREPAREs are lost), so
      // the next leader must fetch them from it.
      const lost = mode === "pbft" ? "p-commit" : "h-prepare";
      c.filter = (e) => (e.msg.type === lost && "view" in e.msg && e.msg.view === 0 ? "drop" : "deliver");
      const reqs = [0, 1, 2].map((k) => c.request(String(k).repeat(BIG)));
      for (const req of reqs) for (let i = 0; i < n; i++) c.propose(i, req);
      c.deliverAll();
      for (let i = 0; i < n; i++) assert.equal(c.r(i).lastExecuted, 0, `replica ${i} executed in view 0`);
      for (let t = 0; t < 400 && [...Array(n).keys()].some((i) => c.r(i).view < 1); t++) c.tick(1);
      for (let t = 0; t < 100 && reqs.some((r) => !executed(c, 0, r.op)); t++) c.tick(1);
      for (let i = 0; i < n; i++) {
        assert.ok(c.r(i).view >= 1, `replica ${i} changed view`);
        for (const r of reqs) assert.ok(executed(c, i, r.op), `replica ${i} executed every large request`);
      }
      const vcs = sizes(c, mode === "pbft" ? "p-view-change" : "h-view-change");
      const nvs = sizes(c, mode === "pbft" ? "p-new-view" : "h-new-view");
      assert.ok(vcs.length > 0 && nvs.length > 0, "view changes happened");
      assert.ok(Math.max(...vcs) < 16_384, `VIEW-CHANGE sizes ${vcs}`);
      assert.ok(Math.max(...nvs) < 32_768, `NEW-VIEW sizes ${nvs}`);
      // The batches moved as BATCH messages, on their own.
      assert.ok(
        sizes(c, "batch").some((s) => s > BIG),
        "a large batch travelled as a BATCH",
      );
    });
  }
});

describe("core state from before wire version 5", () => {
  it("a replica whose stored view-change records carry batches refuses to start with STATE_FORMAT", () => {
    for (const mode of ["pbft", "hybrid"] as const) {
      const c = new Cluster({ mode, f: 1, limits: LIMITS });
      const lost = mode === "pbft" ? "p-commit" : "h-prepare";
      c.filter = (e) => (e.msg.type === lost && "view" in e.msg && e.msg.view === 0 ? "drop" : "deliver");
      const req = c.request("r");
      for (let i = 0; i < c.n; i++) c.propose(i, req);
      c.deliverAll();
      for (let t = 0; t < 400 && c.r(0).view < 1; t++) c.tick(1);
      c.restart(0); // today's records restore
      const store = c.storages[0] as MemoryStorage;
      const key = mode === "pbft" ? store.keys("p/prepared/")[0] : "h/nv";
      assert.ok(key !== undefined && store.get(key) !== undefined, `${mode}: a record to age`);
      // What an older release wrote: the batch in place of its digest.
      const aged =
        mode === "pbft"
          ? (store.get(key) as { proof: unknown }).proof
          : {
              ...(store.get(key) as HNewView),
              vcs: (store.get(key) as HNewView).vcs.map((vc) => ({
                ...vc,
                entries: vc.entries.map(({ batchDigest: _, ...e }) => ({ ...e, batch: { requests: [] } })),
                nv: vc.nv,
              })),
            };
      if (mode === "hybrid") {
        const nv = store.get(key) as HNewView;
        assert.ok(
          nv.vcs.some((vc) => vc.entries.length > 0),
          "the NEW-VIEW's VIEW-CHANGEs have entries",
        );
      }
      store.apply([{ op: "put", key, value: aged }]);
      assert.throws(
        () => c.restart(0),
        (err: unknown) => err instanceof StateFormatError && err.code === "STATE_FORMAT",
        `${mode}: ${key}`,
      );
    }
  });
});

describe("BatchFetch", () => {
  const digests = new Digests(new SimCrypto());
  const limits = { ...DEFAULT_LIMITS, window: 4, retransmitTicks: 10 };
  const batch = (tag: string): Batch => ({
    requests: [
      {
        clientId: "c",
        reqNo: 1,
        op: new TextEncoder().encode(tag),
        auth: { scheme: "ed25519", sig: new Uint8Array(64) },
      },
    ],
  });

  function fetcher(held: Batch[] = []) {
    const sent: { to: number; msg: Message }[] = [];
    const drops: string[] = [];
    let now = 0;
    let arrivals = 0;
    const f = new BatchFetch({
      id: 0,
      n: 4,
      limits,
      digests,
      find: (d) => held.find((b) => Buffer.from(digests.batch(b)).equals(d)),
      batchShapeOk: (b) => Array.isArray(b?.requests),
      send: (to, msg) => sent.push({ to, msg }),
      drop: (_from, reason) => drops.push(reason),
      now: () => now,
      arrived: () => arrivals++,
    });
    return { f, sent, drops, tick: (t: number) => (now += t), arrivals: () => arrivals };
  }

  it("asks the hinted peer for what it lacks, keeps only a batch it asked for, then everyone", () => {
    const a = batch("a");
    const b = batch("b");
    const { f, sent, arrivals, tick } = fetcher([a]);
    const named = [a, b].map((x, i) => ({ seq: i + 1, digest: digests.batch(x) }));
    assert.equal(f.resolve(named, 2), null);
    assert.deepEqual(
      sent.map((s) => [s.to, s.msg.type]),
      [[2, "batch-fetch"]],
    );
    f.onBatch(2, { type: "batch", batch: batch("not asked") });
    assert.equal(arrivals(), 0, "an unasked batch is ignored");
    tick(10);
    f.retry();
    assert.deepEqual(
      sent.slice(1).map((s) => s.to),
      [1, 2, 3],
      "after a period, every peer is asked",
    );
    f.onBatch(3, { type: "batch", batch: b });
    assert.equal(arrivals(), 1);
    assert.deepEqual(f.resolve(named, 2), [a, b]);
  });

  it("serves what it holds, once per period per peer, and drops malformed asks", () => {
    const a = batch("a");
    const { f, sent, drops, tick } = fetcher([a]);
    const ask = { type: "batch-fetch" as const, digests: [digests.batch(a), digests.batch(batch("x"))] };
    f.onFetch(1, ask);
    f.onFetch(1, ask);
    f.onFetch(2, ask);
    assert.deepEqual(
      sent.map((s) => [s.to, s.msg.type]),
      [
        [1, "batch"],
        [2, "batch"],
      ],
    );
    tick(10);
    f.onFetch(1, ask);
    assert.equal(sent.length, 3, "served again after a period");
    f.onFetch(1, { type: "batch-fetch", digests: [new Uint8Array(31)] });
    f.onFetch(1, { type: "batch-fetch", digests: Array.from({ length: 5 }, () => new Uint8Array(32)) });
    assert.deepEqual(drops, ["batch-fetch-bad", "batch-fetch-bad"]);
  });

  it("a new leader uses the first VIEW-CHANGEs once it holds their batches, any it holds after a period", () => {
    const held = new Set(["b", "c"]);
    const has = (x: string) => held.has(x);
    assert.deepEqual(pickViewChanges(["b", "c", "a"], 2, has, false), ["b", "c"]);
    assert.equal(pickViewChanges(["a", "b", "c"], 2, has, false), null, "waits for the first ones");
    assert.deepEqual(pickViewChanges(["a", "b", "c"], 2, has, true), ["b", "c"], "then takes what it holds");
    assert.equal(pickViewChanges(["a", "b"], 2, has, true), null);
    assert.equal(pickViewChanges(["b"], 2, has, true), null);
    // Its own VIEW-CHANGE always among them (so the NEW-VIEW starts at or above its checkpoint).
    assert.deepEqual(pickViewChanges(["b", "c", "d"], 2, has, false, "c"), ["b", "c"]);
    assert.equal(pickViewChanges(["a", "b", "c"], 2, has, false, "c"), null, "c and a first");
    assert.deepEqual(pickViewChanges(["a", "b", "c"], 2, has, true, "c"), ["b", "c"]);
    assert.equal(pickViewChanges(["a", "b", "d"], 2, has, true, "a"), null, "never without its own");
  });
});
