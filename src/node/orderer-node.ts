// One replica of the ordering service, composed: LevelDB store, BFT core, libp2p transport, the
// ledger fed by the core's commits, the client gateway and the HTTP/WebSocket API. The parts are built
// in compose/ in the order a request meets them: POST → gateway → host.submit → core → blocksApp →
// ledger.written → certified → receipt (compose/ordering-app.ts, compose/host-app.ts).

import { Digests } from "../bft/digests.ts";
import { quorums } from "../bft/index.ts";
import type { StorageReader } from "../bft/storage.ts";
import type { TrustedSubsystem } from "../bft/trusted.ts";
import type { CoordService } from "../coord/service.ts";
import { cachingVerifier, nodeCrypto, sha256 } from "../crypto/node-crypto.ts";
import type { Gateway } from "../ordering/gateway.ts";
import type { Ledger } from "../ordering/ledger.ts";
import { RdmaTransport } from "../transport/rdma.ts";
import type { Transport } from "../transport/transport.ts";
import "../util/polyfill.ts";
import { LevelStore } from "../storage/level-store.ts";
import { type Logger, silentLogger } from "../util/log.ts";
import type { StageTrace } from "../util/trace.ts";
import { ApiServer } from "./api-server.ts";
import { createCoordService, openTree } from "./compose/coordination-app.ts";
import { type CounterLink, openTrusted } from "./compose/counter.ts";
import { type NodeEvent, NodeEvents } from "./compose/events.ts";
import { blocksApp } from "./compose/host-app.ts";
import { type ReplicaKeys, replicaKeys } from "./compose/keys.ts";
import { createGateway, openLedger } from "./compose/ordering-app.ts";
import { createCore } from "./compose/replica-core.ts";
import { createTransport } from "./compose/transport.ts";
import {
  batchLimits,
  type ClusterConfig,
  type NodeConfig,
  type ResolvedNodeConfig,
  resolveNodeConfig,
} from "./config.ts";
import { type HostApp, ReplicaHost } from "./host.ts";
import { checkMemoryBudget } from "./memory.ts";
import { healthOf, type MetricsSource, NodeMetrics, viewChangeStuckMs } from "./metrics.ts";

export { type CounterLink, openTrusted } from "./compose/counter.ts";
export type { NodeEvent } from "./compose/events.ts";

/** A peer is counted as reachable when a frame came from it within this time (STATUS gossip is periodic). */
const PEER_LIVE_MS = 3000;
/** Uncertified blocks are re-announced this often. */
const SIG_RETRY_MS = 500;

export interface NodeHooks {
  readonly onEvent?: (e: NodeEvent) => void;
  readonly onError?: (err: Error) => void;
  /** Structured logs (default: none). */
  readonly logger?: Logger;
  /**
   * The replica cannot go on (its trusted counter is unreachable or misbehaves). Its state on disk is
   * consistent; the process should exit so that a supervisor restarts it (node-process and
   * `orderer start` exit with code 70).
   */
  readonly onFatal?: (err: Error) => void;
  /**
   * Opens this replica's trusted counter instead of connecting to its counter process (benchmarks:
   * the in-process baseline of `ORDERER_BENCH_COUNTER=in-process`).
   */
  readonly openCounter?: () => Promise<CounterLink>;
  /**
   * Wraps the replica's transport. For fault injection only: the multi-process attack tests run a
   * Byzantine replica as the real node with its messages rewritten here.
   */
  readonly wrapTransport?: (t: Transport) => Transport;
  /** Stage marks of the write path (the latency breakdown bench); off when absent. */
  readonly trace?: StageTrace;
  /** Fault injection for tests: HostOptions.onSentBeforeDurable. */
  readonly onSentBeforeDurable?: (seqs: readonly number[]) => void;
}

export class OrdererNode {
  private retryTimer: ReturnType<typeof setInterval> | null = null;
  private stopping: Promise<void> | null = null;

  private constructor(
    readonly cluster: ClusterConfig,
    readonly config: ResolvedNodeConfig,
    readonly store: LevelStore,
    readonly host: ReplicaHost,
    readonly ledger: Ledger,
    readonly gateway: Gateway,
    readonly coord: CoordService,
    readonly api: ApiServer,
    readonly metrics: NodeMetrics,
    readonly log: Logger,
    readonly counter: CounterLink | undefined,
  ) {}

