// Leader failover through the real `orderer` command: a fresh cluster per round (init, start every
// replica, a first commit), then the leader is killed with SIGKILL and a transaction is submitted to a
// survivor; the figure is the time from the kill to that transaction's receipt, whose block is in the
// new view. Default timeouts (requestTimeoutTicks 200 at 10 ms ticks): a follower relays the request
// to everyone after 1 s and the followers suspect the leader after 2 s. Median of several rounds.
//
//   npm run bench:failover [-- --runs 5]

import type { Mode } from "../src/bft/types.ts";
import { CliCluster, leaderFailover, orderer } from "../test/util/cli-cluster.ts";
import { median, numArg } from "./stats.ts";

const RUNS = numArg("runs", 5);

for (const mode of ["hybrid", "pbft"] as Mode[]) {
  const times: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const c = await CliCluster.init(mode);
    try {
      await Promise.all(c.cluster.replicas.map((_, i) => c.start(i)));
      await c.waitHealthy();
      const first = await orderer(["submit", "warm-up", "--cluster", c.clusterFile]);
      if (first.code !== 0) throw new Error(first.stderr);
      const f = await leaderFailover(c, `round ${r}`);
      if (f.newView <= f.oldView) throw new Error("the commit after the kill is not in a later view");
      times.push(f.ms);
      console.log(
        `${mode} round ${r + 1}: leader ${f.leader} killed, commit in view ${f.newView} after ${f.ms.toFixed(0)} ms`,
      );
    } finally {
      await c.stop();
    }
  }
  const s = [...times].sort((a, b) => a - b);
  console.log(
    `${mode}: leader kill → first commit in the new view: median ${median(times).toFixed(0)} ms ` +
      `(min ${s[0]?.toFixed(0)}, max ${s[s.length - 1]?.toFixed(0)}, ${RUNS} rounds)`,
  );
}
