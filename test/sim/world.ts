// Deterministic simulation of a cluster: seeded network with delay, loss, duplication, reordering and
// partitions; crashes and restarts from persisted state; Byzantine replicas (at most f); clients; and
// checkers for agreement, validity, exactly-once and liveness after every step.

import {
  type Batch,
  type ClientKeys,
  type ClientRegistry,
  type ClientRequest,
  type CoreCrypto,
  CounterError,
  type CounterValue,
  createReplica,
  DEFAULT_LIMITS,
  Digests,
  deriveClientSessionKey,
  type HCommit,
  type Limits,
  MemoryStorage,
  type Message,
  type Mode,
  ORDER_COUNTER,
  type Outgoing,
  type PCommit,
  type PPrePrepare,
  quorums,
  type ReplicaAuthenticator,
  type ReplicaCore,
  type ReplicaDeps,
  SoftwareTrustedSubsystem,
  staticRegistry,
  toHex,
  trustedAuthenticator,
} from "../../src/bft/index.ts";
import { Prng } from "./prng.ts";
import { SimCrypto } from "./sim-crypto.ts";

export const BYZANTINE_KINDS = [
  "silent",
  "equivocate",
  "forge-certs",
  "replay",
  "wrong-digest",
  "bad-client-sig",
  "view-spam",
  "flood",
  "garbage",
  "fake-new-view",
] as const;
export type ByzantineKind = (typeof BYZANTINE_KINDS)[number];

export interface SimConfig {
  readonly seed: number;
  readonly mode: Mode;
  readonly f: number;
  /** Ticks in all; faults happen before healAt * steps, then the network heals and everyone restarts. */
  readonly steps: number;
  readonly healAt: number;
  readonly clients: number;
  /** Outstanding requests per client. */
  readonly pipeline: number;
  readonly opBytes: number;
  readonly lossRate: number;
  readonly dupRate: number;
  readonly maxDelay: number;
  readonly partitions: boolean;
  readonly crashes: boolean;
  /** Byzantine behaviour per faulty replica; "random" picks f replicas and a kind for each. */
  readonly byzantine: readonly ByzantineKind[] | "random" | "none";
  readonly authScheme: "ed25519" | "mac" | "mixed";
  /**
   * "with-ready": software counters persisted atomically with each Ready (a crash before the write
   * rolls both back); "hardware": counters survive any crash, so a replica can wake up with a counter
   * ahead of its persisted state (an amnesia fault that counts against f).
   */
  readonly trustedCounters: "with-ready" | "hardware";
  readonly limits?: Partial<Limits>;
}

export const DEFAULT_SIM: Omit<SimConfig, "seed" | "mode"> = {
  f: 1,
  steps: 3000,
  healAt: 0.55,
  clients: 3,
  pipeline: 2,
  opBytes: 16,
  lossRate: 0.05,
  dupRate: 0.03,
  maxDelay: 4,
  partitions: true,
  crashes: true,
  byzantine: "random",
  authScheme: "mixed",
  trustedCounters: "with-ready",
};

export const SIM_LIMITS: Partial<Limits> = {
  batchMaxCount: 8,
  window: 16,
  checkpointInterval: 4,
  // Small, so that replicas down for a while need snapshots (and state transfer is exercised too).
  retainBatches: 8,
  stateChunkBatches: 32,
  requestTimeoutTicks: 60,
  viewChangeTimeoutTicks: 60,
  viewChangeTimeoutMaxTicks: 240,
  retransmitTicks: 10,
  statusTicks: 15,
  pendingMax: 1000,
};

