// Which cluster a client command talks to: --cluster FILE (default $ORDERER_CLUSTER, else the dev
// cluster's ./.orderer-dev/cluster.jsonc), optionally pinned to one replica with --url.

import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import { sha256, verifyEd25519 } from "../crypto/node-crypto.ts";
import { type ClusterConfig, clientOptions } from "../node/config.ts";
import { OrderingClient } from "../ordering/client.ts";
import { loadCluster } from "./config-files.ts";
import { CliError } from "./errors.ts";

export const DEV_DIR = ".orderer-dev";

export interface TargetOptions {
  readonly cluster?: string;
  readonly url?: string;
}

/** Adds --cluster and --url to a command. */
export function targetOptions(cmd: Command): Command {
  return cmd
    .option("--cluster <file>", "cluster file (default: $ORDERER_CLUSTER, else ./.orderer-dev/cluster.jsonc)")
    .option("--url <url>", "talk to this replica's API only (default: any replica of the cluster)");
}

export function resolveTarget(o: TargetOptions): { cluster: ClusterConfig; urls: string[] } {
  const file = o.cluster ?? process.env.ORDERER_CLUSTER ?? resolve(DEV_DIR, "cluster.jsonc");
  if (!existsSync(file))
    throw new CliError(
      "CONFIG_NOT_FOUND",
      `no cluster file at ${file}: start one with \`orderer dev\`, or pass --cluster FILE`,
    );
  const cluster = loadCluster(file);
  if (o.url !== undefined && !/^https?:\/\//.test(o.url))
    throw new CliError("BAD_ARGUMENT", `--url: must be an http(s) URL (got "${o.url}")`);
  return { cluster, urls: o.url ? [o.url] : cluster.replicas.map((r) => r.api) };
}

export function orderingClient(o: TargetOptions): {
  client: OrderingClient;
  cluster: ClusterConfig;
  urls: string[];
} {
  const { cluster, urls } = resolveTarget(o);
  const client = new OrderingClient({ ...clientOptions(cluster), urls, hash: sha256, verify: verifyEd25519 });
  return { client, cluster, urls };
}
