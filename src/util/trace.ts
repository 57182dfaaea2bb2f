// Stage timestamps of the write path, for the latency breakdown (bench/breakdown.ts). Off unless the
// node is started with ORDERER_TRACE=1 (node-process.ts); then the gateway, the host and the ledger mark
// when a transaction or a batch passes each stage. Times are microseconds of the system-wide monotonic
// clock (process.hrtime), so marks taken in different processes on one machine compare directly.

/** Stages of one transaction, in path order. Keyed by tx id (gateway, API) or by seq (= block number). */
export const TRACE_STAGES = [
  /** tx: the API handed it to the gateway. */
  "received",
  /** tx: the gateway handed its request to the core (after batching and signing). */
  "proposed",
  /** seq: the leader sent its PREPARE (hybrid) or PRE-PREPARE (pbft) for the batch. */
  "prepare-sent",
  /** seq: a follower received the leader's PREPARE / PRE-PREPARE (before the core saw it). */
  "prepare-received",
  /** seq: the core has handled that PREPARE (verified it and, in hybrid mode, certified its COMMIT). */
  "prepare-handled",
  /** seq: the follower's Ready with its COMMIT starts (the host took it from the core). */
  "commit-ready",
  /** seq: this replica sent its COMMIT for the batch. */
  "commit-sent",
  /** seq: the core committed the batch (a Ready holds it; before the block is built). */
  "committed",
  /** seq: the app built the block's writes (tx ids looked up, Merkle tree); the host's batch starts. */
  "prepared",
  /** seq: the block and the core's state are durable (the host's batch was written). */
  "written",
  /** seq: the block holds its commit certificate and that is durable. */
  "certified",
  /** tx: the receipt went out to the client. */
  "replied",
] as const;
export type TraceStage = (typeof TRACE_STAGES)[number];

export interface TraceMark {
  readonly stage: TraceStage;
  readonly key: string | number;
  /** Monotonic clock, µs. */
  readonly at: number;
}

/** Marks kept (the oldest are dropped): a breakdown run of a few thousand transactions fits. */
export const TRACE_MARKS_MAX = 200_000;

export const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

export class StageTrace {
  private marks: TraceMark[] = [];

  mark(stage: TraceStage, key: string | number): void {
    if (this.marks.length >= TRACE_MARKS_MAX) this.marks.splice(0, TRACE_MARKS_MAX / 4);
    this.marks.push({ stage, key, at: monotonicUs() });
  }

  /** The marks so far, and forgets them. */
  take(): TraceMark[] {
    const out = this.marks;
    this.marks = [];
    return out;
  }
}
