// A small synchronous cluster for replica-level unit tests: builds n replicas of one mode, drives the
// Ready contract (persist to MemoryStorage, then send, then record commits), and delivers messages in
// FIFO order until the network is quiet. A filter decides per message whether it is delivered, dropped
// or held back (captured) so that tests can tamper with it and inject it themselves.

import {
  type Batch,
  type ClientKeys,
  type ClientRequest,
  type CommittedBatch,
  createReplica,
  Digests,
  type Limits,
  MemoryStorage,
  type Message,
  type Mode,
  quorums,
  type Ready,
  type ReplicaConfig,
  type ReplicaCore,
  type ReplicaDeps,
  type ReplicaEvent,
  staticRegistry,
  type TrustedSubsystem,
  toHex,
  trustedSubsystem,
  UsigChecker,
  UsigCounter,
} from "../../src/bft/index.ts";
import { SimCrypto } from "../sim/sim-crypto.ts";

export const TEST_LIMITS: Partial<Limits> = {
  checkpointInterval: 4,
  window: 8,
  batchMaxCount: 4,
  requestTimeoutTicks: 20,
  viewChangeTimeoutTicks: 20,
  viewChangeTimeoutMaxTicks: 160,
  // Retransmission and STATUS gossip are kept out of the way: the harness network is reliable.
  retransmitTicks: 10_000,
  statusTicks: 10_000,
};

export interface Envelope {
  readonly from: number;
  readonly to: number;
  readonly msg: Message;
}

export type MessageOf<T extends Message["type"]> = Extract<Message, { type: T }>;

export interface Typed<T extends Message["type"]> {
  readonly from: number;
  readonly to: number;
  readonly msg: MessageOf<T>;
}

export type Verdict = "deliver" | "drop" | "hold";
export type Filter = (e: Envelope) => Verdict;

export const deliverEverything: Filter = () => "deliver";

const EMPTY_READY: Ready = Object.freeze({ persist: [], send: [], commit: [], events: [] });
const TEXT = new TextEncoder();

export interface ClusterOptions {
  readonly mode: Mode;
  readonly f?: number;
  readonly limits?: Partial<Limits>;
  /** ReplicaDeps.requestWeight for every replica. */
  readonly requestWeight?: ReplicaDeps["requestWeight"];
}

export class Cluster {
  readonly mode: Mode;
  readonly f: number;
  readonly n: number;
  readonly limits: Partial<Limits>;
  readonly crypto = new SimCrypto();
  readonly digests: Digests;
  readonly replicas: ReplicaCore[] = [];
  readonly storages: MemoryStorage[] = [];
  readonly deps: ReplicaDeps[] = [];
  /** Hybrid mode: each replica's trusted subsystem (the very object its replica uses). */
  readonly trusted: TrustedSubsystem[] = [];
  /** Hybrid mode: each replica's software counter (behind `trusted`). */
  readonly counters: UsigCounter[] = [];
  /**
   * Hybrid mode: each trusted subsystem's signing secret, an identity of its own (not the replica's).
   * Tests hold it to play a compromised counter; replicas never see it.
   */
  readonly counterSecrets: Uint8Array[] = [];
  /** Hybrid mode: the subsystems' public keys (what every replica, client or auditor is given). */
  readonly counterPublicKeys: Uint8Array[] = [];
  /** Each replica's signing secret (checkpoints in both modes; PBFT phases), what a Byzantine one holds. */
  readonly replicaSecrets: Uint8Array[] = [];
  readonly replicaPublicKeys: Uint8Array[] = [];
  /** Everything each replica applied, in the order ready() handed it out. */
  readonly commits: CommittedBatch[][] = [];
  readonly events: ReplicaEvent[][] = [];
  /** Messages sent but not yet delivered. */
  readonly queue: Envelope[] = [];
  /** Messages the filter held back. */
  readonly held: Envelope[] = [];
  /** Every message ever sent, before filtering. */
  readonly log: Envelope[] = [];
  filter: Filter = deliverEverything;
  readonly clientId = "client-a";
  /** A second client that authenticates with PBFT-style MAC authenticators. */
  readonly macClientId = "client-mac";
  private readonly macKeys: Uint8Array[];
  private readonly clientSecret: Uint8Array;
  private nextReqNo = 1;
  private nextMacReqNo = 1;

