// ReplicaHost's pipeline (src/node/host.ts), against a scripted core, transport and store: a hybrid vote
// goes out while an earlier Ready is still being written, and the Readys that queue behind a write are
// written together (group commit), in order, with everything else after its write.

import assert from "node:assert/strict";
import { describe, it, mock } from "node:test";
import type { ReplicaCore } from "../../src/bft/replica.ts";
import type { CounterCert } from "../../src/bft/trusted.ts";
import type { HCommit, Message, PersistOp, Ready } from "../../src/bft/types.ts";
import { QUIET_TICKS, ReplicaHost } from "../../src/node/host.ts";
import type { LevelStore } from "../../src/storage/level-store.ts";
import { decodeMessage, encodeMessage } from "../../src/transport/codec.ts";
import type { FrameHandler, Transport } from "../../src/transport/transport.ts";

const cert = (subsystem: number): CounterCert => ({
  subsystem,
  counter: 0,
  value: { view: 0, slot: 1 },
  sig: new Uint8Array(64).fill(subsystem + 1),
});
const vote = (seq: number): HCommit => ({
  type: "h-commit",
  view: 0,
  seq,
  batchDigest: new Uint8Array(32).fill(seq),
  cert: cert(1),
  prepareCert: cert(0),
});
const status = (lastExecuted: number): Message => ({
  type: "status",
  view: 0,
  target: 0,
  lastExecuted,
  stableSeq: 0,
});
const persist = (k: string): PersistOp => ({ type: "put", key: k, value: k }) as unknown as PersistOp;

/** What the test makes the core hold next; the host takes it whenever it pumps. */
function scriptedCore(): { core: ReplicaCore; offer(r: Partial<Ready>): void } {
  let pending: Ready[] = [];
  const core = {
    snapshotOffer: null,
    hasReady: () => pending.length > 0,
    ready: () => pending.shift() as Ready,
    advance: () => {},
    step: () => {},
    tick: () => {},
    quiet: () => false,
    propose: () => "accepted",
  } as unknown as ReplicaCore;
  return {
    core,
    offer: (r) => {
      pending = [...pending, { persist: [], send: [], commit: [], events: [], ...r }];
    },
  };
}

describe("ReplicaHost pipeline", () => {
  it("sends a vote during an earlier write, and writes the Readys queued behind it in one batch", async () => {
    const { core, offer } = scriptedCore();
    const sent: string[] = [];
    let deliver: FrameHandler = () => {};
    const transport = {
      start: async () => {},
      stop: async () => {},
      send: () => "sent",
      broadcast: (frame: Uint8Array) => {
        const r = decodeMessage(frame);
        assert.ok(r.ok, "the host sends frames that decode");
        sent.push(
          r.msg.type === "h-commit"
            ? `vote ${r.msg.seq}`
            : `status ${(r.msg as { lastExecuted: number }).lastExecuted}`,
        );
      },
      onFrame: (h: FrameHandler) => {
        deliver = h;
      },
      stats: () => new Map(),
    } as unknown as Transport;
    const writes: string[][] = [];
    const finish: (() => void)[] = [];
    const store = {
      apply: (ops: readonly PersistOp[]) => {
        writes.push(ops.map((o) => (o as unknown as { key: string }).key));
        return new Promise<void>((res) => finish.push(res));
      },
    } as unknown as LevelStore;
    const host = new ReplicaHost({ core, transport, store, tickMs: 60_000 });
    await host.start();
    try {
      const frame = () => deliver(1, encodeMessage(status(0))); // a peer's frame: the core steps, the host pumps
      const settle = () => new Promise((r) => setImmediate(r));

      offer({
        persist: [persist("a")],
        send: [
          { to: "all", msg: vote(1) },
          { to: "all", msg: status(1) },
        ],
      });
      frame();
      await settle();
      assert.deepEqual(writes, [["a"]], "Ready A is being written");
      assert.deepEqual(sent, ["vote 1"], "A's vote went out before its write; its STATUS waits");

      // B and C come while A is written: their votes go out at once, their writes wait for A's.
      offer({
        persist: [persist("b")],
        send: [
          { to: "all", msg: vote(2) },
          { to: "all", msg: status(2) },
        ],
      });
      frame();
      offer({ persist: [persist("c1"), persist("c2")], send: [{ to: "all", msg: vote(3) }] });
      frame();
      await settle();
      assert.deepEqual(sent, ["vote 1", "vote 2", "vote 3"], "B's and C's votes did not wait for A's write");
      assert.equal(writes.length, 1, "nothing else is written before A is durable");

      (finish.shift() as () => void)();
      await settle();
      await settle();
      assert.deepEqual(writes, [["a"], ["b", "c1", "c2"]], "B and C in one batch, in order");
      assert.deepEqual(sent.slice(3), ["status 1"], "A's STATUS after A's write, B's not before B's");

      (finish.shift() as () => void)();
      await settle();
      await settle();
      assert.deepEqual(sent.slice(4), ["status 2"], "B's STATUS after the group's write");
      assert.deepEqual(host.stats, { writes: 2, readys: 3 }, "3 Readys, 2 writes");
    } finally {
      for (const f of finish) f();
      await host.stop();
    }
  });
});

