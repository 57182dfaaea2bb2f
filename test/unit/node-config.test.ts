// One place where a replica's settings get their defaults and their checks (resolveNodeConfig), used by
// `orderer start`, forked replica processes and OrdererNode.start alike.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError } from "../../src/bft/index.ts";
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
