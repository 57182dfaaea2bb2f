// What every part of the simulator shares: the configuration, the seeded randomness (one Prng, so the
// order of its draws is the run), the crypto, one SimReplica record per replica, the clients, the
// clock, which replicas are Byzantine and how, the fault tally and the verbose log.

import {
  type ClientRegistry,
  type ClientRequest,
  type CounterValue,
  DEFAULT_LIMITS,
  Digests,
  type Limits,
  type MemoryStorage,
  quorums,
  type ReplicaAuthenticator,
  type ReplicaCore,
  type ReplicaDeps,
  type UsigCounter,
} from "../../src/bft/index.ts";
import { type ByzantineKind, byzantineKinds, kindFor, SIM_LIMITS, type SimConfig } from "./config.ts";
import { Prng } from "./prng.ts";
import { SimCrypto } from "./sim-crypto.ts";

export interface SimClient {
  readonly id: string;
  readonly scheme: "ed25519" | "mac";
  readonly secret: Uint8Array;
  readonly macKeys: Uint8Array[];
  nextReqNo: number;
  readonly outstanding: Map<number, { req: ClientRequest; sentAt: number; retryAt: number }>;
}

/** The application each replica feeds: durable like the replica's storage, survives crashes. */
export interface SimApp {
  appliedSeq: number;
  readonly executed: Set<string>;
}

/** Everything the simulator keeps for one replica. */
export interface SimReplica {
  /** The running core; null while crashed, halted, or stopped after a fork. */
  core: ReplicaCore | null;
  /** What the replica persisted: survives crashes. */
  readonly storage: MemoryStorage;
  /** Its trusted counter (hybrid): a software USIG signing with its own key. */
  counter: UsigCounter;
  /** The counter's signing key: known to its subsystem only (and to the attacker, when compromised). */
  readonly counterSecret: Uint8Array;
  deps: ReplicaDeps;
  readonly registry: ClientRegistry;
  /** Replica-key authenticator (checkpoints, PBFT phases), ed25519-style in both modes. */
  readonly auth: ReplicaAuthenticator;
  /** Its subsystem's counters as of the replica's last durable Ready (software counters). */
  trustedSaved: Map<number, CounterValue>;
  readonly app: SimApp;
}

export class SimContext {
  readonly cfg: SimConfig;
  readonly rng: Prng;
  readonly crypto = new SimCrypto();
  readonly n: number;
  readonly limits: Limits;
  readonly digests: Digests;
  readonly replicas: SimReplica[] = [];
  readonly byz = new Map<number, ByzantineKind>();
  readonly clients: SimClient[] = [];
  now = 0;
  readonly faults: Record<string, number> = {};
  readonly log: string[] = [];
  verbose = false;

  constructor(cfg: SimConfig) {
    this.cfg = cfg;
    this.rng = new Prng(cfg.seed);
    this.n = quorums(cfg.mode, cfg.f).n;
    this.limits = { ...DEFAULT_LIMITS, ...SIM_LIMITS, ...cfg.limits };
    this.digests = new Digests(this.crypto);

    // Byzantine assignment.
    if (cfg.byzantine === "random") {
      const ids = this.rng.shuffle([...Array(this.n).keys()]).slice(0, cfg.f);
      for (const id of ids) this.byz.set(id, this.rng.pick(byzantineKinds(cfg.mode)));
    } else if (cfg.byzantine !== "none") {
      cfg.byzantine.slice(0, cfg.f).forEach((k, i) => {
        this.byz.set(i, kindFor(cfg.mode, k));
      });
    }
  }

  /** Replica i's record. */
  rep(i: number): SimReplica {
    return this.replicas[i] as SimReplica;
  }

  count(kind: string): void {
    this.faults[kind] = (this.faults[kind] ?? 0) + 1;
  }

  isCorrect(i: number): boolean {
    return !this.byz.has(i);
  }

  get healTick(): number {
    return Math.floor(this.cfg.steps * this.cfg.healAt);
  }

  get faulty(): boolean {
    return this.now < this.healTick;
  }
}

/**
 * A part of the simulation (network, Byzantine behaviours, clients, checkers): it reads the shared
 * context through these few names.
 */
export abstract class SimPart {
  protected readonly ctx: SimContext;

  constructor(ctx: SimContext) {
    this.ctx = ctx;
  }

  protected get rng(): Prng {
    return this.ctx.rng;
  }

  protected get cfg(): SimConfig {
    return this.ctx.cfg;
  }

  protected get n(): number {
    return this.ctx.n;
  }

  protected get now(): number {
    return this.ctx.now;
  }

  protected count(kind: string): void {
    this.ctx.count(kind);
  }
}
