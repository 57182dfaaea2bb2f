// Deterministic simulation of a cluster: seeded network with delay, loss, duplication, reordering and
// partitions; crashes and restarts from persisted state; Byzantine replicas (at most f); clients; and
// checkers for agreement, validity, exactly-once and liveness after every step. In hybrid mode a
// replica may have a compromised trusted counter: correct replicas may then split, but one of them must
// prove the equivocation (the run counts as "detected"); a silent fork or a false accusation fails.

import {
  AssertionFailed,
  type Batch,
  type CertChecker,
  type CertifiedDigest,
  type ClientKeys,
  type ClientRegistry,
  type ClientRequest,
  type CoreCrypto,
  type CounterCert,
  CounterError,
  type CounterValue,
  certBytes,
  checkEquivocation,
  createReplica,
  DEFAULT_LIMITS,
  Digests,
  type EquivocationProof,
  type HCommit,
  type HPrepare,
  type Limits,
  MemoryStorage,
  type Message,
  ORDER_COUNTER,
  type Outgoing,
  type PCommit,
  type PPrePrepare,
  quorums,
  type ReplicaAuthenticator,
  type ReplicaCore,
  type ReplicaDeps,
  staticRegistry,
  type TrustedSubsystem,
  toHex,
  trustedSubsystem,
  UsigChecker,
  UsigCounter,
} from "../../src/bft/index.ts";
import {
  BYZANTINE_KINDS,
  type ByzantineKind,
  byzantineKinds,
  COUNTER_ATTACK_CHANCE,
  DEFAULT_SIM,
  kindFor,
  SIM_LIMITS,
  type SimConfig,
  type SimResult,
} from "./config.ts";
import { Prng } from "./prng.ts";
import { SimCrypto } from "./sim-crypto.ts";

export {
  BYZANTINE_KINDS,
  type ByzantineKind,
  byzantineKinds,
  DEFAULT_SIM,
  SIM_LIMITS,
  type SimConfig,
  type SimResult,
};

interface InFlight {
  readonly at: number;
  readonly order: number;
  readonly from: number;
  readonly to: number;
  readonly msg: Message;
}

interface SimClient {
  readonly id: string;
  readonly scheme: "ed25519" | "mac";
  readonly secret: Uint8Array;
  readonly macKeys: Uint8Array[];
  nextReqNo: number;
  readonly outstanding: Map<number, { req: ClientRequest; sentAt: number; retryAt: number }>;
}

/** The application each replica feeds: durable like the replica's storage, survives crashes. */
interface SimApp {
  appliedSeq: number;
  readonly executed: Set<string>;
}

class Violation extends Error {}

export class Simulation {
  readonly cfg: SimConfig;
  private readonly rng: Prng;
  private readonly crypto = new SimCrypto();
  private readonly n: number;
  private readonly limits: Limits;
  private readonly replicas: (ReplicaCore | null)[] = [];
  private readonly storages: MemoryStorage[] = [];
  /** Each replica's trusted counter (hybrid): a software USIG signing with its own key. */
  private readonly counters: UsigCounter[] = [];
  /** Each counter's signing key: known to its subsystem only (and to the attacker, when compromised). */
  private readonly counterSecrets: Uint8Array[] = [];
  /** Verifies any subsystem's certificates with public keys only (what replicas and auditors hold). */
  private readonly checker: CertChecker;
  private readonly deps: ReplicaDeps[] = [];
  private readonly registries: ClientRegistry[] = [];
  /** Replica-key authenticators (checkpoints, PBFT phases), ed25519-style in both modes. */
  private readonly auths: ReplicaAuthenticator[] = [];
  /** Each subsystem's counters as of its replica's last durable Ready (software counters). */
  private readonly trustedSaved: Map<number, CounterValue>[] = [];
  private readonly apps: SimApp[] = [];
  private readonly byz = new Map<number, ByzantineKind>();
  private readonly clients: SimClient[] = [];
  private readonly genuine = new Map<string, Uint8Array>();
  /** seq -> batch digest hex, as first committed by a correct replica. */
  private readonly agreed = new Map<number, string>();
  /** (client, reqNo) -> number of correct replicas that executed it. */
  private readonly executedBy = new Map<string, Set<number>>();
  /** Requests executed at each seq (by correct replicas): what a snapshot install copies into an app. */
  private readonly executedAt = new Map<number, string[]>();
  /** (client, reqNo) -> replicas (any) that executed it: the replies a client would get. */
  private readonly executedAny = new Map<string, number>();
  private readonly queue: InFlight[] = [];
  private order = 0;
  private now = 0;
  private partition: Set<number> | null = null;
  private partitionUntil = 0;
  private readonly crashedUntil = new Map<number, number>();
  private readonly faults: Record<string, number> = {};
  private readonly violations: string[] = [];
  private readonly digests: Digests;
  private readonly recorded: Message[] = [];
  /**
   * PREPAREs a compromised-counter leader certified twice, by "culprit/view/slot" (the counter value):
   * the other version, who gets it, and when it was first sent.
   */
  private readonly counterForks = new Map<
    string,
    { alt: HPrepare; altTo: ReadonlySet<number>; at: number }
  >();
  /** Tick at which the first conflicting certificate was sent. */
  protected firstConflictAt: number | null = null;
  /** Tick at which a correct replica first raised a valid proof of equivocation. */
  private detectedAt: number | null = null;
  /** Ticks from the proven equivocation's first conflicting certificate to that first proof. */
  private detectionTicks: number | null = null;
  /** Correct replicas that raised a proof, with their halt reason: their host keeps the proof on file. */
  private readonly convicted = new Map<number, string>();
  /** First seq at which correct replicas committed different batches (after a counter equivocated). */
  private forkedAt: { seq: number; tick: number } | null = null;
  /** Correct replicas whose core stopped because their state diverged from a stable checkpoint (fork). */
  private readonly stoppedOnFork = new Set<number>();
  private requests = 0;
  private maxSeq = 0;
  private maxView = 0;
  readonly log: string[] = [];
  verbose = false;
  /** Sees every message a replica sends (after Byzantine rewriting), e.g. to collect codec corpora. */
  onSend: ((from: number, msg: Message) => void) | null = null;

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

