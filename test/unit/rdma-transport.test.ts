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
import { waitFor } from "../util/wait.ts";

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

describe("rdma framing", { skip: !native.available, timeout: 60_000 }, () => {
  async function pair(opts: { inboxSlots?: number; slotBytes?: number }) {
    const c = rdmaTestCluster(2);
    const ts = [0, 1].map(
      (id) =>
        new RdmaTransport({ self: id, seed: c.seeds[id] as Uint8Array, peers: c.peers, ...FAST, ...opts }),
    ) as [RdmaTransport, RdmaTransport];
    const got: Uint8Array[][] = [[], []];
    ts[0].onFrame((_from, f) => got[0]?.push(f));
    ts[1].onFrame((_from, f) => got[1]?.push(f));
    await Promise.all(ts.map((t) => t.start()));
    return {
      ts,
      got,
      async close() {
        await Promise.all(ts.map((t) => t.stop()));
        rmSync(c.dir, { recursive: true, force: true });
      },
    };
  }

  it("frames of every size cross tiny slots whole and in order, both ways, split and packed", async () => {
    const p = await pair({ inboxSlots: 4, slotBytes: 48 });
    try {
      const sizes = [0, 1, 2, 6, 7, 8, 15, 16, 17, 100, 1000, 5000];
      const sent: Uint8Array[][] = [[], []];
      for (let i = 0; i < 240; i++) {
        for (const from of [0, 1] as const) {
          const f = new Uint8Array(sizes[(i + from) % sizes.length] as number).map(
            (_, k) => (k * 7 + i) & 255,
          );
          sent[from]?.push(f);
          assert.equal(p.ts[from].send(from === 0 ? 1 : 0, f), "queued");
        }
        if (i % 16 === 0) await new Promise((r) => setImmediate(r));
      }
      await waitFor("every frame", () => p.got[0]?.length === 240 && p.got[1]?.length === 240, {
        timeoutMs: 20_000,
        intervalMs: 5,
      });
      assert.deepEqual(p.got[1], sent[0]);
      assert.deepEqual(p.got[0], sent[1]);
      await waitFor("all confirmed", () => (p.ts[0].stats().get(1)?.queuedFrames ?? -1) === 0, {
        timeoutMs: 20_000,
        intervalMs: 5,
      });
      assert.equal(p.ts[0].stats().get(1)?.sentFrames, 240);
    } finally {
      await p.close();
    }
  });

  it("small frames sent together share slots: far fewer writes than frames", async () => {
    const p = await pair({});
    try {
      p.ts[0].send(1, new Uint8Array([0]));
      await waitFor("the link is up", () => p.got[1]?.length === 1, { timeoutMs: 20_000, intervalMs: 5 });
      const writes0 = p.ts[1].securityStats()["served.write"] ?? 0;
      for (let i = 1; i <= 2000; i++) p.ts[0].send(1, new Uint8Array(64).fill(i & 255));
      await waitFor("2000 frames", () => p.got[1]?.length === 2001, { timeoutMs: 20_000, intervalMs: 5 });
      const writes = (p.ts[1].securityStats()["served.write"] ?? 0) - writes0;
      assert.ok(writes > 0 && writes <= 20, `2000 frames of 64 B took ${writes} slot writes`);
      assert.ok(
        p.got[1]?.slice(1).every((f, i) => f.length === 64 && f[0] === ((i + 1) & 255)),
        "the frames arrived whole and in order",
      );
    } finally {
      await p.close();
    }
  });
});
