// The ledger's duplicate check (a real LevelDB in a temporary folder): a transaction already in the
// chain is skipped when it is committed again, whether the block's ids are read in place (a few) or in
// one getMany through the thread pool (more than SYNC_LOOKUP_MAX).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Level } from "level";
import type { CommittedBatch } from "../../src/bft/types.ts";
import { generateEd25519KeyPair, sha256, signEd25519, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { Ledger, SYNC_LOOKUP_MAX } from "../../src/ordering/ledger.ts";
import { writeBatch } from "../../src/storage/level-store.ts";

const key = generateEd25519KeyPair();

/** Block `seq` with one request per transaction `tx <name>`. */
function batchOf(seq: number, names: readonly string[]): CommittedBatch {
  const requests = names.map((name, i) => ({
    clientId: "c",
    reqNo: seq * 10_000 + i,
    op: new TextEncoder().encode(`tx ${name}`),
    auth: { scheme: "ed25519" as const, sig: new Uint8Array(64) },
  }));
  return {
    seq,
    view: 0,
    batch: { requests },
    batchDigest: new Uint8Array(32),
    executed: requests.map(() => true),
    stateDigest: new Uint8Array(32),
  };
}

const names = (prefix: string, count: number): string[] =>
  Array.from({ length: count }, (_, i) => `${prefix}${i}`);

describe("Ledger duplicate check", () => {
  it("skips transactions already in the chain, for a few ids (in place) and for many (getMany)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ledger-dups-"));
    const db = new Level<string, Uint8Array>(dir, { keyEncoding: "utf8", valueEncoding: "view" });
    let getManyCalls = 0;
    const getMany = db.getMany.bind(db);
    db.getMany = ((keys: string[]) => {
      getManyCalls++;
      return getMany(keys);
    }) as typeof db.getMany;
    try {
      const ledger = await Ledger.open({
        db,
        genesisConfig: new TextEncoder().encode("{}"),
        self: 0,
        n: 1,
        quorum: 1,
        replicaKeys: [key.publicKey],
        hash: sha256,
        verify: verifyEd25519,
        sign: (hh) => signEd25519(key.privateKey, hh),
        send: () => {},
      });
      const commit = async (seq: number, txs: readonly string[]) => {
        const { ops, built } = await ledger.prepare([batchOf(seq, txs)]);
        await writeBatch(db, ops, true);
        ledger.written(built);
        const b = built[0];
        assert.ok(b, `block ${seq} built`);
        return b.txIds.length;
      };
      const many = SYNC_LOOKUP_MAX + 36;
      assert.equal(await commit(1, names("a", many)), many, "block 1: every transaction is new");
      assert.equal(getManyCalls, 1, `${many} ids are looked up in one getMany`);
      assert.equal(await commit(2, ["a3", "b0", "a7"]), 1, "block 2: a3 and a7 are in block 1");
      assert.equal(getManyCalls, 1, "three ids are read in place, without the thread pool");
      assert.equal(await commit(3, ["b0", "b1"]), 1, "block 3: b0 is in block 2 (read in place)");
      const mixed = [...names("a", 50), ...names("c", many - 50)];
      assert.equal(await commit(4, mixed), many - 50, "block 4: the 50 from block 1 are skipped");
      assert.equal(getManyCalls, 2, "a large block goes to getMany again");
      assert.equal(ledger.height, 5, "blocks 0–4");
    } finally {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
