// The client API over TLS (docs/operations.md, "TLS"; docs/api.md): a live 3-replica hybrid cluster whose
// replicas serve https/wss with certificates of a CA made as `orderer init --tls` makes it. The ordering
// and coordination clients given that CA work; given another CA (or the system's roots) they are refused
// in the handshake; plain http to a TLS port gets nothing; `orderer status --ca` checks the same way;
// and a replica with tls.caFile refuses a client certificate of another CA but, as uWS cannot require
// one, serves a client that presents none.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { get as httpGet } from "node:http";
import { get as httpsGet } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { makeDevCertificates } from "../../src/cli/tls-files.ts";
import { CoordClient } from "../../src/coord/client.ts";
import { sha256, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { ApiServer, ApiServerError } from "../../src/node/api-server.ts";
import { type ClusterConfig, clientOptions, type NodeConfig } from "../../src/node/config.ts";
import { type CounterProcess, localCluster, startCounters } from "../../src/node/local-cluster.ts";
import { OrdererNode } from "../../src/node/orderer-node.ts";
import { OrderingClient, OrderingClientError } from "../../src/ordering/client.ts";
import type { Gateway } from "../../src/ordering/gateway.ts";
import type { Ledger } from "../../src/ordering/ledger.ts";
import { nodeSigner } from "../util/coord-cluster.ts";
import { submitWhenReady } from "../util/ordering.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** A GET over node:https with these TLS options: the status, or the error's code. */
function httpsStatus(url: string, o: { ca: string; cert?: string; key?: string }): Promise<number | string> {
  return new Promise((resolve) => {
    const req = httpsGet(url, { ...o, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

describe("the client API over TLS", () => {
  let dir: string;
  let cluster: ClusterConfig;
  let nodes: OrdererNode[] = [];
  let counters: CounterProcess[] = [];
  let certs: ReturnType<typeof makeDevCertificates>;
  let other: ReturnType<typeof makeDevCertificates>;
  let ca: string;
  let otherCa: string;
  const apiOf = (i: number): string => cluster.replicas[i]?.api ?? "";
  const client = (o: { ca?: string } = {}) =>
    new OrderingClient({ ...clientOptions(cluster), hash: sha256, verify: verifyEd25519, ...o });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "orderer-tls-"));
    certs = makeDevCertificates(dir, "tls-test", ["127.0.0.1", "127.0.0.1", "127.0.0.1"]);
    other = makeDevCertificates(join(dir, "other"), "other", ["127.0.0.1"]);
    ca = readFileSync(certs.caFile, "utf8");
    otherCa = readFileSync(other.caFile, "utf8");
    const lc = await localCluster("hybrid", 1, dir, { node: { coordClockPeriodMs: 100 } });
    cluster = {
      ...lc.cluster,
      replicas: lc.cluster.replicas.map((r) => ({ ...r, api: r.api.replace(/^http:/, "https:") })),
    };
    const configs: NodeConfig[] = lc.nodes.map((n, i) => ({
      ...n,
      // Replica 2 also checks client certificates against the cluster's CA.
      tls: {
        ...(certs.replicas[i] as { certFile: string; keyFile: string }),
        ...(i === 2 ? { caFile: certs.caFile } : {}),
      },
    }));
    counters = await startCounters(lc);
    nodes = await Promise.all(configs.map((n) => OrdererNode.start(cluster, n)));
    for (let i = 0; i < 400 && !nodes.every((n) => n.hasQuorum()); i++) await sleep(50);
  });

  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await Promise.all(counters.map((c) => c.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("a client given the cluster's CA submits over https and streams verified blocks over wss", async () => {
    const c = client({ ca });
    const r = await submitWhenReady(c, new TextEncoder().encode("over tls"));
    assert.ok(r.block >= 1, `the transaction is in a block (${r.block})`);
    const seen: number[] = [];
    for await (const b of c.blocks({ start: 0, stop: r.block })) seen.push(b.header.number);
    assert.deepEqual(
      seen,
      Array.from({ length: r.block + 1 }, (_, i) => i),
      "every block up to it, verified",
    );
    const chain = await c.chain(apiOf(1));
    assert.ok(chain.height >= 1, `replica 1 answers over https (height ${chain.height})`);
  });

  it("a client given another CA is refused: the server's certificate does not chain to it", async () => {
    const c = client({ ca: otherCa });
    await assert.rejects(c.chain(apiOf(0)), (err: unknown) => {
      assert.ok(err instanceof OrderingClientError, `an OrderingClientError, not ${String(err)}`);
      assert.equal(err.code, "CERTIFICATE_REFUSED");
      assert.match(err.message, /certificate/);
      return true;
    });
    await assert.rejects(c.submit(new TextEncoder().encode("refused")), /CERTIFICATE_REFUSED|certificate/);
    await assert.rejects(
      (async () => {
        for await (const _ of c.blocks({ start: 0, stop: 0 }))
          assert.fail("no block through an untrusted replica");
      })(),
      "the deliver stream over wss is refused too",
    );
    // Without a CA, the system's roots do not know the self-signed CA either.
    await assert.rejects(client().chain(apiOf(0)), OrderingClientError);
  });

  it("plain http to a TLS port gets no answer", async () => {
    const url = apiOf(0).replace(/^https:/, "http:");
    await assert.rejects(fetch(`${url}/health`), TypeError);
    const code = await new Promise<string>((resolve) => {
      const req = httpGet(`${url}/health`, (res) => resolve(`HTTP ${res.statusCode}`));
      req.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    assert.ok(!code.startsWith("HTTP"), `no HTTP answer on the TLS port (got ${code})`);
  });

  it("the coordination client opens a session over wss with the CA, and cannot with another", async () => {
    const urls = cluster.replicas.map((r) => r.api);
    const c = await CoordClient.connect({ urls, signer: nodeSigner, sessionTimeoutMs: 4000, ca });
    try {
      await c.create("/tls", "secret");
      const { data } = await c.getData("/tls");
      assert.equal(new TextDecoder().decode(data), "secret");
    } finally {
      await c.close();
    }
    await assert.rejects(
      CoordClient.connect({ urls, signer: nodeSigner, sessionTimeoutMs: 2000, ca: otherCa }),
      (err: Error) => {
        assert.match(err.message, /certificate/i, "the error names the certificate");
        return true;
      },
    );
  });

  it("tls.caFile refuses a client certificate of another CA; a client with none is still served", async () => {
    const url = `${apiOf(2)}/health`;
    const foreign = other.replicas[0] as { certFile: string; keyFile: string };
    const refused = await httpsStatus(url, {
      ca,
      cert: readFileSync(foreign.certFile, "utf8"),
      key: readFileSync(foreign.keyFile, "utf8"),
    });
    assert.ok(
      typeof refused === "string",
      `a certificate of another CA is refused in the handshake (got ${refused})`,
    );
    const served = await httpsStatus(url, { ca });
    assert.ok(typeof served === "number", `a client without a certificate is served (got ${served})`);
  });

  it("orderer status --ca: healthy with the cluster's CA, 'certificate refused' with another", async () => {
    const clusterFile = join(dir, "cluster.jsonc");
    writeFileSync(clusterFile, JSON.stringify(cluster));
    // Asynchronously: the replicas answering it run in this process.
    const run = (caFile: string): Promise<{ code: number; out: string }> =>
      new Promise((resolve) => {
        const args = ["--import", "tsx", "src/cli/main.ts", "status", "--cluster", clusterFile];
        execFile(
          process.execPath,
          [...args, "--ca", caFile, "--json"],
          { cwd: ROOT, encoding: "utf8", timeout: 60_000 },
          (err, stdout) => resolve({ code: err ? Number(err.code ?? -1) : 0, out: stdout }),
        );
      });
    const ok = await run(certs.caFile);
    assert.equal(ok.code, 0, `status exits 0 with the CA: ${ok.out}`);
    assert.equal((JSON.parse(ok.out) as { healthy: boolean }).healthy, true);
    const bad = await run(other.caFile);
    assert.equal(bad.code, 1, "status exits 1 with another CA");
    const replicas = (JSON.parse(bad.out) as { replicas: { error?: string }[] }).replicas;
    assert.deepEqual(
      replicas.map((r) => r.error),
      ["certificate refused", "certificate refused", "certificate refused"],
    );
  });

  it("a key that does not match the certificate: the server does not start (TLS_FAILED, files named)", async () => {
    const mine = certs.replicas[0] as { certFile: string; keyFile: string };
    const theirs = other.replicas[0] as { certFile: string; keyFile: string };
    const api = new ApiServer({
      host: "127.0.0.1",
      port: 0,
      ledger: {} as Ledger,
      gateway: {} as Gateway,
      hash: sha256,
      txMaxBytes: 4096,
      tls: { certFile: mine.certFile, keyFile: theirs.keyFile },
    });
    await assert.rejects(api.start(), (err: unknown) => {
      assert.ok(err instanceof ApiServerError, `an ApiServerError, not ${String(err)}`);
      assert.equal(err.code, "TLS_FAILED");
      assert.ok(err.message.includes(theirs.keyFile), "the message names the key file");
      return true;
    });
    await api.stop();
  });
});
