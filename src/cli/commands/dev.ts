import { chmodSync, existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { Command, Option } from "commander";
import type { Mode } from "../../bft/types.ts";
import { NodeProcess } from "../../node/local-cluster.ts";
import { freePorts } from "../../node/ports.ts";
import { PRIVATE_FILE_MODE, privateDir } from "../../util/private-files.ts";
import { faultsFor, initCluster, loadCounterConfig, loadNodeConfig } from "../config-files.ts";
import { CliError } from "../errors.ts";
import { intArg } from "../output.ts";
import { DEV_DIR } from "../target.ts";

export function devCommand(): Command {
  return new Command("dev")
    .description("run a complete local cluster: replicas as child processes, data under one folder")
    .option("--dir <dir>", "folder for configs, data and logs", DEV_DIR)
    .addOption(
      new Option("--mode <mode>", "protocol of a new cluster").choices(["hybrid", "pbft"]).default("hybrid"),
    )
    .option("--nodes <n>", "replicas of a new cluster (default 3 for hybrid, 4 for pbft)", intArg("--nodes"))
    .option("--tls", "a new cluster serves https/wss (self-signed CA in <dir>/tls; clients find tls/ca.pem)")
    .addHelpText(
      "after",
      `
The first run generates keys and configs in the folder; later runs resume the same chain. Each replica
logs to <dir>/node-<i>.log. Ctrl-C stops every replica cleanly.

Examples:
  orderer dev
  orderer dev --dir /tmp/pbft-dev --mode pbft`,
    )
    .action(async (o) => {
      const dir = resolve(o.dir);
      // Keys, data and logs of every replica: 0700, whatever it was (docs/operations.md, "File modes").
      privateDir(dir);
      const clusterFile = join(dir, "cluster.jsonc");
      const fresh = !existsSync(clusterFile);
      if (fresh) {
        const mode = o.mode as Mode;
        const nodes = o.nodes ?? (mode === "hybrid" ? 3 : 4);
        faultsFor(mode, nodes);
        const ports = await freePorts(2 * nodes);
        initCluster({
          nodes,
          mode,
          out: dir,
          name: "dev",
          ports: { p2p: ports.slice(0, nodes), api: ports.slice(nodes) },
          tls: o.tls === true,
        });
      }
      const loaded = [];
      for (let i = 0; existsSync(join(dir, `node-${i}.jsonc`)); i++) {
        // Keys written by an older version or by hand: 0600 whatever they were.
        for (const f of [`node-${i}.jsonc`, `counter-${i}.jsonc`])
          if (existsSync(join(dir, f))) chmodSync(join(dir, f), PRIVATE_FILE_MODE);
        loaded.push(loadNodeConfig(join(dir, `node-${i}.jsonc`)));
      }
      const first = loaded[0];
      if (!first) throw new CliError("CONFIG_NOT_FOUND", `no node-0.jsonc in ${dir}`);
      const cluster = first.cluster;
      // Hybrid mode: each replica's trusted counter runs as its own process (counter-<i>.jsonc).
      const procs = loaded.map((l) => {
        const counterFile = join(dir, `counter-${l.node.id}.jsonc`);
        const counter = cluster.mode === "hybrid" ? loadCounterConfig(counterFile) : undefined;
        return new NodeProcess(cluster, l.node, { logFile: join(dir, `node-${l.node.id}.log`) }, counter);
      });
      let stopping = false;
      const stop = async (code: number) => {
        if (stopping) return;
        stopping = true;
        process.stdout.write("\nstopping the replicas...\n");
        const codes = await Promise.all(procs.map((p) => p.stop()));
        process.stdout.write(`stopped (exit codes ${codes.join(", ")})\n`);
        process.exit(code);
      };
      process.on("SIGINT", () => void stop(0));
      process.on("SIGTERM", () => void stop(0));
      try {
        await Promise.all(procs.map((p) => p.start()));
      } catch (err) {
        process.stderr.write(`a replica failed to start: ${(err as Error).message.split("\n")[0]}\n`);
        await stop(1);
        return;
      }
      const urls = cluster.replicas.map((r) => r.api);
      const cli = "npm run orderer --";
      process.stdout.write(
        [
          fresh ? `new cluster: keys and configs in ${dir}` : `resuming the cluster in ${dir}`,
          `${cluster.mode} cluster "${cluster.name}" with ${urls.length} replicas is up (f=${cluster.f}):`,
          ...urls.map(
            (u, i) =>
              `  replica ${i}: ${u}  health ${u}/health  metrics ${u}/metrics  log ${join(dir, `node-${i}.log`)}`,
          ),
          "",
          "try it (in another terminal):",
          `  ${cli} submit 'hello'                 # a transaction, with its verified receipt`,
          `  ${cli} blocks --follow                 # blocks as they are certified`,
          `  ${cli} zk create /app 'config v1'      # a znode; then: zk watch /app, zk set /app 'v2'`,
          `  ${cli} status                          # every replica's view, leader and height`,
          `  curl -s${urls[0]?.startsWith("https:") ? ` --cacert ${join(dir, "tls", "ca.pem")}` : ""} -X POST --data-binary 'hello' ${urls[0]}/v1/transactions`,
          "Ctrl-C stops the cluster.",
          "",
        ].join("\n"),
      );
      await new Promise(() => {}); // until a signal
    });
}
