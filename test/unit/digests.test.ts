import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { toHex } from "../../src/bft/bytes.ts";
import { Digests } from "../../src/bft/digests.ts";
import type { CounterCert } from "../../src/bft/trusted.ts";
import type {
  Batch,
  CheckpointProof,
  ClientRequest,
  HEntry,
  HNewViewSummary,
  HViewChange,
  PPrePrepareRef,
  PViewChange,
} from "../../src/bft/types.ts";
import { nodeCrypto } from "../../src/crypto/node-crypto.ts";

const TEXT = new TextEncoder();
const digests = new Digests(nodeCrypto);

function bytes(...xs: number[]): Uint8Array {
  return new Uint8Array(xs);
}

function fill(n: number, byte: number): Uint8Array {
  return new Uint8Array(n).fill(byte);
}

function req(over: Partial<ClientRequest> = {}): ClientRequest {
  return {
    clientId: "alice",
    reqNo: 1,
    op: TEXT.encode("put /a 1"),
    auth: { scheme: "ed25519", sig: fill(64, 7) },
    ...over,
  };
}

/** Asserts that all digests are 32 bytes and pairwise distinct. */
function allDistinct(named: Record<string, Uint8Array>): void {
  const seen = new Map<string, string>();
  for (const [name, d] of Object.entries(named)) {
    assert.equal(d.length, 32, name);
    const h = toHex(d);
    assert.ok(!seen.has(h), `${name} collides with ${seen.get(h)}`);
    seen.set(h, name);
  }
}

describe("request digests", () => {
  it("are deterministic across instances and equal objects", () => {
    const other = new Digests(nodeCrypto);
    assert.deepEqual(digests.request(req()), other.request(req()));
    const r = req();
    assert.equal(digests.request(r), digests.request(r), "cached by identity");
  });

  it("differ when any field differs", () => {
    allDistinct({
      base: digests.request(req()),
      clientId: digests.request(req({ clientId: "alicf" })),
      reqNo: digests.request(req({ reqNo: 2 })),
      bigReqNo: digests.request(req({ reqNo: 2 ** 32 + 1 })),
      op: digests.request(req({ op: TEXT.encode("put /a 2") })),
      emptyOp: digests.request(req({ op: new Uint8Array(0) })),
      longerOp: digests.request(req({ op: TEXT.encode("put /a 1\0") })),
    });
  });

  it("length-prefix the client id and op, so moving bytes between them changes the digest", () => {
    const a = digests.request(req({ clientId: "ab", op: TEXT.encode("c") }));
    const b = digests.request(req({ clientId: "a", op: TEXT.encode("bc") }));
    assert.notDeepEqual(a, b);
  });

  it("do not cover the authenticator (it is computed over the digest)", () => {
    assert.deepEqual(
      digests.request(req()),
      digests.request(req({ auth: { scheme: "mac", macs: [fill(32, 1), fill(32, 2)] } })),
    );
  });
});

describe("batch digests", () => {
  const r1 = req();
  const r2 = req({ reqNo: 2 });

  it("are deterministic", () => {
    assert.deepEqual(
      digests.batch({ requests: [r1, r2] }),
      new Digests(nodeCrypto).batch({ requests: [req(), r2] }),
    );
  });

  it("differ with the requests, their order and their number", () => {
    allDistinct({
      empty: digests.batch({ requests: [] }),
      one: digests.batch({ requests: [r1] }),
      two: digests.batch({ requests: [r1, r2] }),
      swapped: digests.batch({ requests: [r2, r1] }),
      repeated: digests.batch({ requests: [r1, r1] }),
      other: digests.batch({ requests: [req({ op: bytes(1) })] }),
    });
  });

  it("bind the authenticator bytes", () => {
    const sigA = req({ auth: { scheme: "ed25519", sig: fill(64, 1) } });
    const sigB = req({ auth: { scheme: "ed25519", sig: fill(64, 2) } });
    const macsA = req({ auth: { scheme: "mac", macs: [fill(32, 1), fill(32, 2)] } });
    const macsB = req({ auth: { scheme: "mac", macs: [fill(32, 1), fill(32, 3)] } });
    const macsC = req({ auth: { scheme: "mac", macs: [fill(32, 1)] } });
    const macsD = req({ auth: { scheme: "mac", macs: [fill(32, 2), fill(32, 1)] } });
    // Same bytes under the other scheme: a 64-byte signature vs two 32-byte macs.
    const sigAsMacs = req({
      auth: { scheme: "ed25519", sig: new Uint8Array([...fill(32, 1), ...fill(32, 2)]) },
    });
    allDistinct({
      sigA: digests.batch({ requests: [sigA] }),
      sigB: digests.batch({ requests: [sigB] }),
      macsA: digests.batch({ requests: [macsA] }),
      macsB: digests.batch({ requests: [macsB] }),
      macsC: digests.batch({ requests: [macsC] }),
      macsD: digests.batch({ requests: [macsD] }),
      sigAsMacs: digests.batch({ requests: [sigAsMacs] }),
    });
  });

  it("are not a request digest", () => {
    assert.notDeepEqual(digests.batch({ requests: [r1] }), digests.request(r1));
  });
});