  constructor(opts: ClusterOptions) {
    this.mode = opts.mode;
    this.f = opts.f ?? 1;
    this.n = quorums(this.mode, this.f).n;
    this.limits = { ...TEST_LIMITS, ...opts.limits };
    this.digests = new Digests(this.crypto);
    const client = this.crypto.newIdentity(this.clientId);
    this.clientSecret = client.secret;
    // Both modes: each replica holds its own session key with the MAC client (in its registry).
    this.macKeys = [...Array(this.n).keys()].map((i) => this.crypto.sha256(TEXT.encode(`mac key ${i}`)));
    for (let i = 0; i < this.n; i++) {
      const id = this.crypto.newIdentity(`replica-${i}`);
      this.replicaSecrets.push(id.secret);
      this.replicaPublicKeys.push(id.publicKey);
    }
    if (this.mode === "hybrid") {
      for (let i = 0; i < this.n; i++) {
        const id = this.crypto.newIdentity(`counter-${i}`);
        this.counterSecrets.push(id.secret);
        this.counterPublicKeys.push(id.publicKey);
      }
    }
    for (let i = 0; i < this.n; i++) {
      const registry = staticRegistry([
        [this.clientId, { ed25519PublicKey: client.publicKey } as ClientKeys],
        [this.macClientId, { macKey: this.macKeys[i] } as ClientKeys],
      ]);
      const auth = this.crypto.authenticator(this.replicaSecrets[i] as Uint8Array, this.replicaPublicKeys);
      let deps: ReplicaDeps;
      if (this.mode === "hybrid") {
        const counter = this.subsystem(i);
        const trusted = trustedSubsystem(counter, this.checker());
        this.counters.push(counter);
        this.trusted.push(trusted);
        deps = { crypto: this.crypto, registry, auth, trusted, requestWeight: opts.requestWeight };
      } else {
        deps = { crypto: this.crypto, registry, auth, requestWeight: opts.requestWeight };
      }
      this.deps.push(deps);
      this.storages.push(new MemoryStorage());
      this.commits.push([]);
      this.events.push([]);
      this.replicas.push(createReplica(this.config(i), deps));
    }
  }

  config(i: number): ReplicaConfig {
    return { id: i, f: this.f, mode: this.mode, limits: this.limits };
  }

  r(i: number): ReplicaCore {
    const r = this.replicas[i];
    if (!r) throw new Error(`no replica ${i}`);
    return r;
  }

  /**
   * A fresh counter with subsystem `id`'s signing key, its counters at zero: what an attacker who stole
   * that key could certify with (the same value twice, among others). Each call gives another counter.
   */
  subsystem(id: number): UsigCounter {
    const secret = this.counterSecrets[id];
    if (!secret) throw new Error(`no trusted subsystem ${id} (hybrid mode only)`);
    return new UsigCounter({ id, sign: (bytes) => this.crypto.sign(secret, bytes) });
  }

  /** A certificate checker holding the subsystems' public keys only (what anyone can be given). */
  checker(): UsigChecker {
    return new UsigChecker(this.counterPublicKeys, this.crypto);
  }

  /** Signs `digest` with replica `i`'s key (a Byzantine replica signing with its own key). */
  signAs(i: number, digest: Uint8Array): Uint8Array {
    return this.crypto.sign(this.replicaSecrets[i] as Uint8Array, digest);
  }

  /** A new request of the registered client, signed over Digests.request. */
  request(op = `op-${this.nextReqNo}`, reqNo = this.nextReqNo++): ClientRequest {
    const opBytes = TEXT.encode(op);
    const unsigned: ClientRequest = {
      clientId: this.clientId,
      reqNo,
      op: opBytes,
      auth: { scheme: "ed25519", sig: new Uint8Array(64) },
    };
    const sig = this.crypto.sign(this.clientSecret, this.digests.request(unsigned));
    return { clientId: this.clientId, reqNo, op: opBytes, auth: { scheme: "ed25519", sig } };
  }

  /** A request of the MAC client; the MAC entries of the replicas in `badFor` are wrong. */
  macRequest(badFor: readonly number[] = [], op = `mac-op-${this.nextMacReqNo}`): ClientRequest {
    const reqNo = this.nextMacReqNo++;
    const opBytes = TEXT.encode(op);
    const unsigned: ClientRequest = {
      clientId: this.macClientId,
      reqNo,
      op: opBytes,
      auth: { scheme: "mac", macs: [] },
    };
    const d = this.digests.request(unsigned);
    const macs = this.macKeys.map((k, i) => {
      const mac = this.crypto.hmacSha256(k, d);
      return badFor.includes(i) ? flipped(mac) : mac;
    });
    return { clientId: this.macClientId, reqNo, op: opBytes, auth: { scheme: "mac", macs } };
  }

  batchDigestHex(b: Batch): string {
    return toHex(this.digests.batch(b));
  }

  // ------------------------------------------------------------------ driving

  /** Persist, send, record commits: the driver side of the Ready contract. Returns what was taken. */
  drain(i: number): Ready {
    const r = this.r(i);
    if (!r.hasReady()) return EMPTY_READY;
    const rd = r.ready();
    (this.storages[i] as MemoryStorage).apply(rd.persist);
    for (const o of rd.send) {
      const targets = o.to === "all" ? [...Array(this.n).keys()].filter((j) => j !== i) : [o.to];
      for (const to of targets) {
        const e: Envelope = { from: i, to, msg: o.msg };
        this.log.push(e);
        this.queue.push(e);
      }
    }
    (this.commits[i] as CommittedBatch[]).push(...rd.commit);
    (this.events[i] as ReplicaEvent[]).push(...rd.events);
    r.advance();
    return rd;
  }

