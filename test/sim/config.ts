// The simulator's settings and results: the Byzantine kinds a replica can have, the run configuration
// (SimConfig, DEFAULT_SIM), the protocol limits the simulated replicas use (SIM_LIMITS), and what a
// run reports (SimResult).

import type { Limits, Mode } from "../../src/bft/index.ts";

export const BYZANTINE_KINDS = [
  "silent",
  "equivocate",
  "forge-certs",
  "replay",
  "wrong-digest",
  "bad-client-sig",
  "view-spam",
  "flood",
  "garbage",
  "fake-new-view",
  "compromised-counter",
  "slow-leader",
] as const;
export type ByzantineKind = (typeof BYZANTINE_KINDS)[number];

/**
 * Kinds that only make sense in one mode. "compromised-counter" (the trusted counter's key is in the
 * attacker's hands) exists only in hybrid mode; in PBFT a replica's own key already signs its
 * proposals, so the same attack is plain "equivocate".
 */
const HYBRID_ONLY: ReadonlySet<ByzantineKind> = new Set(["compromised-counter"]);

/** The Byzantine kinds a run of `mode` can have (what "random" picks from). */
export function byzantineKinds(mode: Mode): readonly ByzantineKind[] {
  return mode === "hybrid" ? BYZANTINE_KINDS : BYZANTINE_KINDS.filter((k) => !HYBRID_ONLY.has(k));
}

/** What a kind becomes in `mode`. */
export function kindFor(mode: Mode, k: ByzantineKind): ByzantineKind {
  return mode === "pbft" && k === "compromised-counter" ? "equivocate" : k;
}

export interface SimConfig {
  readonly seed: number;
  readonly mode: Mode;
  readonly f: number;
  /** Ticks in all; faults happen before healAt * steps, then the network heals and everyone restarts. */
  readonly steps: number;
  readonly healAt: number;
  readonly clients: number;
  /** Outstanding requests per client. */
  readonly pipeline: number;
  readonly opBytes: number;
  readonly lossRate: number;
  readonly dupRate: number;
  readonly maxDelay: number;
  readonly partitions: boolean;
  readonly crashes: boolean;
  /** Byzantine behaviour per faulty replica; "random" picks f replicas and a kind for each. */
  readonly byzantine: readonly ByzantineKind[] | "random" | "none";
  readonly authScheme: "ed25519" | "mac" | "mixed";
  /**
   * "with-ready": software counters persisted atomically with each Ready (a crash before the write
   * rolls both back); "hardware": counters survive any crash, so a replica can wake up with a counter
   * ahead of its persisted state (an amnesia fault that counts against f).
   */
  readonly trustedCounters: "with-ready" | "hardware";
  /**
   * Report links to each replica every tick as a host does (Replica.link): open unless the peer is
   * crashed or on the other side of a partition. A partition closing links at once is harsher than TCP.
   */
  readonly links: boolean;
  readonly limits?: Partial<Limits>;
}

export const DEFAULT_SIM: Omit<SimConfig, "seed" | "mode"> = {
  f: 1,
  steps: 3000,
  healAt: 0.55,
  clients: 3,
  pipeline: 2,
  opBytes: 16,
  lossRate: 0.05,
  dupRate: 0.03,
  maxDelay: 4,
  partitions: true,
  crashes: true,
  byzantine: "random",
  authScheme: "mixed",
  trustedCounters: "with-ready",
  links: true,
};

/**
 * A slow leader sends its proposals one per this many ticks (about ten times a commit's few ticks here),
 * holding the rest: it keeps proposing, far below what the pending requests allow.
 */
export const SLOW_LEADER_TICKS = 30;

/** Chance that a compromised-counter leader equivocates on a PREPARE it broadcasts. */
export const COUNTER_ATTACK_CHANCE = 0.03;

export const SIM_LIMITS: Partial<Limits> = {
  batchMaxCount: 8,
  window: 16,
  checkpointInterval: 4,
  // Small, so that replicas down for a while need snapshots (and state transfer is exercised too).
  retainBatches: 8,
  stateChunkBatches: 32,
  requestTimeoutTicks: 60,
  viewChangeTimeoutTicks: 60,
  viewChangeTimeoutMaxTicks: 240,
  retransmitTicks: 10,
  statusTicks: 15,
  pendingMax: 1000,
};

export interface SimResult {
  readonly seed: number;
  readonly mode: Mode;
  readonly steps: number;
  readonly violations: string[];
  readonly requests: number;
  readonly completed: number;
  readonly maxSeq: number;
  readonly maxView: number;
  readonly faults: Record<string, number>;
  readonly dropped: Record<string, number>;
  readonly byzantine: string[];
  /**
   * A correct replica raised a valid proof that a compromised-counter replica's counter certified one
   * value twice (and stopped ordering): the attack was detected, not a silent fork.
   */
  readonly detected: boolean;
  /** Correct replicas committed different batches at one seq (only allowed when detected). */
  readonly forked: boolean;
  /** Ticks from the first conflicting certificate sent to the first detection (null: no detection). */
  readonly detectionTicks: number | null;
}
