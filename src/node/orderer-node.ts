// One replica of the ordering service, composed: LevelDB store, BFT core, libp2p transport, the
// ledger fed by the core's commits, the client gateway and the HTTP/WebSocket API.

import { Digests } from "../bft/digests.ts";
import { type ClientRegistry, createReplica, quorums, staticRegistry } from "../bft/index.ts";
import { type TrustedCounter, type TrustedSubsystem, trustedSubsystem, UsigChecker } from "../bft/trusted.ts";
import type { ReplicaEvent } from "../bft/types.ts";
import { COORD_PREFIX, isCoordEntry } from "../coord/ops.ts";
import { type AppliedBlocks, CoordService, entryHeader } from "../coord/service.ts";
import { loadTree, treeWrites } from "../coord/store.ts";
import { ZTree } from "../coord/tree.ts";
import {
  cachingVerifier,
  ed25519PublicKeyOf,
  ed25519ReplicaAuthenticator,
  nodeCrypto,
  sha256,
  signEd25519,
  verifyEd25519,
} from "../crypto/node-crypto.ts";
import { bytesEq } from "../ordering/block.ts";
import { Gateway, signedRequest } from "../ordering/gateway.ts";
import { Ledger, LedgerError } from "../ordering/ledger.ts";
import {
  type EquivocationJson,
  equivocationToJson,
  type MisbehaviourReport,
} from "../ordering/misbehaviour.ts";
import { decodeTxBatch, TX_BATCH_OVERHEAD_BYTES, txBatchCount } from "../ordering/tx-batch.ts";
import { Libp2pTransport } from "../transport/libp2p.ts";
import { RdmaTransport } from "../transport/rdma.ts";
import type { Transport } from "../transport/transport.ts";
import "../util/polyfill.ts";
import { ConfigError } from "../bft/errors.ts";
import { RemoteCounter } from "../counter/client.ts";
import { LevelStore, writeBatch } from "../storage/level-store.ts";
import { type Logger, silentLogger } from "../util/log.ts";
import type { StageTrace } from "../util/trace.ts";
import { ApiServer } from "./api-server.ts";
import {
  batchLimits,
  type ClusterConfig,
  canonicalJson,
  coordClientId,
  gatewayClientId,
  type NodeConfig,
  treeConfig,
  validateCluster,
  validateNode,
} from "./config.ts";
import { type HostApp, ReplicaHost } from "./host.ts";
import { checkMemoryBudget } from "./memory.ts";
import { healthOf, type MetricsSource, NodeMetrics, viewChangeStuckMs } from "./metrics.ts";

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, "hex"));

/** A peer is counted as reachable when a frame came from it within this time (STATUS gossip is periodic). */
const PEER_LIVE_MS = 3000;
/** Uncertified blocks are re-announced this often. */
const SIG_RETRY_MS = 500;
/** Where proofs of misbehaviour are kept (one per culprit), in the replica's database. */
const EVIDENCE = "e/equivocation/";

async function loadEvidence(store: LevelStore): Promise<Map<number, EquivocationJson>> {
  const out = new Map<number, EquivocationJson>();
  for await (const [key, value] of store.db.iterator({ gte: EVIDENCE, lt: `${EVIDENCE}~` })) {
    try {
      const j = JSON.parse(new TextDecoder().decode(value)) as EquivocationJson;
      out.set(j.culprit, j);
    } catch {
      throw new LedgerError("CORRUPT", `unreadable proof at ${key}`);
    }
  }
  return out;
}

/**
 * Hybrid mode's trusted subsystem: this replica's counter process (reached over its UNIX socket, where the
 * counter's key stays) and a checker of every replica's counter certificates with their public keys.
 */
