// A Byzantine leader that keeps proposing, but only one proposal every SLOW_MS (about ten times a
// commit's latency at this load; test/integration/slow-leader-node.ts), is replaced by its followers'
// expectation of its pace (src/bft/leader-pace.ts) with the production request timeout of 2 s in
// place, and the cluster orders at once in the new view. Separate processes, both modes. How fast it
// is replaced and the throughput afterwards are measured by `npm run bench -- slow-leader`.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { sha256, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { clientOptions } from "../../src/node/config.ts";
import { localCluster, NodeProcess } from "../../src/node/local-cluster.ts";
import { OrderingClient } from "../../src/ordering/client.ts";
import { submitWhenReady } from "../util/ordering.ts";
import { waitFor } from "../util/wait.ts";

const SLOW_NODE = fileURLToPath(new URL("./slow-leader-node.ts", import.meta.url));
const SLOW_MS = 150;
const STREAMS_PER_FOLLOWER = 2;

for (const mode of ["hybrid", "pbft"] as const) {
  describe(`a slow Byzantine leader (${mode}, separate processes)`, () => {
    it("is replaced by its followers' pace long before a request times out", async (t) => {
      const dir = mkdtempSync(join(tmpdir(), `orderer-slow-${mode}-`));
      const lc = await localCluster(mode, 1, dir, {
        batch: { maxMessageCount: 100, batchTimeoutMs: 5 },
        node: { logLevel: "warn", limits: { requestTimeoutTicks: 200, viewChangeTimeoutTicks: 200 } },
      });
      const procs = lc.nodes.map(
        (n) =>
          new NodeProcess(
            lc.cluster,
            n,
            "ignore",
            lc.counters[n.id],
            n.id === 0 ? { script: SLOW_NODE, env: { SLOW_PROPOSAL_MS: String(SLOW_MS) } } : null,
          ),
      );
      let running = true;
      try {
        await Promise.all(procs.map((p) => p.start()));
        const followers = lc.urls.slice(1);
        const client = new OrderingClient({
          ...clientOptions(lc.cluster),
          urls: followers,
          hash: sha256,
          verify: verifyEd25519,
        });
        const codes = ["NO_QUORUM", "TIMEOUT", "UNREACHABLE", "VIEW_CHANGE"];
        const t0 = Date.now();
        await submitWhenReady(client, new TextEncoder().encode(`${mode} first`), followers[0], { codes });
        // A closed loop on every follower: each stream submits its next transaction when one commits.
        let committed = 0;
        let n = 0;
        const loops = followers.flatMap((url) =>
          Array.from({ length: STREAMS_PER_FOLLOWER }, async () => {
            while (running) {
              await submitWhenReady(client, new TextEncoder().encode(`${mode} tx ${n++}`), url, {
                timeoutMs: 30_000,
                codes,
              }).then(
                () => committed++,
                () => {},
              );
            }
          }),
        );
        const suspected = (p: NodeProcess) =>
          p.events.some((e) => e.kind === "view-change-started" && /too slowly/.test(String(e.reason)));
        await waitFor(
          "the followers to suspect the slow leader's pace",
          () => procs.slice(1).some(suspected),
          {
            timeoutMs: 20_000,
          },
        );
        const replacedMs = Date.now() - t0;
        t.diagnostic(
          `${mode}: the pace suspected ${replacedMs} ms after the first submission (${committed} committed)`,
        );
        await waitFor(
          "a new view",
          () => procs.slice(1).every((p) => p.events.some((e) => e.kind === "new-view")),
          {
            timeoutMs: 20_000,
          },
        );
        const before = committed;
        await waitFor("20 more commits in the new view", () => committed >= before + 20, {
          timeoutMs: 20_000,
        });
        running = false;
        await Promise.all(loops);
        const reasons = procs
          .slice(1)
          .flatMap((p) =>
            p.events.filter((e) => e.kind === "view-change-started").map((e) => String(e.reason)),
          );
        assert.ok(
          !reasons.includes("request-timeout"),
          `no request timed out: the pace, not the request timer, replaced the leader (${reasons.join("; ")})`,
        );
        // The request timer is 2 s: anything well under it is the pace rule's doing.
        assert.ok(replacedMs < 10_000, `suspected ${replacedMs} ms after the first submission`);
      } finally {
        running = false;
        await Promise.all(procs.map((p) => p.kill()));
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
