// Drives one replica core on real time, a transport and a LevelDB store: frames in → step(); a
// timer → tick(); each Ready → persist (awaited) → send → commit callbacks, strictly in order. Readys
// are taken from the core as soon as they exist: their hybrid votes go out at once, and everything
// that waits for the disk queues behind the write in progress; Readys that queued meanwhile are
// written together, in one batch and one fsync (group commit).

import type { ReplicaCore } from "../bft/replica.ts";
import type {
  ClientRequest,
  CommittedBatch,
  Message,
  Outgoing,
  Ready,
  ReplicaEvent,
  ReplicaId,
} from "../bft/types.ts";
import type { LevelStore, RawOp } from "../storage/level-store.ts";
import { decodeMessage, encodeMessage } from "../transport/codec.ts";
import type { Transport } from "../transport/transport.ts";
import { withDefaults } from "../util/defaults.ts";
import type { StageTrace } from "../util/trace.ts";

/** An application fed by the total order (the ledger), driven in lockstep with the core's Readys. */
export interface HostApp<B = unknown> {
  /** First byte of the app's frames between replicas (distinct from the codec's version byte). */
  readonly frameTag: number;
  /** Turns committed batches into writes that go into the same atomic batch as the core's state. */
  prepare(commits: readonly CommittedBatch[]): Promise<{ ops: RawOp[]; built: B }>;
  /** Those writes are issued, not yet durable (optional: work that may overlap the write). */
  writing?(built: B): void;
  /** Those writes are durable (and the Ready's messages sent). */
  written(built: B): void;
  /** A frame with the app's tag from an authenticated peer; true when the host should run catchUp soon. */
  onPeerFrame(from: ReplicaId, frame: Uint8Array): boolean;
  /**
   * The core was offered a checkpoint snapshot at `target` because its peers no longer keep the batches
   * it misses: bring the application's state towards `target` (fetch what is missing from peers and
   * apply it). Called between Readys, repeatedly until it returns a seq >= target, which is the highest
   * seq the application now holds; the host then installs the snapshot in the core.
   */
  catchUp?(target: number): Promise<number>;
}

export interface HostOptions {
  readonly core: ReplicaCore;
  readonly transport: Transport;
  readonly store: LevelStore;
  /** Real time of one core tick (default 10 ms). */
  readonly tickMs?: number;
  readonly app?: HostApp;
  readonly onCommit?: (c: CommittedBatch) => void;
  readonly onEvent?: (e: ReplicaEvent) => void;
  /** A frame that does not decode, or a failure of the pump (the host stops on the latter). */
  readonly onError?: (err: Error, from?: ReplicaId) => void;
  /** Stage marks for the latency breakdown (off when absent). */
  readonly trace?: StageTrace;
  /**
   * Fault injection for tests: called when a Ready's hybrid PREPAREs/COMMITs (their seqs) went out and
   * the Ready is not yet written (see drain).
   */
  readonly onSentBeforeDurable?: (seqs: readonly number[]) => void;
}

/** The host's option defaults (see HostOptions): the one place they are written. */
export const HOST_DEFAULTS = Object.freeze({ tickMs: 10 }) satisfies Partial<HostOptions>;

/** Messages a Ready may send before it is written: the hybrid votes, whose value the counter pinned. */
const sentBeforeDurable = (o: Outgoing): boolean => o.msg.type === "h-prepare" || o.msg.type === "h-commit";

/** Readys written in one batch at most (each is bounded by the core's limits). */
export const GROUP_READYS_MAX = 64;

/**
 * While the core is quiet (nothing waits on time), the host wakes every QUIET_TICKS ticks instead of
 * every tick and runs the ticks it skipped, as a timer that always fired on time would have; an input
 * runs the skipped ticks first, and ticking goes back to every tick as soon as the core is not quiet.
 * An idle replica thus wakes 4 times a second for its ticks (with its STATUS gossip), not 100.
 */
export const QUIET_TICKS = 25;

export class ReplicaHost {
  private readonly o: HostOptions;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly tickMs: number;
  /** When the last tick the core was given was due (Date.now(): a clock jump costs at most QUIET_TICKS). */
  private lastTickAt = 0;
  /** The timer is the long one (QUIET_TICKS): the core was quiet when it was set. */
  private slow = false;
  /** Ticks given to the core (stats: fewer wake-ups than ticks while quiet). */
  readonly ticks = { ticks: 0, wakeups: 0 };
  /** Readys taken from the core, their early messages sent, waiting for the writer (in order). */
  private queued: Ready[] = [];
  /** Batches written, and the Readys they held (more Readys than writes: group commit at work). */
  readonly stats = { writes: 0, readys: 0 };
  private pumping = false;
  private stopped = false;
  private idle: Promise<void> = Promise.resolve();
  /** When a frame last arrived from each peer (ms). */
  private readonly lastHeard = new Map<ReplicaId, number>();

