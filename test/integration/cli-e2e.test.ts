// The `orderer` command end to end, in child processes, in both modes: init → start every replica →
// status → submit → kill the leader → the others elect a new one and keep committing → restart it →
// it catches up and every replica's chain verifies and ends in the same head. Prints the time from the
// leader's death to the first commit in the new view (bench/failover.ts reports medians).

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Mode } from "../../src/bft/types.ts";
import { CliCluster, childrenOf, leaderFailover, orderer, spawnDev } from "../util/cli-cluster.ts";

function alive(pid: number): boolean {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, "utf8");
    return st.slice(st.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

for (const mode of ["hybrid", "pbft"] as Mode[]) {
  describe(`orderer CLI end to end (${mode})`, () => {
    let c: CliCluster | undefined;
    after(async () => {
      await c?.stop();
    });

    it("init, start, submit; the leader dies and a new one commits; it comes back; chains are equal", async () => {
      c = await CliCluster.init(mode);
      const cf = ["--cluster", c.clusterFile];
      await Promise.all(c.cluster.replicas.map((_, i) => (c as CliCluster).start(i)));
      await c.waitHealthy();

      const sub = await orderer(["submit", "first transaction", ...cf, "--json"]);
      assert.equal(sub.code, 0, sub.stderr);
      const receipt = JSON.parse(sub.stdout) as { block: number; signers: number[] };
      assert.ok(receipt.block >= 1, "receipt.block >= 1");

      const f = await leaderFailover(c, mode);
      console.log(
        `# ${mode}: leader ${f.leader} killed in view ${f.oldView}; first commit in view ${f.newView} after ${f.ms.toFixed(0)} ms`,
      );
      assert.ok(f.newView > f.oldView, "the commit after the kill is in a later view");
      for (let k = 0; k < 5; k++)
        await c.submit(new TextEncoder().encode(`more ${k}`), c.url((f.leader + 1) % c.n));
      const degraded = await orderer(["status", ...cf]);
      assert.equal(degraded.code, 0, `a quorum is still up: ${degraded.stdout}`);
      assert.match(degraded.stdout, /unreachable/);

      // Back from SIGKILL: it recovers from LevelDB, rejoins and catches up.
      await c.start(f.leader);
      const top = (await c.client.chain(c.url((f.leader + 1) % c.n))).height;
      for (let t = 0; t < 300; t++) {
        const h = await c.health(f.leader);
        if (h && h.certifiedHeight >= top) break;
        await sleep(100);
      }
      await c.waitHealthy();
      const heads = new Set<string>();
      for (let i = 0; i < c.n; i++) {
        const v = await orderer(["verify", ...cf, "--url", c.url(i), "--json"]);
        assert.equal(v.code, 0, `replica ${i}: ${v.stderr}`);
        const r = JSON.parse(v.stdout) as { ok: boolean; height: number; headHash: string };
        assert.ok(r.height >= top, `replica ${i} at ${r.height}, expected ${top}`);
        // Compare the common prefix: replicas may be a block apart at the moment each is asked.
        const b = await c.client.block(top - 1, c.url(i));
        heads.add(Buffer.from(b.header.previousHash).toString("hex") + b.header.number);
      }
      assert.equal(heads.size, 1, "every replica holds the same chain");

      // SIGTERM: a clean stop, exit code 0.
      assert.equal(await c.kill(0, "SIGTERM"), 0);
    });
  });
}

describe("orderer CLI usage", () => {
  it("prints help with examples, refuses bad arguments and bad config with a one-line error", async () => {
    const help = await orderer(["submit", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Examples:/);
    const bad = await orderer(["init", "--nodes", "4", "--mode", "hybrid", "--out", "/tmp/x-never"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^orderer: BAD_ARGUMENT: --nodes: a hybrid cluster has 2f\+1/);
    assert.equal(bad.stderr.trim().split("\n").length, 1, "one line, no stack");
    const missing = await orderer(["start", "--config", "/nonexistent/node-0.jsonc"]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /CONFIG_NOT_FOUND/);
    const c = await CliCluster.init("hybrid");
    try {
      const node = `${c.dir}/node-0.jsonc`;
      const port = await orderer(["start", "--config", node, "--api-port", "99999"]);
      assert.equal(port.code, 2);
      assert.match(port.stderr, /apiPort: must be 0\.\.65535/);
      const env = await orderer(["start", "--config", node, "--log-level", "loud"]);
      assert.equal(env.code, 2);
      assert.match(env.stderr, /--log-level/);
    } finally {
      await c.stop();
    }
  });
});

describe("orderer dev", () => {
  it("its replicas and counters stop when it is killed (SIGKILL): no orphans holding ports", async () => {
    const dir = mkdtempSync(join(tmpdir(), "orderer-dev-kill-"));
    const { dev, up } = spawnDev(dir);
    let children: number[] = [];
    try {
      await up();
      children = childrenOf(dev.pid as number);
      assert.equal(children.length, 6, `3 replicas and 3 counters (${children.join(" ")})`);
      // The command and what it starts run the build in dist/ with plain Node: no TypeScript loader.
      for (const pid of children) {
        const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8")
          .split("\0")
          .filter((a) => a !== "");
        const script = argv.find((a) => a.endsWith(".js") || a.endsWith(".ts")) ?? "";
        assert.match(
          script,
          /\/dist\/(node\/node-process|counter\/counter-process)\.js$/,
          `child ${argv.join(" ")}`,
        );
        assert.ok(!argv.some((a) => /tsx|--import|--loader/.test(a)), `no loader in ${argv.join(" ")}`);
      }
      dev.kill("SIGKILL");
      for (let t = 0; t < 200 && children.some(alive); t++) await sleep(100);
      assert.deepEqual(children.filter(alive), [], "every child stopped within 20 s of its parent's death");
    } finally {
      dev.kill("SIGKILL");
      for (const p of children.filter(alive)) process.kill(p, "SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
