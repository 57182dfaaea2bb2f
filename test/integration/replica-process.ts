// One replica in its own process, for multi-process tests: LevelDB store, libp2p or rdma transport, real
// time. Configured by ORDERER_REPLICA (JSON, bytes as hex). Talks to its parent over IPC:
//   parent → child  {type: "submit", request}
//   child → parent  {type: "ready"} | {type: "commit", seq, view, batchDigest, stateDigest, ops} |
//                   {type: "error", message}

import "../../src/util/polyfill.ts";
import { appendFileSync } from "node:fs";
import { type ClientRequest, createReplica, type Mode, staticRegistry, toHex } from "../../src/bft/index.ts";
import { trustedSubsystem, UsigChecker } from "../../src/bft/trusted.ts";
import { RemoteCounter } from "../../src/counter/client.ts";
import { ed25519ReplicaAuthenticator, nodeCrypto } from "../../src/crypto/node-crypto.ts";
import { ReplicaHost } from "../../src/node/host.ts";
import { LevelStore } from "../../src/storage/level-store.ts";
import { Libp2pTransport } from "../../src/transport/libp2p.ts";
import { RdmaTransport } from "../../src/transport/rdma.ts";

export interface ReplicaProcessConfig {
  readonly id: number;
  readonly mode: Mode;
  readonly f: number;
  readonly seed: string;
  readonly transport: "libp2p" | "rdma";
  /** addr: libp2p multiaddr; path: the rdma endpoint's UNIX socket. */
  readonly peers: { id: number; publicKey: string; addr: string; path: string }[];
  /** Hybrid mode: this replica's counter socket and every replica's counter public key (hex). */
  readonly counter?: { readonly socket: string; readonly publicKeys: readonly string[] };
  readonly clients: { id: string; publicKey: string }[];
  readonly dataDir: string;
}

const hex = (s: string) => Uint8Array.from(Buffer.from(s, "hex"));
const send = (m: unknown) => process.send?.(m);

async function main(): Promise<void> {
  const cfg = JSON.parse(process.env.ORDERER_REPLICA ?? "{}") as ReplicaProcessConfig;
  const store = await LevelStore.open(cfg.dataDir);
  const loaded = await store.load();
  const registry = staticRegistry(cfg.clients.map((c) => [c.id, { ed25519PublicKey: hex(c.publicKey) }]));
  const seed = hex(cfg.seed);
  const auth = ed25519ReplicaAuthenticator(
    seed,
    cfg.peers.map((p) => hex(p.publicKey)),
  );
  let trusted: ReturnType<typeof trustedSubsystem> | undefined;
  if (cfg.mode === "hybrid" && cfg.counter) {
    const keys = cfg.counter.publicKeys.map(hex);
    const counter = await RemoteCounter.open({
      socketPath: cfg.counter.socket,
      id: cfg.id,
      counterPublicKey: keys[cfg.id] as Uint8Array,
      replicaSeed: seed,
    });
    trusted = trustedSubsystem(counter, new UsigChecker(keys, nodeCrypto));
  }
  const limits = {
    requestTimeoutTicks: 100,
    viewChangeTimeoutTicks: 100,
    retransmitTicks: 10,
    statusTicks: 10,
  };
  const core = createReplica(
    { id: cfg.id, f: cfg.f, mode: cfg.mode, limits },
    { crypto: nodeCrypto, registry, auth, trusted },
    loaded.storage,
  );
  const transport =
    cfg.transport === "rdma"
      ? new RdmaTransport({
          self: cfg.id,
          seed,
          peers: cfg.peers.map((p) => ({ id: p.id, publicKey: hex(p.publicKey), path: p.path })),
          redialMinMs: 20,
          redialMaxMs: 500,
        })
      : new Libp2pTransport({
          self: cfg.id,
          seed,
          peers: cfg.peers.map((p) => ({ id: p.id, publicKey: hex(p.publicKey), addr: p.addr })),
          redialMinMs: 20,
          redialMaxMs: 500,
        });
  const host = new ReplicaHost({
    core,
    transport,
    store,
    tickMs: 10,
    onCommit: (c) =>
      send({
        type: "commit",
        seq: c.seq,
        view: c.view,
        batchDigest: toHex(c.batchDigest),
        stateDigest: toHex(c.stateDigest),
        ops: c.batch.requests.map((r) => Buffer.from(r.op).toString()),
      }),
    onError: (err) => send({ type: "error", message: err.message }),
    onEvent: (e) => {
      if (process.env.ORDERER_IT_EVENTS)
        appendFileSync(
          process.env.ORDERER_IT_EVENTS,
          `r${cfg.id} ${Date.now() % 100000} ${JSON.stringify(e).slice(0, 200)}\n`,
        );
    },
  });
  process.on("message", (m: { type: string; request: ClientRequest }) => {
    if (m.type === "submit") host.submit(m.request);
  });
  await host.start();
  send({ type: "ready" });
}

main().catch((err: unknown) => {
  send({ type: "error", message: (err as Error).stack ?? String(err) });
  process.exit(1);
});
