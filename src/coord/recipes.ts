// ZooKeeper's classic recipes on top of CoordClient: a distributed lock, leader election, barriers and
// a shared configuration node. Each holds only while its session is healthy: when the client is
// suspended (no confirmation through the order for 2/3 of the session timeout) the session may expire at
// any moment, so a lock or leadership counts as lost from then on.

import type { CoordClient, Stat, WatchedEvent } from "./client.ts";
import { CoordError } from "./errors.ts";
import { CreateMode } from "./ops.ts";

const seqOf = (name: string): number => Number(name.slice(-10));
const bySeq = (a: string, b: string) => seqOf(a) - seqOf(b) || (a < b ? -1 : 1);

/** Creates `path` and its missing ancestors as persistent nodes (existing ones are fine). */
export async function ensurePath(zk: CoordClient, path: string): Promise<void> {
  const parts = path.split("/").filter(Boolean);
  let p = "";
  for (const part of parts) {
    p += `/${part}`;
    try {
      await zk.create(p);
    } catch (err) {
      if (!(err instanceof CoordError && err.code === "NODEEXISTS")) throw err;
    }
  }
}

/** Resolves on the next event, or on a state change that makes waiting pointless. */
function eventOrLoss(
  zk: CoordClient,
  arm: (w: (e: WatchedEvent) => void) => Promise<boolean>,
): Promise<"event" | "gone"> {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (v: "event" | "gone") => {
      if (done) return;
      done = true;
      clearInterval(poll);
      resolve(v);
    };
    // The watch fires on the event; a session that ends never fires it, so poll the state too.
    const poll = setInterval(() => {
      if (zk.state === "Expired" || zk.state === "Closed") finish("gone");
    }, 50);
    arm(() => finish("event")).then(
      (armed) => {
        if (!armed) finish("gone");
      },
      (err) => {
        done = true;
        clearInterval(poll);
        reject(err);
      },
    );
  });
}

/**
 * The lock recipe: an ephemeral-sequential node under `dir`; the lowest holds the lock; every other
 * waiter watches only its predecessor (no herd effect).
 */
export class DistributedLock {
  private node: string | null = null;
  private acquired = false;

  constructor(
    private readonly zk: CoordClient,
    private readonly dir: string,
  ) {}

  /** True while the lock is acquired and the session is not suspended. */
  get held(): boolean {
    return this.acquired && !this.zk.suspended;
  }

  get path(): string | null {
    return this.node;
  }

  /** Waits until the lock is held; throws CoordError OPERATIONTIMEOUT after `timeoutMs` (the node is removed). */
  async acquire(timeoutMs = Number.POSITIVE_INFINITY): Promise<void> {
    if (this.node) throw new CoordError("APIERROR", "this lock object is already acquired or acquiring");
    const deadline = Date.now() + timeoutMs;
    await ensurePath(this.zk, this.dir);
    this.node = await this.zk.create(`${this.dir}/lock-`, "", { mode: CreateMode.EPHEMERAL_SEQUENTIAL });
    const mine = this.node.slice(this.dir.length + 1);
    try {
      for (;;) {
        const children = (await this.zk.getChildren(this.dir))
          .filter((c) => c.startsWith("lock-"))
          .sort(bySeq);
        const i = children.indexOf(mine);
        if (i < 0) throw new CoordError("SESSIONEXPIRED", "the lock node is gone (session expired)");
        if (i === 0) {
          this.acquired = true;
          return;
        }
        const pred = `${this.dir}/${children[i - 1]}`;
        const left = deadline - Date.now();
        if (left <= 0) throw new CoordError("OPERATIONTIMEOUT", "lock not acquired in time");
        let timer: ReturnType<typeof setTimeout> | undefined;
        const r = await Promise.race([
          eventOrLoss(this.zk, async (w) => (await this.zk.exists(pred, { watch: w })) !== null),
          new Promise<"timeout">((res) => {
            timer = setTimeout(() => res("timeout"), Math.min(left, 2 ** 31 - 1));
          }),
        ]).finally(() => clearTimeout(timer));
        if (r === "timeout") throw new CoordError("OPERATIONTIMEOUT", "lock not acquired in time");
        if (this.zk.state === "Expired" || this.zk.state === "Closed")
          throw new CoordError("SESSIONEXPIRED", "the session ended while waiting");
      }
    } catch (err) {
      await this.release().catch(() => {});
      throw err;
    }
  }

  /** Gives the lock up (deletes the node); safe to call when not held. */
  async release(): Promise<void> {
    const node = this.node;
    this.acquired = false;
    this.node = null;
    if (!node) return;
    try {
      await this.zk.delete(node);
    } catch (err) {
      if (!(err instanceof CoordError && (err.code === "NONODE" || err.code === "SESSIONEXPIRED"))) throw err;
    }
  }
}

/**
 * Leader election: every candidate creates an ephemeral-sequential node; the lowest is the leader; the
 * others watch their predecessor and re-check when it goes. `onChange(true)` when this candidate leads.
 */
