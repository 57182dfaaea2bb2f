import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ConfigError } from "../../src/bft/errors.ts";
import {
  envOverrides,
  faultsFor,
  initCluster,
  loadCounterConfig,
  loadNodeConfig,
  stripJsonComments,
} from "../../src/cli/config-files.ts";
import { CliError } from "../../src/cli/errors.ts";

describe("orderer configuration files", () => {
  const dir = mkdtempSync(join(tmpdir(), "orderer-cfg-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("strips comments but not comment-like text inside strings", () => {
    const text = `{ // a comment\n "a": "x // not a comment", /* block\n comment */ "b": "say \\"/*hi*/\\"" }`;
    assert.deepEqual(JSON.parse(stripJsonComments(text)), { a: "x // not a comment", b: 'say "/*hi*/"' });
  });

  it("knows which replica counts each mode allows", () => {
    assert.equal(faultsFor("hybrid", 3), 1);
    assert.equal(faultsFor("hybrid", 5), 2);
    assert.equal(faultsFor("pbft", 4), 1);
    assert.equal(faultsFor("pbft", 7), 2);
    for (const [m, n] of [
      ["hybrid", 4],
      ["hybrid", 1],
      ["pbft", 3],
      ["pbft", 5],
    ] as const)
      assert.throws(() => faultsFor(m, n), CliError);
  });

  it("init writes commented files that load back, private files mode 600; refuses to overwrite", () => {
    const out = join(dir, "c1");
    const r = initCluster({ nodes: 4, mode: "pbft", out, p2pPort: 7100, apiPort: 8100 });
    assert.equal(r.nodeFiles.length, 4);
    assert.match(readFileSync(r.clusterFile, "utf8"), /\/\/ Faulty replicas tolerated/);
    assert.equal(statSync(r.nodeFiles[2] as string).mode & 0o777, 0o600);
    const { cluster, node } = loadNodeConfig(r.nodeFiles[2] as string);
    assert.equal(cluster.mode, "pbft");
    assert.equal(cluster.f, 1);
    assert.equal(cluster.replicas[2]?.api, "http://127.0.0.1:8102");
    assert.equal(node.id, 2);
    assert.equal(node.dataDir, join(out, "data/node-2"), "relative to the node file");
    assert.throws(
      () => initCluster({ nodes: 4, mode: "pbft", out }),
      (e: unknown) => e instanceof CliError && e.code === "EXISTS",
    );
  });

  it("file < environment < flags, and a bad field is named with its file", () => {
    const r = initCluster({ nodes: 3, mode: "hybrid", out: join(dir, "c2") });
    const file = r.nodeFiles[0] as string;
    const env = envOverrides({ ORDERER_API_PORT: "9100", ORDERER_LOG_LEVEL: "debug", ORDERER_SYNC: "false" });
    const fromEnv = loadNodeConfig(file, env).node;
    assert.equal(fromEnv.apiPort, 9100);
    assert.equal(fromEnv.logLevel, "debug");
    assert.equal(fromEnv.sync, false);
    assert.equal(loadNodeConfig(file, env, { apiPort: 9200 }).node.apiPort, 9200);
    assert.throws(() => envOverrides({ ORDERER_API_PORT: "80a" }), /ORDERER_API_PORT: must be an integer/);
    assert.throws(
      () => loadNodeConfig(file, {}, { logLevel: "loud" }),
      /node-0.jsonc: logLevel: must be one of/,
    );
    const text = readFileSync(file, "utf8");
    writeFileSync(file, text.replace('"tickMs": 10', '"tickMS": 10'));
    assert.throws(
      () => loadNodeConfig(file),
      (e: unknown) => e instanceof ConfigError && /tickMS: unknown field/.test(e.message),
    );
    writeFileSync(file, text.replace('"tickMs": 10,', '"tickMs": 10'));
    assert.throws(
      () => loadNodeConfig(file),
      (e: unknown) => e instanceof CliError && e.code === "CONFIG_SYNTAX",
    );
    writeFileSync(r.clusterFile, readFileSync(r.clusterFile, "utf8").replace('"f": 1', '"f": 2'));
    writeFileSync(file, text);
    assert.throws(
      () => loadNodeConfig(file),
      /cluster.jsonc: replicas: a hybrid cluster with f=2 has 5 replicas/,
    );
  });

  it("hybrid init writes one private counter file per replica whose keys match the cluster file", () => {
    const out = join(dir, "counters");
    const r = initCluster({ nodes: 3, mode: "hybrid", out });
    assert.equal(r.counterFiles.length, 3);
    for (const [i, f] of r.counterFiles.entries()) {
      assert.equal(statSync(f).mode & 0o777, 0o600);
      const c = loadCounterConfig(f);
      assert.equal(c.id, i);
      assert.equal(c.replicaPublicKey, r.cluster.replicas[i]?.publicKey);
      assert.equal(c.socket, join(out, `counter-${i}.sock`), "the socket is resolved next to the file");
      assert.equal(c.dataDir, join(out, `counter-${i}.data`));
      const { node } = loadNodeConfig(r.nodeFiles[i] as string);
      assert.equal(node.counterSocket, c.socket, "the replica finds its counter's socket");
      assert.ok(
        !readFileSync(r.nodeFiles[i] as string, "utf8").includes(c.seed),
        "the node file holds no counter key",
      );
    }
    assert.equal(
      initCluster({ nodes: 4, mode: "pbft", out: join(dir, "pbft-counters") }).counterFiles.length,
      0,
    );
  });

  it("a counter file with an unknown field, a bad key or another replica's cluster field is refused, naming the file", () => {
    const out = join(dir, "counters-bad");
    const r = initCluster({ nodes: 3, mode: "hybrid", out });
    const f = r.counterFiles[0] as string;
    const good = JSON.parse(stripJsonComments(readFileSync(f, "utf8")));
    const named = (e: unknown) => e instanceof ConfigError && e.message.startsWith(f);
    writeFileSync(f, JSON.stringify({ ...good, extra: 1 }));
    assert.throws(() => loadCounterConfig(f), named);
    writeFileSync(f, JSON.stringify({ ...good, seed: "xyz" }));
    assert.throws(
      () => loadCounterConfig(f),
      (e: unknown) => named(e) && /seed/.test((e as Error).message),
    );
    writeFileSync(f, JSON.stringify({ ...good, cluster: "cluster.jsonc" }));
    assert.throws(() => loadCounterConfig(f), named);
    // A node file from before counters had their own process.
    const n = r.nodeFiles[0] as string;
    const node = JSON.parse(stripJsonComments(readFileSync(n, "utf8")));
    writeFileSync(n, JSON.stringify({ ...node, groupSecret: "00".repeat(32) }));
    assert.throws(
      () => loadNodeConfig(n),
      (e: unknown) => e instanceof ConfigError && /no longer used/.test(e.message),
    );
  });
});
