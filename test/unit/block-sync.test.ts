import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ed25519PublicKeyOf, sha256, signEd25519, verifyEd25519 } from "../../src/crypto/node-crypto.ts";
import { type Block, headerHash, merkleRoot, ZERO_HASH } from "../../src/ordering/block.ts";
import {
  BLOCKS,
  BLOCKS_REQ,
  BlockSync,
  decodeSyncFrame,
  encodeBlocks,
  encodeBlocksRequest,
  SYNC_BLOCKS_MAX,
  SyncFrameError,
} from "../../src/ordering/block-sync.ts";

const TAG = 0xb1;
const enc = (s: string) => new TextEncoder().encode(s);
const seeds = [1, 2, 3].map((i) => new Uint8Array(32).fill(i));
const keys = seeds.map(ed25519PublicKeyOf);
const verify = { replicaKeys: keys, quorum: 2, hash: sha256, verify: verifyEd25519 };

function chain(len: number, signers = [0, 1, 2]): Block[] {
  const out: Block[] = [];
  let prev = ZERO_HASH;
  for (let n = 0; n < len; n++) {
    const es = n === 0 ? [enc("config")] : [enc(`tx-${n}-a`), enc(`tx-${n}-b`)];
    const header = { number: n, previousHash: prev, dataHash: merkleRoot(es, sha256) };
    const hh = headerHash(header, sha256);
    const certificate = signers.map((r) => ({ replica: r, sig: signEd25519(seeds[r] as Uint8Array, hh) }));
    out.push({ header, entries: es, metadata: { view: 0, seq: n, commitTimeMs: 7, certificate } });
    prev = hh;
  }
  return out;
}

/** Replica 0's fetcher holding blocks 0..held-1 of `c`; records what it sends. */
function fetcher(c: Block[], held: number) {
  let height = held;
  let clock = 0;
  const sent: { to: number; frame: Uint8Array }[] = [];
  const sync = new BlockSync({
    self: 0,
    n: 3,
    frameTag: TAG,
    verify,
    send: (to, frame) => sent.push({ to, frame }),
    head: () => ({ height, headHash: headerHash((c[height - 1] as Block).header, sha256) }),
    now: () => clock,
    timeoutMs: 1000,
  });
  return {
    sync,
    sent,
    advance: (ms: number) => {
      clock += ms;
    },
    append: (blocks: Block[]) => {
      height += blocks.length;
    },
    lastAsk: () => {
      const f = decodeSyncFrame((sent[sent.length - 1] as { frame: Uint8Array }).frame);
      assert.equal(f.kind, BLOCKS_REQ);
      return { to: (sent[sent.length - 1] as { to: number }).to, ...(f as { from: number; count: number }) };
    },
  };
}

describe("block sync wire format", () => {
  it("round-trips requests and blocks with certificates", () => {
    const c = chain(4);
    const req = decodeSyncFrame(encodeBlocksRequest(TAG, 5, 64));
    assert.deepEqual(req, { kind: BLOCKS_REQ, from: 5, count: 64 });
    const got = decodeSyncFrame(encodeBlocks(TAG, 1, c.slice(1)));
    assert.equal(got.kind, BLOCKS);
    assert.deepEqual((got as { blocks: Block[] }).blocks, c.slice(1));
  });

  it("refuses truncated, trailing, oversized-count and unknown frames with SyncFrameError", () => {
    const bytes = encodeBlocks(TAG, 1, chain(3).slice(1));
    for (let cut = 2; cut < bytes.length; cut += 7)
      assert.throws(() => decodeSyncFrame(bytes.subarray(0, cut)), SyncFrameError);
    assert.throws(() => decodeSyncFrame(Uint8Array.from([...bytes, 0])), SyncFrameError);
    const hugeCount = encodeBlocks(TAG, 1, []);
    hugeCount.set([0xff, 0xff, 0xff, 0xff], hugeCount.length - 4);
    assert.throws(
      () => decodeSyncFrame(hugeCount),
      (e: unknown) => e instanceof SyncFrameError && e.code === "BAD_LENGTH",
    );
    const unknown = encodeBlocksRequest(TAG, 1, 1);
    unknown[1] = 9;
    assert.throws(() => decodeSyncFrame(unknown), SyncFrameError);
  });
});

