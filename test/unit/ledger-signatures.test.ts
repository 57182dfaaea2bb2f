// The ledger's signature round on its own (a real LevelDB in a temporary folder): signatures that
// arrive before the block is written are checked only until the quorum is in; a certificate rides in
// the next block's batch, or is written alone when no block comes.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Level } from "level";
import type { CommittedBatch } from "../../src/bft/types.ts";
import { generateEd25519KeyPair, sha256, signEd25519, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { headerHash, type VerifyFn } from "../../src/ordering/block.ts";
import { APP_FRAME_TAG, DEFER_MS, Ledger } from "../../src/ordering/ledger.ts";
import { writeBatch } from "../../src/storage/level-store.ts";

const keys = [0, 1, 2].map(() => generateEd25519KeyPair());

/** A SIG frame (block-format.md §5): tag, kind 1, number u64, header hash, signature. */
function sigFrame(n: number, hh: Uint8Array, sig: Uint8Array): Uint8Array {
  const f = new Uint8Array(2 + 8 + 32 + 64);
  f[0] = APP_FRAME_TAG;
  f[1] = 1;
  new DataView(f.buffer).setUint32(6, n);
  f.set(hh, 10);
  f.set(sig, 42);
  return f;
}

function batchAt(seq: number): CommittedBatch {
  const op = new TextEncoder().encode(`tx ${seq}`);
  return {
    seq,
    view: 0,
    batch: {
      requests: [{ clientId: "c", reqNo: seq, op, auth: { scheme: "ed25519", sig: new Uint8Array(64) } }],
    },
    batchDigest: new Uint8Array(32),
    executed: [true],
    stateDigest: new Uint8Array(32),
  };
}

/** A ledger of replica 0 (n = 3, quorum 2) over `db`; `verify` defaults to ed25519. */
function openLedger(db: Level<string, Uint8Array>, verify: VerifyFn = verifyEd25519): Promise<Ledger> {
  return Ledger.open({
    db,
    genesisConfig: new TextEncoder().encode("{}"),
    self: 0,
    n: 3,
    quorum: 2,
    replicaKeys: keys.map((k) => k.publicKey),
    hash: sha256,
    verify,
    sign: (hh) => signEd25519((keys[0] as (typeof keys)[0]).privateKey, hh),
    send: () => {},
  });
}

describe("Ledger signatures", () => {
  it("checks early signatures only until the quorum is in (n=3, quorum 2: one peer signature)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ledger-sigs-"));
    const db = new Level<string, Uint8Array>(dir, { keyEncoding: "utf8", valueEncoding: "view" });
    let verifies = 0;
    try {
      const ledger = await openLedger(db, (pk, msg, sig) => {
        verifies++;
        return verifyEd25519(pk, msg, sig);
      });
      const { ops, built } = await ledger.prepare([batchAt(1)]);
      const b = built[0];
      assert.ok(b, "one block built");
      // Both peers' signatures arrive while the block is being written.
      for (const p of [1, 2]) {
        const sig = signEd25519((keys[p] as (typeof keys)[0]).privateKey, b.headerHash);
        ledger.onPeerFrame(p, sigFrame(1, b.headerHash, sig));
      }
      assert.equal(verifies, 0, "nothing is checked before the block is written");
      await writeBatch(db, ops, true);
      ledger.written(built);
      assert.equal(verifies, 1, "the second peer signature was not checked: the quorum was in");
      const cert = (await ledger.getBlock(1))?.metadata.certificate ?? [];
      assert.deepEqual(
        cert.map((s) => s.replica),
        [0, 1],
        "block 1 is certified; its certificate holds the quorum: this replica's and the first peer's",
      );
    } finally {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("writes a certificate with the next block's batch, or alone after DEFER_MS without one", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ledger-certs-"));
    const db = new Level<string, Uint8Array>(dir, { keyEncoding: "utf8", valueEncoding: "view" });
    try {
      const ledger = await openLedger(db);
      const certify = async (seq: number) => {
        const { ops, built } = await ledger.prepare([batchAt(seq)]);
        const b = built[0];
        assert.ok(b, `block ${seq} built`);
        await writeBatch(db, ops, true);
        ledger.written(built);
        for (const p of [1, 2])
          ledger.onPeerFrame(
            p,
            sigFrame(seq, b.headerHash, signEd25519((keys[p] as (typeof keys)[0]).privateKey, b.headerHash)),
          );
        return ops.map((o) => o.key);
      };
      // Genesis collects signatures too: certify it so the certified height moves.
      const g = await ledger.getBlock(0);
      assert.ok(g, "genesis");
      const gh = headerHash(g.header, sha256);
      ledger.onPeerFrame(1, sigFrame(0, gh, signEd25519((keys[1] as (typeof keys)[0]).privateKey, gh)));
      await certify(1);
      const keysOf2 = await certify(2);
      assert.ok(keysOf2.includes("c/0000000000000001"), "block 1's certificate rides in block 2's batch");
      assert.ok(keysOf2.includes("m/certified"), "so does the certified height");
      assert.equal(await db.get("c/0000000000000002"), undefined, "block 2's certificate waits for a batch");
      await sleep(DEFER_MS * 5);
      assert.ok((await db.get("c/0000000000000002")) !== undefined, "no block came: written alone");
      assert.ok((await ledger.getBlock(2))?.metadata.certificate.length === 2, "readable all along");
    } finally {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
