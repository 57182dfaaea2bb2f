import { Command, Option } from "commander";
import type { Mode } from "../../bft/types.ts";
import { initCluster } from "../config-files.ts";
import { CliError } from "../errors.ts";
import { intArg, print } from "../output.ts";

export function initCommand(): Command {
  return new Command("init")
    .description("generate keys, a cluster file and one config file per replica")
    .requiredOption("--nodes <n>", "number of replicas (hybrid: 2f+1, pbft: 3f+1)", intArg("--nodes"))
    .addOption(
      new Option("--mode <mode>", "agreement protocol").choices(["hybrid", "pbft"]).default("hybrid"),
    )
    .requiredOption("--out <dir>", "directory for cluster.jsonc and node-<i>.jsonc")
    .option("--name <name>", "cluster name", "orderer")
    .option("--hosts <list>", "comma-separated host per replica (default: all on 127.0.0.1)")
    .option(
      "--p2p-port <port>",
      "first libp2p port (one per replica on one host)",
      intArg("--p2p-port"),
      7050,
    )
    .option("--api-port <port>", "first API port (one per replica on one host)", intArg("--api-port"), 8080)
    .addOption(
      new Option("--transport <kind>", "how replicas reach each other (rdma: one host, needs native-rdma)")
        .choices(["libp2p", "rdma"])
        .default("libp2p"),
    )
    .option("--force", "overwrite an existing configuration (a new chain)")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
Examples:
  orderer init --nodes 3 --out ./cluster
  orderer init --nodes 4 --mode pbft --out ./cluster --hosts a.example,b.example,c.example,d.example
Then on each machine: orderer start --config ./cluster/node-<i>.jsonc`,
    )
    .action((o) => {
      const hosts: string[] | undefined =
        typeof o.hosts === "string" ? o.hosts.split(",").map((h: string) => h.trim()) : undefined;
      if (hosts?.some((h) => !/^[A-Za-z0-9.-]+$/.test(h)))
        throw new CliError("BAD_ARGUMENT", "--hosts: host names or IPv4 addresses, comma-separated");
      const r = initCluster({
        nodes: o.nodes,
        mode: o.mode as Mode,
        out: o.out,
        name: o.name,
        hosts,
        p2pPort: o.p2pPort,
        apiPort: o.apiPort,
        transport: o.transport === "rdma" ? "rdma" : undefined,
        force: o.force === true,
      });
      print(
        o.json,
        { clusterFile: r.clusterFile, nodeFiles: r.nodeFiles, mode: r.cluster.mode, f: r.cluster.f },
        () =>
          [
            `${r.cluster.mode} cluster "${r.cluster.name}": ${r.cluster.replicas.length} replicas, tolerates f=${r.cluster.f}`,
            `  ${r.clusterFile}  (shared by every replica)`,
            ...r.nodeFiles.map((f) => `  ${f}  (private: holds that replica's key)`),
            `start each replica with: orderer start --config ${r.nodeFiles[0]}  (and so on)`,
          ].join("\n"),
      );
    });
}
