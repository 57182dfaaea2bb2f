// The configuration files `orderer init` writes and `orderer start` reads: JSON with comments (JSONC),
// one cluster file that every replica shares and one private file per replica that names it.
// Precedence when starting: the file, then ORDERER_* environment variables, then command-line flags.

import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { ConfigError } from "../bft/errors.ts";
import type { Mode } from "../bft/types.ts";
import { ed25519PublicKeyOf } from "../crypto/node-crypto.ts";
import {
  type ClusterConfig,
  type CounterConfig,
  DEFAULT_BATCH,
  LOG_LEVELS,
  type LogLevel,
  type NodeConfig,
  type TransportKind,
  validateCluster,
  validateCounter,
  validateNode,
} from "../node/config.ts";
import { withDefaults } from "../util/defaults.ts";
import { privateDir, writePrivateFile } from "../util/private-files.ts";
import { CliError } from "./errors.ts";
import { makeDevCertificates, TLS_DIR } from "./tls-files.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** Removes // and /* *\/ comments outside strings (JSON with comments, as in tsconfig.json). */
export function stripJsonComments(text: string): string {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === '"') {
      const start = i++;
      while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
      out += text.slice(start, ++i);
    } else if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      const stop = end < 0 ? text.length : end + 2;
      out += text.slice(i, stop).replace(/[^\n]/g, " "); // keep line numbers for error messages
      i = stop;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Reads a JSON-with-comments file; a syntax error names the file. */
