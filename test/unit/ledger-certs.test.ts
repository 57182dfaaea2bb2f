// Certificates are written with the next block's batch, or on their own shortly after when no block
// follows; either way a restart finds them and needs no peer to certify the block again.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Level } from "level";
import type { ClientAuth, CommittedBatch } from "../../src/bft/types.ts";
import { generateEd25519KeyPair, sha256, signEd25519, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { writeBatch } from "../../src/node/level-store.ts";
import { CERT_WRITE_DELAY_MS, Ledger } from "../../src/ordering/ledger.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const keys = [generateEd25519KeyPair(), generateEd25519KeyPair()];
const genesisConfig = new TextEncoder().encode('{"test":"ledger-certs"}');

function commit(seq: number): CommittedBatch {
  const op = new TextEncoder().encode(`tx ${seq}`);
  return {
    seq,
    view: 0,
    batch: { requests: [{ clientId: "c", reqNo: seq, op, auth: {} as ClientAuth }] },
    batchDigest: new Uint8Array(32),
    executed: [true],
    stateDigest: new Uint8Array(32),
  };
}

/** Two replicas' ledgers (quorum 2) wired to each other; replica 0's database can be reopened. */
async function pair() {
  const dir = mkdtempSync(join(tmpdir(), "ledger-certs-"));
  dirs.push(dir);
  const dbs = [0, 1].map((i) => new Level<string, Uint8Array>(join(dir, `r${i}`), { valueEncoding: "view" }));
  const ledgers: Ledger[] = [];
  const open = (i: number, db: Level<string, Uint8Array>, send: boolean) =>
    Ledger.open({
      db,
      genesisConfig,
      self: i,
      n: 2,
      quorum: 2,
      replicaKeys: keys.map((k) => k.publicKey),
      hash: sha256,
      verify: verifyEd25519,
      sign: (hh) => signEd25519(keys[i]!.privateKey, hh),
      send: (_to, frame) => {
        if (send) queueMicrotask(() => ledgers[1 - i]?.onPeerFrame(i, frame));
      },
      sync: false,
    });
  for (const i of [0, 1]) ledgers[i] = await open(i, dbs[i]!, true);
  // The genesis block is certified like any other: ask again now that both are listening.
  for (const l of ledgers) l.retry(0);
  await sleep(5);
  /** Orders block `seq` at both replicas; returns replica 0's ops for it. */
  const order = async (seq: number) => {
    let ops0: { key: string }[] = [];
    for (const i of [0, 1]) {
      const { ops, built } = await ledgers[i]!.prepare([commit(seq)]);
      if (i === 0) ops0 = ops;
      await writeBatch(dbs[i]!, ops, false);
      ledgers[i]!.written(built);
    }
    await sleep(5); // the signature frames cross
    return ops0;
  };
  return { dbs, ledgers, order, reopen0: () => open(0, dbs[0]!, false) };
}

describe("ledger certificate writes", () => {
  it("a certificate rides in the next block's batch, and one with no next block is written on its own", async () => {
    const { dbs, ledgers, order, reopen0 } = await pair();
    await order(1);
    assert.equal(ledgers[0]!.certifiedHeight, 2);
    const ops2 = await order(2);
    assert.ok(
      ops2.some((op) => op.key.endsWith("1".padStart(16, "0")) && !op.key.startsWith("b")),
      `block 2's batch carries block 1's certificate: ${ops2.map((o) => o.key).join(" ")}`,
    );
    assert.equal(ledgers[0]!.certifiedHeight, 3);
    // Block 2's certificate has no block to ride with: it is written after CERT_WRITE_DELAY_MS.
    await sleep(CERT_WRITE_DELAY_MS * 3);
    await dbs[0]!.close();
    await dbs[0]!.open();
    // Reopened with no peer: only a written certificate can make block 2 count as certified.
    const again = await reopen0();
    assert.equal(again.certifiedHeight, 3);
    const b2 = await again.getBlock(2);
    assert.equal(b2?.metadata.certificate.length, 2);
    await dbs[1]!.close();
    await dbs[0]!.close();
  });

  it("flush() writes queued certificates at once (clean shutdown)", async () => {
    const { dbs, ledgers, order, reopen0 } = await pair();
    await order(1);
    assert.equal(ledgers[0]!.certifiedHeight, 2);
    await ledgers[0]!.flush();
    await dbs[0]!.close();
    await dbs[0]!.open();
    const again = await reopen0();
    assert.equal(again.certifiedHeight, 2);
    await dbs[1]!.close();
    await dbs[0]!.close();
  });
});
