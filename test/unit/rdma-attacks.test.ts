// Attacks on the shm RDMA provider's memory keys and mailboxes, by a Byzantine peer that holds a real
// connection to the victim: every attack must be refused (the same error to the attacker), detected
// (a security event) and counted, must change zero bytes of the victim's memory, and must not stop the
// victim from serving its honest peers.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, ftruncateSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { RdmaTransport, slotMac } from "../../src/transport/rdma.ts";
import {
  loadRdmaNative,
  PERM_READ,
  PERM_WRITE,
  type RdmaAddon,
  type RdmaEvent,
  type ShmProvider,
} from "../../src/transport/rdma-native.ts";
import { rdmaTestCluster } from "../util/rdma.ts";
import { waitFor } from "../util/wait.ts";

const native = loadRdmaNative();
const addon = native.available ? native.addon : (null as unknown as RdmaAddon);

interface Endpoint {
  readonly p: ShmProvider;
  readonly events: RdmaEvent[];
}

function endpoint(opts: { closeAfter?: number; banAfter?: number } = {}): Endpoint {
  const events: RdmaEvent[] = [];
  const p = new addon.ShmProvider({ onEvents: (es) => events.push(...es), ...opts });
  return { p, events };
}

/** Connects `from` to `to`'s socket; resolves to [connection id at `from`, connection id at `to`]. */
async function link(from: Endpoint, to: Endpoint, path: string): Promise<[number, number]> {
  const before = to.events.filter((e) => e.type === "accepted").length;
  const c = from.p.connect(path);
  await waitFor("connected", () => from.events.some((e) => e.type === "connected" && e.conn === c), {
    timeoutMs: 5_000,
    intervalMs: 2,
  });
  await waitFor("accepted", () => to.events.filter((e) => e.type === "accepted").length > before, {
    timeoutMs: 5_000,
    intervalMs: 2,
  });
  const accepted = to.events.filter((e) => e.type === "accepted");
  return [c, (accepted[accepted.length - 1] as RdmaEvent).conn];
}

const refusals = (e: Endpoint, conn: number) =>
  e.events.filter((x) => x.type === "completion" && x.conn === conn && x.status !== 0);
const securityReasons = (e: Endpoint) => e.events.filter((x) => x.type === "security").map((x) => x.reason);

/** A raw request slot (64-byte header; see addon.cc), for requests the public post calls cannot express. */
function rawSlot(
  op: number,
  len: number,
  wrId: number,
  rkey: bigint,
  offset: bigint,
  payload = new Uint8Array(0),
) {
  const s = new Uint8Array(64 + payload.length);
  const dv = new DataView(s.buffer);
  s[0] = op;
  dv.setUint32(4, len, true);
  dv.setBigUint64(8, BigInt(wrId), true);
  dv.setBigUint64(16, rkey, true);
  dv.setBigUint64(24, offset, true);
  s.set(payload, 64);
  return s;
}