  constructor(o: HostOptions) {
    this.o = o;
    this.tickMs = withDefaults(HOST_DEFAULTS, o).tickMs;
  }

  get core(): ReplicaCore {
    return this.o.core;
  }

  get transport(): Transport {
    return this.o.transport;
  }

  async start(): Promise<void> {
    this.o.transport.onFrame((from, frame) => {
      if (this.stopped) return;
      this.lastHeard.set(from, Date.now());
      if (this.slow) this.catchUpTicks();
      if (this.o.app && frame[0] === this.o.app.frameTag) {
        if (this.o.app.onPeerFrame(from, frame)) this.pump();
        return;
      }
      const res = decodeMessage(frame);
      if (!res.ok) {
        this.o.onError?.(res.error, from);
        return;
      }
      const t = this.o.trace;
      const prep = t && (res.msg.type === "h-prepare" || res.msg.type === "p-pre-prepare") ? res.msg.seq : -1;
      if (prep >= 0) t?.mark("prepare-received", prep);
      this.o.core.step(from, res.msg);
      if (prep >= 0) t?.mark("prepare-handled", prep);
      this.pump();
      this.wakeIfBusy();
    });
    await this.o.transport.start();
    this.lastTickAt = Date.now();
    this.schedule();
    this.pump();
  }

  /** Sets the tick timer: one tick away, or QUIET_TICKS while the core is quiet. */
  private schedule(): void {
    if (this.stopped) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.slow = this.o.core.quiet();
    this.timer = setTimeout(() => this.onTimer(), this.slow ? this.tickMs * QUIET_TICKS : this.tickMs);
  }

  private onTimer(): void {
    this.timer = null;
    this.ticks.wakeups++;
    if (this.slow) this.catchUpTicks();
    else this.tick(1); // a busy loop gets fewer ticks, as it always did: timeouts stretch under load
    this.pump();
    this.schedule();
  }

  /** Runs the ticks skipped while the timer was the long one (at most QUIET_TICKS). */
  private catchUpTicks(): void {
    const owed = Math.min(QUIET_TICKS, Math.floor((Date.now() - this.lastTickAt) / this.tickMs));
    if (owed > 0) this.tick(owed);
  }

  private tick(n: number): void {
    this.reportLinks();
    for (let i = 0; i < n; i++) this.o.core.tick();
    this.ticks.ticks += n;
    this.lastTickAt = Math.max(this.lastTickAt + n * this.tickMs, Date.now() - this.tickMs);
  }

  /** Tells the core which peer connections are open (it suspects a leader whose link closed). */
  private reportLinks(): void {
    const t = this.o.transport;
    if (!t.isConnected) return;
    const core = this.o.core;
    for (let p = 0; p < core.n; p++) if (p !== core.id) core.link(p, t.isConnected(p));
  }

  /** After an input: a core that has something timed to do gets its ticks every tick again. */
  private wakeIfBusy(): void {
    if (this.slow && !this.stopped && !this.o.core.quiet()) {
      this.catchUpTicks();
      this.schedule();
    }
  }

  /**
   * Hands a client request to the core; returns its verdict (see Replica.propose). `own`: signed by this
   * replica's key (its gateway or coordination service).
   */
  submit(req: ClientRequest, own = false): string {
    if (this.slow) this.catchUpTicks();
    const verdict = this.o.core.propose(req, own);
    this.pump();
    this.wakeIfBusy();
    return verdict;
  }

  /** Peers heard from within the last `withinMs` (any frame: the core gossips STATUS periodically). */
  livePeers(withinMs: number): number {
    const since = Date.now() - withinMs;
    let n = 0;
    for (const t of this.lastHeard.values()) if (t >= since) n++;
    return n;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.idle;
    await this.o.transport.stop();
  }

  private pump(): void {
    if (this.stopped) return;
    // Outside a catch-up, take Readys now: their votes need not wait for the write in progress.
    if (this.o.core.snapshotOffer === null) {
      try {
        this.take();
      } catch (err) {
        this.fail(err);
        return;
      }
    }
    if (this.pumping) return;
    this.pumping = true;
    this.idle = this.drain()
      .catch((err: unknown) => this.fail(err))
      .finally(() => {
        this.pumping = false;
        // A pump that came after drain's last look and before this line found it still running.
        if (!this.stopped && (this.queued.length > 0 || this.o.core.hasReady())) this.pump();
      });
  }