export async function openTrusted(
  cluster: ClusterConfig,
  config: NodeConfig,
  seed: Uint8Array,
  onBroken?: (err: Error) => void,
  openCounter?: () => Promise<CounterLink>,
): Promise<{ trusted: TrustedSubsystem; counter: CounterLink } | undefined> {
  if (cluster.mode !== "hybrid") return undefined;
  const counterKeys = cluster.replicas.map((r) => hex(r.counterPublicKey ?? ""));
  const counter = openCounter
    ? await openCounter()
    : await RemoteCounter.open({
        socketPath: config.counterSocket as string,
        id: config.id,
        counterPublicKey: counterKeys[config.id] as Uint8Array,
        replicaSeed: seed,
        certifyTimeoutMs: config.counterTimeoutMs,
        onBroken,
      });
  return { trusted: trustedSubsystem(counter, new UsigChecker(counterKeys, nodeCrypto)), counter };
}

/** This replica's trusted counter as the node uses it: certify calls, their timings, close. */
export type CounterLink = TrustedCounter & {
  readonly stats: { readonly calls: number; readonly totalMs: number };
  close(): Promise<void>;
};

/** What a node reports for logs and metrics: the core's events and the ledger's block catch-up. */
export type NodeEvent =
  | ReplicaEvent
  | { readonly kind: "blocks-fetched"; readonly from: number; readonly count: number };

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

/** Events worth a log line (the others are counted in metrics only). */
const LOGGED: Partial<Record<NodeEvent["kind"], "info" | "warn" | "error">> = {
  "state-diverged": "error",
  "view-change-started": "warn",
  "new-view": "info",
  "snapshot-offered": "info",
  "state-transfer": "info",
  "blocks-fetched": "info",
};

export class OrdererNode {
  private retryTimer: ReturnType<typeof setInterval> | null = null;
  private stopping: Promise<void> | null = null;

