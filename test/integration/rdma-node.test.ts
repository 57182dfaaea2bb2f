// Replica processes over the rdma transport, through the CLI: a Byzantine process on the same host
// connects to a replica's rdma socket and guesses memory keys. The replica refuses every guess, closes
// the connection, logs each security event and shows the refusals on /metrics, and goes on ordering.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { loadRdmaNative, type RdmaEvent } from "../../src/transport/rdma-native.ts";
import { CliCluster } from "../util/cli-cluster.ts";

const native = loadRdmaNative();

/** The sum of a metric's samples on /metrics, over those with the given label (`reason="x"`), if any. */
async function metric(url: string, name: string, label?: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n"))
    if (
      line.startsWith(name) &&
      (line[name.length] === "{" || line[name.length] === " ") &&
      (!label || line.includes(label))
    )
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

describe("replicas over rdma", { skip: native.available ? false : native.reason, timeout: 180_000 }, () => {
  let c: CliCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  it("a key-guessing process is refused, cut off, logged and counted on /metrics; ordering goes on", async () => {
    c = await CliCluster.init("hybrid", { transport: "rdma" });
    const cl = c;
    await Promise.all(cl.cluster.replicas.map((_, i) => cl.start(i)));
    await cl.waitHealthy();
    await cl.submit(new TextEncoder().encode("before"));
    const url = cl.url(1);
    assert.ok((await metric(url, "orderer_rdma_served_total")) > 0, "frames were written over rdma");
    assert.equal(await metric(url, "orderer_rdma_refused_total"), 0, "no refusals yet");

    // The attacker: the addon's own provider, connected to replica 1's socket, guessing keys.
    if (!native.available) return;
    const events: RdmaEvent[] = [];
    const attacker = new native.addon.ShmProvider({ onEvents: (es) => events.push(...es) });
    try {
      const conn = attacker.connect(cl.cluster.replicas[1]?.rdma as string);
      const end = Date.now() + 10_000;
      while (!events.some((e) => e.type === "connected")) {
        assert.ok(Date.now() < end, "the attacker connects");
        await sleep(5);
      }
      for (let i = 0; i < 10; i++)
        attacker.postWrite(conn, i, randomBytes(8).readBigUInt64LE(), 0, new Uint8Array(64).fill(0xee));
      while (!events.some((e) => e.type === "closed")) {
        assert.ok(Date.now() < end, "the replica closes the attacker's connection");
        await sleep(5);
      }
    } finally {
      attacker.close();
    }
    // The replica's provider closes a connection after 3 refusals (the default): the other 7 guesses
    // were never looked at.
    assert.equal(await metric(url, "orderer_rdma_refused_total"), 3, "each refusal counted");
    assert.equal(await metric(url, "orderer_rdma_refused_total", 'reason="unknown-key"'), 3);
    assert.equal(await metric(url, "orderer_rdma_security_events_total"), 3);
    assert.equal(await metric(url, "orderer_rdma_closed_total", 'reason="too-many-bad-requests"'), 1);
    const log = readFileSync(join(cl.dir, "node-1.log"), "utf8");
    assert.match(log, /rdma security event/);
    assert.match(log, /unknown-key/);

    // The replica still orders, and its peers' frames still flow.
    const served = await metric(url, "orderer_rdma_served_total");
    for (let k = 0; k < 3; k++) await cl.submit(new TextEncoder().encode(`after ${k}`), cl.url(0));
    assert.ok((await metric(url, "orderer_rdma_served_total")) > served, "replica 1 is still served");
    const h = await cl.health(1);
    assert.ok(h?.ok, "replica 1 is healthy");
  });
});
