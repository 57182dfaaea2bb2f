// One ordering node in its own process (multi-process tests and benchmarks). Configured by the
// ORDERER_NODE environment variable ({cluster, node} as JSON); tells its parent {type: "ready"} or
// {type: "error", message}; SIGTERM stops it cleanly (exit 0).

import { OrdererNode } from "../../src/node/orderer-node.ts";

const send = (m: unknown) => process.send?.(m);

async function main(): Promise<void> {
  const { cluster, node } = JSON.parse(process.env.ORDERER_NODE ?? "{}");
  const n = await OrdererNode.start(cluster, node, {
    onError: (err) => send({ type: "log", message: err.message }),
  });
  process.on("SIGTERM", () => {
    n.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
  send({ type: "ready" });
}

main().catch((err: unknown) => {
  send({ type: "error", message: (err as Error).stack ?? String(err) });
  process.exit(1);
});
