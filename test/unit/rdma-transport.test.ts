import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
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

  it("without the addon, the transport refuses to start with the reason; nothing else needs it", () => {
    const script = `
      import { RdmaTransport } from "./src/transport/rdma.ts";
      import { loadRdmaNative } from "./src/transport/rdma-native.ts";
      import { generateEd25519KeyPair } from "./src/crypto/node-crypto.ts";
      const k = generateEd25519KeyPair();
      const t = new RdmaTransport({ self: 0, seed: k.privateKey, peers: [{ id: 0, publicKey: k.publicKey, path: "/tmp/x.sock" }] });
      try { await t.start(); console.log("started"); }
      catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message, native: loadRdmaNative() })); }`;
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: fileURLToPath(new URL("../..", import.meta.url)),
      env: { ...process.env, ORDERER_RDMA_ADDON: "/nonexistent/orderer_rdma.node" },
      encoding: "utf8",
    });
    const out = JSON.parse(r.stdout.trim()) as {
      name: string;
      code: string;
      message: string;
      native: { available: boolean };
    };
    assert.equal(out.name, "RdmaUnavailableError");
    assert.equal(out.code, "RDMA_UNAVAILABLE");
    assert.match(out.message, /native-rdma is not built/);
    assert.equal(out.native.available, false);
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
