// Structured JSON logs (pino): one line per event with its fields, e.g.
//   {"level":40,"time":…,"replica":1,"view":3,"reason":"request-timeout","msg":"view change started"}

import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger };

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A logger writing JSON lines to `destination` (default stdout). */
export function createLogger(
  level: LogLevel = "info",
  bindings: Record<string, unknown> = {},
  destination?: DestinationStream,
): Logger {
  const opts = { level, base: { pid: process.pid, ...bindings } };
  return destination ? pino(opts, destination) : pino(opts);
}

/** A logger that drops everything (library use and tests). */
export const silentLogger: Logger = pino({ level: "silent" });