  /** The pump failed (a write, the app): stop driving the core. */
  private fail(err: unknown): void {
    this.stopped = true;
    this.o.onError?.(err instanceof Error ? err : new Error(String(err)));
  }

  private transmit(out: readonly Outgoing[], trace: StageTrace | undefined): void {
    const { transport } = this.o;
    for (const o of out) {
      if (trace) {
        const t = o.msg.type;
        if (t === "h-prepare" || t === "p-pre-prepare") trace.mark("prepare-sent", o.msg.seq);
        else if (t === "h-commit" || t === "p-commit") trace.mark("commit-sent", o.msg.seq);
      }
      const frame = encodeMessage(o.msg as Message);
      if (o.to === "all") transport.broadcast(frame);
      else transport.send(o.to, frame);
    }
  }

  /** Snapshot offered: the app catches up (or there is no app state to bring along), then the core jumps. */
  private async catchUp(): Promise<void> {
    const { core, app } = this.o;
    const target = core.snapshotOffer;
    if (target === null) return;
    if (!app) {
      core.installSnapshot();
      return;
    }
    if (!app.catchUp) return;
    const reached = await app.catchUp(target);
    if (reached >= target && core.snapshotOffer === target) core.installSnapshot();
  }

  /**
   * Takes every Ready the core holds. A hybrid PREPARE or COMMIT goes out at once, before its Ready (and
   * any Ready queued before it) is durable. Its certificate is the trusted counter's, which advanced
   * (durably) before the Ready was made: whether or not the writes happen, this replica can never send
   * another message with that value, and a crash before them leaves it behind its counter, as a crash
   * between certify and persist always could (protocol.md §9.3). Everything else waits for the write.
   * So a replica's votes wait neither for its fsync nor for the block its commits build.
   */
  private take(): void {
    const { core } = this.o;
    const trace = this.o.trace;
    while (!this.stopped && core.hasReady()) {
      const rd = core.ready();
      if (trace) {
        for (const c of rd.commit) trace.mark("committed", c.seq);
        for (const o of rd.send)
          if (o.msg.type === "h-commit" || o.msg.type === "p-commit") trace.mark("commit-ready", o.msg.seq);
      }
      const early: Outgoing[] = [];
      const later: Outgoing[] = [];
      for (const o of rd.send) (sentBeforeDurable(o) ? early : later).push(o);
      if (early.length > 0) {
        this.transmit(early, trace);
        this.o.onSentBeforeDurable?.(early.map((o) => (o.msg as { seq: number }).seq));
        this.queued.push({ ...rd, send: later });
      } else {
        this.queued.push(rd);
      }
    }
  }

  /** Writes the queued Readys in order, several at once, until none is left. */
  private async drain(): Promise<void> {
    const { core, store } = this.o;
    for (;;) {
      if (this.stopped) return;
      if (this.queued.length === 0) {
        // Between writes only: the app catches up and the core installs its snapshot.
        await this.catchUp();
        this.take();
        if (this.queued.length === 0 || this.stopped) return;
      }
      const group = this.queued.splice(0, GROUP_READYS_MAX);
      const rd: Ready =
        group.length === 1
          ? (group[0] as Ready)
          : {
              persist: group.flatMap((r) => r.persist),
              send: group.flatMap((r) => r.send),
              commit: group.flatMap((r) => r.commit),
              events: group.flatMap((r) => r.events),
            };
      this.stats.writes++;
      this.stats.readys += group.length;
      const trace = this.o.trace;
      // The app's writes for these commits go into the same atomic batch as the core's state.
      const app = this.o.app && rd.commit.length > 0 ? await this.o.app.prepare(rd.commit) : undefined;
      if (trace) for (const c of rd.commit) trace.mark("prepared", c.seq);
      if (rd.persist.length > 0 || (app && app.ops.length > 0)) {
        const durable = store.apply(rd.persist, app?.ops);
        if (app) this.o.app?.writing?.(app.built);
        await durable;
      } else if (app) this.o.app?.writing?.(app.built);
      if (trace) for (const c of rd.commit) trace.mark("written", c.seq);
      this.transmit(rd.send, trace);
      if (app) this.o.app?.written(app.built);
      for (const c of rd.commit) this.o.onCommit?.(c);
      for (const e of rd.events) this.o.onEvent?.(e);
      for (let i = 0; i < group.length; i++) core.advance();
      // Readys that came while this one was written.
      if (core.snapshotOffer === null) this.take();
    }
  }
}
