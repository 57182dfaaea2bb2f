import { dirname } from "node:path";
import { Command, Option } from "commander";
import type { Mode } from "../../bft/types.ts";
import { wsBase } from "../../util/websocket.ts";
import { INIT_DEFAULTS, initCluster } from "../config-files.ts";
import { CliError } from "../errors.ts";
import { intArg, print } from "../output.ts";

/** What hybrid mode protects against, printed once by `orderer init --mode hybrid` (docs/protocol.md). */
export const hybridThreatModel = (
  f: number,
): string => `What hybrid mode protects against (n = 2f+1; details in docs/protocol.md, "Threat model"):
  - Up to f Byzantine replicas whose process, node file and data directory an attacker controls: safe,
    as long as their trusted counters are not compromised. Each counter is its own process (orderer
    counter) with its own key; it never certifies two messages with one value and serves only its
    replica. Run it as its own Unix user so that the replica cannot read its key.
  - A replica whose counter key is stolen too can get two different blocks certified at one height.
    The honest replicas detect it within a message round, keep a proof anyone can check
    (GET /v1/misbehaviour), tell each other and stop ordering. Clients that confirm a receipt with
    f+1 = ${f + 1} replicas (OrderingClient confirmReplicas, orderer verify --confirm ${f + 1}) refuse
    both forks once it is detected; a client trusting one receipt may accept one before. Only trusted
    hardware (SGX, TPM) for the counter prevents the fork itself.
  - If counters cannot be kept apart from their replicas, or stopping on a stolen counter key is not
    acceptable, choose PBFT (--mode pbft, n = 3f+1): it needs no trusted component.`;

export function initCommand(): Command {
  return new Command("init")
    .description("generate keys, a cluster file and one config file per replica")
    .requiredOption("--nodes <n>", "number of replicas (hybrid: 2f+1, pbft: 3f+1)", intArg("--nodes"))
    .addOption(
      new Option("--mode <mode>", "agreement protocol").choices(["hybrid", "pbft"]).default("hybrid"),
    )
    .requiredOption("--out <dir>", "directory for cluster.jsonc and node-<i>.jsonc")
    .option("--name <name>", "cluster name", INIT_DEFAULTS.name)
    .option("--hosts <list>", "comma-separated host per replica (default: all on 127.0.0.1)")
    .option(
      "--p2p-port <port>",
      "first libp2p port (one per replica on one host)",
      intArg("--p2p-port"),
      INIT_DEFAULTS.p2pPort,
    )
    .option(
      "--api-port <port>",
      "first API port (one per replica on one host)",
      intArg("--api-port"),
      INIT_DEFAULTS.apiPort,
    )
    .addOption(
      new Option("--transport <kind>", "how replicas reach each other (rdma: one host, needs native-rdma)")
        .choices(["libp2p", "rdma"])
        .default("libp2p"),
    )
    .option(
      "--tls",
      "serve the APIs over https/wss: a new self-signed CA and a certificate per replica in <out>/tls (openssl; for dev and tests)",
    )
    .option("--force", "overwrite an existing configuration (a new chain)")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
Examples:
  orderer init --nodes 3 --out ./cluster
  orderer init --nodes 4 --mode pbft --out ./cluster --hosts a.example,b.example,c.example,d.example
  orderer init --nodes 3 --out ./cluster --tls     # then clients: --ca ./cluster/tls/ca.pem
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
        tls: o.tls === true,
        force: o.force === true,
      });
      const urls = r.cluster.replicas.map((x) => x.api);
      print(
        o.json,
        {
          clusterFile: r.clusterFile,
          nodeFiles: r.nodeFiles,
          counterFiles: r.counterFiles,
          caFile: r.caFile,
          urls,
          mode: r.cluster.mode,
          f: r.cluster.f,
        },
        () =>
          [
            `${r.cluster.mode} cluster "${r.cluster.name}": ${r.cluster.replicas.length} replicas, tolerates f=${r.cluster.f}`,
            `  ${r.clusterFile}  (shared by every replica)`,
            ...r.nodeFiles.map((f) => `  ${f}  (private: holds that replica's key)`),
            ...r.counterFiles.map(
              (f) => `  ${f}  (private to the counter's own user: holds its counter key)`,
            ),
            ...(r.caFile
              ? [
                  `  ${r.caFile}  (the CA of the replicas' certificates: give it to clients, --ca)`,
                  `  ${dirname(r.caFile)}/node-<i>.key, ca.key  (private: TLS keys)`,
                ]
              : []),
            `client API: ${urls.join(" ")}  (WebSocket: ${urls.map(wsBase).join(" ")})`,
            r.counterFiles.length > 0
              ? `start each counter, then its replica: orderer counter --config ${r.counterFiles[0]}; orderer start --config ${r.nodeFiles[0]}  (and so on)`
              : `start each replica with: orderer start --config ${r.nodeFiles[0]}  (and so on)`,
            ...(r.cluster.mode === "hybrid" ? ["", hybridThreatModel(r.cluster.f)] : []),
          ].join("\n"),
      );
    });
}
