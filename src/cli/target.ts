// Which cluster a client command talks to: --cluster FILE (default $ORDERER_CLUSTER, else the dev
// cluster's ./.orderer-dev/cluster.jsonc), optionally pinned to one replica with --url, and the CA its
// replicas' TLS certificates must chain to (--ca FILE, else $ORDERER_CA, else the tls/ca.pem that
// `orderer init --tls` wrote beside the cluster file; else the system's roots).

import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Command } from "commander";
import { sha256, verifyEd25519 } from "../crypto/node-crypto.ts";
import { type ClusterConfig, clientOptions } from "../node/config.ts";
import { OrderingClient } from "../ordering/client.ts";
import { caTransport, isCertificateError } from "../util/tls-client.ts";

export { isCertificateError };

import { loadCluster } from "./config-files.ts";
import { CliError } from "./errors.ts";

export const DEV_DIR = ".orderer-dev";

export interface TargetOptions {
  readonly cluster?: string;
  readonly url?: string;
  readonly ca?: string;
}

/** Adds --cluster and --url to a command. */
export function targetOptions(cmd: Command): Command {
  return cmd
    .option("--cluster <file>", "cluster file (default: $ORDERER_CLUSTER, else ./.orderer-dev/cluster.jsonc)")
    .option("--url <url>", "talk to this replica's API only (default: any replica of the cluster)")
    .option(
      "--ca <file>",
      "CA certificate (PEM) the replicas' https certificates must chain to (default: $ORDERER_CA, else tls/ca.pem beside the cluster file, else the system's)",
    );
}

export function resolveTarget(o: TargetOptions): { cluster: ClusterConfig; urls: string[]; ca?: string } {
  const file = o.cluster ?? process.env.ORDERER_CLUSTER ?? resolve(DEV_DIR, "cluster.jsonc");
  if (!existsSync(file))
    throw new CliError(
      "CONFIG_NOT_FOUND",
      `no cluster file at ${file}: start one with \`orderer dev\`, or pass --cluster FILE`,
    );
  const cluster = loadCluster(file);
  if (o.url !== undefined && !/^https?:\/\//.test(o.url))
    throw new CliError("BAD_ARGUMENT", `--url: must be an http(s) URL (got "${o.url}")`);
  const urls = o.url ? [o.url] : cluster.replicas.map((r) => r.api);
  return { cluster, urls, ca: caOf(o, file, urls) };
}

/** The CA's PEM text for https URLs (see the header), or undefined for the system's roots. */
function caOf(o: TargetOptions, clusterFile: string, urls: readonly string[]): string | undefined {
  const given = o.ca ?? (process.env.ORDERER_CA || undefined);
  const beside = join(dirname(resolve(clusterFile)), "tls", "ca.pem");
  const file =
    given ?? (urls.some((u) => u.startsWith("https://")) && existsSync(beside) ? beside : undefined);
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new CliError("BAD_ARGUMENT", `--ca: cannot read ${file} (${(err as NodeJS.ErrnoException).code})`);
  }
  if (!text.includes("-----BEGIN CERTIFICATE-----"))
    throw new CliError("BAD_ARGUMENT", `--ca: ${file} holds no PEM certificate`);
  return text;
}

/** A fetch trusting the target's CA (the global fetch without one). */
export function targetFetch(ca: string | undefined): typeof fetch {
  return ca === undefined ? fetch : caTransport(ca).fetch;
}

export function orderingClient(o: TargetOptions): {
  client: OrderingClient;
  cluster: ClusterConfig;
  urls: string[];
} {
  const { cluster, urls, ca } = resolveTarget(o);
  const client = new OrderingClient({
    ...clientOptions(cluster),
    urls,
    hash: sha256,
    verify: verifyEd25519,
    ...(ca !== undefined ? { ca } : {}),
  });
  return { client, cluster, urls };
}