describe("state and checkpoint digests", () => {
  const d0 = fill(32, 0);
  const b = fill(32, 9);

  it("chain the state over seq and batch digest", () => {
    allDistinct({
      base: digests.nextState(d0, 1, b),
      prev: digests.nextState(fill(32, 1), 1, b),
      seq: digests.nextState(d0, 2, b),
      batch: digests.nextState(d0, 1, fill(32, 8)),
    });
    assert.deepEqual(digests.nextState(d0, 1, b), digests.nextState(d0.slice(), 1, b.slice()));
  });

  it("bind the checkpoint's seq, state and client table", () => {
    allDistinct({
      base: digests.checkpoint(16, b, d0),
      seq: digests.checkpoint(32, b, d0),
      state: digests.checkpoint(16, d0, d0),
      clients: digests.checkpoint(16, b, b),
    });
  });

  it("bind every execution-relevant field of the client table, in order", () => {
    const t = [
      ["a", 3, [5, 7], 10, null],
      ["b", 0, [], 11, null],
    ] as const;
    allDistinct({
      base: digests.clients(t),
      empty: digests.clients([]),
      order: digests.clients([t[1], t[0]]),
      low: digests.clients([["a", 4, [5, 7], 10, null], t[1]]),
      seen: digests.clients([["a", 3, [5], 10, null], t[1]]),
      lastSeq: digests.clients([["a", 3, [5, 7], 9, null], t[1]]),
      id: digests.clients([["c", 3, [5, 7], 10, null], t[1]]),
    });
    // A kept reply is a cache, not state.
    assert.deepEqual(
      digests.clients([["a", 3, [5, 7], 10, { reqNo: 7, data: fill(4, 1) }], t[1]]),
      digests.clients(t),
    );
  });
});

describe("ordering digests", () => {
  const bd = fill(32, 0x5a);

  it("hPrepare differs with view, seq and batch digest", () => {
    allDistinct({
      base: digests.hPrepare(1, 2, bd),
      view: digests.hPrepare(2, 2, bd),
      seq: digests.hPrepare(1, 3, bd),
      swapped: digests.hPrepare(2, 1, bd),
      batch: digests.hPrepare(1, 2, fill(32, 0x5b)),
      bigView: digests.hPrepare(2 ** 32 + 1, 2, bd),
    });
    assert.deepEqual(digests.hPrepare(1, 2, bd), digests.hPrepare(1, 2, bd.slice()));
  });

  it("pPrePrepare, pPrepare and pCommit differ with view and seq", () => {
    for (const fn of [digests.pPrePrepare, digests.pPrepare, digests.pCommit]) {
      const f = fn.bind(digests);
      allDistinct({ base: f(1, 2, bd), view: f(2, 2, bd), seq: f(1, 3, bd), batch: f(1, 2, fill(32, 1)) });
    }
  });

  it("are domain-separated: the same (view, seq, batch) gives different digests per message kind", () => {
    for (const [view, seq] of [
      [0, 0],
      [1, 2],
      [7, 1000],
    ] as const) {
      allDistinct({
        hPrepare: digests.hPrepare(view, seq, bd),
        pPrePrepare: digests.pPrePrepare(view, seq, bd),
        pPrepare: digests.pPrepare(view, seq, bd),
        pCommit: digests.pCommit(view, seq, bd),
      });
    }
  });

  it("are domain-separated from checkpoints and state", () => {
    allDistinct({
      checkpoint: digests.checkpoint(1, bd, bd),
      state: digests.nextState(bd, 1, bd),
      hPrepare: digests.hPrepare(0, 1, bd),
      pCommit: digests.pCommit(0, 1, bd),
    });
  });
});