export class LeaderElection {
  private node: string | null = null;
  private leading = false;
  private stopped = false;

  constructor(
    private readonly zk: CoordClient,
    private readonly dir: string,
    private readonly data: string,
    private readonly onChange: (leader: boolean) => void = () => {},
  ) {}

  get isLeader(): boolean {
    return this.leading && !this.zk.suspended;
  }

  async start(): Promise<void> {
    await ensurePath(this.zk, this.dir);
    this.node = await this.zk.create(`${this.dir}/n-`, this.data, { mode: CreateMode.EPHEMERAL_SEQUENTIAL });
    void this.check();
    void this.followState();
  }

  /** Leadership ends with a suspended or ended session, and is re-checked when the session is back. */
  private async followState(): Promise<void> {
    while (!this.stopped) {
      const s = await this.zk.nextState();
      if (s === "Suspended" || s === "Expired" || s === "Closed") this.set(false);
      if (s === "Expired" || s === "Closed") return;
      if (s === "SyncConnected") void this.check();
    }
  }

  /** The current leader's data (whoever it is). */
  async leader(): Promise<string | null> {
    const children = (await this.zk.getChildren(this.dir)).filter((c) => c.startsWith("n-")).sort(bySeq);
    for (const c of children) {
      try {
        return new TextDecoder().decode((await this.zk.getData(`${this.dir}/${c}`)).data);
      } catch (err) {
        if (!(err instanceof CoordError && err.code === "NONODE")) throw err;
      }
    }
    return null;
  }

  private async check(): Promise<void> {
    while (!this.stopped && this.node) {
      const mine = this.node.slice(this.dir.length + 1);
      let children: string[];
      try {
        children = (await this.zk.getChildren(this.dir)).filter((c) => c.startsWith("n-")).sort(bySeq);
      } catch {
        return;
      }
      const i = children.indexOf(mine);
      if (i < 0) {
        this.set(false);
        return;
      }
      if (i === 0) {
        this.set(true);
        return;
      }
      this.set(false);
      const pred = `${this.dir}/${children[i - 1]}`;
      const r = await eventOrLoss(
        this.zk,
        async (w) => (await this.zk.exists(pred, { watch: w })) !== null,
      ).catch(() => "gone" as const);
      if (r === "gone" && (this.zk.state === "Expired" || this.zk.state === "Closed")) return;
    }
  }

  private set(leader: boolean): void {
    if (leader === this.leading) return;
    this.leading = leader;
    this.onChange(leader);
  }

  /** Leaves the election (a leader hands over to the next candidate). */
  async resign(): Promise<void> {
    this.stopped = true;
    this.set(false);
    const node = this.node;
    this.node = null;
    if (node)
      await this.zk.delete(node).catch((err) => {
        if (!(err instanceof CoordError && (err.code === "NONODE" || err.code === "SESSIONEXPIRED")))
          throw err;
      });
  }
}

/** A simple barrier: holders set it, waiters block until it is removed. */
export class Barrier {
  constructor(
    private readonly zk: CoordClient,
    private readonly path: string,
  ) {}

  async set(): Promise<void> {
    try {
      await this.zk.create(this.path);
    } catch (err) {
      if (!(err instanceof CoordError && err.code === "NODEEXISTS")) throw err;
    }
  }

  async remove(): Promise<void> {
    await this.zk.delete(this.path).catch((err) => {
      if (!(err instanceof CoordError && err.code === "NONODE")) throw err;
    });
  }

  /** Resolves once the barrier node does not exist. */
  async wait(): Promise<void> {
    for (;;) {
      const r = await eventOrLoss(
        this.zk,
        async (w) => (await this.zk.exists(this.path, { watch: w })) !== null,
      );
      if (r === "gone") {
        if (this.zk.state === "Expired" || this.zk.state === "Closed")
          throw new CoordError("SESSIONEXPIRED", "the session ended while waiting");
        return;
      }
    }
  }
}

/**
 * A double barrier: `enter()` returns once `count` participants entered; `leave()` returns once all of
 * them left. Participants are ephemeral children, so one that dies leaves on its own.
 */
/** The node the first participant to see the full count creates under a double barrier's directory. */
export const DOUBLE_BARRIER_READY = "ready";

/**
 * A double barrier: `count` participants enter (each an ephemeral node under `dir`) and pass together,
 * then leave and pass once all have left. The participant that sees the full count creates `ready`, and
 * everyone waits for `ready` rather than for the count itself: a participant that passes and leaves at
 * once cannot strand one that has not yet looked (it would see the count drop below `count` again). The
 * last participant to leave removes `ready`. Use a fresh `dir` per round, or start the next round only
 * once every participant of this one has left.
 */
export class DoubleBarrier {
  private node: string | null = null;