export interface SimResult {
  readonly seed: number;
  readonly mode: Mode;
  readonly steps: number;
  readonly violations: string[];
  readonly requests: number;
  readonly completed: number;
  readonly maxSeq: number;
  readonly maxView: number;
  readonly faults: Record<string, number>;
  readonly dropped: Record<string, number>;
  readonly byzantine: string[];
}

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
  private readonly trusted: SoftwareTrustedSubsystem[] = [];
  private readonly deps: ReplicaDeps[] = [];
  private readonly registries: ClientRegistry[] = [];
  private readonly pbftAuth: ReplicaAuthenticator[] = [];
  /** Each subsystem's counters as of its replica's last durable Ready (software counters). */
  private readonly trustedSaved: Map<number, CounterValue>[] = [];
  private groupSecret: Uint8Array = new Uint8Array(32);
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
      for (const id of ids) this.byz.set(id, this.rng.pick(BYZANTINE_KINDS));
    } else if (cfg.byzantine !== "none") {
      cfg.byzantine.slice(0, cfg.f).forEach((k, i) => {
        this.byz.set(i, k);
      });
    }

    // Identities: replica keys, trusted subsystems, clients.
    const groupSecret = this.crypto.sha256(new TextEncoder().encode(`group:${cfg.seed}`));
    const replicaIds = [...Array(this.n).keys()].map((i) => this.crypto.newIdentity(`replica-${i}`));
    const clientKeys: Map<string, ClientKeys>[] = [...Array(this.n)].map(() => new Map());
    for (let c = 0; c < cfg.clients; c++) {
      const ident = this.crypto.newIdentity(`client-${c}`);
      const scheme = cfg.authScheme === "mixed" ? (c % 2 === 0 ? "ed25519" : "mac") : cfg.authScheme;
      const id = `client-${c}`;
      // Hybrid: session keys derive from the group secret and stay inside the trusted subsystems.
      const macKeys = [...Array(this.n).keys()].map((i) =>
        cfg.mode === "hybrid"
          ? deriveClientSessionKey(this.crypto, groupSecret, id, i)
          : this.crypto.sha256(new TextEncoder().encode(`mac:${c}:${i}`)),
      );
      this.clients.push({ id, scheme, secret: ident.secret, macKeys, nextReqNo: 1, outstanding: new Map() });
      for (let i = 0; i < this.n; i++) {
        clientKeys[i]?.set(
          id,
          cfg.mode === "hybrid"
            ? { ed25519PublicKey: ident.publicKey }
            : { ed25519PublicKey: ident.publicKey, macKey: macKeys[i] as Uint8Array },
        );
      }
    }
    this.groupSecret = groupSecret;
    for (let i = 0; i < this.n; i++) {
      this.trusted.push(new SoftwareTrustedSubsystem({ id: i, secret: groupSecret, hashing: this.crypto }));
      this.trustedSaved.push(new Map());
      this.registries.push(staticRegistry(clientKeys[i] as Map<string, ClientKeys>));
      this.pbftAuth.push(
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

  private makeDeps(i: number): ReplicaDeps {
    const trusted = this.trusted[i] as SoftwareTrustedSubsystem;
    const hybrid = this.cfg.mode === "hybrid";
    const auth = hybrid ? trustedAuthenticator(trusted) : (this.pbftAuth[i] as ReplicaAuthenticator);
    const registry = this.registries[i] as ClientRegistry;
    if (this.byz.get(i) !== "bad-client-sig") {
      return { crypto: this.crypto, registry, auth, trusted: hybrid ? trusted : undefined };
    }
    // A Byzantine host skips client authentication: it accepts (and, as leader, proposes with its own
    // valid certificates) requests no client sent. Its subsystem still certifies honestly.
    return {
      crypto: { ...bindCrypto(this.crypto), verifyEd25519: () => true },
      registry: { keys: (id) => registry.keys(id) ?? { ed25519PublicKey: new Uint8Array(32) } },
      auth,
      trusted: hybrid
        ? {
            id: trusted.id,
            certifyIndependent: (c, v, d) => trusted.certifyIndependent(c, v, d),
            certifyContinuing: (c, v, d) => trusted.certifyContinuing(c, v, d),
            trustedMac: (d) => trusted.trustedMac(d),
            verifyCert: (c, d) => trusted.verifyCert(c, d),
            verifyMac: (r, d, m) => trusted.verifyMac(r, d, m),
            current: (c) => trusted.current(c),
            verifyClientMacs: () => true,
          }
        : undefined,
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

  private violate(what: string): never {
    const v = `tick ${this.now}: ${what}`;
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
      this.checkLiveness();
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
   * on a correct replica the error is a finding.
   */
  private guard(i: number, fn: () => void): void {
    if (this.isCorrect(i)) return fn();
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
    if (this.replicas[i]) return;
    const r = this.build(i);
    this.replicas[i] = r;
    this.count("restart");
    if (this.verbose) this.log.push(`t${this.now} r${i} restart`);
    this.drain(i);
  }

  /** Persist, send, apply: the driver side of the Ready contract. */
  private drain(i: number): void {
    const r = this.replicas[i];
    if (!r || !r.hasReady()) return;
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
        this.trusted[i] = new SoftwareTrustedSubsystem({
          id: i,
          secret: this.groupSecret,
          hashing: this.crypto,
          counters: this.trustedSaved[i],
        });
        this.deps[i] = this.makeDeps(i);
      }
      return;
    }
    (this.storages[i] as MemoryStorage).apply(rd.persist);
    this.trustedSaved[i] = (this.trusted[i] as SoftwareTrustedSubsystem).counters();
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
    else if (prior !== digest)
      this.violate(`agreement: replica ${i} committed a different batch at seq ${seq} (view ${view})`);
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
    const sub = this.trusted[i] as SoftwareTrustedSubsystem;
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

  private fakeCert(i: number, view: number, slot: number) {
    return {
      subsystem: i,
      counter: ORDER_COUNTER,
      value: { view: Math.max(0, view), slot },
      mac: this.rng.bytes(32),
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
        cert = (this.trusted[i] as SoftwareTrustedSubsystem).certifyIndependent(
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

  /** Replaces certificates by random MACs or by other replicas' identities. */
  private forgeCert(o: Outgoing): Outgoing {
    const m = o.msg;
    if (!this.rng.chance(0.5)) return o;
    if (m.type === "h-commit" || m.type === "h-prepare" || m.type === "h-commit-nv") {
      this.count("byz-forge-cert");
      const cert = this.rng.chance(0.5)
        ? { ...m.cert, mac: this.rng.bytes(32) }
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
