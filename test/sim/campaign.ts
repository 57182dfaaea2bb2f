// Runs many seeds and folds the results.

import { fork } from "node:child_process";
import type { Mode } from "../../src/bft/index.ts";
import { DEFAULT_SIM, runSim, type SimConfig, type SimResult } from "./world.ts";

/** Settings a campaign may change for all its runs (beyond mode, seed, steps and f). */
export type SimOverrides = Partial<Omit<SimConfig, "seed" | "mode" | "steps" | "f">>;

export interface CampaignSummary {
  runs: number;
  violations: number;
  requests: number;
  maxSeq: number;
  maxView: number;
  /** Runs where a compromised trusted counter equivocated and a correct replica proved it (and halted). */
  detected: number;
  /** Of those, runs where correct replicas had already committed different batches (detected forks). */
  detectedForks: number;
  /** Ticks from the first conflicting certificate sent to its detection: sum and maximum over runs. */
  detectionTicksTotal: number;
  detectionTicksMax: number;
  faults: Record<string, number>;
  dropped: Record<string, number>;
  failures: { seed: number; first: string }[];
}

export function runCampaign(
  mode: Mode,
  seeds: readonly number[],
  steps: number,
  f = 1,
  overrides: SimOverrides = {},
): CampaignSummary {
  const results: SimResult[] = seeds.map((seed) =>
    runSim({ ...DEFAULT_SIM, ...overrides, seed, mode, steps, f }),
  );
  return fold(results);
}

function add(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

export function fold(results: readonly SimResult[]): CampaignSummary {
  const s: CampaignSummary = {
    runs: 0,
    violations: 0,
    requests: 0,
    maxSeq: 0,
    maxView: 0,
    detected: 0,
    detectedForks: 0,
    detectionTicksTotal: 0,
    detectionTicksMax: 0,
    faults: {},
    dropped: {},
    failures: [],
  };
  for (const r of results) {
    s.runs++;
    s.violations += r.violations.length;
    s.requests += r.requests;
    s.maxSeq = Math.max(s.maxSeq, r.maxSeq);
    s.maxView = Math.max(s.maxView, r.maxView);
    if (r.detected) {
      s.detected++;
      if (r.forked) s.detectedForks++;
      s.detectionTicksTotal += r.detectionTicks ?? 0;
      s.detectionTicksMax = Math.max(s.detectionTicksMax, r.detectionTicks ?? 0);
    }
    add(s.faults, r.faults);
    for (const b of r.byzantine) {
      const kind = `byzantine:${b.split(":")[1]}`;
      s.faults[kind] = (s.faults[kind] ?? 0) + 1;
    }
    add(s.dropped, r.dropped);
    if (r.violations.length > 0)
      s.failures.push({ seed: r.seed, first: (r.violations[0] as string).slice(0, 600) });
  }
  return s;
}

export function summarize(parts: readonly CampaignSummary[]): CampaignSummary {
  const s = fold([]);
  for (const p of parts) {
    s.runs += p.runs;
    s.violations += p.violations;
    s.requests += p.requests;
    s.maxSeq = Math.max(s.maxSeq, p.maxSeq);
    s.maxView = Math.max(s.maxView, p.maxView);
    s.detected += p.detected;
    s.detectedForks += p.detectedForks;
    s.detectionTicksTotal += p.detectionTicksTotal;
    s.detectionTicksMax = Math.max(s.detectionTicksMax, p.detectionTicksMax);
    add(s.faults, p.faults);
    add(s.dropped, p.dropped);
    s.failures.push(...p.failures);
  }
  s.failures.sort((a, b) => a.seed - b.seed);
  return s;
}

/** Runs seeds from..from+count-1 split over `workers` child processes (one per core). */
export async function runCampaignParallel(
  mode: Mode,
  from: number,
  count: number,
  steps: number,
  f: number,
  workers: number,
  overrides: SimOverrides = {},
): Promise<CampaignSummary> {
  const shards = [...Array(Math.max(1, Math.min(workers, count))).keys()].map((w) => {
    const seeds: number[] = [];
    for (let s = from + w; s < from + count; s += workers) seeds.push(s);
    return seeds;
  });
  const parts = await Promise.all(
    shards.map(
      (seeds) =>
        new Promise<CampaignSummary>((resolve, reject) => {
          const child = fork(new URL("./campaign-worker.ts", import.meta.url), {
            execArgv: ["--import", "tsx"],
          });
          child.send({ mode, f, steps, seeds, overrides });
          child.once("message", (m) => {
            resolve(m as CampaignSummary);
            child.disconnect();
          });
          child.once("error", reject);
          child.once("exit", (code) => {
            if (code !== 0) reject(new Error(`campaign worker exited with ${code}`));
          });
        }),
    ),
  );
  return summarize(parts);
}

/** One line on detected counter equivocations ("" when there were none). */
export function detectionLine(s: CampaignSummary): string {
  if (s.detected === 0) return "";
  const mean = (s.detectionTicksTotal / s.detected).toFixed(1);
  return (
    `detected: ${s.detected} (counter equivocation proven and ordering stopped; ${s.detectedForks} after a fork), ` +
    `detection ${mean} ticks on average, ${s.detectionTicksMax} at most after the first conflicting certificate`
  );
}

export { DEFAULT_SIM };
