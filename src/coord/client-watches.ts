// The watches a coordination client holds: one-shot watchers (getData, exists, getChildren) and
// persistent and recursive ones (addWatch), what an event fires, and the paths to register again after
// a reconnect (setWatches). Bundled for browsers with the client: no Node built-in here.

import type { WatchedEvent, Watcher } from "./client-options.ts";
import { selfAndAncestors } from "./path.ts";

export type OneShotKind = "data" | "exist" | "child";

export class ClientWatches {
  private readonly oneShot = {
    data: new Map<string, Set<Watcher>>(),
    exist: new Map<string, Set<Watcher>>(),
    child: new Map<string, Set<Watcher>>(),
  };
  private readonly persistent = new Map<string, Set<Watcher>>();
  private readonly recursive = new Map<string, Set<Watcher>>();

  addOneShot(kind: OneShotKind, path: string, w: Watcher): void {
    const t = this.oneShot[kind];
    const set = t.get(path) ?? new Set<Watcher>();
    t.set(path, set);
    set.add(w);
  }

  /** A watch that stays until removed (recursive: the whole subtree). */
  addPersistent(mode: "persistent" | "persistentRecursive", path: string, w: Watcher): void {
    const t = mode === "persistent" ? this.persistent : this.recursive;
    const set = t.get(path) ?? new Set<Watcher>();
    t.set(path, set);
    set.add(w);
  }

  /** Forgets the watchers of `path` of this kind (data: one-shot data and exists ones). */
  remove(path: string, kind: "data" | "child" | "persistent" | "persistentRecursive" | "any"): void {
    if (kind === "data" || kind === "any") {
      this.oneShot.data.delete(path);
      this.oneShot.exist.delete(path);
    }
    if (kind === "child" || kind === "any") this.oneShot.child.delete(path);
    if (kind === "persistent" || kind === "any") this.persistent.delete(path);
    if (kind === "persistentRecursive" || kind === "any") this.recursive.delete(path);
  }

  /** The watched paths by kind, as setWatches lists them. */
  paths(): Record<"data" | "exist" | "child" | "persistent" | "persistentRecursive", string[]> {
    const keys = (m: Map<string, Set<Watcher>>) => [...m.keys()];
    return {
      data: keys(this.oneShot.data),
      exist: keys(this.oneShot.exist),
      child: keys(this.oneShot.child),
      persistent: keys(this.persistent),
      persistentRecursive: keys(this.recursive),
    };
  }

  /** One event: every one-shot watcher it concerns fires once and is forgotten; persistent ones stay. */
  deliver(e: WatchedEvent): void {
    const fire = new Set<Watcher>();
    const take = (kind: OneShotKind) => {
      const set = this.oneShot[kind].get(e.path);
      if (!set) return;
      this.oneShot[kind].delete(e.path);
      for (const w of set) fire.add(w);
    };
    if (e.type === "NodeChildrenChanged") take("child");
    else {
      take("data");
      take("exist");
      if (e.type === "NodeDeleted") take("child");
    }
    for (const w of this.persistent.get(e.path) ?? []) fire.add(w);
    if (e.type !== "NodeChildrenChanged")
      for (const p of selfAndAncestors(e.path)) for (const w of this.recursive.get(p) ?? []) fire.add(w);
    for (const w of fire) {
      try {
        w(e);
      } catch {
        // a watcher's failure is its own
      }
    }
  }
}
