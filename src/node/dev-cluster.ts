// `npm run dev`: a complete local cluster — 3 hybrid replicas as child processes, data under one folder
// (default ./.orderer-dev, or ORDERER_DEV_DIR). The first run generates keys and a cluster config there;
// later runs reuse them and resume the same chain. Ctrl-C stops every replica cleanly.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ClusterConfig, NodeConfig } from "./config.ts";
import { localCluster, NodeProcess } from "./local-cluster.ts";

const dir = resolve(process.env.ORDERER_DEV_DIR ?? ".orderer-dev");
const file = join(dir, "cluster.json");

async function main(): Promise<void> {
  mkdirSync(dir, { recursive: true });
  let cfg: { cluster: ClusterConfig; nodes: NodeConfig[] };
  if (existsSync(file)) {
    cfg = JSON.parse(readFileSync(file, "utf8"));
    process.stdout.write(`resuming the cluster in ${dir}\n`);
  } else {
    const lc = await localCluster("hybrid", 1, dir);
    cfg = { cluster: { ...lc.cluster, name: "dev" }, nodes: lc.nodes };
    writeFileSync(file, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o600 });
    process.stdout.write(`new cluster: keys and config in ${file}\n`);
  }
  const procs = cfg.nodes.map((n) => new NodeProcess(cfg.cluster, n, "ignore"));
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write("\nstopping the replicas...\n");
    const codes = await Promise.all(procs.map((p) => p.stop()));
    process.stdout.write(`stopped (exit codes ${codes.join(", ")})\n`);
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  await Promise.all(procs.map((p) => p.start()));
  const urls = cfg.cluster.replicas.map((r) => r.api);
  process.stdout.write(
    [
      `${cfg.cluster.mode} cluster "${cfg.cluster.name}" with ${urls.length} replicas is up:`,
      ...urls.map((u, i) => `  replica ${i}: ${u}  (p2p ${cfg.cluster.replicas[i]?.p2p})`),
      "",
      "try it:",
      `  curl -s -X POST --data-binary 'hello' ${urls[0]}/v1/transactions`,
      `  curl -s ${urls[1]}/v1/chain`,
      `  curl -s ${urls[2]}/v1/blocks/1`,
      "API: docs/api.md · block format: docs/block-format.md · Ctrl-C stops the cluster",
      "",
    ].join("\n"),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`dev cluster failed: ${(err as Error).message}\n`);
  process.exit(1);
});