describe("block sync: fetching certified blocks from peers", () => {
  it("asks one peer for the next range and hands over only blocks that verify from its own head", () => {
    const c = chain(20);
    const f = fetcher(c, 3);
    f.sync.want(15);
    assert.deepEqual(f.lastAsk(), { to: 1, kind: BLOCKS_REQ, from: 3, count: 13 });
    f.sync.want(15);
    assert.equal(f.sent.length, 1, "one request out at a time");
    // The peer answers with more than wanted: blocks past the target are left out.
    f.sync.onBlocks(1, 3, c.slice(3, 18));
    const got = f.sync.take() ?? [];
    assert.deepEqual(
      got.map((b) => b.header.number),
      [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    );
    f.append(got);
    assert.equal(f.sync.take(), undefined);
    f.sync.want(15);
    assert.equal(f.sent.length, 1, "nothing to ask once the target is reached");
    f.sync.want(100);
    assert.equal(f.lastAsk().count, SYNC_BLOCKS_MAX);
  });

  it("drops a reply with a forged, uncertified or unchained block and asks the next peer", () => {
    const c = chain(10);
    const oneSigner = chain(10, [1]);
    const cases: [string, Block[]][] = [
      ["changed entry", [c[3] as Block, { ...(c[4] as Block), entries: [enc("evil")] }]],
      ["one signature", [oneSigner[3] as Block]],
      [
        "not chained to our head",
        [
          {
            ...(c[3] as Block),
            header: { ...(c[3] as Block).header, previousHash: new Uint8Array(32).fill(9) },
          },
        ],
      ],
      ["a gap", [c[4] as Block]],
      ["nothing", []],
    ];
    const f = fetcher(c, 3);
    let peer = 1;
    for (const [what, blocks] of cases) {
      f.sync.want(9);
      const ask = f.lastAsk();
      assert.equal(ask.to, peer, what);
      f.sync.onBlocks(ask.to, ask.from, blocks);
      assert.equal(f.sync.take(), undefined, what);
      peer = peer === 1 ? 2 : 1;
    }
    assert.equal(f.sync.stats.rejected, cases.length);
    // A correct reply is still taken afterwards.
    f.sync.want(9);
    const ask = f.lastAsk();
    f.sync.onBlocks(ask.to, ask.from, c.slice(3, 10));
    assert.equal(f.sync.take()?.length, 7);
  });

  it("ignores replies it did not ask for; a silent peer is replaced after the timeout", () => {
    const c = chain(10);
    const f = fetcher(c, 3);
    f.sync.want(9);
    assert.equal(f.lastAsk().to, 1);
    f.sync.onBlocks(2, 3, c.slice(3, 10)); // not the peer asked
    f.sync.onBlocks(1, 4, c.slice(4, 10)); // not the range asked
    assert.equal(f.sync.take(), undefined);
    assert.equal(f.sync.stats.unsolicited, 2);
    f.advance(999);
    f.sync.want(9);
    assert.equal(f.sent.length, 1);
    f.advance(1);
    f.sync.want(9);
    assert.equal(f.sent.length, 2);
    assert.equal(f.lastAsk().to, 2);
    assert.equal(f.sync.stats.timeouts, 1);
    // The late answer of the first peer no longer counts.
    f.sync.onBlocks(1, 3, c.slice(3, 10));
    assert.equal(f.sync.take(), undefined);
  });

  it("discards a verified range when its own chain moved meanwhile", () => {
    const c = chain(10);
    const f = fetcher(c, 3);
    f.sync.want(9);
    f.sync.onBlocks(1, 3, c.slice(3, 10));
    f.append([c[3] as Block]); // the core committed block 3 itself
    assert.equal(f.sync.take(), undefined);
  });
});
