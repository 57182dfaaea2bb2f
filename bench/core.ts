// The ceiling of the protocol core: replicas in one process, messages handed over as objects (no
// serialisation, no network, no disk), real crypto (node:crypto SHA-256/HMAC/ed25519; hybrid mode's
// counter certificates are ed25519 signatures, made in process, not by a separate counter process).
// Prints committed requests/s and batches/s per request size, authentication scheme and mode.
//
//   npm run bench:core [-- --seconds 3 --runs 3 --outstanding 4096]

import "../src/util/polyfill.ts";
import { parseArgs } from "node:util";
import {
  type ClientKeys,
  type ClientRequest,
  createReplica,
  Digests,
  MemoryStorage,
  type Message,
  type Mode,
  quorums,
  type ReplicaCore,
  staticRegistry,
  trustedSubsystem,
  UsigChecker,
  UsigCounter,
} from "../src/bft/index.ts";
import {
  ed25519PublicKeyOf,
  ed25519ReplicaAuthenticator,
  generateEd25519KeyPair,
  nodeCrypto,
  signEd25519,
} from "../src/crypto/node-crypto.ts";
import { publish } from "./results.ts";
import { median } from "./stats.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "3" },
    runs: { type: "string", default: "3" },
    outstanding: { type: "string", default: "4096" },
    batch: { type: "string", default: "256" },
    only: { type: "string" },
    quick: { type: "boolean", default: false },
  },
});
// --quick: one short run per row (a smoke test of the suite, not figures to quote).
const SECONDS = values.quick ? 1 : Number(values.seconds);
const RUNS = values.quick ? 1 : Number(values.runs);
const OUTSTANDING = Number(values.outstanding);
const BATCH = Number(values.batch);
const CLIENTS = 64;

interface Row {
  mode: Mode;
  scheme: "ed25519" | "mac";
  size: number;
  reqPerSec: number[];
  batchPerSec: number[];
  avgBatch: number[];
}

const digests = new Digests(nodeCrypto);

function makeCluster(mode: Mode, f: number) {
  const n = quorums(mode, f).n;
  const replicaKeys = [...Array(n)].map(() => generateEd25519KeyPair());
  // Hybrid: each replica's trusted subsystem signs certificates with a key of its own (in process here;
  // a node runs it in the counter process), and every replica verifies them with the public keys.
  const counterKeys = [...Array(n)].map(() => generateEd25519KeyPair());
  const counterChecker = new UsigChecker(
    counterKeys.map((k) => k.publicKey),
    nodeCrypto,
  );
  const clientSeeds = [...Array(CLIENTS)].map(() => generateEd25519KeyPair().privateKey);
  // Both modes: one independent MAC session key per (client, replica).
  const macKeys = [...Array(CLIENTS)].map((_, c) =>
    [...Array(n)].map((_, i) => nodeCrypto.sha256(new TextEncoder().encode(`mac-${c}-${i}`))),
  );
  const replicas: ReplicaCore[] = [];
  for (let i = 0; i < n; i++) {
    const registry = new Map<string, ClientKeys>();
    clientSeeds.forEach((seed, c) => {
      registry.set(`c${c}`, {
        ed25519PublicKey: ed25519PublicKeyOf(seed),
        macKey: macKeys[c]?.[i] as Uint8Array,
      });
    });
    const counterSeed = counterKeys[i]?.privateKey as Uint8Array;
    const trusted =
      mode === "hybrid"
        ? trustedSubsystem(
            new UsigCounter({ id: i, sign: (bytes) => signEd25519(counterSeed, bytes) }),
            counterChecker,
          )
        : undefined;
    // Checkpoints (both modes) and PBFT's phases: ed25519 with the replicas' own keys.
    const auth = ed25519ReplicaAuthenticator(
      replicaKeys[i]?.privateKey as Uint8Array,
      replicaKeys.map((k) => k.publicKey),
    );
    replicas.push(
      createReplica(
        {
          id: i,
          f,
          mode,
          limits: {
            batchMaxCount: BATCH,
            window: 64,
            checkpointInterval: 16,
            pendingMax: 1_000_000,
            requestMaxBytes: 1 << 20,
            requestTimeoutTicks: 1_000_000,
            viewChangeTimeoutTicks: 1_000_000,
            viewChangeTimeoutMaxTicks: 2_000_000,
          },
        },
        {
          crypto: nodeCrypto,
          registry: staticRegistry(registry),
          auth,
          trusted,
        },
        new MemoryStorage(),
      ),
    );
  }
  return { n, replicas, clientSeeds, macKeys };
}

