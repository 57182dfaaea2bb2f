// When a replica gives up on its view: a request timer ran out, the leader proposed too slowly, the
// leader's link stayed closed, the leader's own proposals stopped committing, a peer left the view
// alone, or a view change timed out.
// The deadlines live here; ReplicaCore asks on each tick and starts the view change the mode defines.

import type { Limits, ReplicaId } from "./types.ts";

/** A view change to start, and why. */
export interface ViewChangeCause {
  readonly target: number;
  readonly reason: string;
}

export class ViewTriggers {
  /** When the view change under way times out (armed once a quorum wants its view, see arm). */
  private vcDeadline = 0;
  private vcTimeout: number;
  /** Leader: when the oldest outstanding proposal must have committed, or +Infinity. */
  private progressDeadline = Number.POSITIVE_INFINITY;
  /** Since when some peer's latest VIEW-CHANGE asks for a view above ours (null: none does). */
  private peerAheadSince: number | null = null;
  /** Peers whose link the driver reported open at least once (see link()). */
  private readonly linksSeenOpen = new Set<ReplicaId>();
  /** Peers whose link is closed, since which tick. */
  private readonly linkClosedSince = new Map<ReplicaId, number>();

  constructor(
    private readonly self: ReplicaId,
    private readonly limits: Limits,
  ) {
    this.vcTimeout = limits.viewChangeTimeoutTicks;
  }

  /** The driver's view of its link to `peer`: only a link seen open and then closed counts. */
  link(peer: ReplicaId, open: boolean, now: number): void {
    if (open) {
      this.linksSeenOpen.add(peer);
      this.linkClosedSince.delete(peer);
    } else if (this.linksSeenOpen.has(peer) && !this.linkClosedSince.has(peer)) {
      this.linkClosedSince.set(peer, now);
    }
  }

  linkClosed(peer: ReplicaId): boolean {
    return this.linkClosedSince.has(peer);
  }

  /**
   * Active in `view`: the view change to start at `now`, if any. `requestTimedOut`: a forwarded request
   * was not executed in time; `targets`: the view each replica's latest VIEW-CHANGE asks for;
   * `leaderSlow`: the leader proposes below the pace this follower expects (leader-pace.ts).
   */
  whyLeave(
    now: number,
    view: number,
    leader: ReplicaId,
    requestTimedOut: boolean,
    targets: () => Map<ReplicaId, number>,
    leaderSlow = false,
  ): ViewChangeCause | null {
    if (requestTimedOut) return { target: view + 1, reason: "request-timeout" };
    if (leaderSlow) return { target: view + 1, reason: "the leader proposes too slowly" };
    if (this.leaderLinkLost(leader, now)) {
      // Once per loss: a view change that fails on its own timer is not restarted from here.
      this.linkClosedSince.delete(leader);
      return { target: view + 1, reason: "the leader's connection closed" };
    }
    if (now >= this.progressDeadline && leader === this.self)
      return { target: view + 1, reason: "proposals not committing" };
    return this.joinLonePeer(now, view, targets());
  }

  /** Changing to view `target`: the next view to try when this one timed out (the timeout doubles). */
  whyGiveUp(now: number, target: number): ViewChangeCause | null {
    this.peerAheadSince = null;
    if (now < this.vcDeadline) return null;
    this.vcTimeout = Math.min(this.vcTimeout * 2, this.limits.viewChangeTimeoutMaxTicks);
    return { target: target + 1, reason: "view-change-timeout" };
  }

  /** The leader's link closed at least leaderLinkGraceTicks ago (and has not reopened). */
  private leaderLinkLost(leader: ReplicaId, now: number): boolean {
    const grace = this.limits.leaderLinkGraceTicks;
    if (grace <= 0 || leader === this.self) return false;
    const since = this.linkClosedSince.get(leader);
    return since !== undefined && now - since >= grace;
  }

  /**
   * A peer whose VIEW-CHANGE asks for a view above ours has left our view for good: it cannot vote in it
   * again (hybrid: its counter is past it; PBFT: it ignores our view's messages), and it waits for a
   * NEW-VIEW its view change alone cannot produce. When it is still there after requestTimeoutTicks,
   * join the lowest such view. Otherwise a replica that suspected the leader alone (a partition, a restart
   * of its peers) stays out until another failure moves everyone, its clients unanswered, and the
   * rest run with one replica less; and one whose checkpoint needs it never sees it stable. A faulty
   * replica can use this to force one view change per requestTimeoutTicks, no more.
   */
  private joinLonePeer(now: number, view: number, targets: Map<ReplicaId, number>): ViewChangeCause | null {
    let lowest = Number.POSITIVE_INFINITY;
    for (const v of targets.values()) if (v > view && v < lowest) lowest = v;
    if (lowest === Number.POSITIVE_INFINITY) {
      this.peerAheadSince = null;
      return null;
    }
    this.peerAheadSince ??= now;
    if (now - this.peerAheadSince < this.limits.requestTimeoutTicks) return null;
    this.peerAheadSince = null;
    return { target: lowest, reason: "a peer changes view alone" };
  }

  /** Leader: outstanding proposals must commit within `timeout` (the request timeout), or it changes view. */
  armProgress(now: number, timeout: number): void {
    if (this.progressDeadline === Number.POSITIVE_INFINITY) this.progressDeadline = now + timeout;
  }

  clearProgress(): void {
    this.progressDeadline = Number.POSITIVE_INFINITY;
  }

  /** The view-change wait back to its first length (viewChangeTimeoutTicks), counted in ticks. */
  resetViewChangeTicks(): void {
    this.vcTimeout = this.limits.viewChangeTimeoutTicks;
  }

  /**
   * A view change waits without a deadline until a quorum of replicas wants the target view (or a
   * higher one); only then may it time out and move on (PBFT's rule). A replica cut off from the others
   * therefore stays at its first target instead of running ahead alone.
   */
  disarm(): void {
    this.vcDeadline = Number.POSITIVE_INFINITY;
  }

  /** Arms the view-change deadline once `quorum` replicas want `target` or a higher view. */
  arm(target: number, targets: () => Map<ReplicaId, number>, quorum: number, now: number): void {
    if (this.vcDeadline !== Number.POSITIVE_INFINITY) return;
    let count = 0;
    for (const v of targets().values()) if (v >= target) count++;
    if (count >= quorum) this.vcDeadline = now + this.vcTimeout;
  }
}