export function readJsonc(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new CliError(
      "CONFIG_NOT_FOUND",
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`,
    );
  }
  try {
    return JSON.parse(stripJsonComments(text));
  } catch (err) {
    throw new CliError("CONFIG_SYNTAX", `${file}: ${(err as Error).message}`);
  }
}

/** Runs a validator; a ConfigError it throws names `file`. */
function validateIn(file: string, validate: () => void): void {
  try {
    validate();
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(err.code, `${file}: ${err.message}`);
    throw err;
  }
}

/** A config file's top-level object, refusing fields outside `allowed` (and `cluster`, named apart). */
function readConfigObject(path: string, allowed: ReadonlySet<string>): Record<string, unknown> {
  const raw = readJsonc(path);
  if (!raw || typeof raw !== "object" || Array.isArray(raw))
    throw new CliError("CONFIG_SYNTAX", `${path}: must be a JSON object`);
  for (const k of Object.keys(raw))
    if (k !== "cluster" && !allowed.has(k))
      throw new ConfigError("BAD_CONFIG", `${path}: ${k}: unknown field`);
  return { ...(raw as Record<string, unknown>) };
}

// ------------------------------------------------------------------ init

export interface InitOptions {
  readonly nodes: number;
  readonly mode: Mode;
  readonly out: string;
  readonly name?: string;
  /** One host per replica, or one for all (default 127.0.0.1). */
  readonly hosts?: readonly string[];
  readonly p2pPort?: number;
  readonly apiPort?: number;
  /** Explicit ports per replica (the dev cluster picks free ones). */
  readonly ports?: { readonly p2p: readonly number[]; readonly api: readonly number[] };
  /** "rdma": replicas talk through the native-rdma shm provider (one host; socket paths under `out`). */
  readonly transport?: TransportKind;
  /** Serve the APIs over HTTPS/WSS with a new self-signed CA and a certificate per replica (openssl). */
  readonly tls?: boolean;
  readonly force?: boolean;
}

/** `orderer init`'s defaults (see InitOptions; the command's options show them): the one place they are written. */
export const INIT_DEFAULTS = Object.freeze({
  name: "orderer",
  /** The first libp2p and API ports (one per replica on one host). */
  p2pPort: 7050,
  apiPort: 8080,
}) satisfies Partial<InitOptions>;

export interface InitResult {
  readonly clusterFile: string;
  readonly nodeFiles: string[];
  /** Hybrid mode: one trusted counter file per replica (empty in PBFT mode). */
  readonly counterFiles: string[];
  /** With tls: the CA certificate clients are given (--ca). */
  readonly caFile?: string;
  readonly cluster: ClusterConfig;
}

/** f for a replica count, or a CliError saying which counts the mode allows. */
export function faultsFor(mode: Mode, nodes: number): number {
  const per = mode === "hybrid" ? 2 : 3;
  if (!Number.isInteger(nodes) || nodes < per + 1 || (nodes - 1) % per !== 0)
    throw new CliError(
      "BAD_ARGUMENT",
      `--nodes: a ${mode} cluster has ${mode === "hybrid" ? "2f+1 (3, 5, 7, …)" : "3f+1 (4, 7, 10, …)"} replicas`,
    );
  return (nodes - 1) / per;
}

/** Generates keys and writes cluster.jsonc and node-<i>.jsonc into `out`. */
export function initCluster(options: InitOptions): InitResult {
  const o = withDefaults(INIT_DEFAULTS, options);
  const f = faultsFor(o.mode, o.nodes);
  const out = resolve(o.out);
  const clusterFile = join(out, "cluster.jsonc");
  if (existsSync(clusterFile) && !o.force)
    throw new CliError(
      "EXISTS",
      `${clusterFile} exists (use --force to overwrite, which starts a new chain)`,
    );
  // It holds every replica's key: 0700, whatever it was (docs/operations.md, "File modes").
  privateDir(out);
  const hosts = o.hosts && o.hosts.length > 0 ? o.hosts : ["127.0.0.1"];
  if (hosts.length !== 1 && hosts.length !== o.nodes)
    throw new CliError("BAD_ARGUMENT", `--hosts: give one host, or one per replica (${o.nodes})`);
  const hostOf = (i: number) => (hosts.length === 1 ? hosts[0] : hosts[i]) as string;
  const sameHost = hosts.length === 1;
  if (o.transport === "rdma" && !sameHost)
    throw new CliError(
      "BAD_ARGUMENT",
      "--transport rdma: the shm provider connects replicas of one host only",
    );
  const p2pPort = (i: number) => o.ports?.p2p[i] ?? o.p2pPort + (sameHost ? i : 0);
  const apiPort = (i: number) => o.ports?.api[i] ?? o.apiPort + (sameHost ? i : 0);
  const seeds = Array.from({ length: o.nodes }, () => randomBytes(32));
  const hybrid = o.mode === "hybrid";
  const counterSeeds = Array.from({ length: o.nodes }, () => randomBytes(32));
  const cluster: ClusterConfig = {
    name: o.name,
    mode: o.mode,
    f,
    replicas: seeds.map((s, i) => ({
      id: i,
      publicKey: hex(ed25519PublicKeyOf(s)),
      p2p: `/${/^[0-9.]+$/.test(hostOf(i)) ? "ip4" : "dns4"}/${hostOf(i)}/tcp/${p2pPort(i)}`,
      api: `${o.tls ? "https" : "http"}://${hostOf(i)}:${apiPort(i)}`,
      ...(o.transport === "rdma" ? { rdma: join(out, `rdma-${i}.sock`) } : {}),
      ...(hybrid ? { counterPublicKey: hex(ed25519PublicKeyOf(counterSeeds[i] as Uint8Array)) } : {}),
    })),
    ...(o.transport === "rdma" ? { transport: "rdma" as const } : {}),
    batch: { ...DEFAULT_BATCH },
  };
  validateCluster(cluster);
  const counterSocket = (i: number) => `counter-${i}.sock`;
  const certs = o.tls
    ? makeDevCertificates(
        out,
        o.name,
        seeds.map((_, i) => hostOf(i)),
      )
    : undefined;
  writeFileSync(clusterFile, renderCluster(cluster));
  const nodeFiles: string[] = [];
  seeds.forEach((s, i) => {
    const file = join(out, `node-${i}.jsonc`);
    writePrivateFile(
      file,
      renderNode({
        id: i,
        seed: hex(s),
        counterSocket: hybrid ? counterSocket(i) : undefined,
        dataDir: `data/node-${i}`,
        apiHost: sameHost ? hostOf(i) : "0.0.0.0",
        apiPort: apiPort(i),
        p2pListen: sameHost ? undefined : `/ip4/0.0.0.0/tcp/${p2pPort(i)}`,
        tls: certs
          ? { certFile: `${TLS_DIR}/node-${i}.pem`, keyFile: `${TLS_DIR}/node-${i}.key` }
          : undefined,
      }),
    );
    nodeFiles.push(file);
  });
  const counterFiles: string[] = [];
  if (hybrid)
    counterSeeds.forEach((cs, i) => {
      const file = join(out, `counter-${i}.jsonc`);
      writePrivateFile(
        file,
        renderCounter({
          id: i,
          seed: hex(cs),
          replicaPublicKey: cluster.replicas[i]?.publicKey as string,
          socket: counterSocket(i),
          dataDir: `counter-${i}.data`,
        }),
      );
      counterFiles.push(file);
    });
  return { clusterFile, nodeFiles, counterFiles, caFile: certs?.caFile, cluster };
}