/** Pre-signs requests so that client-side signing is not measured. */
function makeRequests(
  count: number,
  size: number,
  scheme: "ed25519" | "mac",
  clientSeeds: Uint8Array[],
  macKeys: Uint8Array[][],
  reqNoBase: number,
): ClientRequest[] {
  const op = new Uint8Array(size).fill(7);
  const out: ClientRequest[] = [];
  for (let k = 0; k < count; k++) {
    const c = k % CLIENTS;
    const base = { clientId: `c${c}`, reqNo: reqNoBase + Math.floor(k / CLIENTS) + 1, op };
    const d = digests.request({ ...base, auth: { scheme: "mac", macs: [] } });
    out.push(
      scheme === "ed25519"
        ? { ...base, auth: { scheme: "ed25519", sig: signEd25519(clientSeeds[c] as Uint8Array, d) } }
        : {
            ...base,
            auth: {
              scheme: "mac",
              macs: (macKeys[c] as Uint8Array[]).map((key) => nodeCrypto.hmacSha256(key, d)),
            },
          },
    );
  }
  return out;
}

function runOnce(mode: Mode, scheme: "ed25519" | "mac", size: number) {
  const f = 1;
  const { n, replicas, clientSeeds, macKeys } = makeCluster(mode, f);
  const storages = replicas.map(() => new MemoryStorage());
  // Enough pre-signed requests for the run (ed25519 signing is slow; cap by an estimate).
  const estimate = scheme === "ed25519" ? 12_000 : 120_000;
  const total = Math.max(OUTSTANDING * 2, Math.ceil(estimate * (SECONDS + 1)));
  const requests = makeRequests(total, size, scheme, clientSeeds, macKeys, 0);
  let next = 0;
  let queue: { from: number; to: number; msg: Message }[] = [];
  let qHead = 0;
  let outstanding = 0;
  let committedReqs = 0;
  let committedBatches = 0;
  let measuring = false;
  const leader = replicas[0] as ReplicaCore;

  const drain = (i: number) => {
    const r = replicas[i] as ReplicaCore;
    if (!r.hasReady()) return;
    const rd = r.ready();
    (storages[i] as MemoryStorage).apply(rd.persist);
    for (const o of rd.send) {
      if (o.to === "all") {
        for (let j = 0; j < n; j++) if (j !== i) queue.push({ from: i, to: j, msg: o.msg });
      } else queue.push({ from: i, to: o.to, msg: o.msg });
    }
    if (i === 0) {
      for (const c of rd.commit) {
        outstanding -= c.batch.requests.length;
        if (!measuring) continue;
        committedBatches++;
        committedReqs += c.batch.requests.length;
      }
    }
    r.advance();
  };

  const submit = (k: number) => {
    for (let j = 0; j < k && next < requests.length; j++) {
      leader.propose(requests[next++] as ClientRequest);
      outstanding++;
    }
    drain(0);
  };

  submit(OUTSTANDING);
  const warmupEnd = performance.now() + 500;
  let end = Number.POSITIVE_INFINITY;
  let start = 0;
  let deliveries = 0;
  while (next < requests.length || qHead < queue.length) {
    const m = qHead < queue.length ? queue[qHead++] : undefined;
    if (qHead > 65536 && qHead * 2 > queue.length) {
      queue = queue.slice(qHead);
      qHead = 0;
    }
    if (m) {
      (replicas[m.to] as ReplicaCore).step(m.from, m.msg);
      drain(m.to);
      deliveries++;
    }
    if (!m || deliveries % 64 === 0) {
      for (let i = 0; i < n; i++) {
        (replicas[i] as ReplicaCore).tick();
        drain(i);
      }
      // Closed loop: top the outstanding requests back up as the leader executes them.
      if (outstanding < OUTSTANDING) submit(OUTSTANDING - outstanding);
      const now = performance.now();
      if (!measuring && now >= warmupEnd) {
        measuring = true;
        start = now;
        end = now + SECONDS * 1000;
      } else if (measuring && now >= end) break;
    }
  }
  const elapsed = (performance.now() - start) / 1000;
  return {
    reqPerSec: committedReqs / elapsed,
    batchPerSec: committedBatches / elapsed,
    avgBatch: committedBatches ? committedReqs / committedBatches : 0,
    exhausted: next >= requests.length,
  };
}

