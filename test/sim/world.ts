// Deterministic simulation of a cluster: seeded network with delay, loss, duplication, reordering and
// partitions; crashes and restarts from persisted state; Byzantine replicas (at most f); clients; and
// checkers after every step. This file drives a run (the Simulation: build, step, drain, restart);
// network.ts, byzantine.ts, checkers.ts and clients.ts hold the parts, context.ts what they share.

import {
  AssertionFailed,
  type Batch,
  type CertChecker,
  type ClientKeys,
  type ClientRegistry,
  type ClientRequest,
  type CoreCrypto,
  type CounterCert,
  type CounterValue,
  createReplica,
  type EquivocationProof,
  MemoryStorage,
  type Message,
  type Outgoing,
  type ReplicaAuthenticator,
  type ReplicaCore,
  type ReplicaDeps,
  staticRegistry,
  type TrustedSubsystem,
  trustedSubsystem,
  UsigChecker,
  UsigCounter,
} from "../../src/bft/index.ts";
import { Byzantine } from "./byzantine.ts";
import { Checkers, Violation } from "./checkers.ts";
import { ClientDriver, createClients } from "./clients.ts";
import type { SimConfig, SimResult } from "./config.ts";
import { SimContext } from "./context.ts";
import { Network } from "./network.ts";
import type { SimCrypto } from "./sim-crypto.ts";

export {
  BYZANTINE_KINDS,
  type ByzantineKind,
  byzantineKinds,
  DEFAULT_SIM,
  SIM_LIMITS,
  type SimConfig,
  type SimResult,
} from "./config.ts";

export class Simulation {
  readonly cfg: SimConfig;
  private readonly ctx: SimContext;
  /** Verifies any subsystem's certificates with public keys only (what replicas and auditors hold). */
  private readonly checker: CertChecker;
  private readonly checks: Checkers;
  private readonly net: Network;
  private readonly byzantine: Byzantine;
  private readonly clients: ClientDriver;
  /** Sees every message a replica sends (after Byzantine rewriting), e.g. to collect codec corpora. */
  onSend: ((from: number, msg: Message) => void) | null = null;

  constructor(cfg: SimConfig) {
    this.cfg = cfg;
    // The context makes the Byzantine assignment (the first draws of the seeded generator).
    const ctx = new SimContext(cfg);
    this.ctx = ctx;
    const { crypto, n } = ctx;

    // Identities: replica keys, trusted subsystems (each its own key), clients.
    const replicaIds = [...Array(n).keys()].map((i) => crypto.newIdentity(`replica-${i}`));
    const counterIds = [...Array(n).keys()].map((i) => crypto.newIdentity(`counter-${i}`));
    this.checker = new UsigChecker(
      counterIds.map((x) => x.publicKey),
      crypto,
    );
    const clientKeys = createClients(ctx);
    this.checks = new Checkers(ctx, this.checker);
    this.net = new Network(ctx, (i) => this.restart(i));
    this.byzantine = new Byzantine(ctx, this.net, this.checks);
    this.clients = new ClientDriver(ctx, this.checks, (to, req) => this.submit(to, req));
    for (let i = 0; i < n; i++) {
      const counterSecret = (counterIds[i] as { secret: Uint8Array }).secret;
      const trustedSaved = new Map<number, CounterValue>();
      const counter = this.makeCounter(i, counterSecret, trustedSaved);
      const registry = staticRegistry(clientKeys[i] as Map<string, ClientKeys>);
      const auth = crypto.authenticator(
        (replicaIds[i] as { secret: Uint8Array }).secret,
        replicaIds.map((x) => x.publicKey),
      );
      ctx.replicas.push({
        core: null,
        storage: new MemoryStorage(),
        counter,
        counterSecret,
        deps: this.makeDeps(i, counter, auth, registry),
        registry,
        auth,
        trustedSaved,
        app: { appliedSeq: 0, executed: new Set() },
      });
      ctx.rep(i).core = this.build(i);
    }
  }

  /** The log of a verbose run. */
  get log(): string[] {
    return this.ctx.log;
  }

  get verbose(): boolean {
    return this.ctx.verbose;
  }

  set verbose(v: boolean) {
    this.ctx.verbose = v;
  }

  /** Replica i's software counter, resumed from what its last durable Ready saved. */
  private makeCounter(i: number, secret: Uint8Array, saved: Map<number, CounterValue>): UsigCounter {
    return new UsigCounter({
      id: i,
      sign: (bytes) => this.ctx.crypto.sign(secret, bytes),
      counters: saved,
    });
  }

