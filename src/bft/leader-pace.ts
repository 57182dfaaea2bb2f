// A follower's expectation of its leader's pace: while requests it forwarded wait to be proposed and
// the leader's window has room, a correct leader proposes again within a gap this follower has learned.
// One that keeps proposing, but slowly (a performance attack, as in Aardvark and Prime), is suspected
// long before its followers' request timers run out.
//
// The expected gap is learned from two things: the gaps this follower waited for earlier proposals
// (PACE_GAP_MULTIPLE times their p99, the latest PACE_SAMPLES, across views), and how long its accepted
// proposals took to execute (PACE_COMMIT_MULTIPLE times their p90: the commit round, which the other
// replicas carry); at least leaderPaceFloorTicks (and two ticks above the batch timeout), at most a
// quarter of the request timeout. A gap longer than expected is a strike and never a sample, so a slow
// leader cannot teach its followers to expect slowness, while a correct leader's tail of pauses raises
// the expectation to cover it. PACE_STRIKES strikes in a row (a late proposal does not clear them, a
// prompt one does) start a view change. A leader whose latest proposal was full (batchMaxCount of
// weight, or half of batchMaxBytes) is working through a backlog as fast as it can cut: its next gap is
// not counted. A streak must also last a quarter of the request timeout: three short pauses of a busy
// correct leader (a collection, a slow disk write) do not depose it. The bound: while requests wait, a
// leader proposes at least a full batch, or everything it holds, per expected gap; one that stays below
// for three gaps in a row and a quarter of the request timeout is replaced. A leader that keeps that pace
// but delays chosen requests is bounded by the request timer. Pure: ticks in, a verdict out.

import { RecentSamples } from "./recent.ts";
import type { Batch, ClientRequest, Limits } from "./types.ts";

/** Consecutive late intervals that depose the leader (one is a pause, three are a pace). */
export const PACE_STRIKES = 3;
/** Commit times kept (the latest, across views). */
export const PACE_SAMPLES = 64;
/** Below this many samples of a kind (commit times, gaps), that kind teaches nothing: the floor holds. */
export const PACE_SAMPLES_MIN = 4;
/** The allowed gap, as a multiple of the p90 commit time... */
export const PACE_COMMIT_MULTIPLE = 2;
/** ...or of the p99 of the gaps waited for earlier proposals, whichever is larger. */
export const PACE_GAP_MULTIPLE = 3;

export class LeaderPace {
  /** When this follower accepted each proposal of the view not yet executed (seq → tick). */
  private readonly acceptedAt = new Map<number, number>();
  /** Recent commit times in ticks. */
  private readonly samples = new RecentSamples(PACE_SAMPLES);
  /** Recent gaps waited for a proposal that came within the expectation, in ticks. */
  private readonly gaps = new RecentSamples(PACE_SAMPLES);
  private gapCache: number | null = null;
  /** The highest seq the leader proposed in this view (to tell a full window from a slow leader). */
  private highestSeq = 0;
  /** Since when requests have waited with no new proposal (null: nothing waits on the leader). */
  private waitingSince: number | null = null;
  private strikes = 0;
  /** Since when the current streak of strikes has run (the wait its first strike began with). */
  private streakSince = 0;
  /** A strike was counted since the last proposal (a late proposal does not clear the count). */
  private struck = false;
  /** The latest proposal was full: the leader has a backlog, and the gap after it is not counted. */
  private backlog = false;
  /** The request timeout now (it follows the cluster, request-intake.ts); the pace's cap is a quarter of it. */
  private timeout: number;

  constructor(private readonly limits: Limits) {
    this.timeout = limits.requestTimeoutTicks;
  }

  /** Off when leaderPaceFloorTicks is 0. */
  get enabled(): boolean {
    return this.limits.leaderPaceFloorTicks > 0;
  }

  /**
   * The longest gap ever expected, and the least length of a streak that deposes: a quarter of the
   * request timeout, which grows with the cluster's forward-to-execute times (a leader slowed by large
   * requests is busy, not slow).
   */
  get capTicks(): number {
    return Math.max(1, Math.floor(this.timeout / 4));
  }

