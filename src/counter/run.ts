// Runs one trusted counter in this process until SIGTERM/SIGINT (`orderer counter`, counter-process.ts).

import { execFileSync } from "node:child_process";
import { chownSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { withDefaults } from "../util/defaults.ts";
import { createLogger } from "../util/log.ts";
import { COUNTER_DEFAULTS, type CounterConfig, validateCounter } from "./config.ts";
import { CounterStoreError } from "./errors.ts";
import { CounterServer } from "./server.ts";
import { CounterStore } from "./store.ts";

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, "hex"));

/**
 * V8 optimises a function once it has run "enough" (its interrupt budget, about 132 KB of bytecode
 * by default); a counter certifies once per batch, a few hundred times a second at most, so its code
 * stayed in the baseline tier for most of a run. With this budget it is optimised within the first few
 * hundred certificates. Measured (coordination creates one at a time, the certifying thread's time per
 * certificate in situ, medians of three replicas, interleaved fresh clusters): default 370–530 µs,
 * with it 290–340 µs. Set for this process before the certifying thread starts (counter processes only).
 */
export const COUNTER_V8_FLAGS = "--interrupt-budget=4000";

/** Runs the counter until SIGTERM/SIGINT; resolves once it has closed. */
export async function runCounter(config: CounterConfig, onReady?: () => void): Promise<void> {
  validateCounter(config);
  const c = withDefaults(COUNTER_DEFAULTS, config);
  const logger = createLogger(c.logLevel, { counter: c.id });
  if (c.user !== undefined) dropPrivileges(c.user, c.dataDir);
  setFlagsFromString(COUNTER_V8_FLAGS);
  const srv = await CounterServer.start({
    id: c.id,
    seed: hex(c.seed),
    replicaPublicKey: hex(c.replicaPublicKey),
    socketPath: c.socket,
    dataDir: c.dataDir,
    logger,
  });
  onReady?.();
  await new Promise<void>((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
    // Started by a parent with an IPC channel (counter-process.ts): stop once that parent is gone.
    if (process.connected) process.once("disconnect", () => resolve());
  });
  await srv.close();
}

/** Hands `dataDir` to `user` and becomes that user (group included); refuses when that is not possible. */
export function dropPrivileges(user: string, dataDir: string): void {
  const getuid = process.getuid?.bind(process);
  if (!getuid || !process.setuid || !process.setgid)
    throw new CounterStoreError("NO_USER", "this platform has no Unix users");
  const id = (flag: string): number => {
    try {
      return Number(execFileSync("id", [flag, user], { encoding: "utf8" }).trim());
    } catch {
      throw new CounterStoreError("NO_USER", `user: no Unix user "${user}"`);
    }
  };
  const uid = id("-u");
  const gid = id("-g");
  if (getuid() === uid) return;
  if (getuid() !== 0)
    throw new CounterStoreError(
      "NO_USER",
      `user: switching to "${user}" needs root (running as uid ${getuid()})`,
    );
  if (uid === 0) throw new CounterStoreError("NO_USER", "user: the counter must not run as root");
  CounterStore.ensureDir(dataDir);
  chownSync(dataDir, uid, gid);
  for (const f of readdirSync(dataDir)) chownSync(join(dataDir, f), uid, gid);
  process.setgid(gid);
  process.setuid(uid);
}