describe("ReplicaHost ticks", () => {
  it("wakes every QUIET_TICKS ticks while the core is quiet, runs the skipped ticks, and every tick when not", async () => {
    mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
    let quiet = true;
    let ticks = 0;
    const ticksAtStep: number[] = [];
    const core = {
      snapshotOffer: null,
      hasReady: () => false,
      advance: () => {},
      step: () => {
        ticksAtStep.push(ticks);
      },
      tick: () => {
        ticks++;
      },
      quiet: () => quiet,
      propose: () => {
        quiet = false; // a request waits: its timer needs every tick
        return "accepted";
      },
    } as unknown as ReplicaCore;
    let deliver: FrameHandler = () => {};
    const transport = {
      start: async () => {},
      stop: async () => {},
      onFrame: (h: FrameHandler) => {
        deliver = h;
      },
    } as unknown as Transport;
    const host = new ReplicaHost({ core, transport, store: {} as LevelStore, tickMs: 10 });
    // Mock time moves 5 ms at a time, so that timers set by timers run within one advance.
    const advance = (ms: number) => {
      for (let t = 0; t < ms; t += 5) mock.timers.tick(5);
    };
    try {
      await host.start();
      mock.timers.tick(0);
      advance(1000); // one second, quiet
      assert.equal(host.ticks.wakeups, 1000 / (10 * QUIET_TICKS), "a wake-up every QUIET_TICKS ticks");
      assert.equal(ticks, 100, "and every tick of the second, caught up");
      advance(55);
      deliver(1, encodeMessage(status(0))); // a peer's STATUS: the ticks owed run first
      assert.deepEqual(ticksAtStep, [105], "the 5 ticks since the last wake-up ran before the step");
      const quietWakeups = 1000 / (10 * QUIET_TICKS);
      assert.equal(host.ticks.wakeups, quietWakeups, "the STATUS left the core quiet: no wake-up of its own");
      host.submit({} as never); // now the core waits on a timer
      advance(100);
      assert.equal(host.ticks.wakeups, quietWakeups + 10, "busy: a wake-up per tick (10 in 100 ms)");
      assert.equal(ticks, 115, "one tick each");
      quiet = true;
      advance(10 * QUIET_TICKS + 20); // the next wake-up sees it quiet again: long waits from then on
      // One more tick at +10 ms, then a long wait: at +10 ms + QUIET_TICKS ticks, the ticks it skipped.
      assert.equal(host.ticks.wakeups, quietWakeups + 12, "back to one wake-up every QUIET_TICKS ticks");
      assert.equal(ticks, 115 + 1 + QUIET_TICKS, "one tick, then QUIET_TICKS caught up");
    } finally {
      await host.stop();
      mock.timers.reset();
    }
  });
});