describe("view change digests", () => {
  const batch: Batch = { requests: [req()] };
  const cert = (over: Partial<CounterCert> = {}): CounterCert => ({
    subsystem: 0,
    counter: 0,
    value: { view: 1, slot: 3 },
    sig: fill(64, 4),
    ...over,
  });
  const checkpoint = (over: Partial<CheckpointProof> = {}): CheckpointProof => ({
    seq: 16,
    stateDigest: fill(32, 2),
    clientsDigest: fill(32, 3),
    sigs: [
      { replica: 0, sig: fill(64, 5) },
      { replica: 1, sig: fill(64, 6) },
    ],
    ...over,
  });
  const nv = (over: Partial<HNewViewSummary> = {}): HNewViewSummary => ({
    view: 1,
    checkpointSeq: 16,
    checkpointDigest: fill(32, 2),
    maxSeq: 17,
    batchDigests: [digests.batch(batch)],
    vcSetDigest: fill(32, 8),
    certs: [cert({ value: { view: 1, slot: 1 } }), cert({ subsystem: 2, value: { view: 1, slot: 1 } })],
    ...over,
  });
  const entry = (): HEntry => ({ seq: 18, view: 1, batchDigest: digests.batch(batch), cert: cert() });
  const hvc = (over: Partial<HViewChange> = {}): HViewChange => ({
    type: "h-view-change",
    replica: 1,
    newView: 2,
    checkpoint: checkpoint(),
    nv: nv(),
    entries: [entry()],
    chain: [
      { cert: cert({ value: { view: 2, slot: 0 }, prev: { view: 1, slot: 3 } }), digest: fill(32, 0x77) },
    ],
    proofs: [],
    ...over,
  });

  it("hViewChange binds every field but the chain and the proofs", () => {
    const base = digests.hViewChange(hvc());
    assert.deepEqual(base, new Digests(nodeCrypto).hViewChange(hvc()));
    assert.deepEqual(base, digests.hViewChange(hvc({ chain: [] })), "the chain is not covered");
    const proof = { type: "h-new-view" as const, view: 1, vcs: [hvc()], cert: cert() };
    assert.deepEqual(base, digests.hViewChange(hvc({ proofs: [proof] })), "the proofs are not covered");
    allDistinct({
      base,
      replica: digests.hViewChange(hvc({ replica: 2 })),
      newView: digests.hViewChange(hvc({ newView: 3 })),
      checkpointSeq: digests.hViewChange(hvc({ checkpoint: checkpoint({ seq: 32 }) })),
      checkpointSig: digests.hViewChange(hvc({ checkpoint: checkpoint({ sigs: [] }) })),
      noNv: digests.hViewChange(hvc({ nv: null })),
      nvMaxSeq: digests.hViewChange(hvc({ nv: nv({ maxSeq: 16, batchDigests: [] }) })),
      nvCert: digests.hViewChange(
        hvc({ nv: nv({ certs: [cert({ sig: fill(64, 9) }), cert({ subsystem: 2 })] }) }),
      ),
      nvOneCert: digests.hViewChange(hvc({ nv: nv({ certs: [cert()] }) })),
      noEntries: digests.hViewChange(hvc({ entries: [] })),
      entryCertPrev: digests.hViewChange(
        hvc({ entries: [{ ...entry(), cert: cert({ prev: { view: 1, slot: 2 } }) }] }),
      ),
      entryCertCounter: digests.hViewChange(hvc({ entries: [{ ...entry(), cert: cert({ counter: 1 }) }] })),
      entryDigest: digests.hViewChange(hvc({ entries: [{ ...entry(), batchDigest: fill(32, 0x55) }] })),
    });
  });

  it("hVcSet binds the view changes including their chains, in order", () => {
    const a = hvc();
    const b = hvc({ replica: 2 });
    allDistinct({
      ab: digests.hVcSet([a, b]),
      ba: digests.hVcSet([b, a]),
      a: digests.hVcSet([a]),
      aNoChain: digests.hVcSet([hvc({ chain: [] })]),
      aOtherCert: digests.hVcSet([
        hvc({
          chain: [
            {
              cert: cert({ value: { view: 2, slot: 0 }, prev: { view: 1, slot: 2 } }),
              digest: fill(32, 0x77),
            },
          ],
        }),
      ]),
      aOtherDigest: digests.hVcSet([
        hvc({
          chain: [
            {
              cert: cert({ value: { view: 2, slot: 0 }, prev: { view: 1, slot: 3 } }),
              digest: fill(32, 0x78),
            },
          ],
        }),
      ]),
      empty: digests.hVcSet([]),
    });
  });

  it("hNewView binds every field", () => {
    const d = fill(32, 1);
    allDistinct({
      base: digests.hNewView(1, 16, d, 17, [d], d),
      view: digests.hNewView(2, 16, d, 17, [d], d),
      cpSeq: digests.hNewView(1, 0, d, 17, [d], d),
      cpDigest: digests.hNewView(1, 16, fill(32, 2), 17, [d], d),
      maxSeq: digests.hNewView(1, 16, d, 18, [d], d),
      batches: digests.hNewView(1, 16, d, 17, [], d),
      vcSet: digests.hNewView(1, 16, d, 17, [d], fill(32, 3)),
    });
    const s = nv();
    assert.deepEqual(
      digests.hNewViewSummary(s),
      digests.hNewView(
        s.view,
        s.checkpointSeq,
        s.checkpointDigest,
        s.maxSeq,
        [digests.batch(batch)],
        s.vcSetDigest,
      ),
    );
  });

  const pp = (over: Partial<PPrePrepareRef> = {}): PPrePrepareRef => ({
    view: 1,
    seq: 17,
    batchDigest: digests.batch(batch),
    sig: fill(64, 1),
    ...over,
  });
  const pvc = (over: Partial<PViewChange> = {}): PViewChange => ({
    type: "p-view-change",
    replica: 3,
    newView: 2,
    checkpoint: checkpoint(),
    prepared: [
      {
        prePrepare: pp(),
        prepares: [
          { type: "p-prepare", view: 1, seq: 17, batchDigest: fill(32, 3), replica: 1, sig: fill(64, 2) },
          { type: "p-prepare", view: 1, seq: 17, batchDigest: fill(32, 3), replica: 2, sig: fill(64, 3) },
        ],
      },
    ],
    sig: fill(64, 9),
    ...over,
  });

  it("pViewChange binds every field but its own signature", () => {
    const base = digests.pViewChange(pvc());
    assert.deepEqual(base, digests.pViewChange(pvc({ sig: fill(64, 0) })));
    const prepared = pvc().prepared[0];
    assert.ok(prepared, "prepared");
    allDistinct({
      base,
      replica: digests.pViewChange(pvc({ replica: 0 })),
      newView: digests.pViewChange(pvc({ newView: 3 })),
      checkpoint: digests.pViewChange(pvc({ checkpoint: checkpoint({ stateDigest: fill(32, 0) }) })),
      noPrepared: digests.pViewChange(pvc({ prepared: [] })),
      ppSig: digests.pViewChange(pvc({ prepared: [{ ...prepared, prePrepare: pp({ sig: fill(64, 4) }) }] })),
      ppView: digests.pViewChange(pvc({ prepared: [{ ...prepared, prePrepare: pp({ view: 0 }) }] })),
      ppDigest: digests.pViewChange(
        pvc({ prepared: [{ ...prepared, prePrepare: pp({ batchDigest: fill(32, 6) }) }] }),
      ),
      prepares: digests.pViewChange(
        pvc({ prepared: [{ ...prepared, prepares: prepared.prepares.slice(0, 1) }] }),
      ),
    });
  });

  it("pNewView binds the view changes with their signatures and the pre-prepares", () => {
    allDistinct({
      base: digests.pNewView(2, [pvc()], [pp({ view: 2 })]),
      view: digests.pNewView(3, [pvc()], [pp({ view: 2 })]),
      vcSig: digests.pNewView(2, [pvc({ sig: fill(64, 0) })], [pp({ view: 2 })]),
      noVcs: digests.pNewView(2, [], [pp({ view: 2 })]),
      ppSeq: digests.pNewView(2, [pvc()], [pp({ view: 2, seq: 18 })]),
      ppSig: digests.pNewView(2, [pvc()], [pp({ view: 2, sig: fill(64, 5) })]),
      ppDigest: digests.pNewView(2, [pvc()], [pp({ view: 2, batchDigest: fill(32, 6) })]),
      noPps: digests.pNewView(2, [pvc()], []),
    });
  });
});
