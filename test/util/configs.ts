// A hybrid cluster config and one replica's settings for tests that check configuration logic (no
// process runs with them: the keys and paths are placeholders).

import { type ClusterConfig, DEFAULT_BATCH, type NodeConfig } from "../../src/node/config.ts";

export function testCluster(name: string): ClusterConfig {
  return {
    name,
    mode: "hybrid",
    f: 1,
    replicas: [0, 1, 2].map((id) => ({
      id,
      publicKey: "ab".repeat(32),
      p2p: `/ip4/127.0.0.1/tcp/${7000 + id}`,
      api: `http://127.0.0.1:${8000 + id}`,
      counterPublicKey: "cd".repeat(32),
    })),
    batch: DEFAULT_BATCH,
  };
}

export function testNode(id: number, name: string): NodeConfig {
  return {
    id,
    seed: "01".repeat(32),
    counterSocket: `/tmp/counter-${id}.sock`,
    dataDir: `/tmp/${name}`,
    apiHost: "127.0.0.1",
    apiPort: 8000 + id,
  };
}
