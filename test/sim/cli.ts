// npm run sim -- --seed N [--steps S] [--mode hybrid|pbft|both] [--f F] [--byzantine B] [--verbose]
// npm run sim -- --seeds 10000 [--from K] [--mode both] [--workers 2] [--byzantine B]
// Replays one run exactly, or runs a campaign; prints the seed of every failure.
// --byzantine: random (default), none, or kinds separated by commas (replicas 0, 1, ... get them),
// e.g. --byzantine compromised-counter (hybrid: a leader whose trusted counter key is stolen).
// --no-links: the replicas hear nothing of their links (by default the simulator reports them each tick).

import "../../src/util/polyfill.ts";
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import type { Mode } from "../../src/bft/index.ts";
import { detectionLine, runCampaignParallel, type SimOverrides } from "./campaign.ts";
import { BYZANTINE_KINDS, type ByzantineKind, DEFAULT_SIM, Simulation } from "./world.ts";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    seeds: { type: "string" },
    from: { type: "string", default: "1" },
    steps: { type: "string" },
    mode: { type: "string", default: "both" },
    f: { type: "string", default: "1" },
    workers: { type: "string" },
    byzantine: { type: "string", default: "random" },
    verbose: { type: "boolean", default: false },
    "no-links": { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});

if (values.help) {
  console.log(
    [
      "npm run sim -- --seed N [--steps S] [--mode hybrid|pbft|both] [--f F] [--byzantine B] [--verbose]",
      "npm run sim -- --seeds COUNT [--from K] [--mode both] [--workers W] [--byzantine B]",
      "  --byzantine random | none | KIND[,KIND...] (replica 0 gets the first kind, and so on; at most f)",
      `  kinds: ${BYZANTINE_KINDS.join(", ")}`,
      "  --no-links: do not report links to the replicas (suspicion by request timeouts only)",
    ].join("\n"),
  );
  process.exit(0);
}

function parseByzantine(v: string): SimOverrides["byzantine"] {
  if (v === "random" || v === "none") return v;
  const kinds = v.split(",").filter((k) => k !== "");
  for (const k of kinds) {
    if (!(BYZANTINE_KINDS as readonly string[]).includes(k)) {
      console.error(`unknown Byzantine kind ${k}; one of: ${BYZANTINE_KINDS.join(", ")}`);
      process.exit(2);
    }
  }
  return kinds as ByzantineKind[];
}
const overrides: SimOverrides = {
  byzantine: parseByzantine(values.byzantine),
  ...(values["no-links"] ? { links: false } : {}),
};
const replayFlags =
  (values.byzantine !== "random" ? ` --byzantine ${values.byzantine}` : "") +
  (values["no-links"] ? " --no-links" : "") +
  (values.steps ? ` --steps ${values.steps}` : "");

const steps = values.steps ? Number(values.steps) : DEFAULT_SIM.steps;
const f = Number(values.f);
const modes: Mode[] = values.mode === "both" ? ["hybrid", "pbft"] : [values.mode as Mode];
let failed = false;

if (values.seed !== undefined) {
  for (const mode of modes) {
    const sim = new Simulation({ ...DEFAULT_SIM, ...overrides, seed: Number(values.seed), mode, steps, f });
    sim.verbose = values.verbose;
    const r = sim.run();
    if (values.verbose) for (const line of sim.log) console.log(line);
    console.log(JSON.stringify({ ...r, violations: r.violations.length }, null, 1));
    for (const v of r.violations) console.log(`VIOLATION seed=${r.seed} mode=${mode}: ${v}`);
    failed ||= r.violations.length > 0;
  }
} else {
  const count = Number(values.seeds ?? 200);
  const from = Number(values.from);
  const workers = Number(values.workers ?? Math.max(1, Math.min(availableParallelism(), 8)));
  for (const mode of modes) {
    const started = Date.now();
    const s = await runCampaignParallel(mode, from, count, steps, f, workers, overrides);
    console.log(
      `${mode}: ${s.runs} seeds x ${steps} ticks (f=${f}), ${s.violations} violations, ${s.requests} requests, ` +
        `max seq ${s.maxSeq}, max view ${s.maxView}, ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    const detected = detectionLine(s);
    if (detected) console.log(`  ${detected}`);
    console.log(`  faults: ${JSON.stringify(s.faults)}`);
    console.log(`  dropped by reason: ${JSON.stringify(s.dropped)}`);
    for (const fl of s.failures) console.log(`  FAILED seed=${fl.seed} mode=${mode}: ${fl.first}`);
    console.log(
      `  replay a failure with: npm run sim -- --seed N --mode ${mode}${f !== 1 ? ` --f ${f}` : ""}${replayFlags}`,
    );
    failed ||= s.violations > 0;
  }
}
process.exit(failed ? 1 : 0);
