// One ordering node in its own process (the dev cluster, multi-process tests, benchmarks). Configured by the
// private file named by ORDERER_NODE_FILE ({cluster, node, inProcessCounter?} as JSON, read and removed at
// once: secrets never travel in the environment); tells its parent {type: "ready"} or
// {type: "error", message}; reports catch-up and view-change events as {type: "event", event}; SIGTERM stops it
// cleanly (exit 0).

import { InProcessCounter } from "../counter/in-process.ts";
import { createLogger } from "../util/log.ts";
import { takeHandOff } from "../util/private-files.ts";
import { StageTrace } from "../util/trace.ts";
import { type ClusterConfig, type CounterConfig, type NodeConfig, resolveNodeConfig } from "./config.ts";
import { OrdererNode } from "./orderer-node.ts";

const send = (m: unknown) => process.send?.(m);
/** Events worth a message to the parent (not the per-message or per-checkpoint ones). */
const REPORTED = new Set([
  "snapshot-offered",
  "state-transfer",
  "blocks-fetched",
  "view-change-started",
  "new-view",
  "equivocation",
]);

async function main(): Promise<void> {
  // Files the replica creates (LevelDB's, 0644 by its own choice) are its user's alone.
  process.umask(0o077);
  const {
    cluster,
    node: settings,
    inProcessCounter,
  } = takeHandOff(process.env.ORDERER_NODE_FILE ?? "") as {
    cluster: ClusterConfig;
    node: NodeConfig;
    inProcessCounter?: CounterConfig;
  };
  const node = resolveNodeConfig(cluster, settings);
  // The latency breakdown bench: stage marks, handed to the parent on {type: "trace"}.
  const trace = process.env.ORDERER_TRACE === "1" ? new StageTrace() : undefined;
  if (trace)
    process.on("message", (m: { type?: string }) => {
      if (m?.type === "trace") send({ type: "trace", marks: trace.take() });
    });
  // Tests: a crash (SIGKILL to itself) at the k-th Ready whose PREPARE/COMMIT went out before it was written.
  const crashAt = Number(process.env.ORDERER_TEST_CRASH_BEFORE_DURABLE ?? 0);
  let splits = 0;
  // Benchmarks: the in-process counter baseline (local-cluster.ts, ORDERER_BENCH_COUNTER=in-process).
  const n = await OrdererNode.start(cluster, node, {
    openCounter: inProcessCounter ? () => InProcessCounter.open(inProcessCounter) : undefined,
    onSentBeforeDurable:
      crashAt > 0
        ? () => {
            if (++splits === crashAt) process.kill(process.pid, "SIGKILL");
          }
        : undefined,
    logger: createLogger(node.logLevel, { replica: node.id }),
    onError: (err) => send({ type: "log", message: err.message }),
    onFatal: () => setImmediate(() => process.exit(70)),
    trace,
    onEvent: (e) => {
      if (!REPORTED.has(e.kind)) return;
      // A proof holds bytes: the parent gets its culprit (the proof itself is at GET /v1/misbehaviour).
      send({ type: "event", event: e.kind === "equivocation" ? { kind: e.kind, culprit: e.culprit } : e });
    },
  });
  // SIGTERM from the parent; SIGINT when Ctrl-C reaches the whole process group.
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    n.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  // The parent is gone (killed, or crashed) when its IPC channel closes: stop rather than linger as an
  // orphan that holds the replica's ports and data directory.
  process.on("disconnect", stop);
  send({ type: "ready" });
}

main().catch((err: unknown) => {
  send({ type: "error", message: (err as Error).stack ?? String(err) });
  process.exit(1);
});