  private constructor(
    readonly cluster: ClusterConfig,
    readonly config: NodeConfig,
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

  static async start(
    cluster: ClusterConfig,
    config: NodeConfig,
    hooks: NodeHooks = {},
  ): Promise<OrdererNode> {
    validateCluster(cluster);
    validateNode(config, cluster);
    const log = hooks.logger ?? silentLogger;
    const budget = checkMemoryBudget(cluster, config);
    log.info(
      { memoryBudgetMiB: Math.round(budget.totalBytes / 2 ** 20) },
      "memory budget (docs/operations.md)",
    );
    let metricsRef: NodeMetrics | undefined;
    const evidence = new Map<number, EquivocationJson>();
    let storeRef: LevelStore | undefined;
    // Since when this replica has been in a view change (null while it orders in a view).
    let viewChangingSince: number | null = null;
    const onEvent = (e: NodeEvent) => {
      metricsRef?.event(e.kind);
      if (e.kind === "view-change-started") viewChangingSince ??= Date.now();
      else if (e.kind === "new-view") viewChangingSince = null;
      if (e.kind === "equivocation" && !evidence.has(e.culprit)) {
        const j = equivocationToJson(e.culprit, e.proof);
        evidence.set(e.culprit, j);
        log.error(
          { culprit: e.culprit, value: j.a.cert.value, digests: [j.a.digest, j.b.digest] },
          "security event: a replica's trusted counter certified two messages with one value; ordering stopped (proof at GET /v1/misbehaviour)",
        );
        storeRef?.db
          .put(`${EVIDENCE}${e.culprit}`, new TextEncoder().encode(JSON.stringify(j)), { sync: true })
          .catch((err: unknown) => log.error({ err }, "could not save the proof of misbehaviour"));
      }
      const level = LOGGED[e.kind];
      if (level) {
        const { kind, ...fields } = e;
        log[level](fields, kind.replaceAll("-", " "));
      }
      hooks.onEvent?.(e);
    };
    const onError = (err: Error) => {
      log.error({ err }, "replica error");
      hooks.onError?.(err);
    };
    const seed = hex(config.seed);
    const keys = cluster.replicas.map((r) => hex(r.publicKey));
    if (!bytesEq(ed25519PublicKeyOf(seed), keys[config.id] as Uint8Array))
      throw new ConfigError("BAD_CONFIG", `seed: does not match replicas[${config.id}].publicKey`);
    const tickMs = config.tickMs ?? 10;
    const store = await LevelStore.open(config.dataDir, { sync: config.sync ?? true });
    storeRef = store;
    let counterLink: Awaited<ReturnType<typeof openTrusted>>;
    try {
      const loaded = await store.load();
      const registry: ClientRegistry = staticRegistry(
        cluster.replicas.flatMap((r, i) => [
          [gatewayClientId(r.id), { ed25519PublicKey: keys[i] as Uint8Array }],
          [coordClientId(r.id), { ed25519PublicKey: keys[i] as Uint8Array }],
        ]),
      );
      // Replica messages outside the counter's (checkpoints) are signed with the replica's key in both
      // modes; in hybrid mode, ordering messages carry the counter's certificates.
      const auth = ed25519ReplicaAuthenticator(seed, keys);
      counterLink = await openTrusted(
        cluster,
        config,
        seed,
        (err) => {
          log.fatal({ err }, "trusted counter unavailable: this replica cannot certify and must restart");
          hooks.onFatal?.(err);
        },
        hooks.openCounter,
      );
      const trusted = counterLink?.trusted;
      const limits = { ...batchLimits(cluster.batch, tickMs), ...config.limits };
      const gatewayIds = new Set(cluster.replicas.map((r) => gatewayClientId(r.id)));
      const core = createReplica(
        { id: config.id, f: cluster.f, mode: cluster.mode, limits },
        {
          crypto: nodeCrypto,
          registry,
          auth,
          trusted,
          // A gateway's request weighs as many transactions as it carries: maxMessageCount bounds a block.
          requestWeight: (r) => (gatewayIds.has(r.clientId) ? txBatchCount(r.op) : 1),
        },
        loaded.storage,
      );
      // A proof found before a restart still stops ordering: the fork it proves does not go away.
      for (const [culprit, j] of await loadEvidence(store)) {
        evidence.set(culprit, j);
        core.halt(`replica ${culprit}'s trusted counter certified two messages with one value`);
      }
      const baseTransport =
        cluster.transport === "rdma"
          ? new RdmaTransport({
              self: config.id,
              seed,
              peers: cluster.replicas.map((r, i) => ({
                id: r.id,
                publicKey: keys[i] as Uint8Array,
                path: r.rdma as string,
              })),
              // Refused keys, forged slots, bad mailboxes, bans: every one is logged.
              onSecurityEvent: (e) => log.warn({ peer: e.peer, reason: e.reason }, "rdma security event"),
            })
          : new Libp2pTransport({
              self: config.id,
              seed,
              peers: cluster.replicas.map((r, i) => ({
                id: r.id,
                publicKey: keys[i] as Uint8Array,
                addr: r.p2p,
              })),
              listen: config.p2pListen,
              redialMinMs: 20,
              redialMaxMs: 1000,
            });
      const transport = hooks.wrapTransport ? hooks.wrapTransport(baseTransport) : baseTransport;
      const q = quorums(cluster.mode, cluster.f);
      const ledger = await Ledger.open({
        db: store.db,
        genesisConfig: new TextEncoder().encode(canonicalJson(cluster)),
        self: config.id,
        n: q.n,
        quorum: q.commit,
        replicaKeys: keys,
        hash: sha256,
        verify: verifyEd25519,
        sign: (hh) => signEd25519(seed, hh),
        send: (to, frame) => (to === "all" ? transport.broadcast(frame) : void transport.send(to, frame)),
        sync: config.sync ?? true,
        // A gateway's request carries a batch of transactions; any other request is one entry.
        entriesOf: (op, clientId) =>
          gatewayIds.has(clientId) ? decodeTxBatch(op, cluster.batch.maxMessageCount) : [op],
        // A coordination entry counts only when its proposer field names the replica that signed it.
        acceptEntry: (op, clientId) =>
          !isCoordEntry(op) ||
          (op.length >= 8 && clientId === coordClientId(new DataView(op.buffer, op.byteOffset).getUint32(4))),
      });
      // The znode tree: read back from the store, then replay blocks written after its last save.
      // A write verified at intake here is not verified again when it is applied here.
      const coordVerify = cachingVerifier();
      const tree = new ZTree(treeConfig(cluster), coordVerify, sha256);
      await loadTree(store.db, tree);
      await catchUpTree(tree, ledger, store);
      const digests = new Digests(nodeCrypto);
      let hostRef: ReplicaHost | undefined;
      const coord = new CoordService({
        tree,
        self: config.id,
        propose: (req) => {
          if (!hostRef) throw new Error("not started");
          hostRef.submit(req, true);
        },
        signRequest: (reqNo, op) =>
          signedRequest(coordClientId(config.id), reqNo, op, digests, (d) => signEd25519(seed, d)),
        verify: coordVerify,
        hash: sha256,
        entryMaxBytes: cluster.batch.absoluteMaxBytes,
        clockPeriodMs: config.coordClockPeriodMs,
      });
      const cid = coordClientId(config.id);
      const app: HostApp<{ ledger: Awaited<ReturnType<Ledger["prepare"]>>["built"]; coord: AppliedBlocks }> =
        {
          frameTag: ledger.frameTag,
          async prepare(commits) {
            const l = await ledger.prepare(commits);
            const applied = coord.prepare(
              l.built.map((b) => ({
                number: b.block.header.number,
                entries: b.block.entries,
                requests: b.batchClients,
              })),
              cid,
            );
            const writes = l.built.length > 0 ? treeWrites(tree, tree.takeChanges()) : [];
            return { ops: [...l.ops, ...writes], built: { ledger: l.built, coord: applied } };
          },
          writing(built) {
            ledger.writing(built.ledger);
          },
          written(built) {
            ledger.written(built.ledger);
            coord.written(built.coord);
          },
          onPeerFrame: (from, frame) => ledger.onPeerFrame(from, frame),
          // Far behind: fetch certified blocks from peers and apply them (chain and tree in one batch).
          async catchUp(target) {
            if (ledger.height - 1 < target) ledger.sync.want(target);
            const blocks = ledger.sync.take();
            if (blocks) {
              const l = ledger.prepareSynced(blocks);
              const applied = coord.prepare(
                blocks.map((b) => ({
                  number: b.header.number,
                  entries: b.entries,
                  requests: ownCoordEntries(b.entries, config.id).map((reqNo) => ({ clientId: cid, reqNo })),
                })),
                cid,
              );
              const writes = treeWrites(tree, tree.takeChanges());
              await store.apply([], [...l.ops, ...writes]);
              ledger.writtenSynced(l.built);
              coord.written(applied);
              const from = blocks[0]?.header.number ?? 0;
              onEvent({ kind: "blocks-fetched", from, count: blocks.length });
            }
            return ledger.height - 1;
          },
        };
      const host = new ReplicaHost({
        core,
        transport,
        store,
        tickMs,
        app: app as HostApp,
        trace: hooks.trace,
        onSentBeforeDurable: hooks.onSentBeforeDurable,
        onEvent,
        onError: (err, from) => {
          if (from === undefined) onError(err);
        },
      });
      hostRef = host;
      let node: OrdererNode | undefined;
      const gateway = new Gateway({
        ledger,
        propose: (req) => host.submit(req, true),
        clientId: gatewayClientId(config.id),
        sign: (d) => signEd25519(seed, d),
        digests,
        hash: sha256,
        txMaxBytes: cluster.batch.absoluteMaxBytes,
        batchMaxCount: cluster.batch.maxMessageCount,
        // Within the core's request bound (absoluteMaxBytes plus the batch's framing) and PreferredMaxBytes.
        batchMaxBytes: Math.min(
          cluster.batch.preferredMaxBytes,
          cluster.batch.absoluteMaxBytes + TX_BATCH_OVERHEAD_BYTES,
        ),
        pendingMax: config.pendingMax ?? 100_000,
        ...(config.pendingMaxBytes !== undefined ? { pendingMaxBytes: config.pendingMaxBytes } : {}),
        timeoutMs: config.submitTimeoutMs ?? 30_000,
        quorumOk: () => node?.hasQuorum() ?? false,
        reservedPrefix: COORD_PREFIX,
        trace: hooks.trace,
      });
      const trace = hooks.trace;
      if (trace) ledger.onCertified((b) => trace.mark("certified", b.block.header.number));
      const source: MetricsSource = {
        id: config.id,
        mode: cluster.mode,
        core,
        ledger,
        gateway,
        coord,
        tree,
        transport,
        livePeers: () => host.livePeers(PEER_LIVE_MS),
        hasQuorum: () => node?.hasQuorum() ?? false,
        viewChangingMs: () => (viewChangingSince === null ? 0 : Date.now() - viewChangingSince),
        viewChangeStuckMs: viewChangeStuckMs(limits, tickMs),
        rdmaStats: baseTransport instanceof RdmaTransport ? () => baseTransport.securityStats() : undefined,
        misbehaviourProofs: () => evidence.size,
        counterStats: counterLink
          ? () => (counterLink as NonNullable<typeof counterLink>).counter.stats
          : undefined,
      };
      const metrics = new NodeMetrics(source);
      metricsRef = metrics;
      const api = new ApiServer({
        host: config.apiHost,
        port: config.apiPort,
        ledger,
        gateway,
        hash: sha256,
        txMaxBytes: cluster.batch.absoluteMaxBytes,
        coord,
        health: () => healthOf(source),
        misbehaviour: (): MisbehaviourReport => ({ halted: core.halted, proofs: [...evidence.values()] }),
        metrics: () => metrics.expose(),
      });
      api.onInternalError = (err) => onError(err instanceof Error ? err : new Error(String(err)));
      await host.start();
      node = new OrdererNode(
        cluster,
        config,
        store,
        host,
        ledger,
        gateway,
        coord,
        api,
        metrics,
        log,
        counterLink?.counter,
      );
      coord.start();
      node.retryTimer = setInterval(() => ledger.retry(SIG_RETRY_MS), SIG_RETRY_MS);
      try {
        await api.start();
      } catch (err) {
        await node.stop();
        throw err;
      }
      log.info(
        { mode: cluster.mode, api: `http://${config.apiHost}:${api.port}`, height: ledger.height },
        "replica started",
      );
      return node;
    } catch (err) {
      await counterLink?.counter.close().catch(() => {});
      await store.close().catch(() => {});
      throw err;
    }
  }

  /**
   * True when this replica has heard from enough peers to reach a commit quorum (what the gateway checks
   * before accepting a submission; a replica that just started is not there until its peers spoke).
   */
  hasQuorum(): boolean {
    const q = quorums(this.cluster.mode, this.cluster.f);
    return this.host.livePeers(PEER_LIVE_MS) + 1 >= q.commit;
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

/** Entry seqs of this replica's coordination entries in a block (they settle its in-flight entries). */
function ownCoordEntries(entries: readonly Uint8Array[], self: number): number[] {
  const out: number[] = [];
  for (const e of entries) {
    const h = isCoordEntry(e) ? entryHeader(e) : undefined;
    if (h && h.proposer === self) out.push(h.entrySeq);
  }
  return out;
}

/** Blocks are written with the tree's changes in one batch; a tree behind the chain (its records lost or
 * from an older version) is brought up to date by replaying the coordination entries of later blocks. */
async function catchUpTree(tree: ZTree, ledger: Ledger, store: LevelStore): Promise<number> {
  let replayed = 0;
  for (let n = tree.appliedBlock + 1; n < ledger.height; n++) {
    const b = await ledger.getBlock(n);
    if (!b) throw new LedgerError("CORRUPT", `block ${n} is missing below the chain head`);
    tree.applyBlock(n, b.entries.filter(isCoordEntry));
    replayed++;
    if (replayed % 1000 === 0 || n === ledger.height - 1)
      await writeBatch(store.db, treeWrites(tree, tree.takeChanges()), store.sync);
  }
  return replayed;
}
