// Machine-readable benchmark results: each suite appends one JSON line per run of the suite to
// bench/results/<suite>.jsonl, with the date, the machine, the commit and the settings beside the rows
// it printed. Also the CPU time of a process, read from /proc, for suites that report CPU use.

import { execFileSync } from "node:child_process";
import { appendFileSync, mkdirSync, readFileSync } from "node:fs";
import { cpus, hostname, totalmem } from "node:os";
import { join } from "node:path";
import { renderSuite } from "./plots.ts";

const RESULTS_DIR = join(import.meta.dirname, "results");

export interface Machine {
  readonly host: string;
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memGiB: number;
  readonly node: string;
  readonly platform: string;
}

export function machine(): Machine {
  const c = cpus();
  return {
    host: hostname(),
    cpus: c.length,
    cpuModel: c[0]?.model ?? "unknown",
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
}

/** The checked-out commit (with "-dirty" when the work tree has changes), or "unknown" outside git. */
export function commit(): string {
  const git = (args: string[]) =>
    execFileSync("git", args, {
      cwd: import.meta.dirname,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
  try {
    const head = git(["rev-parse", "--short=12", "HEAD"]);
    return git(["status", "--porcelain", "--untracked-files=no"]) === "" ? head : `${head}-dirty`;
  } catch {
    return "unknown";
  }
}

/** Appends one line to bench/results/<suite>.jsonl; returns the file's path. */
export function appendResults(
  suite: string,
  settings: Record<string, unknown>,
  rows: readonly Record<string, unknown>[],
): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${suite}.jsonl`);
  const line = {
    date: new Date().toISOString(),
    suite,
    machine: machine(),
    commit: commit(),
    // Hybrid mode's counter: its own process (the product), or inside the replica (a baseline only).
    settings: process.env.ORDERER_BENCH_COUNTER
      ? { ...settings, counter: process.env.ORDERER_BENCH_COUNTER }
      : settings,
    rows,
  };
  appendFileSync(file, `${JSON.stringify(line)}\n`);
  return file;
}

/** Appends the suite's results, redraws its charts from them, and says where both went. */
export async function publish(
  suite: string,
  settings: Record<string, unknown>,
  rows: readonly Record<string, unknown>[],
): Promise<void> {
  console.log(`\nresults appended to ${appendResults(suite, settings, rows)}`);
  for (const f of await renderSuite(suite)) console.log(`plot: ${f}`);
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** User + system CPU seconds a live process has used so far (Linux /proc); 0 once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces) start after the last ")".
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}