  private makeDeps(
    i: number,
    counter: UsigCounter,
    auth: ReplicaAuthenticator,
    registry: ClientRegistry,
  ): ReplicaDeps {
    const crypto = this.ctx.crypto;
    const trusted: TrustedSubsystem | undefined =
      this.cfg.mode === "hybrid" ? trustedSubsystem(counter, this.checker) : undefined;
    if (this.ctx.byz.get(i) !== "bad-client-sig") return { crypto, registry, auth, trusted };
    // A Byzantine host skips client authentication: it accepts (and, as leader, proposes with its own
    // valid certificates) requests no client sent. Its subsystem still certifies honestly. (It still
    // checks its own MAC entry: the core does that without the host's help.)
    return {
      crypto: { ...bindCrypto(crypto), verifyEd25519: () => true },
      registry: { keys: (id) => registry.keys(id) ?? { ed25519PublicKey: new Uint8Array(32) } },
      auth,
      trusted,
    };
  }

  private build(i: number): ReplicaCore {
    const rep = this.ctx.rep(i);
    return createReplica(
      { id: i, f: this.cfg.f, mode: this.cfg.mode, limits: this.ctx.limits },
      rep.deps,
      rep.storage,
    );
  }

  private get now(): number {
    return this.ctx.now;
  }

  /** Adds a line about replica i to the log of a verbose run. */
  private note(i: number, what: string): void {
    if (this.ctx.verbose) this.ctx.log.push(`t${this.now} r${i} ${what}`);
  }

  // ------------------------------------------------------------------ checkers (tests reach these)

  /** Tick at which the first conflicting certificate was sent. */
  protected get firstConflictAt(): number | null {
    return this.checks.firstConflictAt;
  }

  protected set firstConflictAt(tick: number | null) {
    this.checks.firstConflictAt = tick;
  }

  protected apply(i: number, seq: number, batch: Batch, executed: readonly boolean[], view: number): void {
    this.checks.apply(i, seq, batch, executed, view);
  }

  protected onEquivocation(i: number, culprit: number, proof: EquivocationProof): void {
    this.checks.onEquivocation(i, culprit, proof);
  }

  protected checkForks(): void {
    this.checks.checkForks();
  }

  protected onDiverged(i: number, seq: number): void {
    this.checks.onDiverged(i, seq);
  }

  /** What the run has found so far (its result's `violations`). */
  protected get violationsSoFar(): readonly string[] {
    return this.checks.violations;
  }

  /** An order-counter certificate made with replica i's counter key directly, bypassing its counter. */
  protected certifyWithStolenKey(i: number, value: CounterValue, digest: Uint8Array): CounterCert {
    return this.byzantine.certifyWithStolenKey(i, value, digest);
  }

  // ------------------------------------------------------------------ driving

  run(): SimResult {
    const { ctx, checks } = this;
    try {
      for (ctx.now = 1; ctx.now <= this.cfg.steps; ctx.now++) this.step();
      this.checkForks();
      // Correct replicas that hold a proof of equivocation stop ordering until an operator steps in:
      // progress is not expected after a detection.
      if (checks.detectedAt === null) checks.checkLiveness();
    } catch (err) {
      if (!(err instanceof Violation)) {
        checks.violations.push(`tick ${ctx.now}: crash: ${(err as Error).stack ?? String(err)}`);
      }
    }
    const dropped: Record<string, number> = {};
    for (const { core: r } of ctx.replicas) {
      if (!r) continue;
      for (const [k, v] of r.dropped) dropped[k] = (dropped[k] ?? 0) + v;
    }
    return {
      seed: this.cfg.seed,
      mode: this.cfg.mode,
      steps: this.cfg.steps,
      violations: checks.violations,
      requests: this.clients.requests,
      completed: checks.completed(),
      maxSeq: checks.maxSeq,
      maxView: checks.maxView,
      faults: ctx.faults,
      dropped,
      byzantine: [...ctx.byz].map(([id, k]) => `${id}:${k}`),
      detected: checks.detectedAt !== null,
      forked: checks.forkedAt !== null,
      detectionTicks: checks.detectionTicks,
    };
  }

  private step(): void {
    this.net.scheduleFaults();
    // Deliver due messages, in (time, random order) order.
    for (const m of this.net.due()) {
      const r = this.ctx.rep(m.to).core;
      if (!r) continue;
      this.guard(m.to, () => {
        r.step(m.from, m.msg);
        this.drain(m.to);
      });
    }
    for (let i = 0; i < this.ctx.n; i++) {
      const r = this.ctx.rep(i).core;
      if (!r) continue;
      this.guard(i, () => {
        if (this.cfg.links) this.net.reportLinks(i, r);
        r.tick();
        this.byzantine.tick(i);
        this.drain(i);
      });
      this.checks.checkInvariants(i);
    }
    this.clients.act();
  }

