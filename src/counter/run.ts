// Runs one trusted counter in this process until SIGTERM/SIGINT (`orderer counter`, counter-process.ts).

import { type CounterConfig, validateCounter } from "../node/config.ts";
import { createLogger } from "../node/log.ts";
import { CounterServer } from "./server.ts";

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, "hex"));

/** Runs the counter until SIGTERM/SIGINT; resolves once it has closed. */
export async function runCounter(c: CounterConfig, onReady?: () => void): Promise<void> {
  validateCounter(c);
  const logger = createLogger(c.logLevel ?? "info", { counter: c.id });
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
  });
  await srv.close();
}
