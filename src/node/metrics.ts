// Prometheus metrics and the health report of one replica. Values are read from the live components
// when scraped (no bookkeeping on the hot paths), except event counts, which the node feeds in.
// One registry per node, so several nodes can run in one process (tests) without clashing.

import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import type { ReplicaCore } from "../bft/replica.ts";
import { DEFAULT_LIMITS, type Limits, type Mode } from "../bft/types.ts";
import type { CoordService } from "../coord/service.ts";
import type { ZTree } from "../coord/tree.ts";
import type { Gateway } from "../ordering/gateway.ts";
import type { Ledger } from "../ordering/ledger.ts";
import type { Transport } from "../transport/transport.ts";

export interface MetricsSource {
  readonly id: number;
  readonly mode: Mode;
  readonly core: ReplicaCore;
  readonly ledger: Ledger;
  readonly gateway: Gateway;
  readonly coord: CoordService;
  readonly tree: ZTree;
  readonly transport: Transport;
  /** Peers heard from recently, and whether that makes a commit quorum with this replica. */
  readonly livePeers: () => number;
  readonly hasQuorum: () => boolean;
  /** How long this replica has been in a view change (0 while it orders in a view). */
  readonly viewChangingMs?: () => number;
  /** A view change older than this cannot finish on its own: the replica reports itself unhealthy. */
  readonly viewChangeStuckMs?: number;
  /** The rdma transport's provider counters (RdmaTransport.securityStats); absent over libp2p. */
  readonly rdmaStats?: () => Record<string, number>;
  /** Proofs of misbehaviour this replica holds (each also stops ordering). */
  readonly misbehaviourProofs?: () => number;
  /** Hybrid mode: certifications by the trusted counter process and their total time. */
  readonly counterStats?: () => { calls: number; totalMs: number };
  /** Requests and WebSocket upgrades the API refused before their route, by error code. */
  readonly apiRefused?: () => Readonly<Record<string, number>>;
}

export interface HealthReport extends Record<string, unknown> {
  readonly ok: boolean;
  readonly replica: number;
  readonly mode: Mode;
  readonly view: number;
  readonly leader: number;
  readonly viewChanging: boolean;
  /** How long the current view change has lasted, ms (0 when none). */
  readonly viewChangingMs: number;
  readonly lastExecuted: number;
  readonly stableCheckpoint: number;
  readonly height: number;
  readonly certifiedHeight: number;
  readonly livePeers: number;
  readonly quorum: boolean;
  /** Why this replica stopped ordering (a proof of misbehaviour, see GET /v1/misbehaviour), or null. */
  readonly halted: string | null;
  readonly coord: { readonly connections: number; readonly sessions: number; readonly znodes: number };
}

export function healthOf(s: MetricsSource): HealthReport {
  const c = s.core;
  const quorum = s.hasQuorum();
  const halted = c.halted;
  const viewChangingMs = c.vcTarget !== null ? (s.viewChangingMs?.() ?? 0) : 0;
  const stuck = viewChangingMs > (s.viewChangeStuckMs ?? Number.POSITIVE_INFINITY);
  return {
    ok: quorum && halted === null && !stuck,
    replica: s.id,
    mode: s.mode,
    view: c.view,
    leader: c.leader,
    viewChanging: c.vcTarget !== null,
    viewChangingMs,
    lastExecuted: c.lastExecuted,
    stableCheckpoint: c.stable.seq,
    height: s.ledger.height,
    certifiedHeight: s.ledger.certifiedHeight,
    livePeers: s.livePeers(),
    quorum,
    halted,
    coord: { connections: s.coord.connections, sessions: s.tree.sessionCount, znodes: s.tree.nodeCount },
  };
}

export class NodeMetrics {
  readonly registry = new Registry();
  private readonly events: Counter<"kind">;