function renderCounter(c: CounterConfig): string {
  return `// Replica ${c.id}'s trusted counter (\`orderer counter --config <this file>\`). It holds the counter's
// signing key: the one secret that keeps replica ${c.id} from certifying two messages with one counter value.
// Run it as its own Unix user and keep this file and its dataDir readable by that user only, NOT by
// the replica's user: a replica that can read this key can fork the chain (see docs/protocol.md).
{
  // The replica (and counter) id.
  "id": ${c.id},
  // ed25519 private key seed (hex, 32 bytes). Its public key is replicas[${c.id}].counterPublicKey.
  "seed": "${c.seed}",
  // Only the replica with this public key (replicas[${c.id}].publicKey) may use the counter.
  "replicaPublicKey": "${c.replicaPublicKey}",
  // The UNIX socket the counter listens on (relative to this file); node-${c.id}.jsonc's counterSocket.
  "socket": "${c.socket}",
  // Where the counter keeps its values, fsynced before every answer (relative to this file). Losing or
  // rolling back this directory lets the counter certify values again: back it up never, restore it never.
  "dataDir": "${c.dataDir}",
  // Started as root, the counter hands dataDir to this Unix user and runs as it (not the replica's user).
  // "user": "orderer-counter",
  // fatal, error, warn, info, debug, trace or silent.
  "logLevel": "info"
}
`;
}

const COUNTER_FIELDS = new Set(["id", "seed", "replicaPublicKey", "socket", "dataDir", "user", "logLevel"]);

/** Reads and validates a counter file; relative paths are relative to it. */
export function loadCounterConfig(file: string): CounterConfig {
  const path = resolve(file);
  const fields = readConfigObject(path, COUNTER_FIELDS);
  if ("cluster" in fields) throw new ConfigError("BAD_CONFIG", `${path}: cluster: unknown field`);
  const base = dirname(path);
  if (typeof fields.socket === "string") fields.socket = resolve(base, fields.socket);
  if (typeof fields.dataDir === "string") fields.dataDir = resolve(base, fields.dataDir);
  const c = fields as unknown as CounterConfig;
  validateIn(path, () => validateCounter(c));
  return c;
}

