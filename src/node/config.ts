// Cluster and node configuration: shapes, defaults, validation (a bad field is named), and the mapping
// of Fabric's batch settings onto the core's limits.

import { readFileSync } from "node:fs";
import { quorums } from "../bft/quorum.ts";
import type { Limits, Mode } from "../bft/types.ts";
import { COORD_SERVICE_DEFAULTS } from "../coord/service.ts";
import { TREE_DEFAULTS, type TreeConfig } from "../coord/tree.ts";
import { REMOTE_COUNTER_DEFAULTS } from "../counter/client.ts";
import { configFail, isHex, socketPathOk } from "../counter/config.ts";
import { GATEWAY_DEFAULTS } from "../ordering/gateway.ts";
import { TX_BATCH_OVERHEAD_BYTES } from "../ordering/tx-batch.ts";
import { withDefaults } from "../util/defaults.ts";
import { LOG_LEVELS, type LogLevel } from "../util/log.ts";
import { API_SERVER_DEFAULTS, type ApiTlsOptions } from "./api/options.ts";
import { validOriginEntry } from "./api/request-checks.ts";
import { HOST_DEFAULTS } from "./host.ts";

export { type CounterConfig, validateCounter } from "../counter/config.ts";
export { LOG_LEVELS, type LogLevel };

/** Fabric's BatchSize / BatchTimeout. */
export interface BatchConfig {
  /** A block holds at most this many transactions. */
  readonly maxMessageCount: number;
  /** A transaction larger than this is refused at intake (HTTP 413). */
  readonly absoluteMaxBytes: number;
  /** A block is cut before a transaction that would take it over this size; a larger one goes alone. */
  readonly preferredMaxBytes: number;
  /** A non-empty block waits at most this long for more transactions while earlier blocks are in flight. */
  readonly batchTimeoutMs: number;
}

export const DEFAULT_BATCH: BatchConfig = Object.freeze({
  maxMessageCount: 500,
  absoluteMaxBytes: 10 * 1024 * 1024,
  preferredMaxBytes: 2 * 1024 * 1024,
  batchTimeoutMs: 20,
});

export interface ReplicaEntry {
  readonly id: number;
  /** ed25519 public key, hex: libp2p identity, block signatures, gateway requests. */
  readonly publicKey: string;
  /** libp2p listen/dial multiaddr, e.g. /ip4/127.0.0.1/tcp/7001 */
  readonly p2p: string;
  /** Base URL of the replica's HTTP/WebSocket API, e.g. http://127.0.0.1:8001 */
  readonly api: string;
  /** With transport "rdma": the UNIX socket path of the replica's rdma endpoint (one host only). */
  readonly rdma?: string;
  /** Hybrid mode: the ed25519 public key, hex, of the replica's trusted counter (its own process). */
  readonly counterPublicKey?: string;
}

export const TRANSPORTS = ["libp2p", "rdma"] as const;
export type TransportKind = (typeof TRANSPORTS)[number];

/** What every replica agrees on; its canonical JSON is the genesis block's entry. */
export interface ClusterConfig {
  readonly name: string;
  readonly mode: Mode;
  readonly f: number;
  readonly replicas: readonly ReplicaEntry[];
  /** How replicas reach each other (default "libp2p"; "rdma" needs the native-rdma addon, one host). */
  readonly transport?: TransportKind;
  readonly batch: BatchConfig;
  /** The znode tree's limits (part of the replicated state: identical on every replica). */
  readonly coord?: CoordConfig;
}

export interface CoordConfig {
  /** Largest znode data (default 1 MiB, and at most absoluteMaxBytes minus 4 KiB). */
  readonly dataMaxBytes?: number;
  readonly nodesMax?: number;
  readonly sessionsMax?: number;
  readonly sessionTimeoutMinMs?: number;
  readonly sessionTimeoutMaxMs?: number;
}