describe("rdma attacks (shm provider)", { skip: !native.available, timeout: 120_000 }, () => {
  let dir = "";
  let victim: Endpoint;
  let honest: Endpoint;
  let attacker: Endpoint;
  let vPath = "";
  let hConn = 0; // at the honest side
  let vOfH = 0; // the honest peer's connection at the victim
  let aConn = 0;
  let vOfA = 0;
  let secret: { id: number; mem: Uint8Array };
  let honestRegion: { id: number; mem: Uint8Array };
  let kHonest = 0n; // read-write on honestRegion, bound to the honest connection
  let kReadOnly = 0n; // read-only on secret, bound to the attacker
  let kWindow = 0n; // read-write on secret[4096, 8192), bound to the attacker
  let snapshot: Uint8Array;

  const region = (e: Endpoint, bytes: number) => {
    const r = e.p.registerRegion(bytes);
    return { id: r.id, mem: new Uint8Array(r.memory) };
  };
  const unchanged = () => assert.deepEqual(secret.mem, snapshot, "the victim's region changed");

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "orderer-rdma-attack-"));
    vPath = join(dir, "victim.sock");
    victim = endpoint({ closeAfter: 1000, banAfter: 100_000 }); // per-attack tests; limits tested below
    honest = endpoint();
    attacker = endpoint();
    victim.p.listen(vPath);
    [hConn, vOfH] = await link(honest, victim, vPath);
    [aConn, vOfA] = await link(attacker, victim, vPath);
    secret = region(victim, 16384);
    secret.mem.set(randomBytes(16384));
    snapshot = secret.mem.slice();
    honestRegion = region(victim, 4096);
    kHonest = victim.p.grant(honestRegion.id, vOfH, PERM_READ | PERM_WRITE, 0, 4096);
    kReadOnly = victim.p.grant(secret.id, vOfA, PERM_READ, 0, 4096);
    kWindow = victim.p.grant(secret.id, vOfA, PERM_READ | PERM_WRITE, 4096, 4096);
  });

  after(() => {
    for (const e of [victim, honest, attacker]) e?.p.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves the honest peer: write with immediate, read back", async () => {
    assert.ok(
      honest.p.postWrite(hConn, 1, kHonest, 100, new Uint8Array([1, 2, 3]), 42),
      "honest.p.postWrite(hConn, 1, kHonest, 100, new Uint8Array([1, 2, 3]), 42)",
    );
    assert.ok(honest.p.postRead(hConn, 2, kHonest, 99, 5), "honest.p.postRead(hConn, 2, kHonest, 99, 5)");
    await waitFor(
      "read completion",
      () => honest.events.some((e) => e.type === "completion" && e.wrId === 2),
      { timeoutMs: 5_000, intervalMs: 2 },
    );
    const read = honest.events.find((e) => e.type === "completion" && e.wrId === 2);
    assert.deepEqual([...(read?.data ?? [])], [0, 1, 2, 3, 0]);
    const w = victim.events.find((e) => e.type === "write");
    assert.deepEqual([w?.region, w?.offset, w?.length, w?.imm], [honestRegion.id, 100, 3, 42]);
  });

  it("refuses guessed keys, a stolen key, a read-only key used to write, and out-of-bounds windows", async () => {
    const before = refusals(attacker, aConn).length;
    const sec0 = victim.p.stats().refused ?? 0;
    const attempts: [string, () => boolean][] = [
      ["guess", () => attacker.p.postWrite(aConn, 10, 0x1234n, 0, new Uint8Array(8).fill(0xee))],
      ["guess+1", () => attacker.p.postWrite(aConn, 11, kReadOnly + 1n, 0, new Uint8Array(8).fill(0xee))],
      ["stolen", () => attacker.p.postWrite(aConn, 12, kHonest, 0, new Uint8Array(8).fill(0xee))],
      ["stolen read", () => attacker.p.postRead(aConn, 13, kHonest, 0, 16)],
      ["read-only", () => attacker.p.postWrite(aConn, 14, kReadOnly, 0, new Uint8Array(8).fill(0xee))],
      ["oob end", () => attacker.p.postWrite(aConn, 15, kWindow, 4090, new Uint8Array(8).fill(0xee))],
      ["oob read", () => attacker.p.postRead(aConn, 16, kReadOnly, 4095, 2)],
      ["oob far", () => attacker.p.postWrite(aConn, 17, kWindow, 2 ** 40, new Uint8Array(8).fill(0xee))],
      // offset + length wraps around 2^64 to a small number: the check must not overflow.
      [
        "overflow",
        () =>
          attacker.p.postRaw(
            aConn,
            rawSlot(1, 16, 18, kWindow, 0xffff_ffff_ffff_fff8n, new Uint8Array(16).fill(0xee)),
          ),
      ],
      [
        "overflow read",
        () => attacker.p.postRaw(aConn, rawSlot(3, 64, 19, kReadOnly, 0xffff_ffff_ffff_ffc0n)),
      ],
      // A length beyond one slot, and an unknown opcode.
      ["too long", () => attacker.p.postRaw(aConn, rawSlot(1, 1 << 20, 20, kWindow, 0n))],
      ["opcode", () => attacker.p.postRaw(aConn, rawSlot(99, 0, 21, kWindow, 0n))],
    ];
    for (const [what, attempt] of attempts) assert.ok(attempt(), `${what} was posted`);
    await waitFor(
      "every attempt refused",
      () => refusals(attacker, aConn).length === before + attempts.length,
      { timeoutMs: 5_000, intervalMs: 2 },
    );
    // The same answer for every refusal: status 1, no data.
    for (const r of refusals(attacker, aConn).slice(before)) {
      assert.equal(r.status, 1);
      assert.equal(r.data, undefined);
    }
    const s = victim.p.stats();
    assert.equal((s.refused ?? 0) - sec0, attempts.length, "each refusal counted");
    assert.ok((s["refused.unknown-key"] ?? 0) >= 2, '(s["refused.unknown-key"] ?? 0) >= 2');
    assert.ok((s["refused.foreign-key"] ?? 0) >= 2, '(s["refused.foreign-key"] ?? 0) >= 2');
    assert.ok((s["refused.permission"] ?? 0) >= 1, '(s["refused.permission"] ?? 0) >= 1');
    assert.ok((s["refused.out-of-bounds"] ?? 0) >= 5, '(s["refused.out-of-bounds"] ?? 0) >= 5');
    assert.ok((s["refused.bad-request"] ?? 0) >= 2, '(s["refused.bad-request"] ?? 0) >= 2');
    const reasons = securityReasons(victim);
    for (const r of ["unknown-key", "foreign-key", "permission", "out-of-bounds", "bad-request"])
      assert.ok(reasons.includes(r), `security event ${r}`);
    unchanged();
    // The window the attacker may write is still writable: the refusals were precise.
    assert.ok(
      attacker.p.postWrite(aConn, 22, kWindow, 0, new Uint8Array([7])),
      "attacker.p.postWrite(aConn, 22, kWindow, 0, new Uint8Array([7]))",
    );
    await waitFor("the attacker's own window written", () => secret.mem[4096] === 7, {
      timeoutMs: 5_000,
      intervalMs: 2,
    });
    secret.mem[4096] = snapshot[4096] as number;
  });

  it("revocation and rotation take effect at once; revoked keys are never granted again", async () => {
    const k = victim.p.grant(honestRegion.id, vOfH, PERM_WRITE, 0, 64);
    const rotated = victim.p.rotate(k);
    assert.notEqual(rotated, k);
    honest.p.postWrite(hConn, 30, k, 0, new Uint8Array([9])); // the old key, after rotation
    honest.p.postWrite(hConn, 31, rotated, 1, new Uint8Array([9]));
    // Wait for the refusal itself: an "acked" event left from the first test says nothing about these writes.
    await waitFor("the rotated-out key refused", () => refusals(honest, hConn).some((e) => e.wrId === 30), {
      timeoutMs: 5_000,
      intervalMs: 2,
    });
    await waitFor("rotated key works", () => honestRegion.mem[1] === 9, { timeoutMs: 5_000, intervalMs: 2 });
    assert.equal(honestRegion.mem[0], 0, "the rotated-out key wrote nothing");
    assert.ok(
      refusals(honest, hConn).some((e) => e.wrId === 30),
      "refusals(honest, hConn).some((e) => e.wrId === 30)",
    );
    assert.ok(victim.p.revoke(rotated), "victim.p.revoke(rotated)");
    honest.p.postWrite(hConn, 32, rotated, 2, new Uint8Array([9]));
    await waitFor("revoked key refused", () => refusals(honest, hConn).some((e) => e.wrId === 32), {
      timeoutMs: 5_000,
      intervalMs: 2,
    });
    assert.equal(honestRegion.mem[2], 0);
    assert.ok(
      (victim.p.stats()["refused.revoked-key"] ?? 0) >= 2,
      '(victim.p.stats()["refused.revoked-key"] ?? 0) >= 2',
    );
    // Fresh keys are 64 random bits, distinct from every live and revoked key.
    const keys = new Set<bigint>([k, rotated]);
    for (let i = 0; i < 2000; i++) {
      const x = victim.p.grant(honestRegion.id, vOfH, PERM_READ, 0, 64);
      assert.ok(!keys.has(x), "!keys.has(x)");
      keys.add(x);
      victim.p.revoke(x);
    }
    const highBits = new Set([...keys].map((x) => Number(x >> 56n)));
    assert.ok(highBits.size > 200, "keys are spread over the whole 64-bit space");
  });

  it("exclusive writer: a view change revokes the old leader; its queued writes land nowhere (fence)", async () => {
    const log = region(victim, 8192);
    const kOld = victim.p.exclusiveWriter(log.id, vOfA) as bigint; // the attacker was the leader
    attacker.p.postWrite(aConn, 40, kOld, 0, new Uint8Array([1]));
    await waitFor("the leader writes", () => log.mem[0] === 1, { timeoutMs: 5_000, intervalMs: 2 });
    // The old leader queues writes; the view changes before the victim serves them.
    for (let i = 0; i < 20; i++) attacker.p.postWrite(aConn, 41 + i, kOld, 64 + i, new Uint8Array([0xee]));
    const kNew = victim.p.exclusiveWriter(log.id, vOfH) as bigint;
    honest.p.postWrite(hConn, 70, kNew, 128, new Uint8Array([2]));
    await waitFor("the new leader writes", () => log.mem[128] === 2, { timeoutMs: 5_000, intervalMs: 2 });
    await waitFor(
      "fenced",
      () => refusals(attacker, aConn).filter((e) => (e.wrId ?? 0) >= 41).length === 20,
      { timeoutMs: 5_000, intervalMs: 2 },
    );
    assert.ok(
      log.mem.subarray(64, 84).every((b) => b === 0),
      "no write under the old permission landed",
    );
    assert.ok((victim.p.stats().fences ?? 0) >= 2, "(victim.p.stats().fences ?? 0) >= 2");
  });

  it("slotted keys: a replayed, forged or out-of-order slot is refused before it lands", async () => {
    const inbox = region(victim, 4 * 256);
    const macKey = randomBytes(32);
    const k = victim.p.grant(inbox.id, vOfA, PERM_WRITE, 0, 4 * 256, { macKey, slotSize: 256 });
    const slot = (seq: number, body: Uint8Array, key = macKey, at = (seq % 4) * 256) => {
      const s = new Uint8Array(32 + body.length);
      const dv = new DataView(s.buffer);
      dv.setBigUint64(0, BigInt(seq), true);
      dv.setUint32(8, body.length, true);
      s.set(body, 32);
      s.set(slotMac(key, at, s), 16);
      return s;
    };
    const good0 = slot(0, new Uint8Array([1, 1, 1]));
    attacker.p.postWrite(aConn, 80, k, 0, good0, 0);
    await waitFor("a valid slot lands", () => inbox.mem[32] === 1, { timeoutMs: 5_000, intervalMs: 2 });
    const landed = inbox.mem.slice();
    const before = refusals(attacker, aConn).length;
    attacker.p.postWrite(aConn, 81, k, 0, good0, 0); // replay
    const forged = slot(1, new Uint8Array([6, 6, 6]));
    forged[33] = 7; // altered after the MAC
    attacker.p.postWrite(aConn, 82, k, 256, forged, 1);
    attacker.p.postWrite(aConn, 83, k, 256, slot(1, new Uint8Array([5]), randomBytes(32)), 1); // wrong key
    attacker.p.postWrite(aConn, 84, k, 3 * 256, slot(3, new Uint8Array([5])), 3); // skips 1 and 2
    attacker.p.postWrite(aConn, 85, k, 2 * 256, slot(1, new Uint8Array([5]), macKey, 512), 1); // seq 1 in slot 2
    await waitFor("all refused", () => refusals(attacker, aConn).length === before + 5, {
      timeoutMs: 5_000,
      intervalMs: 2,
    });
    assert.deepEqual(inbox.mem, landed, "nothing landed");
    const s = victim.p.stats();
    assert.ok((s["refused.slot-replayed"] ?? 0) >= 1, '(s["refused.slot-replayed"] ?? 0) >= 1');
    assert.ok((s["refused.slot-forged"] ?? 0) >= 2, '(s["refused.slot-forged"] ?? 0) >= 2');
    assert.ok((s["refused.slot-out-of-order"] ?? 0) >= 2, '(s["refused.slot-out-of-order"] ?? 0) >= 2');
    // The next valid slot still lands.
    attacker.p.postWrite(aConn, 86, k, 256, slot(1, new Uint8Array([4])), 1);
    await waitFor("seq 1 lands", () => inbox.mem[256 + 32] === 4, { timeoutMs: 5_000, intervalMs: 2 });
  });

  it("a mailbox that is not sealed is refused; a sealed one cannot be truncated", async () => {
    const before = victim.events.filter((e) => e.type === "accepted").length;
    attacker.p.connect(vPath, { unsealed: true });
    await waitFor("unsealed mailbox refused", () => securityReasons(victim).includes("mailbox-unsealed"), {
      timeoutMs: 5_000,
      intervalMs: 2,
    });
    assert.equal(victim.events.filter((e) => e.type === "accepted").length, before, "never accepted");
    const fd = attacker.p.mailboxFd(aConn);
    assert.ok(fd >= 0, "fd >= 0");
    assert.throws(() => ftruncateSync(fd, 0), /EPERM/);
    assert.throws(() => ftruncateSync(fd, 1 << 30), /EPERM/);
  });

  it("a peer scribbling on the ring indices is detected and cut off; the victim serves on", async () => {
    const L = addon.layout();
    const [c2, v2] = await link(attacker, victim, vPath);
    const [c3, v3] = await link(attacker, victim, vPath);
    // Channel 0 is the connector's: its request ring's producer index says 1000 requests wait.
    const reqProd = L.mailboxHeader;
    assert.ok(
      attacker.p.mailboxWrite(c2, reqProd, new Uint8Array([0xe8, 0x03, 0, 0])),
      "attacker.p.mailboxWrite(c2, reqProd, new Uint8Array([0xe8, 0x03, 0, 0]))",
    );
    // On the other connection: the victim's completion ring (channel 1) claims completions never asked for.
    const cplProd = L.mailboxHeader + 3 * L.ringBytes;
    assert.ok(
      attacker.p.mailboxWrite(c3, cplProd, new Uint8Array([5, 0, 0, 0])),
      "attacker.p.mailboxWrite(c3, cplProd, new Uint8Array([5, 0, 0, 0]))",
    );
    await waitFor(
      "both connections closed",
      () => victim.events.filter((e) => e.type === "closed" && (e.conn === v2 || e.conn === v3)).length === 2,
      { timeoutMs: 5_000, intervalMs: 2 },
    );
    assert.ok(
      (victim.p.stats()["refused.mailbox-corrupt"] ?? 0) >= 2,
      '(victim.p.stats()["refused.mailbox-corrupt"] ?? 0) >= 2',
    );
    // Random garbage in whole slots: refused one by one.
    const [c4] = await link(attacker, victim, vPath);
    const before = refusals(attacker, c4).length;
    for (let i = 0; i < 20; i++) {
      const g = randomBytes(256);
      g[0] = 1 + (i % 3); // a write, write-with-immediate or read with a random key and offset
      g.writeUInt32LE(8, 4);
      attacker.p.postRaw(c4, g);
    }
    await waitFor("garbage refused", () => refusals(attacker, c4).length === before + 20, {
      timeoutMs: 5_000,
      intervalMs: 2,
    });
    unchanged();
    honest.p.postWrite(hConn, 90, kHonest, 200, new Uint8Array([0x55]));
    await waitFor("the honest peer is still served", () => honestRegion.mem[200] === 0x55, {
      timeoutMs: 5_000,
      intervalMs: 2,
    });
  });
});