    // Identities: replica keys, trusted subsystems (each its own key), clients.
    const replicaIds = [...Array(this.n).keys()].map((i) => this.crypto.newIdentity(`replica-${i}`));
    const counterIds = [...Array(this.n).keys()].map((i) => this.crypto.newIdentity(`counter-${i}`));
    this.checker = new UsigChecker(
      counterIds.map((x) => x.publicKey),
      this.crypto,
    );
    const clientKeys: Map<string, ClientKeys>[] = [...Array(this.n)].map(() => new Map());
    for (let c = 0; c < cfg.clients; c++) {
      const ident = this.crypto.newIdentity(`client-${c}`);
      const scheme = cfg.authScheme === "mixed" ? (c % 2 === 0 ? "ed25519" : "mac") : cfg.authScheme;
      const id = `client-${c}`;
      // One session key per (client, replica), in both modes: a replica checks only its own MAC entry.
      const macKeys = [...Array(this.n).keys()].map((i) =>
        this.crypto.sha256(new TextEncoder().encode(`mac:${c}:${i}`)),
      );
      this.clients.push({ id, scheme, secret: ident.secret, macKeys, nextReqNo: 1, outstanding: new Map() });
      for (let i = 0; i < this.n; i++) {
        clientKeys[i]?.set(id, { ed25519PublicKey: ident.publicKey, macKey: macKeys[i] as Uint8Array });
      }
    }
    for (let i = 0; i < this.n; i++) {
      this.counterSecrets.push((counterIds[i] as { secret: Uint8Array }).secret);
      this.trustedSaved.push(new Map());
      this.counters.push(this.makeCounter(i));
      this.registries.push(staticRegistry(clientKeys[i] as Map<string, ClientKeys>));
      this.auths.push(
        this.crypto.authenticator(
          (replicaIds[i] as { secret: Uint8Array }).secret,
          replicaIds.map((x) => x.publicKey),
        ),
      );
      this.deps.push(this.makeDeps(i));
      this.storages.push(new MemoryStorage());
      this.apps.push({ appliedSeq: 0, executed: new Set() });
      this.replicas.push(this.build(i));
    }
  }

  /** Replica i's software counter, resumed from what its last durable Ready saved. */
  private makeCounter(i: number): UsigCounter {
    const secret = this.counterSecrets[i] as Uint8Array;
    return new UsigCounter({
      id: i,
      sign: (bytes) => this.crypto.sign(secret, bytes),
      counters: this.trustedSaved[i],
    });
  }

  private makeDeps(i: number): ReplicaDeps {
    const trusted: TrustedSubsystem | undefined =
      this.cfg.mode === "hybrid"
        ? trustedSubsystem(this.counters[i] as UsigCounter, this.checker)
        : undefined;
    const auth = this.auths[i] as ReplicaAuthenticator;
    const registry = this.registries[i] as ClientRegistry;
    if (this.byz.get(i) !== "bad-client-sig") return { crypto: this.crypto, registry, auth, trusted };
    // A Byzantine host skips client authentication: it accepts (and, as leader, proposes with its own
    // valid certificates) requests no client sent. Its subsystem still certifies honestly. (It still
    // checks its own MAC entry: the core does that without the host's help.)
    return {
      crypto: { ...bindCrypto(this.crypto), verifyEd25519: () => true },
      registry: { keys: (id) => registry.keys(id) ?? { ed25519PublicKey: new Uint8Array(32) } },
      auth,
      trusted,
    };
  }

  private build(i: number): ReplicaCore {
    return createReplica(
      { id: i, f: this.cfg.f, mode: this.cfg.mode, limits: this.limits },
      this.deps[i] as ReplicaDeps,
      this.storages[i],
    );
  }

  private count(kind: string): void {
    this.faults[kind] = (this.faults[kind] ?? 0) + 1;
  }

  private violate(what: string, context = true): never {
    const fork = context && this.forkedAt && this.detectedAt === null ? this.forkedAt : null;
    const v =
      `tick ${this.now}: ${what}` +
      (fork ? ` (after an undetected fork at seq ${fork.seq}, tick ${fork.tick})` : "");
    this.violations.push(v);
    throw new Violation(v);
  }

  private isCorrect(i: number): boolean {
    return !this.byz.has(i);
  }

  private get healTick(): number {
    return Math.floor(this.cfg.steps * this.cfg.healAt);
  }

  private get faulty(): boolean {
    return this.now < this.healTick;
  }

  // ------------------------------------------------------------------ driving

  run(): SimResult {
    try {
      for (this.now = 1; this.now <= this.cfg.steps; this.now++) this.step();
      this.checkForks();
      // Correct replicas that hold a proof of equivocation stop ordering until an operator steps in:
      // progress is not expected after a detection.
      if (this.detectedAt === null) this.checkLiveness();
    } catch (err) {
      if (!(err instanceof Violation)) {
        this.violations.push(`tick ${this.now}: crash: ${(err as Error).stack ?? String(err)}`);
      }
    }
    const dropped: Record<string, number> = {};
    for (const r of this.replicas) {
      if (!r) continue;
      for (const [k, v] of r.dropped) dropped[k] = (dropped[k] ?? 0) + v;
    }
    let completed = 0;
    for (const set of this.executedBy.values()) if (set.size > 0) completed++;
    return {
      seed: this.cfg.seed,
      mode: this.cfg.mode,
      steps: this.cfg.steps,
      violations: this.violations,
      requests: this.requests,
      completed,
      maxSeq: this.maxSeq,
      maxView: this.maxView,
      faults: this.faults,
      dropped,
      byzantine: [...this.byz].map(([id, k]) => `${id}:${k}`),
      detected: this.detectedAt !== null,
      forked: this.forkedAt !== null,
      detectionTicks: this.detectionTicks,
    };
  }

  private step(): void {
    this.scheduleFaults();
    // Deliver due messages, in (time, random order) order.
    this.queue.sort((a, b) => a.at - b.at || a.order - b.order);
    let k = 0;
    while (k < this.queue.length && (this.queue[k] as InFlight).at <= this.now) k++;
    const due = this.queue.splice(0, k);
    for (const m of due) {
      const r = this.replicas[m.to];
      if (!r) continue;
      this.guard(m.to, () => {
        r.step(m.from, m.msg);
        this.drain(m.to);
      });
    }
    for (let i = 0; i < this.n; i++) {
      const r = this.replicas[i];
      if (!r) continue;
      this.guard(i, () => {
        if (this.cfg.links) this.reportLinks(i, r);
        r.tick();
        this.byzantineTick(i);
        this.drain(i);
      });
      this.checkInvariants(i);
    }
    this.clientsAct();
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
    if (this.isCorrect(i)) {
      try {
        return fn();
      } catch (err) {
        if (
          err instanceof Violation ||
          this.firstConflictAt === null ||
          !(err instanceof AssertionFailed && err.message.startsWith("state diverged"))
        )
          throw err;
        this.replicas[i] = null;
        this.stoppedOnFork.add(i);
        this.count("fork-state-diverged");
        const seq = (this.apps[i] as SimApp).appliedSeq;
        if (this.forkedAt === null) this.forkedAt = { seq, tick: this.now };
        if (this.verbose) this.log.push(`t${this.now} r${i} stopped after a fork: ${err.message}`);
        return;
      }
    }
    try {
      fn();
    } catch (err) {
      if (err instanceof Violation) throw err;
      this.replicas[i] = null;
      this.count("byzantine-halted");
      if (this.verbose) this.log.push(`t${this.now} r${i} halted: ${(err as Error).message}`);
    }
  }

  /**
   * A correct replica found its state differs from a stable checkpoint and halted (the core's answer to
   * a fork). Only a counter that certified one value twice can cause it: without one it is a bug; with
   * one it is a fork, and a correct replica must still raise the proof by the end of the run.
   */
  private onDiverged(i: number, seq: number): void {
    if (this.firstConflictAt === null)
      throw new Violation(`r${i}: state diverged at checkpoint ${seq} without any equivocation`);
    this.stoppedOnFork.add(i);
    this.count("fork-state-diverged");
    if (this.forkedAt === null) this.forkedAt = { seq: (this.apps[i] as SimApp).appliedSeq, tick: this.now };
    if (this.verbose) this.log.push(`t${this.now} r${i} halted after a fork: state diverged at ${seq}`);
  }

  /**
   * The replica's peers no longer keep the batches it misses and offered a checkpoint snapshot: its
   * application copies the state up to the checkpoint (as the ledger fetches certified blocks), then
   * the core installs the snapshot.
   */
  private installSnapshot(i: number, r: ReplicaCore, target: number): void {
    const app = this.apps[i] as SimApp;
    for (let s = app.appliedSeq + 1; s <= target; s++) {
      const keys = this.executedAt.get(s);
      if (!keys) {
        if (this.isCorrect(i)) this.violate(`replica ${i} offered a snapshot at ${target}, seq ${s} unknown`);
        continue;
      }
      for (const k of keys) {
        if (app.executed.has(k) && this.isCorrect(i))
          this.violate(`exactly-once: replica ${i} holds ${k} twice after a snapshot`);
        app.executed.add(k);
      }
    }
    app.appliedSeq = Math.max(app.appliedSeq, target);
    this.count("snapshot-install");
    if (this.verbose) this.log.push(`t${this.now} r${i} snapshot ${target}`);
    r.installSnapshot();
    this.drain(i);
  }

  /** What a host's transport would say about replica i's connections now. */
  private reportLinks(i: number, r: ReplicaCore): void {
    for (let j = 0; j < this.n; j++) {
      if (j === i) continue;
      const apart = this.partition !== null && this.partition.has(i) !== this.partition.has(j);
      r.link(j, this.replicas[j] !== null && !apart);
    }
  }

  private scheduleFaults(): void {
    if (this.now === this.healTick) {
      this.partition = null;
      for (const i of [...this.crashedUntil.keys()]) this.restart(i);
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
      for (const [i, until] of [...this.crashedUntil]) if (this.now >= until) this.restart(i);
      if (this.rng.chance(0.004)) {
        const i = this.rng.int(0, this.n - 1);
        if (this.replicas[i] && this.isCorrect(i)) {
          this.replicas[i] = null;
          this.crashedUntil.set(i, this.now + this.rng.int(10, 200));
          this.count("crash");
          if (this.verbose) this.log.push(`t${this.now} r${i} crash`);
        }
      }
    }
  }

  private restart(i: number): void {
    this.crashedUntil.delete(i);
    if (this.replicas[i] || this.stoppedOnFork.has(i)) return;
    const r = this.build(i);
    // Its host saved the proof it raised: it stays stopped across restarts.
    const reason = this.convicted.get(i);
    if (reason !== undefined) r.halt(reason);
    this.replicas[i] = r;
    this.count("restart");
    if (this.verbose) this.log.push(`t${this.now} r${i} restart`);
    this.drain(i);
  }

  /** Persist, send, apply: the driver side of the Ready contract. */
  private drain(i: number): void {
    const r = this.replicas[i];
    if (!r?.hasReady()) return;
    const rd = r.ready();
    if (
      this.faulty &&
      this.cfg.crashes &&
      this.isCorrect(i) &&
      rd.persist.length > 0 &&
      this.rng.chance(0.0005)
    ) {
      // The process dies before its Ready is durable: nothing of it is persisted, sent or applied.
      // Software counters are written in the same atomic batch, so they come back as they were;
      // hardware counters keep whatever was certified meanwhile.
      this.replicas[i] = null;
      this.crashedUntil.set(i, this.now + this.rng.int(10, 200));
      this.count("crash-before-persist");
      if (this.verbose) this.log.push(`t${this.now} r${i} crash before persist`);
      if (this.cfg.trustedCounters === "with-ready") {
        this.counters[i] = this.makeCounter(i);
        this.deps[i] = this.makeDeps(i);
      }
      return;
    }
    (this.storages[i] as MemoryStorage).apply(rd.persist);
    this.trustedSaved[i] = (this.counters[i] as UsigCounter).counters();
    let sends: readonly Outgoing[] = rd.send;
    const kind = this.byz.get(i);
    if (kind) sends = this.mutate(i, kind, sends);
    for (const o of sends) {
      this.onSend?.(i, o.msg);
      if (o.to === "all") {
        for (let j = 0; j < this.n; j++) if (j !== i) this.transmit(i, j, o.msg);
      } else this.transmit(i, o.to, o.msg);
      if (this.recorded.length < 400 && this.rng.chance(0.05)) this.recorded.push(o.msg);
    }
    for (const c of rd.commit) this.apply(i, c.seq, c.batch, c.executed, c.view);
    const offer = r.snapshotOffer;
    for (const e of rd.events) {
      if (e.kind === "new-view") {
        this.maxView = Math.max(this.maxView, e.view);
        this.count("new-view");
      }
      if (e.kind === "state-transfer") this.count("state-transfer");
      if (e.kind === "equivocation") this.onEquivocation(i, e.culprit, e.proof);
      if (e.kind === "state-diverged" && this.isCorrect(i)) this.onDiverged(i, e.seq);
      if (
        this.verbose &&
        e.kind !== "dropped" &&
        e.kind !== "checkpoint-stable" &&
        e.kind !== "duplicate-request"
      )
        this.log.push(`t${this.now} r${i} ${JSON.stringify(e)}`);
    }
    r.advance();
    if (offer !== null) this.installSnapshot(i, r, offer);
  }

  private transmit(from: number, to: number, msg: Message): void {
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

  // ------------------------------------------------------------------ application and checkers

  protected apply(i: number, seq: number, batch: Batch, executed: readonly boolean[], view: number): void {
    const app = this.apps[i] as SimApp;
    if (seq <= app.appliedSeq) return; // re-delivery after a restart
    if (seq !== app.appliedSeq + 1) this.violate(`replica ${i} applied seq ${seq} after ${app.appliedSeq}`);
    app.appliedSeq = seq;
    this.maxSeq = Math.max(this.maxSeq, seq);
    batch.requests.forEach((req, k) => {
      if (!executed[k]) return;
      const key = `${req.clientId}#${req.reqNo}`;
      this.executedAny.set(key, (this.executedAny.get(key) ?? 0) + 1);
    });
    if (!this.isCorrect(i)) return;
    const digest = toHex(this.digests.batch(batch));
    if (!this.executedAt.has(seq))
      this.executedAt.set(
        seq,
        batch.requests.flatMap((req, k) => (executed[k] ? [`${req.clientId}#${req.reqNo}`] : [])),
      );
    const prior = this.agreed.get(seq);
    if (prior === undefined) this.agreed.set(seq, digest);
    else if (prior !== digest) {
      // A compromised counter can split the correct replicas: allowed only if one of them catches it
      // (checked at the end of the run), never otherwise.
      if (this.firstConflictAt === null)
        this.violate(`agreement: replica ${i} committed a different batch at seq ${seq} (view ${view})`);
      this.count("fork");
      if (this.forkedAt === null) this.forkedAt = { seq, tick: this.now };
      if (this.verbose) this.log.push(`t${this.now} r${i} fork at seq ${seq}`);
    }
    batch.requests.forEach((req, k) => {
      if (!executed[k]) return;
      const key = `${req.clientId}#${req.reqNo}`;
      const op = this.genuine.get(key);
      if (!op || toHex(op) !== toHex(req.op))
        this.violate(`validity: replica ${i} executed a request no client sent (${key})`);
      if (app.executed.has(key)) this.violate(`exactly-once: replica ${i} executed ${key} twice`);
      app.executed.add(key);
      let set = this.executedBy.get(key);
      if (!set) {
        set = new Set();
        this.executedBy.set(key, set);
      }
      set.add(i);
    });
  }

  /**
   * A correct replica raised a proof of equivocation. It must verify with public keys only, name a
   * replica whose counter key the attacker holds (anyone else is falsely accused), and the replica
   * raising it must have stopped ordering.
   */
  protected onEquivocation(i: number, culprit: number, proof: EquivocationProof): void {
    if (!this.isCorrect(i)) return; // a Byzantine replica's claims prove nothing
    const why = checkEquivocation(proof, this.checker);
    if (why !== null)
      this.violate(`false proof: replica ${i} accused replica ${culprit} with an invalid proof (${why})`);
    if (proof.a.cert.subsystem !== culprit)
      this.violate(
        `false proof: replica ${i} accused replica ${culprit} with a proof against ${proof.a.cert.subsystem}`,
      );
    if (this.byz.get(culprit) !== "compromised-counter")
      this.violate(
        `false accusation: replica ${i} accused replica ${culprit}, whose counter is not compromised`,
      );
    const reason = this.replicas[i]?.halted ?? null;
    if (reason === null)
      this.violate(`replica ${i} raised a proof of equivocation but did not stop ordering`);
    this.convicted.set(i, reason);
    this.count("equivocation-detected");
    if (this.detectedAt === null) {
      this.detectedAt = this.now;
      const v = proof.a.cert.value;
      const sent = this.counterForks.get(`${culprit}/${v.view}/${v.slot}`)?.at ?? this.firstConflictAt;
      this.detectionTicks = sent === null ? null : this.now - sent;
      if (this.verbose) this.log.push(`t${this.now} r${i} detected replica ${culprit}'s equivocation`);
    }
  }

  /** Correct replicas may only have diverged if one of them raised a proof of equivocation. */
  protected checkForks(): void {
    const fork = this.forkedAt;
    if (fork === null || this.detectedAt !== null) return;
    this.violate(
      `agreement: silent fork: correct replicas committed different batches at seq ${fork.seq} (tick ${fork.tick}) and none raised a proof of equivocation`,
      false,
    );
  }

  private checkInvariants(i: number): void {
    const r = this.replicas[i];
    if (!r || !this.isCorrect(i)) return;
    if (r.stable.seq > r.lastExecuted + this.limits.window * 64)
      this.violate(`replica ${i}: stable far ahead`);
    if (r.vcTarget !== null && r.vcTarget <= r.view)
      this.violate(`replica ${i}: changing to a view not above its own`);
  }

  /**
   * After the heal: every request a client sent was executed by f+1 replicas (enough matching replies
   * for the client, at least one of them correct), and every correct replica caught up at least to the
   * highest stable checkpoint of the correct replicas (state transfer works).
   */
  private checkLiveness(): void {
    for (const c of this.clients) {
      for (const [reqNo, o] of c.outstanding) {
        this.violate(
          `liveness: ${c.id}#${reqNo} (sent at tick ${o.sentAt}) not executed by f+1 replicas by the end`,
        );
      }
    }
    const correct = [...Array(this.n).keys()].filter((i) => this.isCorrect(i));
    const top = Math.max(...correct.map((i) => this.replicas[i]?.stable.seq ?? 0));
    for (const i of correct) {
      const r = this.replicas[i];
      if (r && r.lastExecuted < top) {
        this.violate(
          `liveness: correct replica ${i} executed up to ${r.lastExecuted}, behind stable checkpoint ${top}`,
        );
      }
    }
  }

  // ------------------------------------------------------------------ clients

  private makeRequest(c: SimClient): ClientRequest {
    const reqNo = c.nextReqNo++;
    const op = this.rng.bytes(this.cfg.opBytes);
    const base = { clientId: c.id, reqNo, op };
    const d = this.digests.request({ ...base, auth: { scheme: "mac", macs: [] } });
    const auth =
      c.scheme === "ed25519"
        ? { scheme: "ed25519" as const, sig: this.crypto.sign(c.secret, d) }
        : { scheme: "mac" as const, macs: c.macKeys.map((k) => this.crypto.hmacSha256(k, d)) };
    this.genuine.set(`${c.id}#${reqNo}`, op);
    this.requests++;
    return { ...base, auth };
  }

  private submit(to: number, req: ClientRequest): void {
    const r = this.replicas[to];
    if (!r) return;
    try {
      r.propose(req);
    } catch {
      // refused (overloaded): the client retries later
    }
    this.drain(to);
  }

  private clientsAct(): void {
    const stopNew = this.cfg.steps - Math.floor(this.cfg.steps * 0.25);
    const need = this.cfg.f + 1;
    for (const c of this.clients) {
      for (const [reqNo, o] of [...c.outstanding]) {
        if (
          (this.executedBy.get(`${c.id}#${reqNo}`)?.size ?? 0) >= 1 &&
          (this.executedAny.get(`${c.id}#${reqNo}`) ?? 0) >= need
        ) {
          c.outstanding.delete(reqNo);
          continue;
        }
        if (this.now >= o.retryAt) {
          // Like a PBFT client: on timeout, send to every replica.
          o.retryAt = this.now + 80;
          this.count("client-retry");
          for (let i = 0; i < this.n; i++) this.submit(i, o.req);
        }
      }
      if (this.now < stopNew && c.outstanding.size < this.cfg.pipeline && this.rng.chance(0.3)) {
        const req = this.makeRequest(c);
        c.outstanding.set(req.reqNo, { req, sentAt: this.now, retryAt: this.now + 80 });
        this.submit(this.rng.int(0, this.n - 1), req);
      }
    }
  }

  // ------------------------------------------------------------------ Byzantine behaviour

  /** Rewrites what a Byzantine replica sends; it may only use its own keys and trusted subsystem. */
  private mutate(i: number, kind: ByzantineKind, sends: readonly Outgoing[]): Outgoing[] {
    const out: Outgoing[] = [];
    for (const o of sends) {
      switch (kind) {
        case "silent":
          this.count("byz-silent");
          break;
        case "equivocate":
          out.push(...this.equivocate(i, o));
          break;
        case "wrong-digest":
          out.push(this.wrongDigest(i, o));
          break;
        case "bad-client-sig":
          out.push(this.badClientSig(i, o));
          break;
        case "forge-certs":
          out.push(this.forgeCert(o));
          break;
        case "compromised-counter":
          out.push(...this.counterEquivocate(i, o));
          break;
        default:
          out.push(o);
      }
    }
    return out;
  }

  private byzantineTick(i: number): void {
    const kind = this.byz.get(i);
    const r = this.replicas[i];
    if (!kind || !r || !this.faulty) return;
    const peer = () => {
      let j = this.rng.int(0, this.n - 1);
      if (j === i) j = (j + 1) % this.n;
      return j;
    };
    if (kind === "bad-client-sig" && r.leader === i && r.vcTarget === null && this.rng.chance(0.1)) {
      try {
        r.propose(this.forgedRequest());
        this.count("byz-forged-proposal");
      } catch {
        // its queue may be full
      }
    }
    if (kind === "replay" && this.recorded.length > 0 && this.rng.chance(0.3)) {
      this.count("byz-replay");
      this.transmit(i, peer(), this.rng.pick(this.recorded));
    }
    if (kind === "view-spam" && this.rng.chance(0.05)) {
      this.count("byz-view-spam");
      const v = r.view + this.rng.int(-2, 8);
      const msgs: Message[] = [
        {
          type: "status",
          view: v,
          target: v + this.rng.int(0, 3),
          lastExecuted: this.rng.int(0, 1000),
          stableSeq: this.rng.int(0, 1000),
        },
        this.cfg.mode === "hybrid"
          ? {
              type: "h-commit-nv",
              view: Math.max(1, v),
              nvDigest: this.rng.bytes(32),
              cert: this.fakeCert(i, v, 1),
            }
          : {
              type: "p-commit",
              view: v,
              seq: r.lastExecuted + 1,
              batchDigest: this.rng.bytes(32),
              replica: i,
              sig: this.rng.bytes(64),
            },
        this.cfg.mode === "hybrid"
          ? {
              type: "h-prepare",
              view: v,
              seq: r.lastExecuted + 1,
              batch: { requests: [] },
              cert: this.fakeCert(i, v, r.lastExecuted + 2),
            }
          : {
              type: "p-pre-prepare",
              view: v,
              seq: r.lastExecuted + 1,
              batch: { requests: [] },
              sig: this.rng.bytes(64),
            },
      ];
      for (const m of msgs) this.transmit(i, peer(), m);
    }
    if (kind === "flood") {
      this.count("byz-flood");
      for (let k = 0; k < 20; k++) {
        this.transmit(i, peer(), {
          type: "status",
          view: r.view,
          target: r.view,
          lastExecuted: 0,
          stableSeq: 0,
        });
        const c = this.rng.pick(this.clients);
        this.transmit(i, peer(), {
          type: "request",
          request: {
            clientId: c.id,
            reqNo: this.rng.int(1, 1e9),
            op: this.rng.bytes(8),
            auth: { scheme: "ed25519", sig: this.rng.bytes(64) },
          },
        });
      }
    }
    if (
      kind === "fake-new-view" &&
      this.cfg.mode === "hybrid" &&
      r.lastExecuted > 0 &&
      this.rng.chance(0.01)
    ) {
      this.fakeNewView(i);
    }
    if (kind === "forge-certs" && this.cfg.mode === "hybrid" && this.rng.chance(0.02)) {
      const m = this.fakeProof();
      if (m) {
        this.count("byz-fake-proof");
        this.transmit(i, peer(), m);
      }
    }
    if (kind === "forge-certs" && this.cfg.mode === "hybrid" && this.rng.chance(0.01)) {
      const m = this.fakeCerts();
      if (m) {
        this.count("byz-fake-certs");
        this.transmit(i, peer(), m);
      }
    }
    if (kind === "garbage" && this.rng.chance(0.2)) {
      this.count("byz-garbage");
      const junk: unknown[] = [
        { type: "h-prepare" },
        { type: "p-view-change", replica: i, newView: 3, checkpoint: null, prepared: [{}], sig: 5 },
        { type: "h-view-change", replica: i, newView: 2, chain: [{ cert: null }], entries: "x" },
        {
          type: "state",
          checkpoint: { seq: 4, stateDigest: this.rng.bytes(32), sigs: [] },
          fromSeq: 1,
          batches: [{}],
        },
        { type: "checkpoint", seq: 4, stateDigest: "zz", sig: null },
        { type: "nonsense" },
        null,
      ];
      this.transmit(i, peer(), this.rng.pick(junk) as Message);
    }
  }

  /**
   * Hybrid: certifies a made-up NEW-VIEW summary for the next view this replica leads (one nobody
   * entered) with its own subsystem, and a VIEW-CHANGE anchored on it that hides its recent votes.
   */
  private fakeNewView(i: number): void {
    const r = this.replicas[i] as ReplicaCore;
    const sub = this.counters[i] as UsigCounter;
    let w = sub.current(ORDER_COUNTER).view + 1;
    while (r.leaderOf(w) !== i) w++;
    const maxSeq = r.stable.seq + this.rng.int(1, 3);
    const batches: Batch[] = [];
    for (let seq = r.stable.seq + 1; seq <= maxSeq; seq++) batches.push({ requests: [this.forgedRequest()] });
    const base = {
      view: w,
      checkpointSeq: r.stable.seq,
      checkpointDigest: r.stable.stateDigest,
      maxSeq,
      batches,
      vcSetDigest: this.rng.bytes(32),
    };
    const cert = sub.certifyIndependent(
      ORDER_COUNTER,
      { view: w, slot: 1 },
      this.digests.hNewViewSummary({ ...base, certs: [] }),
    );
    const certs = this.rng.chance(0.5) ? [cert] : Array.from({ length: this.cfg.f + 1 }, () => cert);
    const content = { replica: i, newView: w + 1, checkpoint: r.stable, nv: { ...base, certs }, entries: [] };
    const digest = this.digests.hViewChange(content);
    const link = { cert: sub.certifyContinuing(ORDER_COUNTER, { view: w + 1, slot: 0 }, digest), digest };
    // The subsystem's counter is durable: keep what it certified across a simulated crash.
    this.trustedSaved[i] = sub.counters();
    this.count("byz-fake-new-view");
    for (let j = 0; j < this.n; j++)
      if (j !== i) this.transmit(i, j, { type: "h-view-change", ...content, chain: [link], proofs: [] });
  }

  /**
   * A "proof of equivocation" made of certificates seen on the wire, which proves nothing: the same
   * certificate over another digest (with its signature or a random one), or two certificates of one
   * counter that are not a double certification. Correct replicas must drop it and accuse no one.
   */
  private fakeProof(): Message | null {
    const seen: CertifiedDigest[] = [];
    for (const m of this.recorded) {
      if (m.type === "h-commit")
        seen.push({ cert: m.cert, digest: this.digests.hPrepare(m.view, m.seq, m.batchDigest) });
      else if (m.type === "h-prepare")
        seen.push({
          cert: m.cert,
          digest: this.digests.hPrepare(m.view, m.seq, this.digests.batch(m.batch)),
        });
    }
    if (seen.length === 0) return null;
    const a = this.rng.pick(seen);
    const same = seen.filter((x) => x.cert.subsystem === a.cert.subsystem);
    const pick = this.rng.int(0, 2);
    const b: CertifiedDigest =
      pick === 0
        ? this.rng.pick(same)
        : pick === 1
          ? { cert: a.cert, digest: this.rng.bytes(32) }
          : { cert: { ...a.cert, sig: this.rng.bytes(64) }, digest: this.rng.bytes(32) };
    const culprit = this.rng.chance(0.9) ? a.cert.subsystem : this.rng.int(0, this.n - 1);
    return { type: "h-proof", culprit, proof: this.rng.chance(0.5) ? { a, b } : { a: b, b: a } };
  }

  /**
   * An h-certs of certificates seen on the wire, some of them altered (another digest, with their
   * signature or a random one): correct replicas must drop the altered ones and accuse no one.
   */
  private fakeCerts(): Message | null {
    const certs: CertifiedDigest[] = [];
    for (const m of this.recorded) {
      if (m.type !== "h-prepare" || !this.rng.chance(0.2)) continue;
      const cert = m.cert;
      const digest = this.digests.hPrepare(m.view, m.seq, this.digests.batch(m.batch));
      const pick = this.rng.int(0, 2);
      certs.push(
        pick === 0
          ? { cert, digest }
          : pick === 1
            ? { cert, digest: this.rng.bytes(32) }
            : { cert: { ...cert, sig: this.rng.bytes(64) }, digest: this.rng.bytes(32) },
      );
    }
    return certs.length === 0 ? null : { type: "h-certs", certs };
  }

  private fakeCert(i: number, view: number, slot: number) {
    return {
      subsystem: i,
      counter: ORDER_COUNTER,
      value: { view: Math.max(0, view), slot },
      sig: this.rng.bytes(64),
    };
  }

  private forgedRequest(): ClientRequest {
    const c = this.rng.pick(this.clients);
    return {
      clientId: this.rng.chance(0.5) ? c.id : "mallory",
      reqNo: this.rng.int(1, 50),
      op: this.rng.bytes(8),
      auth: this.rng.chance(0.5)
        ? { scheme: "ed25519", sig: this.rng.bytes(64) }
        : { scheme: "mac", macs: [...Array(this.n)].map(() => this.rng.bytes(32)) },
    };
  }

  /** A leader sends different batches to different followers. */
  private equivocate(i: number, o: Outgoing): Outgoing[] {
    const m = o.msg;
    if (o.to !== "all" || (m.type !== "h-prepare" && m.type !== "p-pre-prepare")) return [o];
    this.count("byz-equivocate");
    const other: Batch = { requests: m.batch.requests.slice(0, Math.max(0, m.batch.requests.length - 1)) };
    const bd = this.digests.batch(other);
    const out: Outgoing[] = [];
    let alt: Message;
    if (m.type === "h-prepare") {
      // The trusted subsystem refuses to certify the same slot twice: try, then fall back to reusing
      // the honest certificate on the other batch (which receivers must reject).
      let cert = m.cert;
      try {
        cert = (this.counters[i] as UsigCounter).certifyIndependent(
          ORDER_COUNTER,
          m.cert.value,
          this.digests.hPrepare(m.view, m.seq, bd),
        );
        this.violate("trusted subsystem certified a value twice");
      } catch (err) {
        if (err instanceof Violation) throw err;
        if (!(err instanceof CounterError)) throw err;
        this.count("byz-counter-refused");
      }
      alt = { ...m, batch: other, cert };
    } else {
      const sig = (this.deps[i] as ReplicaDeps).auth.sign(this.digests.pPrePrepare(m.view, m.seq, bd));
      alt = { ...m, batch: other, sig } satisfies PPrePrepare;
    }
    for (let j = 0; j < this.n; j++) {
      if (j === i) continue;
      out.push({ to: j, msg: j % 2 === 0 ? m : alt });
    }
    return out;
  }

  /**
   * A leader whose counter key the attacker holds certifies a second PREPARE for one (view, seq) at the
   * same counter value, over another valid batch (reordered, or one request short: possibly the null
   * batch), and splits the followers between the two versions. Each follower always gets the same
   * version, retransmissions included, so that the split holds as long as possible.
   */
  private counterEquivocate(i: number, o: Outgoing): Outgoing[] {
    const m = o.msg;
    if (m.type !== "h-prepare") return [o];
    const key = `${i}/${m.cert.value.view}/${m.cert.value.slot}`;
    let fork = this.counterForks.get(key);
    if (fork === undefined) {
      const reqs = m.batch.requests;
      if (o.to !== "all" || reqs.length === 0 || !this.rng.chance(COUNTER_ATTACK_CHANCE)) return [o];
      const batch: Batch = {
        requests: reqs.length >= 2 && this.rng.chance(0.5) ? [...reqs].reverse() : reqs.slice(0, -1),
      };
      const digest = this.digests.hPrepare(m.view, m.seq, this.digests.batch(batch));
      const cert = this.certifyWithStolenKey(i, m.cert.value, digest);
      const followers = this.rng.shuffle([...Array(this.n).keys()].filter((j) => j !== i));
      const altTo = new Set(followers.slice(0, Math.max(1, Math.floor(followers.length / 2))));
      fork = { alt: { ...m, batch, cert }, altTo, at: this.now };
      this.counterForks.set(key, fork);
      if (this.firstConflictAt === null) this.firstConflictAt = this.now;
      this.count("byz-counter-equivocate");
      if (this.verbose) this.log.push(`t${this.now} r${i} equivocates on seq ${m.seq} view ${m.view}`);
    }
    const { alt, altTo } = fork;
    const to = o.to === "all" ? [...Array(this.n).keys()].filter((j) => j !== i) : [o.to];
    return to.map((j) => ({ to: j, msg: altTo.has(j) ? alt : m }));
  }

  /** An order-counter certificate made with replica i's counter key directly, bypassing its counter. */
  protected certifyWithStolenKey(i: number, value: CounterValue, digest: Uint8Array): CounterCert {
    const unsigned = { subsystem: i, counter: ORDER_COUNTER, value: { view: value.view, slot: value.slot } };
    return {
      ...unsigned,
      sig: this.crypto.sign(this.counterSecrets[i] as Uint8Array, certBytes(unsigned, digest)),
    };
  }

  /** Votes (properly certified with its own counter) for a digest nobody proposed. */
  private wrongDigest(i: number, o: Outgoing): Outgoing {
    const m = o.msg;
    if (m.type === "h-commit" && this.rng.chance(0.5)) {
      this.count("byz-wrong-digest");
      // Its certificate is over the real digest; swapping the digest must be detected.
      return { to: o.to, msg: { ...m, batchDigest: this.rng.bytes(32) } satisfies HCommit };
    }
    if (m.type === "p-commit" && this.rng.chance(0.5)) {
      this.count("byz-wrong-digest");
      const bd = this.rng.bytes(32);
      const sig = (this.deps[i] as ReplicaDeps).auth.sign(this.digests.pCommit(m.view, m.seq, bd));
      return { to: o.to, msg: { ...m, batchDigest: bd, sig } satisfies PCommit };
    }
    if (m.type === "snapshot") {
      this.count("byz-wrong-digest");
      // A client table that lets a request run twice: it no longer matches the certified digest.
      const clients = m.clients.map(
        ([id, low, seen, lastSeq, reply]) => [id, Math.max(0, low - 1), seen, lastSeq, reply] as const,
      );
      return {
        to: o.to,
        msg: { ...m, clients: clients.length > 0 ? clients : [["mallory", 1, [], 1, null]] },
      };
    }
    return o;
  }

  /** As leader, slips an unauthenticated client request into its proposals. */
  private badClientSig(i: number, o: Outgoing): Outgoing {
    const m = o.msg;
    if (m.type === "p-pre-prepare") {
      this.count("byz-bad-client-sig");
      const batch: Batch = { requests: [...m.batch.requests, this.forgedRequest()] };
      const sig = (this.deps[i] as ReplicaDeps).auth.sign(
        this.digests.pPrePrepare(m.view, m.seq, this.digests.batch(batch)),
      );
      return { to: o.to, msg: { ...m, batch, sig } };
    }
    if (m.type === "h-prepare") {
      this.count("byz-bad-client-sig");
      return { to: o.to, msg: { ...m, batch: { requests: [...m.batch.requests, this.forgedRequest()] } } };
    }
    if (m.type === "request") {
      this.count("byz-bad-client-sig");
      return { to: o.to, msg: { type: "request", request: this.forgedRequest() } };
    }
    return o;
  }

  /** Replaces certificates by random signatures or by other replicas' identities. */
  private forgeCert(o: Outgoing): Outgoing {
    const m = o.msg;
    if (!this.rng.chance(0.5)) return o;
    if (m.type === "h-commit" && this.rng.chance(0.3)) {
      // The leader's certificate it relays, with a signature the leader never made: receivers must
      // drop the vote, not take it for the leader's second certificate (a false accusation).
      this.count("byz-forge-cert");
      return { to: o.to, msg: { ...m, prepareCert: { ...m.prepareCert, sig: this.rng.bytes(64) } } };
    }
    if (m.type === "h-commit" || m.type === "h-prepare" || m.type === "h-commit-nv") {
      this.count("byz-forge-cert");
      const cert = this.rng.chance(0.5)
        ? { ...m.cert, sig: this.rng.bytes(64) }
        : { ...m.cert, subsystem: (m.cert.subsystem + 1) % this.n };
      return { to: o.to, msg: { ...m, cert } as Message };
    }
    if (m.type === "checkpoint" || m.type === "p-prepare" || m.type === "p-commit") {
      this.count("byz-forge-cert");
      return { to: o.to, msg: { ...m, sig: this.rng.bytes(m.sig.length) } as Message };
    }
    return o;
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
