// Gorums-style quorum functions: pure (request, replies) -> { value, done }. Each protocol phase
// collects replies per replica and asks one of these when enough matching replies are in.

import { bytesEqual } from "./bytes.ts";
import type { Mode, ReplicaId } from "./types.ts";

export interface QuorumResult<V> {
  readonly value: V | undefined;
  readonly done: boolean;
}

export type QuorumFn<Req, Rep, V> = (request: Req, replies: ReadonlyMap<ReplicaId, Rep>) => QuorumResult<V>;

const NOT_YET: QuorumResult<never> = Object.freeze({ value: undefined, done: false });

/** Quorum sizes of a cluster of n replicas in a mode. */
export interface Quorums {
  readonly n: number;
  readonly f: number;
  /** Matching votes (the leader's proposal counts as its vote) that commit an instance. */
  readonly commit: number;
  /** PBFT only: matching PREPAREs from backups that, with the pre-prepare, prepare an instance. */
  readonly prepare: number;
  /** Matching CHECKPOINTs that make a checkpoint stable. */
  readonly checkpoint: number;
  /** VIEW-CHANGEs the new leader needs to build a NEW-VIEW. */
  readonly viewChange: number;
  /** VIEW-CHANGEs for higher views that make a replica join a view change (one is from a correct replica). */
  readonly join: number;
}

export function quorums(mode: Mode, f: number): Quorums {
  if (mode === "hybrid") {
    return { n: 2 * f + 1, f, commit: f + 1, prepare: 0, checkpoint: f + 1, viewChange: f + 1, join: f + 1 };
  }
  return {
    n: 3 * f + 1,
    f,
    commit: 2 * f + 1,
    prepare: 2 * f,
    checkpoint: 2 * f + 1,
    viewChange: 2 * f + 1,
    join: f + 1,
  };
}

/** A vote on a digest, as collected for one instance. */
export interface DigestVote {
  readonly digest: Uint8Array;
}

/**
 * Votes matching the request's digest from distinct replicas, `required` in all. When `include` is
 * given, that replica's matching vote must be among them (the leader's proposal in hybrid mode).
 * Value: the ids of the matching voters, in ascending order.
 */
export function matchingDigestQuorum(
  required: number,
): QuorumFn<{ readonly digest: Uint8Array; readonly include?: ReplicaId }, DigestVote, ReplicaId[]> {
  return (request, replies) => {
    const voters: ReplicaId[] = [];
    let included = request.include === undefined;
    for (const [replica, vote] of replies) {
      if (!bytesEqual(vote.digest, request.digest)) continue;
      voters.push(replica);
      if (replica === request.include) included = true;
    }
    if (voters.length < required || !included) return NOT_YET;
    voters.sort((a, b) => a - b);
    return { value: voters, done: true };
  };
}

/**
 * The digest that at least `required` replicas agree on, if any (checkpoints: replicas vote for a
 * state digest without knowing in advance which one will win). Value: the digest and its voters.
 */
export function agreedDigestQuorum(
  required: number,
): QuorumFn<unknown, DigestVote, { digest: Uint8Array; voters: ReplicaId[] }> {
  return (_request, replies) => {
    const groups: { digest: Uint8Array; voters: ReplicaId[] }[] = [];
    for (const [replica, vote] of replies) {
      let g = groups.find((x) => bytesEqual(x.digest, vote.digest));
      if (!g) {
        g = { digest: vote.digest, voters: [] };
        groups.push(g);
      }
      g.voters.push(replica);
    }
    for (const g of groups) {
      if (g.voters.length >= required) {
        g.voters.sort((a, b) => a - b);
        return { value: g, done: true };
      }
    }
    return NOT_YET;
  };
}

/** Any `required` distinct replies (view changes for one target view). Value: the replies by replica. */
export function countQuorum<Rep>(required: number): QuorumFn<unknown, Rep, [ReplicaId, Rep][]> {
  return (_request, replies) => {
    if (replies.size < required) return NOT_YET;
    const picked = [...replies].sort((a, b) => a[0] - b[0]).slice(0, required);
    return { value: picked, done: true };
  };
}

/**
 * Joining a view change: replies are the views other replicas are changing to. Done when `required`
 * replicas want a view above the request's current view; the value is the highest view that many
 * replicas want at least (so a Byzantine replica alone cannot push the view arbitrarily far).
 */
export function joinViewQuorum(required: number): QuorumFn<{ readonly view: number }, number, number> {
  return (request, replies) => {
    const higher = [...replies.values()].filter((v) => v > request.view).sort((a, b) => b - a);
    if (higher.length < required) return NOT_YET;
    return { value: higher[required - 1] as number, done: true };
  };
}
