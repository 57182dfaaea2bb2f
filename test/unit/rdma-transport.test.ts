import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { describe, it } from "node:test";
import { generateEd25519KeyPair } from "../../src/crypto/node-crypto.ts";
import { RdmaTransport } from "../../src/transport/rdma.ts";
import { loadRdmaNative } from "../../src/transport/rdma-native.ts";
import type { TransportLimits } from "../../src/transport/transport.ts";
import { transportCompliance } from "../compliance/transport.ts";
import { rdmaTestCluster } from "../util/rdma.ts";

const native = loadRdmaNative();

const FAST = { redialMinMs: 10, redialMaxMs: 100 };

describe("native-rdma build", () => {
  it("builds and loads here (the CI machine has a compiler and Node's headers)", () => {
    assert.ok(native.available, native.available ? "" : native.reason);
  });
});

if (native.available) {
  transportCompliance("rdma (shm provider)", async (n: number, limits: TransportLimits) => {
    const c = rdmaTestCluster(n);
    return {
      make: (id) =>
        new RdmaTransport({ self: id, seed: c.seeds[id] as Uint8Array, peers: c.peers, limits, ...FAST }),
      outsider: () =>
        new RdmaTransport({
          self: 0,
          seed: generateEd25519KeyPair().privateKey,
          peers: c.peers,
          limits,
          ...FAST,
        }),
      close: async () => rmSync(c.dir, { recursive: true, force: true }),
    };
  });
}