  constructor(s: MetricsSource) {
    const r = this.registry;
    r.setDefaultLabels({ replica: String(s.id) });
    // The event-loop lag histogram samples with a timer: prom-client's default (every 10 ms) alone woke
    // an idle replica 100 times a second. Every 250 ms still catches any stall longer than that.
    collectDefaultMetrics({ register: r, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    coreMetrics(r, s);
    gatewayAndCoordMetrics(r, s);
    peerMetrics(r, s);
    if (s.rdmaStats) rdmaMetrics(r, s.rdmaStats);
    const refused = s.apiRefused;
    if (refused)
      new Counter({
        name: "orderer_api_refused_total",
        help: "HTTP requests and WebSocket upgrades refused before their route (origin, headers, connection bounds), by code",
        labelNames: ["code"],
        registers: [r],
        collect() {
          this.reset();
          for (const [code, n] of Object.entries(refused())) this.inc({ code }, n);
        },
      });
    this.events = new Counter({
      name: "orderer_events_total",
      help: "Protocol events: view changes, new views, state transfers, snapshots, fetched block ranges",
      labelNames: ["kind"],
      registers: [r],
    });
  }

  event(kind: string): void {
    this.events.inc({ kind });
  }

  async expose(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** A gauge read from the live components at scrape time. */
function gauge(r: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [r],
    collect() {
      this.set(read());
    },
  });
}

/** A running total read from the live components at scrape time. */
function total(r: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [r],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** The BFT core and the ledger: view, sequence numbers, heights, quorum, halts, the trusted counter. */
function coreMetrics(r: Registry, s: MetricsSource): void {
  gauge(r, "orderer_view", "Current view of the BFT core", () => s.core.view);
  gauge(r, "orderer_leader", "Leader of the current view (replica id)", () => s.core.leader);
  gauge(r, "orderer_view_changing", "1 while a view change is in progress", () =>
    s.core.vcTarget === null ? 0 : 1,
  );
  gauge(r, "orderer_last_executed_seq", "Highest executed sequence number", () => s.core.lastExecuted);
  gauge(
    r,
    "orderer_stable_checkpoint_seq",
    "Sequence number of the stable checkpoint",
    () => s.core.stable.seq,
  );
  gauge(r, "orderer_ledger_height", "Blocks written (next block number)", () => s.ledger.height);
  gauge(
    r,
    "orderer_ledger_certified_height",
    "Blocks with a commit certificate, from 0 up",
    () => s.ledger.certifiedHeight,
  );
  gauge(r, "orderer_peers_live", "Peers heard from within the liveness window", s.livePeers);
  gauge(r, "orderer_quorum", "1 when this replica reaches a commit quorum with live peers", () =>
    s.hasQuorum() ? 1 : 0,
  );
  gauge(r, "orderer_halted", "1 when this replica stopped ordering on a proof of misbehaviour", () =>
    s.core.halted === null ? 0 : 1,
  );
  gauge(
    r,
    "orderer_misbehaviour_proofs",
    "Proofs of misbehaviour held (a replica's counter certified two messages with one value)",
    () => s.misbehaviourProofs?.() ?? 0,
  );
  if (s.counterStats) {
    const stats = s.counterStats;
    gauge(
      r,
      "orderer_counter_certifications",
      "Certificates asked of the trusted counter process",
      () => stats().calls,
    );
    gauge(
      r,
      "orderer_counter_seconds",
      "Time spent waiting for the trusted counter process (round trip and its fsync)",
      () => stats().totalMs / 1000,
    );
  }
}

/** The gateway's submissions and the coordination service, then the running totals of both and the ledger. */
function gatewayAndCoordMetrics(r: Registry, s: MetricsSource): void {
  gauge(r, "orderer_gateway_pending", "Submissions waiting for their receipt", () => s.gateway.pending);
  gauge(
    r,
    "orderer_gateway_pending_bytes",
    "Bytes of the submissions waiting for their receipt",
    () => s.gateway.pendingBytes,
  );
  gauge(r, "orderer_coord_connections", "Coordination WebSocket connections", () => s.coord.connections);
  gauge(r, "orderer_coord_sessions", "Open coordination sessions", () => s.tree.sessionCount);
  gauge(r, "orderer_coord_znodes", "Znodes in the tree", () => s.tree.nodeCount);
  gauge(r, "orderer_coord_queued", "Coordination operations waiting to be proposed", () => s.coord.queued);
  total(
    r,
    "orderer_gateway_submitted_total",
    "Transactions submitted through this replica",
    () => s.gateway.stats.submitted,
  );
  total(
    r,
    "orderer_gateway_timeouts_total",
    "Submissions answered with TIMEOUT",
    () => s.gateway.stats.timeouts,
  );
  total(
    r,
    "orderer_ledger_bad_signatures_total",
    "Peer block signatures refused",
    () => s.ledger.stats.badSigs,
  );
  total(
    r,
    "orderer_blocks_served_total",
    "Certified blocks sent to catching-up peers",
    () => s.ledger.stats.blocksServed,
  );
  total(
    r,
    "orderer_blocks_fetched_total",
    "Certified blocks fetched from peers",
    () => s.ledger.sync.stats.blocks,
  );
  total(
    r,
    "orderer_coord_entries_proposed_total",
    "Coordination entries proposed",
    () => s.coord.stats.entriesProposed,
  );
}

type PeerStats = { queuedFrames: number; sentFrames: number; receivedFrames: number; droppedFull: number };

/** Messages the core dropped, and the transport's frames per peer. */
function peerMetrics(r: Registry, s: MetricsSource): void {
  new Counter({
    name: "orderer_messages_dropped_total",
    help: "Peer messages the core dropped, by reason",
    labelNames: ["reason"],
    registers: [r],
    collect() {
      this.reset();
      for (const [reason, n] of s.core.dropped) this.inc({ reason }, n);
    },
  });
  const peer = (name: string, help: string, read: (p: PeerStats) => number, counter: boolean) => {
    const opts = { name, help, labelNames: ["peer"] as const, registers: [r] };
    if (counter)
      new Counter({
        ...opts,
        collect() {
          this.reset();
          for (const [p, st] of s.transport.stats()) this.inc({ peer: String(p) }, read(st));
        },
      });
    else
      new Gauge({
        ...opts,
        collect() {
          this.reset();
          for (const [p, st] of s.transport.stats()) this.set({ peer: String(p) }, read(st));
        },
      });
  };
  peer("orderer_peer_queued_frames", "Frames queued for a peer", (p) => p.queuedFrames, false);
  peer("orderer_peer_sent_frames_total", "Frames sent to a peer", (p) => p.sentFrames, true);
  peer("orderer_peer_received_frames_total", "Frames received from a peer", (p) => p.receivedFrames, true);
  peer(
    "orderer_peer_dropped_frames_total",
    "Frames dropped because a peer's queue was full",
    (p) => p.droppedFull,
    true,
  );
}

/**
 * The rdma provider's counters, read at scrape time: requests served by operation, refused by reason
 * (every refusal is also a security event), connections closed by reason, and the live key, connection
 * and ban counts.
 */
function rdmaMetrics(r: Registry, read: () => Record<string, number>): void {
  const byPrefix = (name: string, help: string, prefix: string, label: string) =>
    new Counter({
      name,
      help,
      labelNames: [label],
      registers: [r],
      collect() {
        this.reset();
        for (const [k, v] of Object.entries(read()))
          if (k.startsWith(prefix)) this.inc({ [label]: k.slice(prefix.length) }, v);
      },
    });
  byPrefix("orderer_rdma_served_total", "Requests the rdma provider served, by operation", "served.", "op");
  byPrefix(
    "orderer_rdma_refused_total",
    "Requests the rdma provider refused (bad key, permission, bounds, forged slot...), by reason",
    "refused.",
    "reason",
  );
  byPrefix("orderer_rdma_closed_total", "rdma connections closed, by reason", "closed.", "reason");
  const one = (name: string, help: string, key: string, counter: boolean) => {
    const opts = { name, help, registers: [r] };
    if (counter)
      new Counter({
        ...opts,
        collect() {
          this.reset();
          this.inc(read()[key] ?? 0);
        },
      });
    else
      new Gauge({
        ...opts,
        collect() {
          this.set(read()[key] ?? 0);
        },
      });
  };
  one(
    "orderer_rdma_security_events_total",
    "Security events the rdma provider raised",
    "securityEvents",
    true,
  );
  one(
    "orderer_rdma_banned_identities",
    "Peer identities the rdma provider has banned",
    "bannedIdentities",
    false,
  );
  one("orderer_rdma_connections", "Live rdma connections", "connections", false);
  one("orderer_rdma_keys", "Live rdma memory keys", "keys", false);
}

/**
 * When a view change counts as stuck for /health: eight of its first timeouts (viewChangeTimeoutTicks),
 * and at least 10 s. By then it has failed to gather a quorum several times over (each failed attempt
 * doubles the timeout); with the defaults, 16 s.
 */
/** How often the event-loop lag metric samples (ms). */
export const EVENT_LOOP_SAMPLE_MS = 250;

export function viewChangeStuckMs(limits: Partial<Limits>, tickMs: number): number {
  const ticks = limits.viewChangeTimeoutTicks ?? DEFAULT_LIMITS.viewChangeTimeoutTicks;
  return Math.max(10_000, 8 * ticks * tickMs);
}
