// TLS in the configuration (docs/operations.md, "TLS"): the node config resolver names a tls file that is
// missing, unreadable or not PEM of the right kind, refuses an http api URL for a replica that serves
// TLS and a client-certificate requirement uWS cannot enforce; `orderer init --tls` writes a CA and a
// certificate per replica (keys 0600 in a 0700 folder) that chain to it and name the replica's host,
// with https URLs in the cluster file and node files whose tls paths resolve.

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ConfigError } from "../../src/bft/errors.ts";
import { initCluster, loadNodeConfig } from "../../src/cli/config-files.ts";
import { makeDevCertificates } from "../../src/cli/tls-files.ts";
import { type ClusterConfig, type NodeConfig, resolveNodeConfig } from "../../src/node/config.ts";
import { modeOf } from "../../src/util/private-files.ts";
import { testCluster, testNode } from "../util/configs.ts";

const octal = (m: number) => `0${m.toString(8)}`;

describe("TLS configuration", () => {
  let dir: string;
  let certs: ReturnType<typeof makeDevCertificates>;
  let cluster: ClusterConfig;
  const node = (tls: unknown): NodeConfig => ({ ...testNode(0, "tls"), tls }) as NodeConfig;
  const refusal = (tls: unknown, c: ClusterConfig = cluster): string => {
    try {
      resolveNodeConfig(c, node(tls));
    } catch (err) {
      assert.ok(err instanceof ConfigError, `a ConfigError, not ${String(err)}`);
      assert.equal(err.code, "BAD_CONFIG");
      return err.message;
    }
    return "accepted";
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "orderer-tls-config-"));
    certs = makeDevCertificates(dir, "t", ["127.0.0.1"]);
    const base = testCluster("tls");
    cluster = {
      ...base,
      replicas: base.replicas.map((r) => ({ ...r, api: r.api.replace("http:", "https:") })),
    };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("accepts readable PEM files and an https api URL", () => {
    const r = certs.replicas[0] as { certFile: string; keyFile: string };
    const resolved = resolveNodeConfig(cluster, node({ ...r, caFile: certs.caFile }));
    assert.deepEqual(resolved.tls, { ...r, caFile: certs.caFile });
  });

  it("names a missing or unreadable file", () => {
    const r = certs.replicas[0] as { certFile: string; keyFile: string };
    assert.match(
      refusal({ ...r, certFile: join(dir, "nope.pem") }),
      /^tls\.certFile: cannot read .*nope\.pem \(ENOENT\)/,
    );
    assert.match(refusal({ ...r, caFile: join(dir, "none.pem") }), /^tls\.caFile: cannot read .*\(ENOENT\)/);
    assert.match(refusal({ certFile: r.certFile }), /^tls\.keyFile: must be the path of a PEM file/);
    if (process.getuid?.() !== 0) {
      const unreadable = join(dir, "unreadable.key");
      writeFileSync(unreadable, readFileSync(r.keyFile));
      chmodSync(unreadable, 0o000);
      assert.match(refusal({ ...r, keyFile: unreadable }), /^tls\.keyFile: cannot read .*\(EACCES\)/);
    }
  });

  it("names a file that holds no PEM of the right kind", () => {
    const r = certs.replicas[0] as { certFile: string; keyFile: string };
    assert.match(
      refusal({ certFile: r.keyFile, keyFile: r.keyFile }),
      /^tls\.certFile: .* holds no PEM certificate/,
    );
    assert.match(
      refusal({ certFile: r.certFile, keyFile: r.certFile }),
      /^tls\.keyFile: .* holds no PEM unencrypted private key/,
    );
    const encrypted = join(dir, "encrypted.key");
    writeFileSync(
      encrypted,
      "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    assert.match(refusal({ ...r, keyFile: encrypted }), /^tls\.keyFile: .* unencrypted private key/);
  });

  it("refuses an http api URL, unknown fields and a client-certificate requirement uWS cannot enforce", () => {
    const r = certs.replicas[0] as { certFile: string; keyFile: string };
    assert.match(refusal(r, testCluster("plain")), /^tls: .*must be https:\/\//);
    assert.match(refusal({ ...r, requireClientCert: true }), /^tls\.requireClientCert: not supported/);
    assert.match(refusal({ ...r, requestClientCert: true }), /^tls\.requestClientCert: not supported/);
    assert.match(refusal({ ...r, passphrase: "x" }), /^tls\.passphrase: unknown field/);
    assert.match(refusal("tls.pem"), /^tls: must be an object/);
  });

  it("init --tls: a CA and per-replica certificates that chain to it, keys 0600 in a 0700 folder, https URLs", () => {
    const out = join(dir, "cluster");
    const r = initCluster({ nodes: 3, mode: "hybrid", out, tls: true });
    assert.ok(r.caFile, "init names the CA file");
    assert.deepEqual(
      r.cluster.replicas.map((x) => x.api.split(":")[0]),
      ["https", "https", "https"],
      "the cluster file's API URLs are https",
    );
    const tlsDir = join(out, "tls");
    assert.equal(octal(modeOf(tlsDir)), "0700", "the tls folder is 0700");
    assert.equal(octal(modeOf(join(tlsDir, "ca.key"))), "0600", "the CA key is 0600");
    const ca = new X509Certificate(readFileSync(r.caFile));
    assert.ok(ca.ca, "the CA certificate is a CA");
    for (let i = 0; i < 3; i++) {
      assert.equal(octal(modeOf(join(tlsDir, `node-${i}.key`))), "0600", `replica ${i}'s key is 0600`);
      const cert = new X509Certificate(readFileSync(join(tlsDir, `node-${i}.pem`)));
      assert.ok(cert.verify(ca.publicKey), `replica ${i}'s certificate is signed by the CA`);
      assert.ok(cert.checkIssued(ca), `replica ${i}'s certificate names the CA as its issuer`);
      assert.equal(cert.checkIP("127.0.0.1"), "127.0.0.1", `replica ${i}'s certificate names its host`);
      assert.ok(!cert.ca, `replica ${i}'s certificate is no CA`);
      const loaded = loadNodeConfig(join(out, `node-${i}.jsonc`));
      assert.deepEqual(
        loaded.node.tls,
        { certFile: join(tlsDir, `node-${i}.pem`), keyFile: join(tlsDir, `node-${i}.key`) },
        "the node file's tls paths resolve beside it",
      );
      resolveNodeConfig(loaded.cluster, loaded.node);
    }
    assert.ok(
      new X509Certificate(readFileSync(join(tlsDir, "node-0.pem"))).checkIssued(
        new X509Certificate(readFileSync(certs.caFile)),
      ) === false,
      "another init's CA did not issue it",
    );
  });

  it("init without --tls writes http URLs and no tls section", () => {
    const out = join(dir, "plain");
    const r = initCluster({ nodes: 3, mode: "hybrid", out });
    assert.equal(r.caFile, undefined);
    assert.ok(
      r.cluster.replicas.every((x) => x.api.startsWith("http://")),
      "http URLs",
    );
    assert.equal(loadNodeConfig(join(out, "node-0.jsonc")).node.tls, undefined);
  });
});