describe("rdma attacks: limits", { skip: !native.available, timeout: 120_000 }, () => {
  it("a key-guessing flood: the connection is closed after a few, the identity banned after more", async () => {
    const dir = mkdtempSync(join(tmpdir(), "orderer-rdma-flood-"));
    const path = join(dir, "victim.sock");
    const victim = endpoint({ closeAfter: 3, banAfter: 9 });
    const honest = endpoint();
    const attacker = endpoint();
    victim.p.listen(path);
    const [hConn, vOfH] = await link(honest, victim, path);
    const mem = victim.p.registerRegion(4096);
    const secret = new Uint8Array(mem.memory);
    secret.set(randomBytes(4096));
    const snapshot = secret.slice();
    const kH = victim.p.grant(mem.id, vOfH, PERM_READ | PERM_WRITE, 0, 2048);
    let honestOk = 0;
    let sent = 0;
    let rounds = 0;
    let served = 0;
    // Each round: the attacker (authenticated as "replica-0") floods 100 guessed keys; the honest peer writes.
    while (!victim.p.isBanned("replica-0") && rounds < 10) {
      rounds++;
      const [c, v] = await link(attacker, victim, path);
      victim.p.setIdentity(v, "replica-0");
      let posted = 0;
      while (
        posted < 100 &&
        attacker.p.postWrite(c, posted, randomBytes(8).readBigUInt64LE(), 0, randomBytes(64))
      )
        posted++;
      served += posted;
      honest.p.postWrite(hConn, 1000 + sent, kH, 2048 - 1 - (sent % 2048), new Uint8Array([1]));
      sent++;
      await waitFor("flooder cut off", () => victim.events.some((e) => e.type === "closed" && e.conn === v), {
        timeoutMs: 5_000,
        intervalMs: 2,
      });
    }
    assert.ok(victim.p.isBanned("replica-0"), "banned");
    assert.equal(rounds, 3, "closed after 3 refusals per connection, banned after 9");
    const s = victim.p.stats();
    assert.equal(s.refused, 9, `only ${s.refused} of ${served} flood requests were even looked at`);
    assert.equal(s["closed.too-many-bad-requests"], 2);
    assert.equal(s["closed.identity-banned"], 1);
    assert.ok(
      securityReasons(victim).includes("identity-banned"),
      'securityReasons(victim).includes("identity-banned")',
    );
    // A banned identity cannot come back.
    const [, v] = await link(attacker, victim, path);
    assert.equal(victim.p.setIdentity(v, "replica-0"), false);
    await waitFor(
      "banned identity closed",
      () => victim.events.some((e) => e.type === "closed" && e.conn === v),
      { timeoutMs: 5_000, intervalMs: 2 },
    );
    assert.deepEqual(
      secret.subarray(2048),
      snapshot.subarray(2048),
      "zero bytes changed outside the honest window",
    );
    await waitFor(
      "honest acks",
      () => honest.events.filter((e) => e.type === "acked").reduce((a, e) => a + (e.count ?? 0), 0) >= sent,
      { timeoutMs: 5_000, intervalMs: 2 },
    );
    honestOk = refusals(honest, hConn).length;
    assert.equal(honestOk, 0, "every honest write was served");
    for (const e of [victim, honest, attacker]) e.p.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a Byzantine replica flooding guessed keys over the transport is banned; honest frames keep flowing", async () => {
    const c = rdmaTestCluster(3);
    const security: string[] = [];
    const ts = [0, 1, 2].map(
      (id) =>
        new RdmaTransport({
          self: id,
          seed: c.seeds[id] as Uint8Array,
          peers: c.peers,
          redialMinMs: 10,
          redialMaxMs: 50,
          onSecurityEvent: id === 1 ? (e) => security.push(`${e.peer}:${e.reason}`) : undefined,
        }),
    );
    const got: number[] = [];
    ts[1]?.onFrame((from, f) => {
      if (from === 2) got.push(f[0] as number);
    });
    await Promise.all(ts.map((t) => t.start()));
    const [t0, , t2] = ts as [RdmaTransport, RdmaTransport, RdmaTransport];
    let k = 0;
    const deadline = Date.now() + 15_000;
    // Replica 0 is Byzantine: on every connection it gets to replica 1, it guesses keys.
    while (
      Date.now() < deadline &&
      !(t0.internals(1).provider && (ts[1] as RdmaTransport).internals(0).provider?.isBanned("replica-0"))
    ) {
      const { provider, conn } = t0.internals(1);
      if (provider && conn !== null)
        for (let i = 0; i < 10; i++)
          provider.postWrite(conn, i, randomBytes(8).readBigUInt64LE(), 0, randomBytes(32));
      t2.send(1, new Uint8Array([k++ % 256]));
      await sleep(5);
    }
    assert.ok((ts[1] as RdmaTransport).internals(0).provider?.isBanned("replica-0"), "the flooder is banned");
    const sec = (ts[1] as RdmaTransport).securityStats();
    assert.ok((sec["refused.unknown-key"] ?? 0) >= 3, '(sec["refused.unknown-key"] ?? 0) >= 3');
    assert.ok(
      security.some((s) => s.endsWith("unknown-key")),
      'security.some((s) => s.endsWith("unknown-key"))',
    );
    // Honest traffic from replica 2 all arrived, in order.
    for (let i = 0; i < 50; i++) t2.send(1, new Uint8Array([k++ % 256]));
    await waitFor("every honest frame", () => got.length === k, { timeoutMs: 10_000, intervalMs: 2 });
    assert.deepEqual(
      got,
      Array.from({ length: k }, (_, i) => i % 256),
    );
    await Promise.all(ts.map((t) => t.stop()));
    rmSync(c.dir, { recursive: true, force: true });
  });
});

describe("verbs provider", { skip: !native.available }, () => {
  it("loads without a device and reports why it cannot be used", () => {
    const v = addon.probeVerbs();
    const hasDevice = existsSync("/sys/class/infiniband") && v.devices.length > 0;
    if (!hasDevice) {
      assert.notEqual(v.status, "ok");
      assert.ok(v.reason.length > 0, "v.reason.length > 0");
      if (v.library)
        assert.equal(v.status, "no-device", "libibverbs is installed: the answer is 'no device'");
      else assert.equal(v.status, "no-library");
    } else {
      assert.equal(v.status, "ok");
    }
  });
});
