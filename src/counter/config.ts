// A trusted counter process's configuration (`counter-<i>.jsonc`) and its checks, which the node's
// configuration (node/config.ts) shares.

import { ConfigError } from "../bft/errors.ts";
import { LOG_LEVELS, type LogLevel } from "../util/log.ts";

/** Refuses a configuration: `field: why`. */
export const configFail = (field: string, why: string): never => {
  throw new ConfigError("BAD_CONFIG", `${field}: ${why}`);
};
const fail = configFail;

/** Lowercase hex of exactly `bytes` bytes. */
export const isHex = (v: unknown, bytes: number): boolean =>
  typeof v === "string" && new RegExp(`^[0-9a-f]{${2 * bytes}}$`).test(v);

/** An absolute path short enough for a UNIX socket's address. */
export const socketPathOk = (p: unknown): boolean =>
  typeof p === "string" && p.startsWith("/") && p.length <= 100;

/**
 * A trusted counter process's settings (`orderer counter --config counter-<i>.jsonc`). Its seed is the
 * counter's signing key: keep this file readable by the counter's user only, never by the replica's.
 */
export interface CounterConfig {
  /** The replica (and subsystem) id. */
  readonly id: number;
  /** The counter's ed25519 private seed, hex; its public key is replicas[id].counterPublicKey. */
  readonly seed: string;
  /** The only replica allowed to use this counter: replicas[id].publicKey. */
  readonly replicaPublicKey: string;
  /** Where the counter listens (absolute UNIX socket path); node-<id>.jsonc's counterSocket. */
  readonly socket: string;
  /** Where the counter keeps its values (never the replica's dataDir). */
  readonly dataDir: string;
  /**
   * Started as root: the Unix user to run as (its own, not the replica's). The counter reads this file,
   * hands dataDir to that user, and drops root before it opens anything else.
   */
  readonly user?: string;
  /** Structured log level (default "info"). */
  readonly logLevel?: LogLevel;
}

/** A counter's setting defaults (see CounterConfig): the one place they are written. */
export const COUNTER_DEFAULTS = Object.freeze({
  logLevel: "info" as LogLevel,
}) satisfies Partial<CounterConfig>;

export function validateCounter(c: CounterConfig): void {
  if (!c || typeof c !== "object") fail("counter", "must be an object");
  if (!Number.isInteger(c.id) || c.id < 0) fail("id", "must be an integer >= 0");
  if (!isHex(c.seed, 32)) fail("seed", "must be 64 hex digits");
  if (!isHex(c.replicaPublicKey, 32)) fail("replicaPublicKey", "must be 64 hex digits");
  if (!socketPathOk(c.socket))
    fail("socket", "must be an absolute UNIX socket path of at most 100 characters");
  if (typeof c.dataDir !== "string" || c.dataDir.length === 0) fail("dataDir", "must be a path");
  if (c.user !== undefined && (typeof c.user !== "string" || !/^[a-z_][a-z0-9_-]{0,31}$/.test(c.user)))
    fail("user", "must be a Unix user name");
  if (c.logLevel !== undefined && !(LOG_LEVELS as readonly string[]).includes(c.logLevel))
    fail("logLevel", `must be one of ${LOG_LEVELS.join(", ")}`);
}
