// What commands print: human lines on stdout, or JSON with --json; progress on stderr.

import { InvalidArgumentError } from "commander";

/** Prints `value` as JSON when `json` is set, else the human form. */
export function print(json: boolean | undefined, value: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value)}\n` : `${human()}\n`);
}

/** A commander parser for a non-negative integer option or argument. */
export function intArg(name: string): (v: string) => number {
  return (v) => {
    if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`${name} must be a non-negative integer`);
    const n = Number(v);
    if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`${name} is too large`);
    return n;
  };
}

/** A one-line progress bar on stderr (only when it is a terminal). */
export function progress(done: number, total: number, label: string): void {
  if (!process.stderr.isTTY) return;
  const width = 30;
  const filled = total > 0 ? Math.round((done / total) * width) : width;
  process.stderr.write(`\r${label} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total}`);
  if (done >= total) process.stderr.write("\n");
}