/** One replica's own settings (secrets included: keep this file private). */
export interface NodeConfig {
  readonly id: number;
  /** ed25519 private key seed, hex (32 bytes). */
  readonly seed: string;
  /** Hybrid mode: the UNIX socket of this replica's trusted counter process (`orderer counter`). */
  readonly counterSocket?: string;
  /** Hybrid mode: how long a certification may take before the counter counts as down (default 5000). */
  readonly counterTimeoutMs?: number;
  readonly dataDir: string;
  readonly apiHost: string;
  readonly apiPort: number;
  /** fsync every write (default true). */
  readonly sync?: boolean;
  /** Real time of one core tick (default 10 ms). */
  readonly tickMs?: number;
  /** A submission not committed within this time is answered with TIMEOUT (default 30 s). */
  readonly submitTimeoutMs?: number;
  /** Submissions waiting for a receipt at this replica (default 100 000). */
  readonly pendingMax?: number;
  /** ...and at most this many bytes of their transactions (default 256 MiB, at least absoluteMaxBytes). */
  readonly pendingMaxBytes?: number;
  /** Core timing and window overrides (in ticks). */
  readonly limits?: Partial<Limits>;
  /** This replica proposes its clock this often while sessions or TTL/container nodes exist (default 250 ms). */
  readonly coordClockPeriodMs?: number;
  /** Structured log level (default "info"). */
  readonly logLevel?: LogLevel;
  /** false: start even when the memory budget exceeds the machine's memory (memory.ts; default true). */
  readonly memoryCheck?: boolean;
  /** libp2p listen multiaddr when it differs from replicas[id].p2p (e.g. /ip4/0.0.0.0/tcp/7050 behind a host name). */
  readonly p2pListen?: string;
  /**
   * Browser origins (scheme://host[:port]) whose pages may call the API; "*" allows any. Requests
   * without an Origin header (programs, the CLI, the client libraries) are not affected. Default: none.
   */
  readonly allowedOrigins?: readonly string[];
  /**
   * Serve the API over HTTPS/WSS with these PEM files (absolute paths, or relative to the node file;
   * docs/operations.md, "TLS"). replicas[id].api must then be an https URL. Default: plain HTTP.
   */
  readonly tls?: ApiTlsOptions;
}

/** The defaults of a replica's own settings: the one place they are written (resolveNodeConfig). */
export const NODE_DEFAULTS = Object.freeze({
  counterTimeoutMs: REMOTE_COUNTER_DEFAULTS.certifyTimeoutMs,
  sync: true,
  tickMs: HOST_DEFAULTS.tickMs,
  submitTimeoutMs: 30_000,
  pendingMax: 100_000,
  /** At least batch.absoluteMaxBytes when that is larger (withNodeDefaults). */
  pendingMaxBytes: GATEWAY_DEFAULTS.pendingMaxBytes,
  coordClockPeriodMs: COORD_SERVICE_DEFAULTS.clockPeriodMs,
  logLevel: "info" as LogLevel,
  memoryCheck: true,
  allowedOrigins: API_SERVER_DEFAULTS.allowedOrigins,
});

/** A NodeConfig with every default filled in: what a replica runs with. */
export type ResolvedNodeConfig = NodeConfig & {
  readonly [K in keyof typeof NODE_DEFAULTS]-?: (typeof NODE_DEFAULTS)[K];
} & { readonly limits: Partial<Limits> };

/** `node` with its unset settings at their defaults (no validation: see resolveNodeConfig). */
export function withNodeDefaults(node: NodeConfig, cluster: ClusterConfig): ResolvedNodeConfig {
  const set = Object.fromEntries(Object.entries(node).filter(([, v]) => v !== undefined)) as NodeConfig;
  return {
    ...NODE_DEFAULTS,
    pendingMaxBytes: Math.max(NODE_DEFAULTS.pendingMaxBytes, cluster.batch.absoluteMaxBytes),
    ...set,
    limits: { ...set.limits },
  } as ResolvedNodeConfig;
}