  constructor(
    private readonly zk: CoordClient,
    private readonly dir: string,
    private readonly count: number,
    private readonly name: string,
  ) {
    if (name === DOUBLE_BARRIER_READY || name.includes("/") || name === "")
      throw new CoordError("BADARGUMENTS", `a double barrier participant cannot be called "${name}"`);
    if (!Number.isSafeInteger(count) || count < 1)
      throw new CoordError("BADARGUMENTS", "a double barrier needs a count of at least 1");
  }

  private get readyPath(): string {
    return `${this.dir}/${DOUBLE_BARRIER_READY}`;
  }

  async enter(): Promise<void> {
    await ensurePath(this.zk, this.dir);
    this.node = await this.zk.create(`${this.dir}/${this.name}`, "", { mode: CreateMode.EPHEMERAL });
    await this.until(async (w) => {
      // The watch goes on `ready` before the count is read, so its creation is never missed.
      if ((await this.zk.exists(this.readyPath, { watch: w })) !== null) return true;
      if ((await this.participants()) < this.count) return false;
      try {
        await this.zk.create(this.readyPath);
      } catch (err) {
        if (!(err instanceof CoordError && err.code === "NODEEXISTS")) throw err;
      }
      return true;
    });
  }

  async leave(): Promise<void> {
    if (this.node) {
      await this.zk.delete(this.node).catch((err) => {
        if (!(err instanceof CoordError && err.code === "NONODE")) throw err;
      });
    }
    this.node = null;
    await this.until(async (w) => (await this.participants(w)) === 0);
    await this.zk.delete(this.readyPath).catch((err) => {
      if (!(err instanceof CoordError && err.code === "NONODE")) throw err;
    });
  }

  private async participants(w?: (e: WatchedEvent) => void): Promise<number> {
    const children = await this.zk.getChildren(this.dir, w ? { watch: w } : undefined);
    return children.filter((c) => c !== DOUBLE_BARRIER_READY).length;
  }

  /** Checks `passed` (which arms its watch) until it holds, waiting for a watch event in between. */
  private async until(passed: (w: (e: WatchedEvent) => void) => Promise<boolean>): Promise<void> {
    for (;;) {
      const r = await eventOrLoss(this.zk, async (w) => !(await passed(w)));
      if (r === "gone") {
        if (this.zk.state === "Expired" || this.zk.state === "Closed")
          throw new CoordError("SESSIONEXPIRED", "the session ended while waiting");
        return;
      }
    }
  }
}

/** A configuration node shared by many processes: read with a watch, update with compare-and-set. */
export class SharedConfig<T> {
  private value: T | undefined;
  private version = -1;
  private listeners = new Set<(v: T | undefined) => void>();
  private watching = false;

  constructor(
    private readonly zk: CoordClient,
    private readonly path: string,
  ) {}

  /** The latest value seen (undefined when the node does not exist). */
  get current(): T | undefined {
    return this.value;
  }

  /** Reads the value and keeps it current; listeners hear every change. */
  async watch(fn?: (v: T | undefined) => void): Promise<T | undefined> {
    if (fn) this.listeners.add(fn);
    if (!this.watching) {
      this.watching = true;
      await this.refresh();
    }
    return this.value;
  }

  private async refresh(): Promise<void> {
    const rearm = () => {
      void this.refresh().catch(() => {});
    };
    const stat = await this.zk.exists(this.path, { watch: rearm });
    if (!stat) {
      this.apply(undefined, -1);
      return;
    }
    try {
      const { data, stat: s } = await this.zk.getData(this.path, { watch: rearm });
      this.apply(JSON.parse(new TextDecoder().decode(data)) as T, s.version);
    } catch (err) {
      if (err instanceof CoordError && err.code === "NONODE") this.apply(undefined, -1);
      else throw err;
    }
  }

  private apply(v: T | undefined, version: number): void {
    if (version !== -1 && version <= this.version && v !== undefined) return;
    this.value = v;
    this.version = version;
    for (const fn of this.listeners) fn(v);
  }

  /** Read-modify-write with the node's version: retried when another writer won the race. */
  async update(fn: (old: T | undefined) => T): Promise<Stat> {
    for (;;) {
      let old: T | undefined;
      let version = -1;
      try {
        const r = await this.zk.getData(this.path);
        old = JSON.parse(new TextDecoder().decode(r.data)) as T;
        version = r.stat.version;
      } catch (err) {
        if (!(err instanceof CoordError && err.code === "NONODE")) throw err;
      }
      const next = JSON.stringify(fn(old));
      try {
        if (version === -1) {
          await ensurePath(this.zk, this.path.slice(0, this.path.lastIndexOf("/")));
          await this.zk.create(this.path, next);
          return (await this.zk.exists(this.path)) as Stat;
        }
        return await this.zk.setData(this.path, next, version);
      } catch (err) {
        if (err instanceof CoordError && (err.code === "BADVERSION" || err.code === "NODEEXISTS")) continue;
        throw err;
      }
    }
  }
}
