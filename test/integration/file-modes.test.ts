// Secrets stay their user's (docs/operations.md, "File modes"): `orderer init --force` replaces node and
// counter files 0600 and makes its folder 0700 whatever they were; a replica's data directory becomes
// 0700 with 0600 files when it opens; `orderer dev` makes its folder 0700, keeps its logs 0600 and hands
// each replica and counter its key in a private file: no secret in any child's environment.

import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { stripJsonComments } from "../../src/cli/config-files.ts";
import { freePortRange } from "../../src/node/ports.ts";
import { LevelStore } from "../../src/storage/level-store.ts";
import { modeOf } from "../../src/util/private-files.ts";
import { childrenOf, orderer, spawnDev } from "../util/cli-cluster.ts";

const octal = (m: number) => `0${m.toString(8)}`;
const seedOf = (file: string) =>
  (JSON.parse(stripJsonComments(readFileSync(file, "utf8"))) as { seed: string }).seed;

describe("file modes of secrets and data", () => {
  it("init --force replaces node and counter files 0600 and makes its folder 0700, whatever they were", async () => {
    const dir = mkdtempSync(join(tmpdir(), "orderer-modes-init-"));
    try {
      chmodSync(dir, 0o755);
      const first = await orderer(["init", "--nodes", "3", "--out", dir, "--json"]);
      assert.equal(first.code, 0, first.stderr);
      const files = ["node-0.jsonc", "node-1.jsonc", "node-2.jsonc", "counter-0.jsonc", "counter-1.jsonc"];
      const before = seedOf(join(dir, "node-0.jsonc"));
      for (const f of files) chmodSync(join(dir, f), 0o644);
      chmodSync(dir, 0o755);
      const again = await orderer(["init", "--nodes", "3", "--out", dir, "--force", "--json"]);
      assert.equal(again.code, 0, again.stderr);
      assert.notEqual(seedOf(join(dir, "node-0.jsonc")), before, "--force wrote new keys");
      for (const f of files) assert.equal(octal(modeOf(join(dir, f))), "0600", `${f} holds a key: 0600`);
      assert.equal(octal(modeOf(dir)), "0700", "the folder is 0700 again");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a replica's data directory is 0700 with 0600 files once opened, whatever it was", async () => {
    const dir = mkdtempSync(join(tmpdir(), "orderer-modes-data-"));
    try {
      const data = join(dir, "node-0");
      mkdirSync(data, { mode: 0o755 });
      chmodSync(data, 0o755);
      writeFileSync(join(data, "LOG.old"), "an older version's file", { mode: 0o644 });
      chmodSync(join(data, "LOG.old"), 0o644);
      const store = await LevelStore.open(data, { sync: false });
      await store.close();
      assert.equal(octal(modeOf(data)), "0700", "the data directory is 0700");
      assert.equal(octal(modeOf(join(data, "LOG.old"))), "0600", "a file it had is 0600");
      const fresh = join(dir, "new", "node-1");
      const s2 = await LevelStore.open(fresh, { sync: false });
      await s2.close();
      assert.equal(octal(modeOf(fresh)), "0700", "a new data directory is 0700");
      assert.equal(octal(modeOf(join(dir, "new"))), "0700", "and so are the parents it creates");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("orderer dev: folder 0700, keys, logs and LevelDB files 0600, no secret in a replica's or counter's environment", async () => {
    const dir = mkdtempSync(join(tmpdir(), "orderer-modes-dev-"));
    // A cluster made before (ports of its own), its keys and folder left readable by others.
    const base = await freePortRange(6);
    const init = await orderer([
      "init",
      "--nodes",
      "3",
      "--out",
      dir,
      "--p2p-port",
      String(base),
      "--api-port",
      String(base + 3),
    ]);
    assert.equal(init.code, 0, init.stderr);
    for (const f of readdirSync(dir))
      if (/^(node|counter)-\d+\.jsonc$/.test(f)) chmodSync(join(dir, f), 0o644);
    chmodSync(dir, 0o755);
    const { dev, up } = spawnDev(dir);
    try {
      await up();
      const secrets = readdirSync(dir)
        .filter((f) => /^(node|counter)-\d+\.jsonc$/.test(f))
        .map((f) => seedOf(join(dir, f)));
      assert.equal(secrets.length, 6, "3 replica keys and 3 counter keys");
      const children = childrenOf(dev.pid as number);
      assert.equal(children.length, 6, `3 replicas and 3 counters (${children.join(" ")})`);
      for (const pid of children) {
        const env = readFileSync(`/proc/${pid}/environ`, "utf8");
        for (const s of secrets) assert.ok(!env.includes(s), `child ${pid}'s environment holds no key`);
      }
      assert.equal(octal(modeOf(dir)), "0700", "the dev folder is 0700");
      for (const f of readdirSync(dir).filter((f) => /^(node|counter)-\d+\.jsonc$/.test(f)))
        assert.equal(octal(modeOf(join(dir, f))), "0600", `${f} holds a key: 0600`);
      for (let i = 0; i < 3; i++) {
        assert.equal(octal(modeOf(join(dir, `node-${i}.log`))), "0600", `node-${i}.log is 0600`);
        const data = join(dir, "data", `node-${i}`);
        assert.equal(octal(modeOf(data)), "0700", `data/node-${i} is 0700`);
        for (const f of readdirSync(data))
          assert.equal(octal(modeOf(join(data, f))), "0600", `data/node-${i}/${f} is 0600`);
      }
      assert.equal(octal(modeOf(join(dir, "data"))), "0700", "data/ is 0700");
    } finally {
      dev.kill("SIGTERM");
      await new Promise((r) => dev.once("exit", r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
