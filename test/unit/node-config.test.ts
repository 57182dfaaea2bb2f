// One place where a replica's settings get their defaults and their checks (resolveNodeConfig), used by
// `orderer start`, forked replica processes and OrdererNode.start alike.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError } from "../../src/bft/index.ts";
import { addressKey, originAllowed, validOriginEntry } from "../../src/node/api/request-checks.ts";
import {
  type ClusterConfig,
  DEFAULT_BATCH,
  NODE_DEFAULTS,
  type NodeConfig,
  resolveNodeConfig,
  withNodeDefaults,
} from "../../src/node/config.ts";
import { testCluster, testNode } from "../util/configs.ts";

const cluster: ClusterConfig = testCluster("config-test");

const node: NodeConfig = testNode(1, "config-test");

describe("resolveNodeConfig", () => {
  it("fills every unset setting with its default and keeps what is set", () => {
    const r = resolveNodeConfig(cluster, { ...node, tickMs: 5, sync: false, logLevel: "debug" });
    assert.equal(r.tickMs, 5);
    assert.equal(r.sync, false);
    assert.equal(r.logLevel, "debug");
    for (const k of Object.keys(NODE_DEFAULTS) as (keyof typeof NODE_DEFAULTS)[])
      if (!["tickMs", "sync", "logLevel"].includes(k))
        assert.equal(r[k], NODE_DEFAULTS[k], `${k} takes its default`);
    assert.deepEqual(r.limits, {});
    assert.equal(r.id, 1);
    assert.equal(r.dataDir, node.dataDir);
  });

  it("an explicit undefined does not hide a default", () => {
    const r = resolveNodeConfig(cluster, { ...node, submitTimeoutMs: undefined, pendingMax: undefined });
    assert.equal(r.submitTimeoutMs, NODE_DEFAULTS.submitTimeoutMs);
    assert.equal(r.pendingMax, NODE_DEFAULTS.pendingMax);
  });

  it("the gateway's byte bound is never below one transaction of absoluteMaxBytes", () => {
    const big = { ...cluster, batch: { ...DEFAULT_BATCH, absoluteMaxBytes: 300 * 1024 * 1024 } };
    assert.equal(withNodeDefaults(node, big).pendingMaxBytes, 300 * 1024 * 1024);
    assert.equal(withNodeDefaults(node, cluster).pendingMaxBytes, NODE_DEFAULTS.pendingMaxBytes);
  });

  it("refuses a bad cluster or a bad setting with a ConfigError naming the field", () => {
    assert.throws(
      () => resolveNodeConfig(cluster, { ...node, tickMs: 0 }),
      (e: unknown) => e instanceof ConfigError && /tickMs/.test(e.message),
    );
    assert.throws(
      () => resolveNodeConfig({ ...cluster, f: -1 }, node),
      (e: unknown) => e instanceof ConfigError && /\bf\b/.test(e.message),
    );
  });
});

describe("allowedOrigins (who may call the API from a web page)", () => {
  it("defaults to none and refuses an entry that is not an origin", () => {
    assert.deepEqual(resolveNodeConfig(cluster, node).allowedOrigins, [], "no browser origin by default");
    const ok = ["https://dashboard.example", "http://127.0.0.1:8080", "*"];
    assert.deepEqual(resolveNodeConfig(cluster, { ...node, allowedOrigins: ok }).allowedOrigins, ok);
    for (const bad of [["https://a.example/path"], ["dashboard.example"], "https://a.example", [1]])
      assert.throws(
        () => resolveNodeConfig(cluster, { ...node, allowedOrigins: bad as unknown as string[] }),
        (e: unknown) => e instanceof ConfigError && /allowedOrigins/.test(e.message),
        `refuses ${JSON.stringify(bad)}`,
      );
  });

  it("matches an origin exactly, without case or a trailing slash; * matches any", () => {
    const list = ["https://dashboard.example", "http://localhost:3000/"];
    assert.ok(originAllowed("https://DASHBOARD.example", list), "case does not matter");
    assert.ok(originAllowed("http://localhost:3000", list), "a trailing slash does not matter");
    assert.ok(!originAllowed("http://localhost:3001", list), "another port is another origin");
    assert.ok(!originAllowed("https://dashboard.example.evil", list), "a longer host is another origin");
    assert.ok(!originAllowed("http://dashboard.example", list), "another scheme is another origin");
    assert.ok(!originAllowed("null", list), "an opaque origin is not listed");
    assert.ok(!originAllowed("https://dashboard.example", []), "an empty list allows none");
    assert.ok(originAllowed("null", ["*"]), "* allows any");
    assert.ok(validOriginEntry("*") && !validOriginEntry(""), "* is an entry, the empty string is not");
  });
});

describe("the per-address WebSocket bound's address", () => {
  it("counts an IPv4 address as itself, also mapped into IPv6, and an IPv6 address by its /64", () => {
    assert.equal(addressKey("127.0.0.2"), "127.0.0.2");
    assert.equal(addressKey("0000:0000:0000:0000:0000:ffff:7f00:0001"), "127.0.0.1");
    assert.equal(addressKey("2001:0db8:0001:0002:0000:0000:0000:0001"), "2001:0db8:0001:0002::/64");
    assert.equal(
      addressKey("2001:0db8:0001:0002:ffff:1234:0000:0009"),
      addressKey("2001:0db8:0001:0002:0000:0000:0000:0001"),
      "one /64 is one client",
    );
  });
});