/**
 * Checks a cluster and one replica's settings and fills every default: what `orderer start`, forked
 * replica processes and tests all start a replica from (OrdererNode.start calls it). Throws
 * ConfigError naming the first bad field.
 */
export function resolveNodeConfig(cluster: ClusterConfig, node: NodeConfig): ResolvedNodeConfig {
  validateCluster(cluster);
  validateNode(node, cluster);
  return withNodeDefaults(node, cluster);
}

const fail = configFail;
const posInt = (v: unknown, field: string) => {
  if (!Number.isSafeInteger(v) || (v as number) <= 0) fail(field, "must be a positive integer");
};

export function validateCluster(c: ClusterConfig): void {
  if (!c || typeof c !== "object") fail("cluster", "must be an object");
  if (typeof c.name !== "string" || c.name.length === 0) fail("name", "must be a non-empty string");
  if (c.mode !== "hybrid" && c.mode !== "pbft") fail("mode", 'must be "hybrid" or "pbft"');
  if (!Number.isInteger(c.f) || c.f < 0) fail("f", "must be an integer >= 0");
  const n = c.mode === "hybrid" ? 2 * c.f + 1 : 3 * c.f + 1;
  if (!Array.isArray(c.replicas) || c.replicas.length !== n)
    fail("replicas", `a ${c.mode} cluster with f=${c.f} has ${n} replicas`);
  c.replicas.forEach((r, i) => {
    if (r.id !== i) fail(`replicas[${i}].id`, `must be ${i}`);
    if (!isHex(r.publicKey, 32)) fail(`replicas[${i}].publicKey`, "must be 64 hex digits");
    if (typeof r.p2p !== "string" || !r.p2p.startsWith("/"))
      fail(`replicas[${i}].p2p`, "must be a multiaddr");
    if (typeof r.api !== "string" || !/^https?:\/\//.test(r.api))
      fail(`replicas[${i}].api`, "must be an http(s) URL");
    if (c.mode === "hybrid" && !isHex(r.counterPublicKey, 32))
      fail(`replicas[${i}].counterPublicKey`, "hybrid mode needs each replica's counter key (64 hex digits)");
    if (
      c.transport === "rdma" &&
      (typeof r.rdma !== "string" || !r.rdma.startsWith("/") || r.rdma.length > 100)
    )
      fail(`replicas[${i}].rdma`, "must be an absolute UNIX socket path of at most 100 characters");
  });
  if (c.transport !== undefined && !TRANSPORTS.includes(c.transport))
    fail("transport", `must be one of ${TRANSPORTS.join(", ")}`);
  const b = c.batch;
  if (!b || typeof b !== "object") fail("batch", "must be an object");
  posInt(b.maxMessageCount, "batch.maxMessageCount");
  posInt(b.absoluteMaxBytes, "batch.absoluteMaxBytes");
  posInt(b.preferredMaxBytes, "batch.preferredMaxBytes");
  posInt(b.batchTimeoutMs, "batch.batchTimeoutMs");
  if (b.absoluteMaxBytes > 32 * 1024 * 1024) fail("batch.absoluteMaxBytes", "must be <= 32 MiB");
  if (b.preferredMaxBytes > 32 * 1024 * 1024) fail("batch.preferredMaxBytes", "must be <= 32 MiB");
  const z = c.coord;
  if (z !== undefined) {
    if (!z || typeof z !== "object") fail("coord", "must be an object");
    for (const k of [
      "dataMaxBytes",
      "nodesMax",
      "sessionsMax",
      "sessionTimeoutMinMs",
      "sessionTimeoutMaxMs",
    ] as const)
      if (z[k] !== undefined) posInt(z[k], `coord.${k}`);
    if (z.dataMaxBytes !== undefined && z.dataMaxBytes > b.absoluteMaxBytes - 4096)
      fail("coord.dataMaxBytes", "must leave 4 KiB of batch.absoluteMaxBytes for the operation around it");
    const { sessionTimeoutMinMs: min, sessionTimeoutMaxMs: max } = withDefaults(TREE_DEFAULTS, z);
    if (min > max) fail("coord.sessionTimeoutMinMs", "must not exceed coord.sessionTimeoutMaxMs");
  }
}

/** The tree's configuration a cluster implies. */
export function treeConfig(c: ClusterConfig): TreeConfig {
  const q = quorums(c.mode, c.f);
  return {
    n: q.n,
    f: c.f,
    ...c.coord,
    dataMaxBytes: Math.max(
      0,
      Math.min(c.coord?.dataMaxBytes ?? TREE_DEFAULTS.dataMaxBytes, c.batch.absoluteMaxBytes - 4096),
    ),
  };
}

export function validateNode(node: NodeConfig, cluster: ClusterConfig): void {
  if (!Number.isInteger(node.id) || node.id < 0 || node.id >= cluster.replicas.length)
    fail("id", `must be a replica id of the cluster (0..${cluster.replicas.length - 1})`);
  if (!isHex(node.seed, 32)) fail("seed", "must be 64 hex digits");
  if ((node as { groupSecret?: unknown }).groupSecret !== undefined)
    fail(
      "groupSecret",
      "no longer used: each replica's trusted counter has its own key (run `orderer init` again)",
    );
  if (cluster.mode === "hybrid" && !socketPathOk(node.counterSocket))
    fail(
      "counterSocket",
      "hybrid mode needs the absolute path of the counter's UNIX socket (at most 100 characters)",
    );
  if (node.counterTimeoutMs !== undefined) posInt(node.counterTimeoutMs, "counterTimeoutMs");
  if (typeof node.dataDir !== "string" || node.dataDir.length === 0) fail("dataDir", "must be a path");
  if (typeof node.apiHost !== "string" || node.apiHost.length === 0)
    fail("apiHost", "must be a host name or address");
  if (!Number.isInteger(node.apiPort) || node.apiPort < 0 || node.apiPort > 65535)
    fail("apiPort", "must be 0..65535");
  if (node.tickMs !== undefined) posInt(node.tickMs, "tickMs");
  if (node.submitTimeoutMs !== undefined) posInt(node.submitTimeoutMs, "submitTimeoutMs");
  if (node.pendingMax !== undefined) posInt(node.pendingMax, "pendingMax");
  if (node.memoryCheck !== undefined && typeof node.memoryCheck !== "boolean")
    fail("memoryCheck", "must be true or false");
  if (node.pendingMaxBytes !== undefined) {
    posInt(node.pendingMaxBytes, "pendingMaxBytes");
    if (node.pendingMaxBytes < cluster.batch.absoluteMaxBytes)
      fail("pendingMaxBytes", `must be at least batch.absoluteMaxBytes (${cluster.batch.absoluteMaxBytes})`);
  }
  if (node.coordClockPeriodMs !== undefined) posInt(node.coordClockPeriodMs, "coordClockPeriodMs");
  if (node.sync !== undefined && typeof node.sync !== "boolean") fail("sync", "must be true or false");
  if (node.p2pListen !== undefined && (typeof node.p2pListen !== "string" || !node.p2pListen.startsWith("/")))
    fail("p2pListen", "must be a multiaddr such as /ip4/0.0.0.0/tcp/7050");
  if (
    node.allowedOrigins !== undefined &&
    (!Array.isArray(node.allowedOrigins) || !node.allowedOrigins.every(validOriginEntry))
  )
    fail("allowedOrigins", 'must be a list of origins such as "https://app.example:8443", or "*"');
  if (node.tls !== undefined) validateTls(node.tls, cluster.replicas[node.id]?.api ?? "");
  if (node.logLevel !== undefined && !(LOG_LEVELS as readonly string[]).includes(node.logLevel))
    fail("logLevel", `must be one of ${LOG_LEVELS.join(", ")}`);
  if (
    node.limits !== undefined &&
    (typeof node.limits !== "object" || node.limits === null || Array.isArray(node.limits))
  )
    fail("limits", "must be an object of core limits");
}

const TLS_FIELDS = new Set(["certFile", "keyFile", "caFile"]);

/**
 * The API's TLS files: each named, readable and PEM of the right kind (what OpenSSL would otherwise
 * refuse only when the server starts, with no file named). `api` is this replica's URL in the cluster.
 */
function validateTls(tls: ApiTlsOptions, api: string): void {
  if (!tls || typeof tls !== "object" || Array.isArray(tls))
    fail("tls", "must be an object { certFile, keyFile, caFile? }");
  for (const k of Object.keys(tls))
    if (k === "requireClientCert" || k === "requestClientCert")
      fail(
        `tls.${k}`,
        "not supported: the bundled uWebSockets.js cannot require a client certificate (tls.caFile only " +
          "refuses one that does not chain to it; see docs/operations.md)",
      );
    else if (!TLS_FIELDS.has(k)) fail(`tls.${k}`, "unknown field (certFile, keyFile, caFile)");
  pemFile(tls.certFile, "tls.certFile", /-----BEGIN CERTIFICATE-----/, "certificate");
  pemFile(
    tls.keyFile,
    "tls.keyFile",
    /-----BEGIN (?!ENCRYPTED)(?:[A-Z]+ )?PRIVATE KEY-----(?![\s\S]*ENCRYPTED)/,
    "unencrypted private key",
  );
  if (tls.caFile !== undefined)
    pemFile(tls.caFile, "tls.caFile", /-----BEGIN CERTIFICATE-----/, "CA certificate");
  if (!api.startsWith("https://"))
    fail(
      "tls",
      `this replica serves HTTPS, so its api URL in the cluster file must be https:// (it is ${api})`,
    );
}

function pemFile(path: unknown, field: string, kind: RegExp, what: string): void {
  if (typeof path !== "string" || path.length === 0) fail(field, "must be the path of a PEM file");
  let text: string;
  try {
    text = readFileSync(path as string, "utf8");
  } catch (err) {
    return fail(
      field,
      `cannot read ${path as string} (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
    );
  }
  if (!kind.test(text)) fail(field, `${path as string} holds no PEM ${what}`);
}

/** The core limits a cluster's batch settings imply (Fabric's names → the leader's batching). */
export function batchLimits(b: BatchConfig, tickMs: number): Partial<Limits> {
  return {
    batchMaxCount: b.maxMessageCount,
    batchMaxBytes: b.preferredMaxBytes,
    // A gateway's request wraps its transactions in a batch (tx-batch.ts): room for one of the largest.
    requestMaxBytes: b.absoluteMaxBytes + TX_BATCH_OVERHEAD_BYTES,
    batchTimeoutTicks: Math.max(1, Math.ceil(b.batchTimeoutMs / tickMs)),
  };
}

/** JSON with object keys sorted at every level: the same config gives the same genesis bytes. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

export const gatewayClientId = (replica: number): string => `replica-${replica}`;
/** The client identity under which a replica proposes coordination entries. */
export const coordClientId = (replica: number): string => `coord-${replica}`;

/** What a client of the ordering service needs from a cluster config: URLs, replica keys, commit quorum. */
export function clientOptions(cluster: ClusterConfig): {
  urls: string[];
  replicaKeys: string[];
  quorum: number;
  counterKeys?: string[];
} {
  return {
    urls: cluster.replicas.map((r) => r.api),
    replicaKeys: cluster.replicas.map((r) => r.publicKey),
    quorum: quorums(cluster.mode, cluster.f).commit,
    ...(cluster.mode === "hybrid"
      ? { counterKeys: cluster.replicas.map((r) => r.counterPublicKey ?? "") }
      : {}),
  };
}
