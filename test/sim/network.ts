// The simulated network and crash schedule: messages in flight and the order they arrive in; loss,
// duplication, delay and partitions while faults last; the link reports a host's transport would give;
// and which replicas are down until when (restarted by the world, at the latest when the network heals).

import type { Message, ReplicaCore } from "../../src/bft/index.ts";
import { type SimContext, SimPart } from "./context.ts";

interface InFlight {
  readonly at: number;
  readonly order: number;
  readonly from: number;
  readonly to: number;
  readonly msg: Message;
}

export class Network extends SimPart {
  /** Brings a crashed replica back (from its persisted state). */
  private readonly restart: (i: number) => void;
  private readonly queue: InFlight[] = [];
  private order = 0;
  private partition: Set<number> | null = null;
  private partitionUntil = 0;
  private readonly crashedUntil = new Map<number, number>();

  constructor(ctx: SimContext, restart: (i: number) => void) {
    super(ctx);
    this.restart = restart;
  }

  private get faulty() {
    return this.ctx.faulty;
  }

  /** Takes the messages due now off the queue, in (time, random order) order. */
  due(): InFlight[] {
    this.queue.sort((a, b) => a.at - b.at || a.order - b.order);
    let k = 0;
    while (k < this.queue.length && (this.queue[k] as InFlight).at <= this.now) k++;
    return this.queue.splice(0, k);
  }

  /** Replica i is down from now until a random tick (or the heal). */
  crash(i: number): void {
    this.ctx.rep(i).core = null;
    this.crashedUntil.set(i, this.now + this.rng.int(10, 200));
  }

  private up(i: number): void {
    this.crashedUntil.delete(i);
    this.restart(i);
  }

  /** What a host's transport would say about replica i's connections now. */
  reportLinks(i: number, r: ReplicaCore): void {
    for (let j = 0; j < this.n; j++) {
      if (j === i) continue;
      const apart = this.partition !== null && this.partition.has(i) !== this.partition.has(j);
      r.link(j, this.ctx.rep(j).core !== null && !apart);
    }
  }

  /** Partitions, crashes and restarts while faults last; at the heal, everything comes back. */
  scheduleFaults(): void {
    if (this.now === this.ctx.healTick) {
      this.partition = null;
      for (const i of [...this.crashedUntil.keys()]) this.up(i);
      this.count("heal");
      return;
    }
    if (!this.faulty) return;
    if (this.cfg.partitions) {
      if (this.partition && this.now >= this.partitionUntil) this.partition = null;
      else if (!this.partition && this.rng.chance(0.004)) {
        const size = this.rng.int(1, this.n - 1);
        this.partition = new Set(this.rng.shuffle([...Array(this.n).keys()]).slice(0, size));
        this.partitionUntil = this.now + this.rng.int(20, 300);
        this.count("partition");
      }
    }
    if (this.cfg.crashes) {
      for (const [i, until] of [...this.crashedUntil]) if (this.now >= until) this.up(i);
      if (this.rng.chance(0.004)) {
        const i = this.rng.int(0, this.n - 1);
        if (this.ctx.rep(i).core && this.ctx.isCorrect(i)) {
          this.crash(i);
          this.count("crash");
          if (this.ctx.verbose) this.ctx.log.push(`t${this.now} r${i} crash`);
        }
      }
    }
  }

  transmit(from: number, to: number, msg: Message): void {
    if (this.faulty) {
      if (this.partition && this.partition.has(from) !== this.partition.has(to)) return;
      if (this.rng.chance(this.cfg.lossRate)) {
        this.count("loss");
        return;
      }
      if (this.rng.chance(this.cfg.dupRate)) {
        this.count("duplicate");
        this.queue.push({
          at: this.now + this.rng.int(1, this.cfg.maxDelay * 3),
          order: this.order++,
          from,
          to,
          msg,
        });
      }
    }
    const delay = this.rng.int(1, this.cfg.maxDelay);
    this.queue.push({ at: this.now + delay, order: this.rng.u32(), from, to, msg });
  }
}
