// A replica's memory budget: the most memory its configuration lets traffic make it hold, term by term
// (docs/operations.md, "Memory"). Every queue and buffer that grows with what clients and peers send is
// bounded in bytes by a setting; the budget adds those bounds to what a replica at rest holds. A node
// refuses to start when the budget does not fit the machine (or its cgroup), naming the terms, so a
// configuration that could be driven out of memory is found at start and not under load.

import { readFileSync } from "node:fs";
import { totalmem } from "node:os";
import { ConfigError } from "../bft/errors.ts";
import { DEFAULT_LIMITS, type Limits } from "../bft/types.ts";
import { COORD_SERVICE_DEFAULTS } from "../coord/service.ts";
import { BLOCK_CACHE_BYTES } from "../ordering/ledger.ts";
import { DEFAULT_TRANSPORT_LIMITS } from "../transport/transport.ts";
import { API_SERVER_DEFAULTS } from "./api-server.ts";
import { batchLimits, type ClusterConfig, type NodeConfig, withNodeDefaults } from "./config.ts";

const MiB = 1024 * 1024;

/**
 * A replica at rest: Node and V8 (code, a small heap), libp2p, uWebSockets.js, LevelDB's caches and
 * write buffers, the counter link and the thread pool. Measured at about 110–150 MiB resident after
 * start on this project's machine; the margin covers heap growth from the bounded state below.
 */
export const PROCESS_BASE_BYTES = 256 * MiB;

/**
 * Copies of a batch in the pipeline while it is ordered and written: the core's slot, the encoded
 * PREPARE or slot record waiting to be written, the block built from it, LevelDB's write batch. Every
 * one of the `window` slots above the stable checkpoint can hold the largest batch.
 */
export const PIPELINE_COPIES = 4;

export interface MemoryTerm {
  readonly name: string;
  readonly bytes: number;
  /** Which settings make it, as a formula. */
  readonly formula: string;
}

export interface MemoryBudget {
  readonly terms: readonly MemoryTerm[];
  readonly totalBytes: number;
}

/** The budget of replica `node` of `cluster` (its core limits as the node would start them). */
export function memoryBudget(cluster: ClusterConfig, node: NodeConfig): MemoryBudget {
  const c = withNodeDefaults(node, cluster);
  const l: Limits = { ...DEFAULT_LIMITS, ...batchLimits(cluster.batch, c.tickMs), ...c.limits };
  const peers = cluster.replicas.length - 1;
  // A batch above batchMaxBytes is a single request (batchWithin), of at most requestMaxBytes.
  const largestBatch = Math.max(l.batchMaxBytes, l.requestMaxBytes);
  const t = DEFAULT_TRANSPORT_LIMITS;
  const terms: MemoryTerm[] = [
    { name: "process at rest", bytes: PROCESS_BASE_BYTES, formula: "256 MiB" },
    {
      name: "batches being ordered and written",
      bytes: PIPELINE_COPIES * l.window * largestBatch,
      formula: `${PIPELINE_COPIES} × window (${l.window}) × max(preferredMaxBytes, absoluteMaxBytes + framing) (${mib(largestBatch)})`,
    },
    {
      name: "executed batches kept for state transfer",
      bytes: l.retainMaxBytes,
      formula: "limits.retainMaxBytes",
    },
    { name: "block cache", bytes: BLOCK_CACHE_BYTES, formula: "16 MiB" },
    {
      name: "requests waiting in the core",
      bytes: 2 * l.pendingMaxBytes,
      formula: "2 × limits.pendingMaxBytes (the leader's queue; a follower's timers)",
    },
    {
      name: "submissions waiting at the gateway",
      bytes: c.pendingMaxBytes,
      formula: "pendingMaxBytes",
    },
    {
      name: "coordination operations held for proposal",
      bytes: COORD_SERVICE_DEFAULTS.queueMaxBytes,
      formula: "256 MiB",
    },
    {
      name: "transaction bodies being received",
      bytes: API_SERVER_DEFAULTS.bodiesMaxBytes,
      formula: "256 MiB",
    },
    {
      name: "frames to and from peers",
      bytes: peers * (t.queueMaxBytes + t.frameMaxBytes),
      formula: `(n − 1) × (queueMaxBytes ${mib(t.queueMaxBytes)} + frameMaxBytes ${mib(t.frameMaxBytes)})`,
    },
  ];
  return { terms, totalBytes: terms.reduce((a, x) => a + x.bytes, 0) };
}

const mib = (b: number): string => `${Math.round(b / MiB)} MiB`;

/**
 * Memory this process may use: the machine's, or its cgroup's limit when lower (cgroup v2
 * memory.max, then v1 memory.limit_in_bytes).
 */
export function availableMemoryBytes(): number {
  let limit = totalmem();
  for (const file of ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]) {
    try {
      const v = Number(readFileSync(file, "utf8").trim());
      if (Number.isSafeInteger(v) && v > 0) limit = Math.min(limit, v);
    } catch {
      // no such controller here ("max" reads as NaN: no limit)
    }
  }
  return limit;
}

/** The budget as a table: one line per term and the total. */
export function formatBudget(b: MemoryBudget): string {
  const lines = b.terms.map((x) => `  ${mib(x.bytes).padStart(9)}  ${x.name}: ${x.formula}`);
  return [...lines, `  ${mib(b.totalBytes).padStart(9)}  total`].join("\n");
}

/**
 * Refuses (ConfigError MEMORY_BUDGET) a node whose budget exceeds `available`, unless its config says
 * `memoryCheck: false`. Returns the budget.
 */
export function checkMemoryBudget(
  cluster: ClusterConfig,
  node: NodeConfig,
  available = availableMemoryBytes(),
): MemoryBudget {
  const b = memoryBudget(cluster, node);
  if (node.memoryCheck !== false && b.totalBytes > available)
    throw new ConfigError(
      "MEMORY_BUDGET",
      `this configuration lets replica ${node.id} hold up to ${mib(b.totalBytes)}, more than the ` +
        `${mib(available)} this machine (or cgroup) has:\n${formatBudget(b)}\nLower the largest terms ` +
        `(limits.window, batch.absoluteMaxBytes, pendingMaxBytes, limits.pendingMaxBytes), or set ` +
        `"memoryCheck": false in the node config to start anyway.`,
    );
  return b;
}
