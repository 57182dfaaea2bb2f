// The replica's watch registry: ZooKeeper's trigger rules for one-shot data/exists and child watches,
// persistent and persistent-recursive watches, one notification per watcher and event, and bounds.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WatchRegistry } from "../../src/coord/watches.ts";

describe("watch registry", () => {
  it("one-shot data watches fire once on create, delete or data change", () => {
    const w = new WatchRegistry<string>(10);
    w.add("a", "data", "/x");
    assert.deepEqual([...w.trigger("NodeChildrenChanged", "/x")], []);
    assert.deepEqual([...w.trigger("NodeDataChanged", "/x")], ["a"]);
    assert.deepEqual([...w.trigger("NodeDataChanged", "/x")], [], "fired once");
    assert.equal(w.size, 0);
  });

  it("child watches fire on children changes and on deletion of the node", () => {
    const w = new WatchRegistry<string>(10);
    w.add("a", "child", "/p");
    w.add("b", "child", "/p");
    assert.deepEqual([...w.trigger("NodeDataChanged", "/p")], []);
    assert.deepEqual([...w.trigger("NodeChildrenChanged", "/p")].sort(), ["a", "b"]);
    w.add("a", "child", "/p");
    assert.deepEqual([...w.trigger("NodeDeleted", "/p")], ["a"]);
  });

  it("persistent watches stay; recursive ones cover descendants but not NodeChildrenChanged", () => {
    const w = new WatchRegistry<string>(10);
    w.add("p", "persistent", "/cfg");
    w.add("r", "persistentRecursive", "/cfg");
    assert.deepEqual([...w.trigger("NodeDataChanged", "/cfg")].sort(), ["p", "r"]);
    assert.deepEqual([...w.trigger("NodeChildrenChanged", "/cfg")], ["p"]);
    assert.deepEqual([...w.trigger("NodeCreated", "/cfg/a/b")], ["r"]);
    assert.deepEqual([...w.trigger("NodeCreated", "/other")], []);
    assert.equal(w.size, 2, "still registered");
  });

  it("notifies a watcher once per event even when several of its watches match", () => {
    const w = new WatchRegistry<string>(10);
    w.add("a", "data", "/x");
    w.add("a", "child", "/x");
    w.add("a", "persistent", "/x");
    w.add("a", "persistentRecursive", "/");
    assert.deepEqual([...w.trigger("NodeDeleted", "/x")], ["a"]);
  });

  it("bounds watches per watcher and forgets a closed watcher", () => {
    const w = new WatchRegistry<string>(2);
    assert.ok(w.add("a", "data", "/1"), 'w.add("a", "data", "/1")');
    assert.ok(w.add("a", "data", "/2"), 'w.add("a", "data", "/2")');
    assert.ok(w.add("a", "data", "/2"), "an existing watch is fine");
    assert.equal(w.add("a", "data", "/3"), false);
    assert.ok(w.add("b", "data", "/3"), 'w.add("b", "data", "/3")');
    w.removeWatcher("a");
    assert.equal(w.count("a"), 0);
    assert.equal(w.size, 1);
    assert.equal(w.remove("b", "child", "/3"), false);
    assert.equal(w.remove("b", "data", "/3"), true);
  });
});