  /**
   * Runs a replica's step. A Byzantine replica whose core stops on an assertion (its own state differs
   * from what a quorum certified, e.g. after executing requests it should have refused) halts for good;
   * on a correct replica the error is a finding, with one exception: after a compromised counter split
   * the correct replicas, one on the losing side of the fork finds its state differs from a stable
   * checkpoint and stops (the core asserts). That is the fork's doing, not a bug, and counts as a fork:
   * a correct replica must still raise the proof of equivocation by the end of the run.
   */
  private guard(i: number, fn: () => void): void {
    if (this.ctx.isCorrect(i)) {
      try {
        return fn();
      } catch (err) {
        if (
          err instanceof Violation ||
          this.checks.firstConflictAt === null ||
          !(err instanceof AssertionFailed && err.message.startsWith("state diverged"))
        )
          throw err;
        this.checks.stopOnFork(i, err.message);
        return;
      }
    }
    try {
      fn();
    } catch (err) {
      if (err instanceof Violation) throw err;
      this.ctx.rep(i).core = null;
      this.ctx.count("byzantine-halted");
      this.note(i, `halted: ${(err as Error).message}`);
    }
  }

  /**
   * The replica's peers no longer keep the batches it misses and offered a checkpoint snapshot: its
   * application copies the state up to the checkpoint (as the ledger fetches certified blocks), then
   * the core installs the snapshot.
   */
  private installSnapshot(i: number, r: ReplicaCore, target: number): void {
    this.checks.copySnapshot(i, target);
    this.ctx.count("snapshot-install");
    this.note(i, `snapshot ${target}`);
    r.installSnapshot();
    this.drain(i);
  }

  /** Brings crashed replica i back from its persisted state (unless it stopped for good). */
  private restart(i: number): void {
    if (this.ctx.rep(i).core || this.checks.stoppedForGood(i)) return;
    const r = this.build(i);
    // Its host saved the proof it raised: it stays stopped across restarts.
    const reason = this.checks.convicted.get(i);
    if (reason !== undefined) r.halt(reason);
    this.ctx.rep(i).core = r;
    this.ctx.count("restart");
    this.note(i, "restart");
    this.drain(i);
  }

  /** Persist, send, apply: the driver side of the Ready contract. */
  private drain(i: number): void {
    const { ctx } = this;
    const rep = ctx.rep(i);
    const r = rep.core;
    if (!r?.hasReady()) return;
    const rd = r.ready();
    if (
      ctx.faulty &&
      this.cfg.crashes &&
      ctx.isCorrect(i) &&
      rd.persist.length > 0 &&
      ctx.rng.chance(0.0005)
    ) {
      // The process dies before its Ready is durable: nothing of it is persisted, sent or applied.
      // Software counters are written in the same atomic batch, so they come back as they were;
      // hardware counters keep whatever was certified meanwhile.
      this.net.crash(i);
      ctx.count("crash-before-persist");
      this.note(i, "crash before persist");
      if (this.cfg.trustedCounters === "with-ready") {
        rep.counter = this.makeCounter(i, rep.counterSecret, rep.trustedSaved);
        rep.deps = this.makeDeps(i, rep.counter, rep.auth, rep.registry);
      }
      return;
    }
    rep.storage.apply(rd.persist);
    rep.trustedSaved = rep.counter.counters();
    let sends: readonly Outgoing[] = rd.send;
    const kind = ctx.byz.get(i);
    if (kind) sends = this.byzantine.mutate(i, kind, sends);
    for (const o of sends) {
      this.onSend?.(i, o.msg);
      if (o.to === "all") {
        for (let j = 0; j < ctx.n; j++) if (j !== i) this.net.transmit(i, j, o.msg);
      } else this.net.transmit(i, o.to, o.msg);
      this.byzantine.record(o.msg);
    }
    for (const c of rd.commit) this.apply(i, c.seq, c.batch, c.executed, c.view);
    const offer = r.snapshotOffer;
    for (const e of rd.events) {
      if (e.kind === "new-view") {
        this.checks.maxView = Math.max(this.checks.maxView, e.view);
        ctx.count("new-view");
      }
      if (e.kind === "state-transfer") ctx.count("state-transfer");
      if (e.kind === "view-change-started" && /too slowly/.test(e.reason)) ctx.count("pace-view-change");
      if (e.kind === "equivocation") this.onEquivocation(i, e.culprit, e.proof);
      if (e.kind === "state-diverged" && ctx.isCorrect(i)) this.onDiverged(i, e.seq);
      if (
        ctx.verbose &&
        e.kind !== "dropped" &&
        e.kind !== "checkpoint-stable" &&
        e.kind !== "duplicate-request"
      )
        this.note(i, JSON.stringify(e));
    }
    r.advance();
    if (offer !== null) this.installSnapshot(i, r, offer);
  }

  // ------------------------------------------------------------------ clients

  private submit(to: number, req: ClientRequest): void {
    const r = this.ctx.rep(to).core;
    if (!r) return;
    try {
      r.propose(req);
    } catch {
      // refused (overloaded): the client retries later
    }
    this.drain(to);
  }
}

function bindCrypto(c: SimCrypto): CoreCrypto {
  return {
    sha256: (d) => c.sha256(d),
    hmacSha256: (k, d) => c.hmacSha256(k, d),
    verifyEd25519: (p, m, s) => c.verifyEd25519(p, m, s),
  };
}

export function runSim(cfg: SimConfig): SimResult {
  return new Simulation(cfg).run();
}
