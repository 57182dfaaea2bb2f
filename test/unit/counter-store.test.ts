import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { BftError } from "../../src/bft/errors.ts";
import { UsigCounter } from "../../src/bft/trusted.ts";
import { Certifier, RESERVE_SLOTS } from "../../src/counter/certifier.ts";
import {
  decodeReply,
  decodeRequest,
  encodeCert,
  encodeError,
  encodeRequest,
  FrameReader,
  OP_INDEPENDENT,
} from "../../src/counter/protocol.ts";
import { CounterStore, EXACT_FILE, SLOT_BYTES, STATE_FILE } from "../../src/counter/store.ts";

const dirs: string[] = [];
const fresh = () => {
  const d = mkdtempSync(join(tmpdir(), "orderer-counter-store-"));
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const code = (c: string) => (e: unknown) => {
  assert.ok(e instanceof BftError, `expected a BftError, got ${String(e)}`);
  assert.equal(e.code, c);
  return true;
};

describe("CounterStore", () => {
  it("starts empty, and reopens at the last saved values", () => {
    const dir = fresh();
    const s = CounterStore.open(dir, 3);
    assert.equal(s.loaded.size, 0);
    s.save(new Map([[0, { view: 0, slot: 5 }]]));
    s.save(new Map([[0, { view: 2, slot: 1 }]]));
    s.close();
    const again = CounterStore.open(dir, 3);
    assert.deepEqual(again.loaded.get(0), { view: 2, slot: 1 });
    again.close();
  });

  it("survives a torn write of the newest slot: the previous generation is what was acknowledged", () => {
    const dir = fresh();
    const s = CounterStore.open(dir, 0);
    s.save(new Map([[0, { view: 0, slot: 7 }]]));
    s.save(new Map([[0, { view: 0, slot: 8 }]]));
    s.close();
    const path = join(dir, STATE_FILE);
    const bytes = readFileSync(path);
    // Generation 3 (the newest) lives in slot 1: scribble over half of it, as a torn write would.
    bytes.fill(0xee, SLOT_BYTES + 10, SLOT_BYTES + 400);
    writeFileSync(path, bytes);
    const again = CounterStore.open(dir, 0);
    assert.deepEqual(again.loaded.get(0), { view: 0, slot: 7 });
    again.close();
  });

  it("refuses a file whose slots are both damaged, of the wrong size, or of another subsystem", () => {
    const dir = fresh();
    const s = CounterStore.open(dir, 1);
    s.save(new Map([[0, { view: 1, slot: 1 }]]));
    s.close();
    assert.throws(() => CounterStore.open(dir, 2), code("WRONG_SUBSYSTEM"));
    const path = join(dir, STATE_FILE);
    const bytes = readFileSync(path);
    bytes[40] = (bytes[40] as number) ^ 1;
    bytes[SLOT_BYTES + 40] = (bytes[SLOT_BYTES + 40] as number) ^ 1;
    writeFileSync(path, bytes);
    assert.throws(() => CounterStore.open(dir, 1), code("CORRUPT"));
    writeFileSync(path, bytes.subarray(0, 100));
    assert.throws(() => CounterStore.open(dir, 1), code("CORRUPT"));
  });

  it("backs a UsigCounter that resumes where it stopped and never certifies a value twice", () => {
    const dir = fresh();
    const sign = () => new Uint8Array(64);
    const digest = new Uint8Array(32).fill(1);
    const s1 = CounterStore.open(dir, 0);
    const c1 = new UsigCounter({
      id: 0,
      sign,
      counters: s1.loaded,
      onAdvance: (_c, _v, all) => s1.save(all),
    });
    c1.certifyIndependent(0, { view: 0, slot: 2 }, digest);
    c1.certifyContinuing(0, { view: 1, slot: 0 }, digest);
    s1.close();
    const s2 = CounterStore.open(dir, 0);
    const c2 = new UsigCounter({
      id: 0,
      sign,
      counters: s2.loaded,
      onAdvance: (_c, _v, all) => s2.save(all),
    });
    assert.deepEqual(c2.current(0), { view: 1, slot: 0 });
    assert.throws(() => c2.certifyIndependent(0, { view: 1, slot: 0 }, digest), code("NOT_INCREASING"));
    s2.close();
  });

  it("issues no certificate when the value cannot be made durable", () => {
    const dir = fresh();
    const s = CounterStore.open(dir, 0);
    s.close(); // its descriptor is gone: every save fails
    const c = new UsigCounter({
      id: 0,
      sign: () => new Uint8Array(64),
      onAdvance: (_c, _v, all) => s.save(all),
    });
    assert.throws(() => c.certifyIndependent(0, { view: 0, slot: 1 }, new Uint8Array(32)));
    // The value stays burnt: it is not offered again.
    assert.throws(
      () => c.certifyIndependent(0, { view: 0, slot: 1 }, new Uint8Array(32)),
      code("NOT_INCREASING"),
    );
  });
});

describe("CounterStore: exact values after a crash in the same boot", () => {
  const bootA = new Uint8Array(16).fill(0xa1);
  const bootB = new Uint8Array(16).fill(0xb2);
  const seed = new Uint8Array(32).fill(7);
  let reqId = 0;
  /** Certifies (0, slot) through a Certifier as the counter process does; the reply's first byte tells. */
  const certify = (c: Certifier, slot: number) => {
    const body = encodeRequest({
      reqId: ++reqId,
      op: OP_INDEPENDENT,
      counter: 0,
      value: { view: 0, slot },
      digest: new Uint8Array(32).fill(slot),
    }).subarray(4);
    return decodeReply(c.serve(body).reply);
  };

  it("a process killed and restarted in the same boot resumes at its last certified value, skipping nothing", () => {
    const dir = fresh();
    const c = new Certifier(0, seed, CounterStore.open(dir, 0, bootA));
    for (const slot of [1, 2, 3]) assert.equal(certify(c, slot).type, "cert", `slot ${slot}`);
    // Killed: no close, the exact values were never fsynced; the same boot reads them back.
    const s2 = CounterStore.open(dir, 0, bootA);
    assert.equal(s2.resumedExact, true);
    assert.deepEqual(s2.loaded.get(0), { view: 0, slot: 3 });
    const c2 = new Certifier(0, seed, s2);
    assert.equal(certify(c2, 3).type, "err", "slot 3 is never certified twice");
    assert.equal(certify(c2, 4).type, "cert", "slot 4 is the next one, nothing skipped");
  });

  it("after a reboot, or with a damaged or stale record, it resumes at the reservation", () => {
    const dir = fresh();
    const c = new Certifier(0, seed, CounterStore.open(dir, 0, bootA));
    for (const slot of [1, 2, 3]) assert.equal(certify(c, slot).type, "cert");
    const reservation = { view: 0, slot: 1 + RESERVE_SLOTS };
    // Another boot: the page cache the exact record lived in may be gone.
    const rebooted = CounterStore.open(dir, 0, bootB);
    assert.equal(rebooted.resumedExact, false);
    assert.deepEqual(rebooted.loaded.get(0), reservation);
    rebooted.close();
    // A torn record (any byte): the checksum refuses it.
    const path = join(dir, EXACT_FILE);
    const good = readFileSync(path);
    for (const at of [0, 9, good.length - 40, good.length - 1]) {
      const torn = Buffer.from(good);
      torn[at] = (torn[at] as number) ^ 0x10;
      writeFileSync(path, torn);
      const s = CounterStore.open(dir, 0, bootA);
      assert.deepEqual(s.loaded.get(0), reservation, `byte ${at} flipped`);
      s.close();
    }
    writeFileSync(path, good.subarray(0, good.length - 5));
    const cut = CounterStore.open(dir, 0, bootA);
    assert.deepEqual(cut.loaded.get(0), reservation, "a truncated record");
    cut.close();
    // A record of an older reservation (the process died between a new reservation and its record).
    writeFileSync(path, good);
    const s = CounterStore.open(dir, 0, bootA);
    s.save(new Map([[0, { view: 0, slot: 500 }]]));
    s.close();
    const stale = CounterStore.open(dir, 0, bootA);
    assert.equal(stale.resumedExact, false);
    assert.deepEqual(stale.loaded.get(0), { view: 0, slot: 500 });
    stale.close();
  });

  it("without a boot id (not Linux) it records nothing and resumes at the reservation", () => {
    const dir = fresh();
    const c = new Certifier(0, seed, CounterStore.open(dir, 0, null));
    assert.equal(certify(c, 1).type, "cert");
    const s = CounterStore.open(dir, 0, null);
    assert.deepEqual(s.loaded.get(0), { view: 0, slot: 1 + RESERVE_SLOTS });
    s.close();
  });
});

describe("counter socket frames", () => {
  it("round-trip requests and replies, and split a byte stream into frames", () => {
    const req = encodeRequest({
      reqId: 7,
      op: OP_INDEPENDENT,
      counter: 0,
      value: { view: 3, slot: 9 },
      digest: new Uint8Array(32).fill(5),
    });
    const cert = encodeCert(7, { view: 3, slot: 9 }, { view: 3, slot: 8 }, new Uint8Array(64).fill(2));
    const err = encodeError(8, "NOT_INCREASING", "no");
    const r = new FrameReader();
    const joined = new Uint8Array([...req, ...cert, ...err]);
    const bodies = [...r.push(joined.subarray(0, 5)), ...r.push(joined.subarray(5))];
    assert.equal(bodies.length, 3);
    assert.deepEqual(decodeRequest(bodies[0] as Uint8Array).value, { view: 3, slot: 9 });
    const c = decodeReply(bodies[1] as Uint8Array);
    assert.ok(c.type === "cert" && c.prev?.slot === 8, "the continuing certificate's prev comes back");
    const e = decodeReply(bodies[2] as Uint8Array);
    assert.ok(e.type === "err" && e.code === "NOT_INCREASING", "the error code comes back");
  });

  it("refuse oversized, empty and malformed frames with a typed error", () => {
    assert.throws(() => new FrameReader().push(Uint8Array.of(0, 1, 0, 0)), code("BAD_FRAME"));
    assert.throws(() => new FrameReader().push(Uint8Array.of(0, 0, 0, 0)), code("BAD_FRAME"));
    assert.throws(() => decodeRequest(Uint8Array.of(4, 0, 0)), code("BAD_FRAME"));
    assert.throws(() => decodeRequest(Uint8Array.of(4, 0, 0, 0, 1, 9)), code("BAD_FRAME"));
    assert.throws(() => decodeReply(Uint8Array.of(9, 0, 0, 0, 1)), code("BAD_FRAME"));
  });
});
