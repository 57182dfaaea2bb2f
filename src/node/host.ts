// Drives one replica core on real time, a transport and a LevelDB store: frames in → step(); a
// timer → tick(); each Ready → persist (awaited) → send → commit callbacks, strictly in order.

import type { ReplicaCore } from "../bft/replica.ts";
import type { SoftwareTrustedSubsystem } from "../bft/trusted.ts";
import type { ClientRequest, CommittedBatch, Message, ReplicaEvent, ReplicaId } from "../bft/types.ts";
import { decodeMessage, encodeMessage } from "../transport/codec.ts";
import type { Transport } from "../transport/transport.ts";
import type { LevelStore } from "./level-store.ts";

export interface HostOptions {
  readonly core: ReplicaCore;
  readonly transport: Transport;
  readonly store: LevelStore;
  /** A software subsystem whose counters are persisted with each Ready (hybrid mode). */
  readonly trusted?: SoftwareTrustedSubsystem;
  /** Real time of one core tick (default 10 ms). */
  readonly tickMs?: number;
  readonly onCommit?: (c: CommittedBatch) => void;
  readonly onEvent?: (e: ReplicaEvent) => void;
  /** A frame that does not decode, or a failure of the pump (the host stops on the latter). */
  readonly onError?: (err: Error, from?: ReplicaId) => void;
}

export class ReplicaHost {
  private readonly o: HostOptions;
  private timer: ReturnType<typeof setInterval> | null = null;
  private pumping = false;
  private stopped = false;
  private idle: Promise<void> = Promise.resolve();
  private savedCounters = "";

  constructor(o: HostOptions) {
    this.o = o;
  }

  get core(): ReplicaCore {
    return this.o.core;
  }

  async start(): Promise<void> {
    this.o.transport.onFrame((from, frame) => {
      if (this.stopped) return;
      const res = decodeMessage(frame);
      if (!res.ok) {
        this.o.onError?.(res.error, from);
        return;
      }
      this.o.core.step(from, res.msg);
      this.pump();
    });
    await this.o.transport.start();
    this.timer = setInterval(() => {
      this.o.core.tick();
      this.pump();
    }, this.o.tickMs ?? 10);
    this.pump();
  }

  /** Hands a client request to the core; returns its verdict (see Replica.propose). */
  submit(req: ClientRequest): string {
    const verdict = this.o.core.propose(req);
    this.pump();
    return verdict;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.idle;
    await this.o.transport.stop();
  }

  private pump(): void {
    if (this.pumping || this.stopped) return;
    this.pumping = true;
    this.idle = this.drain()
      .catch((err: unknown) => {
        this.stopped = true;
        this.o.onError?.(err instanceof Error ? err : new Error(String(err)));
      })
      .finally(() => {
        this.pumping = false;
      });
  }

  private async drain(): Promise<void> {
    const { core, transport, store, trusted } = this.o;
    while (core.hasReady() && !this.stopped) {
      const rd = core.ready();
      // Counters go with the Ready that carries what they certified (only when they moved).
      const counters = trusted?.counters();
      const sig = counters ? JSON.stringify([...counters]) : "";
      const countersMoved = counters !== undefined && sig !== this.savedCounters;
      if (rd.persist.length > 0 || countersMoved) {
        await store.apply(rd.persist, countersMoved ? counters : undefined);
        if (countersMoved) this.savedCounters = sig;
      }
      for (const o of rd.send) {
        const frame = encodeMessage(o.msg as Message);
        if (o.to === "all") transport.broadcast(frame);
        else transport.send(o.to, frame);
      }
      for (const c of rd.commit) this.o.onCommit?.(c);
      for (const e of rd.events) this.o.onEvent?.(e);
      core.advance();
    }
  }
}