const rows: Row[] = [];
const configs: [Mode, "ed25519" | "mac"][] = [
  ["hybrid", "mac"],
  ["hybrid", "ed25519"],
  ["pbft", "mac"],
];
console.log(
  `core ceiling: f=1, batchMaxCount ${BATCH}, ${OUTSTANDING} outstanding, ${SECONDS}s x ${RUNS} runs (median), ` +
    `node ${process.version}`,
);
for (const [mode, scheme] of configs) {
  for (const size of [0, 128, 1024]) {
    if (values.only && values.only !== `${mode}/${scheme}/${size}`) continue;
    const row: Row = { mode, scheme, size, reqPerSec: [], batchPerSec: [], avgBatch: [] };
    for (let r = 0; r < RUNS; r++) {
      const res = runOnce(mode, scheme, size);
      if (res.exhausted) console.log(`  (note: ran out of pre-signed requests in ${mode}/${scheme}/${size})`);
      row.reqPerSec.push(res.reqPerSec);
      row.batchPerSec.push(res.batchPerSec);
      row.avgBatch.push(res.avgBatch);
    }
    rows.push(row);
    console.log(
      `${mode.padEnd(6)} n=${mode === "hybrid" ? 3 : 4} auth=${scheme.padEnd(7)} op=${String(size).padStart(4)} B  ` +
        `requests/s ${Math.round(median(row.reqPerSec)).toString().padStart(8)}  ` +
        `batches/s ${Math.round(median(row.batchPerSec)).toString().padStart(6)}  ` +
        `avg batch ${median(row.avgBatch).toFixed(0).padStart(4)}  ` +
        `runs [${row.reqPerSec.map((x) => Math.round(x)).join(", ")}]`,
    );
  }
}
const base = rows[0] as Row;
if (!base) process.exit(0);
await publish(
  "core",
  { seconds: SECONDS, runs: RUNS, outstanding: OUTSTANDING, batchMaxCount: BATCH, f: 1, clients: CLIENTS },
  rows.map((r) => ({
    mode: r.mode,
    n: r.mode === "hybrid" ? 3 : 4,
    clientAuth: r.scheme,
    opBytes: r.size,
    requestsPerSec: median(r.reqPerSec),
    batchesPerSec: median(r.batchPerSec),
    avgBatch: median(r.avgBatch),
    vsHybridMac0: median(r.reqPerSec) / median(base.reqPerSec),
    runsRequestsPerSec: r.reqPerSec,
  })),
);
console.log("\nratios against hybrid/mac/0 B in this run:");
for (const r of rows) {
  console.log(
    `  ${r.mode}/${r.scheme}/${r.size} B: ${(median(r.reqPerSec) / median(base.reqPerSec)).toFixed(2)}x`,
  );
}
