import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CLIENT_WINDOW, ClientTable } from "../../src/bft/client-table.ts";

describe("ClientTable (exactly-once bookkeeping)", () => {
  it("remembers executed request numbers, in any order", () => {
    const t = new ClientTable(10);
    t.record("a", 2, 1);
    assert.equal(t.isExecuted("a", 2), true);
    assert.equal(t.isExecuted("a", 1), false, "a pipelined earlier request may still execute");
    t.record("a", 1, 2);
    assert.equal(t.isExecuted("a", 1), true);
    assert.equal(t.isExecuted("a", 3), false);
    assert.equal(t.isExecuted("b", 1), false);
  });

  it("counts everything below the window as executed once a client runs far ahead", () => {
    const t = new ClientTable(10);
    t.record("a", 1, 1);
    t.record("a", 5 + CLIENT_WINDOW, 2);
    assert.equal(t.isExecuted("a", 3), true, "below the window: treated as executed (never runs)");
    assert.equal(t.isExecuted("a", 6), false);
    assert.equal(t.isExecuted("a", 5 + CLIENT_WINDOW), true);
  });

  it("evicts the least recently active client beyond its bound", () => {
    const t = new ClientTable(2);
    t.record("a", 1, 1);
    t.record("b", 1, 2);
    t.record("a", 2, 3);
    t.record("c", 1, 4);
    assert.equal(t.size, 2);
    assert.equal(t.isExecuted("b", 1), false, "b was the least recent");
    assert.equal(t.isExecuted("a", 2), true);
    assert.equal(t.isExecuted("c", 1), true);
  });

  it("keeps the last reply per client, only for executed requests and never an older one", () => {
    const t = new ClientTable(10);
    assert.equal(t.setReply("a", 1, new Uint8Array([1])), false, "not executed yet");
    t.record("a", 1, 1);
    t.record("a", 2, 2);
    assert.equal(t.setReply("a", 2, new Uint8Array([2])), true);
    assert.equal(t.setReply("a", 1, new Uint8Array([1])), false, "older than the kept reply");
    assert.deepEqual(t.reply("a", 2), new Uint8Array([2]));
    assert.equal(t.reply("a", 1), undefined);
  });

  it("restores exactly from a snapshot", () => {
    const t = new ClientTable(10);
    t.record("a", 1, 1);
    t.record("a", 3, 2);
    t.record("b", 7, 3);
    t.setReply("b", 7, new Uint8Array([9]));
    const r = ClientTable.restore(10, t.snapshot());
    assert.deepEqual(r.snapshot(), t.snapshot());
    assert.equal(r.isExecuted("a", 2), false);
    assert.equal(r.isExecuted("a", 3), true);
    assert.deepEqual(r.reply("b", 7), new Uint8Array([9]));
  });
});
