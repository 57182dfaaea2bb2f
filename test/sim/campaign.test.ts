// The simulator campaign CI runs: a fixed batch of seeds for both modes, plus targeted scenarios.
// SIM_SEEDS overrides the batch size (default 200 per mode).

import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import { describe, it } from "node:test";
import { runCampaignParallel } from "./campaign.ts";
import { BYZANTINE_KINDS, DEFAULT_SIM, runSim, Simulation } from "./world.ts";

const SEEDS = Number(process.env.SIM_SEEDS ?? 200);
const WORKERS = Math.max(1, Math.min(availableParallelism(), 4));

for (const mode of ["hybrid", "pbft"] as const) {
  describe(`simulator campaign (${mode})`, () => {
    it(`${SEEDS} seeds x ${DEFAULT_SIM.steps} ticks with faults and Byzantine replicas: no violation`, async () => {
      const started = Date.now();
      const s = await runCampaignParallel(mode, 1, SEEDS, DEFAULT_SIM.steps, 1, WORKERS);
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      console.log(
        `# sim ${mode}: ${s.runs} seeds x ${DEFAULT_SIM.steps} ticks, ${s.violations} violations, ` +
          `${s.requests} requests, max view ${s.maxView}, ${secs} s`,
      );
      console.log(`# sim ${mode} faults: ${JSON.stringify(s.faults)}`);
      assert.deepEqual(
        s.failures.map((x) => `seed ${x.seed}: ${x.first}`),
        [],
        `replay with: npm run sim -- --seed N --mode ${mode}`,
      );
      assert.equal(s.runs, SEEDS);
      // The campaign must actually exercise the faults it claims to.
      for (const kind of [
        "loss",
        "duplicate",
        "partition",
        "crash",
        "restart",
        "new-view",
        "state-transfer",
      ]) {
        assert.ok((s.faults[kind] ?? 0) > 0, `fault ${kind} was never exercised`);
      }
      if (SEEDS >= 100) {
        for (const k of BYZANTINE_KINDS) assert.ok((s.faults[`byzantine:${k}`] ?? 0) > 0, `no ${k} replica`);
      }
    });
  });
}

describe("simulator scenarios", () => {
  for (const mode of ["hybrid", "pbft"] as const) {
    it(`${mode}: a fault-free run commits everything in view 0`, () => {
      const r = runSim({
        ...DEFAULT_SIM,
        seed: 7,
        mode,
        steps: 1500,
        lossRate: 0,
        dupRate: 0,
        partitions: false,
        crashes: false,
        byzantine: "none",
      });
      assert.deepEqual(r.violations, []);
      assert.equal(r.maxView, 0);
      assert.ok(r.requests > 100 && r.completed === r.requests, `${r.completed}/${r.requests}`);
    });

    it(`${mode}: a silent leader is replaced and the cluster keeps committing`, () => {
      const r = runSim({
        ...DEFAULT_SIM,
        seed: 11,
        mode,
        steps: 2000,
        lossRate: 0,
        dupRate: 0,
        partitions: false,
        crashes: false,
        byzantine: ["silent"], // replica 0, the leader of view 0
      });
      assert.deepEqual(r.violations, []);
      assert.ok(r.maxView >= 1, "no view change happened");
      assert.ok(
        r.completed === r.requests && r.requests > 50,
        "r.completed === r.requests && r.requests > 50",
      );
    });

    it(`${mode}: f = 2 with two Byzantine replicas (a few seeds)`, () => {
      for (const seed of [1, 2, 3]) {
        const r = runSim({ ...DEFAULT_SIM, seed, mode, f: 2, steps: 2500 });
        assert.deepEqual(r.violations, [], `seed ${seed} byzantine ${r.byzantine.join(",")}`);
        assert.equal(r.byzantine.length, 2);
      }
    });
  }

  it("hybrid with hardware counters: replicas waking up with a counter ahead of their state stay safe and live", () => {
    let amnesia = 0;
    for (let seed = 1; seed <= 30; seed++) {
      const r = runSim({
        ...DEFAULT_SIM,
        seed,
        mode: "hybrid",
        byzantine: "none",
        trustedCounters: "hardware",
      });
      assert.deepEqual(r.violations, [], `seed ${seed}`);
      amnesia += r.faults["crash-before-persist"] ?? 0;
    }
    assert.ok(amnesia > 0, "no crash before persist was injected");
  });

  it("the same seed replays the same run", () => {
    const a = runSim({ ...DEFAULT_SIM, seed: 42, mode: "hybrid", steps: 1200 });
    const b = runSim({ ...DEFAULT_SIM, seed: 42, mode: "hybrid", steps: 1200 });
    assert.deepEqual(a, b);
  });
});

describe("simulator checkers can fail", () => {
  class Probe extends Simulation {
    feed(i: number, seq: number, reqs: { clientId: string; reqNo: number; op: Uint8Array }[]) {
      const batch = { requests: reqs.map((r) => ({ ...r, auth: { scheme: "mac" as const, macs: [] } })) };
      this.apply(
        i,
        seq,
        batch,
        batch.requests.map(() => true),
        0,
      );
    }
  }
  const cfg = { ...DEFAULT_SIM, seed: 1, mode: "hybrid" as const, byzantine: "none" as const };

  it("agreement: two correct replicas commit different batches at one seq", () => {
    const p = new Probe(cfg);
    p.feed(0, 1, []);
    assert.throws(
      () => p.feed(1, 1, [{ clientId: "client-0", reqNo: 99, op: new Uint8Array(1) }]),
      /agreement/,
    );
  });

  it("validity: a request no client sent is executed", () => {
    const p = new Probe(cfg);
    assert.throws(() => p.feed(0, 1, [{ clientId: "mallory", reqNo: 1, op: new Uint8Array(1) }]), /validity/);
  });
});