  /** Checks the configs, opens the store and the trusted counter, composes the replica and starts it. */
  static async start(
    cluster: ClusterConfig,
    settings: NodeConfig,
    hooks: NodeHooks = {},
  ): Promise<OrdererNode> {
    const config = resolveNodeConfig(cluster, settings);
    const log = hooks.logger ?? silentLogger;
    const budget = checkMemoryBudget(cluster, config);
    log.info(
      { memoryBudgetMiB: Math.round(budget.totalBytes / 2 ** 20) },
      "memory budget (docs/operations.md)",
    );
    const keys = replicaKeys(cluster, config);
    const store = await LevelStore.open(config.dataDir, { sync: config.sync });
    let counterLink: Awaited<ReturnType<typeof openTrusted>>;
    try {
      const loaded = await store.load();
      counterLink = await openTrusted(
        cluster,
        config,
        keys.seed,
        (err) => {
          log.fatal({ err }, "trusted counter unavailable: this replica cannot certify and must restart");
          hooks.onFatal?.(err);
        },
        hooks.openCounter,
      );
      const setup: Setup = { cluster, config, hooks, log, keys, store };
      const p = await composeReplica(setup, loaded.storage, counterLink);
      const node = new OrdererNode(
        cluster,
        config,
        store,
        p.host,
        p.ledger,
        p.gateway,
        p.coord,
        p.api,
        p.metrics,
        log,
        counterLink?.counter,
      );
      await node.launch();
      return node;
    } catch (err) {
      await counterLink?.counter.close().catch(() => {});
      await store.close().catch(() => {});
      throw err;
    }
  }

