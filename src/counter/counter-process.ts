// One trusted counter in its own process (the dev cluster, tests, benchmarks), configured by the
// ORDERER_COUNTER environment variable (CounterConfig as JSON); tells its parent {type: "ready"} or
// {type: "error", message}; SIGTERM/SIGINT close it cleanly (exit 0).

import { runCounter } from "./run.ts";

const send = (m: unknown) => process.send?.(m);
runCounter(JSON.parse(process.env.ORDERER_COUNTER ?? "{}"), () => send({ type: "ready" })).then(
  () => process.exit(0),
  (err: unknown) => {
    send({ type: "error", message: (err as Error).stack ?? String(err) });
    process.exit(1);
  },
);