  /** The request timeout changed (ReplicaCore passes it on every tick). */
  followRequestTimeout(ticks: number): void {
    if (ticks === this.timeout) return;
    this.timeout = ticks;
    this.gapCache = null;
  }

  /** The gap between proposals a waiting follower allows its leader now, in ticks. */
  gapTicks(): number {
    if (this.gapCache !== null) return this.gapCache;
    const l = this.limits;
    const cap = this.capTicks;
    const floor = Math.min(cap, Math.max(l.leaderPaceFloorTicks, l.batchTimeoutTicks + 2));
    let learned = 0;
    if (this.samples.size >= PACE_SAMPLES_MIN)
      learned = Math.ceil(PACE_COMMIT_MULTIPLE * this.samples.quantile(0.9));
    if (this.gaps.size >= PACE_SAMPLES_MIN)
      learned = Math.max(learned, Math.ceil(PACE_GAP_MULTIPLE * this.gaps.quantile(0.99)));
    this.gapCache = Math.min(cap, Math.max(floor, learned));
    return this.gapCache;
  }

  /** A batch the leader could not have made larger: batchMaxCount of weight, or half of batchMaxBytes. */
  full(batch: Batch, weight: (r: ClientRequest) => number): boolean {
    let w = 0;
    let bytes = 0;
    for (const r of batch.requests) {
      w += weight(r);
      bytes += r.op.length;
    }
    return w >= this.limits.batchMaxCount || 2 * bytes >= this.limits.batchMaxBytes;
  }

  /** A new view: nothing of the last leader's pace carries over but the commit times. */
  enterView(): void {
    this.acceptedAt.clear();
    this.highestSeq = 0;
    this.waitingSince = null;
    this.strikes = 0;
    this.struck = false;
    this.backlog = false;
  }

  /** The leader's proposal at `seq` was accepted here; one with requests is progress. */
  proposed(seq: number, now: number, requests: number, full = false): void {
    if (seq > this.highestSeq) this.highestSeq = seq;
    // Bounded: proposals lie within the window, and a jump in execution leaves at most a window behind.
    if (this.acceptedAt.size >= 2 * this.limits.window) this.acceptedAt.clear();
    if (!this.acceptedAt.has(seq)) this.acceptedAt.set(seq, now);
    if (requests === 0) return;
    if (!this.struck && (this.waitingSince === null || now - this.waitingSince <= this.gapTicks())) {
      this.strikes = 0;
      if (this.waitingSince !== null) {
        this.gaps.add(now - this.waitingSince);
        this.gapCache = null;
      }
    }
    this.struck = false;
    this.backlog = full;
    this.waitingSince = null;
  }

  /** `seq` executed: its commit time is a sample. */
  executed(seq: number, now: number): void {
    const at = this.acceptedAt.get(seq);
    if (at === undefined) return;
    this.acceptedAt.delete(seq);
    this.samples.add(now - at);
    this.gapCache = null;
  }

  /**
   * One tick of a follower active in its view. `waiting`: requests it forwarded are not yet proposed;
   * `stable`: its stable checkpoint. True when the leader is too slow (then the count starts over).
   */
  tick(now: number, waiting: boolean, stable: number): boolean {
    const l = this.limits;
    // A window that may be full at the leader (its checkpoint can lag ours by an interval) excuses it.
    const room = this.highestSeq < stable + l.window - l.checkpointInterval;
    if (!this.enabled || !waiting || !room || this.backlog) {
      this.waitingSince = null;
      return false;
    }
    this.waitingSince ??= now;
    if (now - this.waitingSince <= this.gapTicks()) return false;
    if (this.strikes === 0) this.streakSince = this.waitingSince;
    this.strikes++;
    this.struck = true;
    this.waitingSince = now;
    if (this.strikes < PACE_STRIKES || now - this.streakSince < this.capTicks) return false;
    this.strikes = 0;
    return true;
  }
}
