// One trusted counter in its own process (the dev cluster, tests, benchmarks), configured by the private
// file named by ORDERER_COUNTER_FILE (CounterConfig as JSON, read and removed at once: its key never
// travels in the environment); tells its parent {type: "ready"} or
// {type: "error", message}; SIGTERM/SIGINT close it cleanly (exit 0).

import { takeHandOff } from "../util/private-files.ts";
import type { CounterConfig } from "./config.ts";
import { runCounter } from "./run.ts";

const send = (m: unknown) => process.send?.(m);
Promise.resolve()
  .then(() => {
    const config = takeHandOff(process.env.ORDERER_COUNTER_FILE ?? "") as CounterConfig;
    return runCounter(config, () => send({ type: "ready" }));
  })
  .then(
    () => process.exit(0),
    (err: unknown) => {
      send({ type: "error", message: (err as Error).stack ?? String(err) });
      process.exit(1);
    },
  );