  /** Starts the composed parts: the host (transport and core), the coordination timer, the API last. */
  private async launch(): Promise<void> {
    await this.host.start();
    this.coord.start();
    this.retryTimer = setInterval(() => this.ledger.retry(SIG_RETRY_MS), SIG_RETRY_MS);
    try {
      await this.api.start();
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.log.info(
      {
        mode: this.cluster.mode,
        api: `${this.config.tls ? "https" : "http"}://${this.config.apiHost}:${this.api.port}`,
        height: this.ledger.height,
      },
      "replica started",
    );
  }

  /**
   * True when this replica has heard from enough peers to reach a commit quorum (what the gateway checks
   * before accepting a submission; a replica that just started is not there until its peers spoke).
   */
  hasQuorum(): boolean {
    return hasCommitQuorum(this.host, this.cluster);
  }

  /** Stops accepting, fails waiting submissions, stops the replica, flushes and closes the store. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info("replica stopping");
      if (this.retryTimer) clearInterval(this.retryTimer);
      this.coord.stop();
      await this.api.stop();
      this.gateway.close();
      await this.host.stop();
      await this.ledger.flush();
      await this.store.close();
      await this.counter?.close();
      this.log.info("replica stopped");
    })();
    return this.stopping;
  }
}

/** What every part of a replica is built from. */
interface Setup {
  readonly cluster: ClusterConfig;
  readonly config: ResolvedNodeConfig;
  readonly hooks: NodeHooks;
  readonly log: Logger;
  readonly keys: ReplicaKeys;
  readonly store: LevelStore;
}

/** True when the replica hears from enough peers to make a commit quorum with itself. */
function hasCommitQuorum(host: ReplicaHost, cluster: ClusterConfig): boolean {
  return host.livePeers(PEER_LIVE_MS) + 1 >= quorums(cluster.mode, cluster.f).commit;
}

/**
 * Builds the replica's parts in the order a request meets them (core, transport, ledger, coordination,
 * host, gateway), then what observes and serves them (metrics, API). Nothing is started here.
 */
async function composeReplica(
  s: Setup,
  storage: StorageReader,
  counterLink: { trusted: TrustedSubsystem; counter: CounterLink } | undefined,
) {
  const { cluster, config, hooks, keys, store } = s;
  const limits = { ...batchLimits(cluster.batch, config.tickMs), ...config.limits };
  const events = new NodeEvents(store, s.log, hooks);
  const core = createCore(cluster, config, keys, limits, storage, counterLink?.trusted);
  await events.haltOnSavedProofs(core);
  const baseTransport = createTransport(cluster, config, keys, s.log);
  const transport = hooks.wrapTransport ? hooks.wrapTransport(baseTransport) : baseTransport;
  const ledger = await openLedger(cluster, config, keys, quorums(cluster.mode, cluster.f), store, transport);
  const verify = cachingVerifier();
  const tree = await openTree(cluster, store, ledger, verify);
  const digests = new Digests(nodeCrypto);
  // The coordination service proposes through the host that applies its entries, and the host's events
  // are counted in the metrics: these callbacks run once the host has started, when every part exists.
  const propose = (req: Parameters<ReplicaHost["submit"]>[0]) => host.submit(req, true);
  const onEvent = (e: NodeEvent): void => {
    metrics.event(e.kind);
    events.record(e);
  };
  const coord = createCoordService(cluster, config, keys.seed, { tree, verify, digests, propose });
  const host = new ReplicaHost({
    core,
    transport,
    store,
    tickMs: config.tickMs,
    app: blocksApp({ self: config.id, ledger, coord, tree, store, onEvent }) as HostApp,
    trace: hooks.trace,
    onSentBeforeDurable: hooks.onSentBeforeDurable,
    onEvent,
    onError: (err, from) => {
      if (from === undefined) events.error(err);
    },
  });
  const hasQuorum = () => hasCommitQuorum(host, cluster);
  const gateway = createGateway(cluster, config, keys.seed, digests, ledger, {
    propose,
    quorumOk: hasQuorum,
    trace: hooks.trace,
  });
  const trace = hooks.trace;
  if (trace) ledger.onCertified((b) => trace.mark("certified", b.block.header.number));
  const { metrics, api } = observeAndServe(s, {
    core,
    ledger,
    gateway,
    coord,
    tree,
    transport,
    baseTransport,
    host,
    hasQuorum,
    events,
    viewChangeStuckMs: viewChangeStuckMs(limits, config.tickMs),
    counter: counterLink?.counter,
  });
  return { host, ledger, gateway, coord, api, metrics };
}

interface ServedParts
  extends Pick<MetricsSource, "core" | "ledger" | "gateway" | "coord" | "tree" | "transport"> {
  /** The transport before hooks.wrapTransport (the rdma one reports its provider's counters). */
  readonly baseTransport: Transport;
  readonly host: ReplicaHost;
  readonly hasQuorum: () => boolean;
  readonly events: NodeEvents;
  readonly viewChangeStuckMs: number;
  readonly counter: CounterLink | undefined;
}

/** What observes and serves the composed parts: the metrics (read when scraped) and the API server. */
function observeAndServe(s: Setup, p: ServedParts): { metrics: NodeMetrics; api: ApiServer } {
  const { cluster, config } = s;
  const { core, ledger, gateway, coord, baseTransport, events, counter } = p;
  const source: MetricsSource = {
    id: config.id,
    mode: cluster.mode,
    core,
    ledger,
    gateway,
    coord,
    tree: p.tree,
    transport: p.transport,
    livePeers: () => p.host.livePeers(PEER_LIVE_MS),
    hasQuorum: p.hasQuorum,
    viewChangingMs: () => events.viewChangingMs(),
    viewChangeStuckMs: p.viewChangeStuckMs,
    rdmaStats: baseTransport instanceof RdmaTransport ? () => baseTransport.securityStats() : undefined,
    misbehaviourProofs: () => events.evidence.size,
    counterStats: counter ? () => counter.stats : undefined,
    // Read at scrape time, once the API server below exists.
    apiRefused: () => api.stats.refused,
  };
  const metrics = new NodeMetrics(source);
  const api = new ApiServer({
    host: config.apiHost,
    port: config.apiPort,
    ledger,
    gateway,
    hash: sha256,
    txMaxBytes: cluster.batch.absoluteMaxBytes,
    allowedOrigins: config.allowedOrigins,
    tls: config.tls,
    coord,
    health: () => healthOf(source),
    misbehaviour: () => events.misbehaviour(core),
    metrics: () => metrics.expose(),
  });
  api.onInternalError = (err) => events.error(err instanceof Error ? err : new Error(String(err)));
  return { metrics, api };
}