  drainAll(): void {
    for (let i = 0; i < this.n; i++) this.drain(i);
  }

  /** Hands `msg` from `from` to replica `to` and drains it (what it sends is queued, not delivered). */
  step(to: number, from: number, msg: Message): Ready {
    this.r(to).step(from, msg);
    return this.drain(to);
  }

  propose(i: number, req: ClientRequest): string {
    const res = this.r(i).propose(req);
    this.drain(i);
    return res;
  }

  /** Delivers queued messages (through the filter) until the network is quiet. */
  deliverAll(maxMessages = 100_000): number {
    this.drainAll();
    let delivered = 0;
    while (this.queue.length > 0) {
      if (delivered >= maxMessages) throw new Error(`network not quiet after ${maxMessages} messages`);
      const e = this.queue.shift() as Envelope;
      const verdict = this.filter(e);
      if (verdict === "drop") continue;
      if (verdict === "hold") {
        this.held.push(e);
        continue;
      }
      delivered++;
      this.step(e.to, e.from, e.msg);
    }
    return delivered;
  }

  /** Ticks replicas (all by default) `times` times, delivering everything after each round. */
  tick(times = 1, which: readonly number[] = [...Array(this.n).keys()]): void {
    for (let t = 0; t < times; t++) {
      for (const i of which) {
        this.r(i).tick();
        this.drain(i);
      }
      this.deliverAll();
    }
  }

  /** Proposes at `at` (the leader by default) and delivers until quiet. */
  commitRequest(req: ClientRequest = this.request(), at: readonly number[] = [0]): ClientRequest {
    for (const i of at) this.propose(i, req);
    this.deliverAll();
    return req;
  }

  /** Rebuilds replica `i` from its storage with the same deps (and trusted subsystem). */
  restart(i: number): Ready {
    this.replicas[i] = createReplica(this.config(i), this.deps[i] as ReplicaDeps, this.storages[i]);
    return this.drain(i);
  }

  // ------------------------------------------------------------------ inspection

  /** Messages of one type from the log (or another list), optionally filtered. */
  sent<T extends Message["type"]>(
    type: T,
    pred: (e: Typed<T>) => boolean = () => true,
    from: readonly Envelope[] = this.log,
  ): Typed<T>[] {
    return from.filter((e): e is Typed<T> => e.msg.type === type).filter(pred);
  }

  /** The first held message of `type` matching `pred`. */
  heldOne<T extends Message["type"]>(type: T, pred: (e: Typed<T>) => boolean = () => true): Typed<T> {
    const e = this.sent(type, pred, this.held)[0];
    if (!e) throw new Error(`no held ${type} message matches`);
    return e;
  }

  /** Delivers held messages matching `pred` (removing them from `held`), then runs until quiet. */
  release(pred: (e: Envelope) => boolean = () => true): void {
    const keep: Envelope[] = [];
    const go: Envelope[] = [];
    for (const e of this.held) (pred(e) ? go : keep).push(e);
    this.held.length = 0;
    this.held.push(...keep);
    for (const e of go) this.step(e.to, e.from, e.msg);
    this.deliverAll();
  }

  dropped(i: number, reason: string): number {
    return this.r(i).dropped.get(reason) ?? 0;
  }

  seqs(i: number): number[] {
    return (this.commits[i] as CommittedBatch[]).map((c) => c.seq);
  }

  commitAt(i: number, seq: number): CommittedBatch | undefined {
    return (this.commits[i] as CommittedBatch[]).find((c) => c.seq === seq);
  }

  /** The equivocation proofs replica `i` raised (hybrid mode). */
  equivocations(i: number): Extract<ReplicaEvent, { kind: "equivocation" }>[] {
    return (this.events[i] ?? []).filter(
      (e): e is Extract<ReplicaEvent, { kind: "equivocation" }> => e.kind === "equivocation",
    );
  }
}

/** A copy of `b` with one bit flipped. */
export function flipped(b: Uint8Array, index = 0): Uint8Array {
  const c = b.slice();
  c[index] = (c[index] as number) ^ 0x01;
  return c;
}

/** Filter that drops everything to and from the given replicas. */
export function isolate(...ids: number[]): Filter {
  const set = new Set(ids);
  return (e) => (set.has(e.from) || set.has(e.to) ? "drop" : "deliver");
}

/** Filter that holds messages of the given types and applies `base` to the rest. */
export function holding(types: readonly Message["type"][], base: Filter = deliverEverything): Filter {
  const set = new Set<string>(types);
  return (e) => {
    const v = base(e);
    if (v === "drop") return v;
    return set.has(e.msg.type) ? "hold" : v;
  };
}