function renderCluster(c: ClusterConfig): string {
  const b = c.batch;
  const replicas = c.replicas
    .map(
      (r) =>
        `    { "id": ${r.id}, "publicKey": "${r.publicKey}",\n      "p2p": "${r.p2p}", "api": "${r.api}"${r.rdma ? `,\n      "rdma": ${JSON.stringify(r.rdma)}` : ""}${r.counterPublicKey ? `,\n      "counterPublicKey": "${r.counterPublicKey}"` : ""} }`,
    )
    .join(",\n");
  return `// The cluster: identical on every replica. Its canonical JSON is the genesis block's only entry, so a
// changed file is a different chain (a replica refuses a data directory of another chain).
{
  // Shown in logs and in the genesis block.
  "name": ${JSON.stringify(c.name)},
  // "hybrid": n = 2f+1 replicas, each with a trusted counter; "pbft": n = 3f+1, no trusted component.
  "mode": "${c.mode}",
  // Faulty replicas tolerated (Byzantine in either mode).
  "f": ${c.f},
  // Each replica: its ed25519 public key (libp2p identity, block signatures), the libp2p address it
  // listens on and others dial, and the base URL of its HTTP/WebSocket API (what clients use).
  "replicas": [
${replicas}
  ],
  // How replicas reach each other: "libp2p" (TCP + noise + yamux, the default) or "rdma" (the native-rdma
  // addon's shared-memory provider, one host only: each replica's "rdma" is its UNIX socket path).
  ${c.transport ? `"transport": "${c.transport}",` : `// "transport": "libp2p",`}
  // Block cutting, as Fabric's BatchSize/BatchTimeout.
  "batch": {
    // A block holds at most this many transactions.
    "maxMessageCount": ${b.maxMessageCount},
    // A larger transaction is refused (HTTP 413). At most 32 MiB.
    "absoluteMaxBytes": ${b.absoluteMaxBytes},
    // A block is cut before a transaction that would take it over this size.
    "preferredMaxBytes": ${b.preferredMaxBytes},
    // A non-empty block waits at most this long for more transactions while earlier ones are in flight.
    "batchTimeoutMs": ${b.batchTimeoutMs}
  }
  // Optional znode tree limits (defaults shown), part of the replicated state:
  // "coord": { "dataMaxBytes": 1048576, "nodesMax": 1000000, "sessionsMax": 100000,
  //            "sessionTimeoutMinMs": 2000, "sessionTimeoutMaxMs": 120000 }
}
`;
}

function renderNode(n: NodeConfig): string {
  return `// Replica ${n.id}'s own settings. It holds this replica's private key: keep it private (mode 600).
