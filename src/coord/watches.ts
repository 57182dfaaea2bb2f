// The watches registered at one replica by its connected clients (not replicated: a client registers
// them again when it moves, see setWatches in service.ts). Semantics as ZooKeeper's WatchManager:
// data and exists watches fire once on NodeCreated/NodeDeleted/NodeDataChanged of their path, child
// watches once on NodeChildrenChanged of their path or its deletion; persistent watches fire on every
// event of their path, persistent-recursive ones on every event of their path and its descendants except
// NodeChildrenChanged. A watcher gets one notification per event even when several of its watches match.

import { selfAndAncestors } from "./path.ts";
import type { WatchEventType } from "./tree.ts";

export type WatchKind = "data" | "child" | "persistent" | "persistentRecursive";

export class WatchRegistry<C> {
  private readonly tables: Record<WatchKind, Map<string, Set<C>>> = {
    data: new Map(),
    child: new Map(),
    persistent: new Map(),
    persistentRecursive: new Map(),
  };
  private readonly counts = new Map<C, number>();
  private total = 0;

  constructor(private readonly perWatcherMax: number) {}

  get size(): number {
    return this.total;
  }

  count(watcher: C): number {
    return this.counts.get(watcher) ?? 0;
  }

  /** False when the watcher is at its bound (the watch is not added). */
  add(watcher: C, kind: WatchKind, path: string): boolean {
    const t = this.tables[kind];
    let set = t.get(path);
    if (set?.has(watcher)) return true;
    if (this.count(watcher) >= this.perWatcherMax) return false;
    if (!set) {
      set = new Set();
      t.set(path, set);
    }
    set.add(watcher);
    this.counts.set(watcher, this.count(watcher) + 1);
    this.total++;
    return true;
  }

  has(watcher: C, kind: WatchKind, path: string): boolean {
    return this.tables[kind].get(path)?.has(watcher) ?? false;
  }

  /** Removes one watch; true if it was there. */
  remove(watcher: C, kind: WatchKind, path: string): boolean {
    const t = this.tables[kind];
    const set = t.get(path);
    if (!set?.delete(watcher)) return false;
    if (set.size === 0) t.delete(path);
    const c = this.count(watcher) - 1;
    if (c === 0) this.counts.delete(watcher);
    else this.counts.set(watcher, c);
    this.total--;
    return true;
  }

  /** Drops every watch of a watcher (its connection closed). */
  removeWatcher(watcher: C): void {
    if (!this.counts.has(watcher)) return;
    for (const kind of Object.keys(this.tables) as WatchKind[])
      for (const [path, set] of this.tables[kind]) if (set.has(watcher)) this.remove(watcher, kind, path);
  }

  /** The watchers to notify of an event; one-shot watches that fired are removed. */
  trigger(type: WatchEventType, path: string): Set<C> {
    const out = new Set<C>();
    const once = (kind: "data" | "child") => {
      const set = this.tables[kind].get(path);
      if (!set) return;
      for (const w of [...set]) {
        out.add(w);
        this.remove(w, kind, path);
      }
    };
    if (type === "NodeChildrenChanged") once("child");
    else {
      once("data");
      if (type === "NodeDeleted") once("child");
    }
    for (const w of this.tables.persistent.get(path) ?? []) out.add(w);
    if (type !== "NodeChildrenChanged")
      for (const p of selfAndAncestors(path))
        for (const w of this.tables.persistentRecursive.get(p) ?? []) out.add(w);
    return out;
  }
}