// dataDir, apiHost, apiPort, sync and logLevel can be overridden by ORDERER_DATA_DIR, ORDERER_API_HOST,
// ORDERER_API_PORT, ORDERER_SYNC and ORDERER_LOG_LEVEL, and those by the flags of \`orderer start\`.
{
  // The cluster file (relative to this file).
  "cluster": "cluster.jsonc",
  // This replica's index in the cluster's replicas.
  "id": ${n.id},
  // ed25519 private key seed (hex, 32 bytes). Its public key is replicas[${n.id}].publicKey.
  "seed": "${n.seed}",${
    n.counterSocket
      ? `
  // Hybrid mode: the UNIX socket of this replica's trusted counter (\`orderer counter --config
  // counter-${n.id}.jsonc\`, relative to this file). The counter holds its own key; this file does not.
  "counterSocket": "${n.counterSocket}",`
      : ""
  }
  // libp2p listens here (the cluster file's p2p address is what peers dial).
  ${n.p2pListen ? `"p2pListen": "${n.p2pListen}",` : `// "p2pListen": "/ip4/0.0.0.0/tcp/7050",`}
  // Where this replica keeps its LevelDB data (relative to this file).
  "dataDir": "${n.dataDir}",
  // The HTTP/WebSocket API listens here (clients, /health, /metrics).
  "apiHost": "${n.apiHost}",
  "apiPort": ${n.apiPort},
  // HTTPS/WSS: this replica's certificate chain and key (PEM, relative to this file; the key is read
  // once at start). "caFile" (optional) refuses a client certificate that does not chain to it; a client
  // without one is still served. See docs/operations.md, "TLS".
  ${n.tls ? `"tls": { "certFile": "${n.tls.certFile}", "keyFile": "${n.tls.keyFile}" },` : `// "tls": { "certFile": "tls/node-${n.id}.pem", "keyFile": "tls/node-${n.id}.key" },`}
  // Browser origins whose web pages may call this API (a request with another Origin header is refused
  // with 403); programs send no Origin and are not affected. "*" allows any page: don't, on a machine
  // where someone browses the web.
  // "allowedOrigins": ["https://dashboard.example"],
  // fsync every write before acknowledging it. Turning it off loses acknowledged data on power loss.
  "sync": true,
  // Real time of one core tick (timeouts below count in ticks).
  "tickMs": 10,
  // A submission not committed within this time is answered with TIMEOUT.
  "submitTimeoutMs": 30000,
  // Submissions waiting for their receipt at this replica.
  "pendingMax": 100000,
  // The replica proposes its clock this often while sessions or TTL/container znodes exist.
  "coordClockPeriodMs": 250,
  // fatal, error, warn, info, debug, trace or silent. Logs are JSON lines on stdout.
  "logLevel": "info",
  // Core timeouts, in ticks (defaults shown): a forwarded request not committed in time starts a
  // view change; the view-change timeout doubles per failed attempt up to its max. (Other core limits,
  // such as checkpointInterval, must be the same on every replica: leave them out unless you know.)
  "limits": {
    "requestTimeoutTicks": 200,
    "viewChangeTimeoutTicks": 200,
    "viewChangeTimeoutMaxTicks": 6400
  }
}
`;
}

// ------------------------------------------------------------------ start

export interface NodeOverrides {
  readonly dataDir?: string;
  readonly apiHost?: string;
  readonly apiPort?: number;
  readonly sync?: boolean;
  readonly logLevel?: string;
}

/** ORDERER_* variables that override node file fields. */
export function envOverrides(env: NodeJS.ProcessEnv): NodeOverrides {
  const port = env.ORDERER_API_PORT;
  const sync = env.ORDERER_SYNC;
  const num = (v: string, field: string) => {
    if (!/^\d+$/.test(v)) throw new ConfigError("BAD_CONFIG", `${field}: must be an integer (got "${v}")`);
    return Number(v);
  };
  const bool = (v: string, field: string) => {
    if (v !== "true" && v !== "false") throw new ConfigError("BAD_CONFIG", `${field}: must be true or false`);
    return v === "true";
  };
  return {
    dataDir: env.ORDERER_DATA_DIR || undefined,
    apiHost: env.ORDERER_API_HOST || undefined,
    apiPort: port ? num(port, "ORDERER_API_PORT") : undefined,
    sync: sync ? bool(sync, "ORDERER_SYNC") : undefined,
    logLevel: env.ORDERER_LOG_LEVEL || undefined,
  };
}

/**
 * Reads a node file and the cluster file it names, applies environment then flag overrides, and
 * validates both (a bad field is named). Relative paths are relative to the node file.
 */
export function loadNodeConfig(
  file: string,
  env: NodeOverrides = {},
  flags: NodeOverrides = {},
): { cluster: ClusterConfig; node: NodeConfig; clusterFile: string } {
  const path = resolve(file);
  const { cluster: clusterRef, ...fields } = readConfigObject(path, NODE_FIELDS);
  if (typeof clusterRef !== "string")
    throw new ConfigError("BAD_CONFIG", `cluster: must name the cluster file (in ${path})`);
  const base = dirname(path);
  const clusterFile = resolve(base, clusterRef);
  const cluster = readJsonc(clusterFile) as ClusterConfig;
  const merged = { ...fields, ...defined(env), ...defined(flags) } as Record<string, unknown>;
  if (typeof merged.dataDir === "string") merged.dataDir = resolve(base, merged.dataDir);
  if (typeof merged.counterSocket === "string") merged.counterSocket = resolve(base, merged.counterSocket);
  if (merged.tls && typeof merged.tls === "object") merged.tls = relativeTo(base, merged.tls);
  const node = merged as unknown as NodeConfig;
  validateIn(clusterFile, () => validateCluster(cluster));
  validateIn(path, () => validateNode(node, cluster));
  return { cluster, node, clusterFile };
}

const NODE_FIELDS = new Set([
  "id",
  "seed",
  "groupSecret",
  "counterSocket",
  "counterTimeoutMs",
  "dataDir",
  "apiHost",
  "apiPort",
  "sync",
  "tickMs",
  "submitTimeoutMs",
  "pendingMax",
  "limits",
  "coordClockPeriodMs",
  "logLevel",
  "p2pListen",
  "allowedOrigins",
  "tls",
]);

/** The tls section with its file paths resolved against `base` (other fields as they are). */
function relativeTo(base: string, tls: object): object {
  const out: Record<string, unknown> = { ...tls };
  for (const k of ["certFile", "keyFile", "caFile"])
    if (typeof out[k] === "string") out[k] = resolve(base, out[k] as string);
  return out;
}

function defined(o: NodeOverrides): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out;
}

export function isLogLevel(s: string): s is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

/** The cluster file `orderer dev` uses, or the one named by --cluster / ORDERER_CLUSTER. */
export function loadCluster(file: string): ClusterConfig {
  const c = readJsonc(resolve(file)) as ClusterConfig;
  validateIn(file, () => validateCluster(c));
  return c;
}
