// The Byzantine behaviours a faulty replica can have (at most f): rewriting what it sends (mutate:
// silence, equivocation, wrong digests, forged client requests and certificates, a compromised
// counter's double certification) and acting on its own each tick (replays, view spam, floods,
// garbage, fake NEW-VIEWs and fake proofs). It uses only its own keys and trusted subsystem, except
// a compromised counter's stolen key.

import {
  type Batch,
  type CertifiedDigest,
  type ClientRequest,
  type CounterCert,
  CounterError,
  type CounterValue,
  certBytes,
  type HCommit,
  type Message,
  ORDER_COUNTER,
  type Outgoing,
  type PCommit,
  type PPrePrepare,
  type ReplicaCore,
} from "../../src/bft/index.ts";
import { type Checkers, Violation } from "./checkers.ts";
import { type ByzantineKind, COUNTER_ATTACK_CHANCE, SLOW_LEADER_TICKS } from "./config.ts";
import { type SimContext, SimPart } from "./context.ts";
import type { Network } from "./network.ts";

export class Byzantine extends SimPart {
  private readonly net: Network;
  private readonly checks: Checkers;
  /** Messages seen on the wire (a sample): what replays and fake proofs are made of. */
  private readonly recorded: Message[] = [];
  /** A slow leader's proposals not yet sent, per replica (oldest first, bounded). */
  private readonly slowHeld = new Map<number, Outgoing[]>();

  constructor(ctx: SimContext, net: Network, checks: Checkers) {
    super(ctx);
    this.net = net;
    this.checks = checks;
  }

  private get digests() {
    return this.ctx.digests;
  }

  private transmit(from: number, to: number, msg: Message): void {
    this.net.transmit(from, to, msg);
  }

  /** Samples a message sent on the wire into what Byzantine replicas can replay. */
  record(msg: Message): void {
    if (this.recorded.length < 400 && this.rng.chance(0.05)) this.recorded.push(msg);
  }

  /** Rewrites what a Byzantine replica sends; it may only use its own keys and trusted subsystem. */
  mutate(i: number, kind: ByzantineKind, sends: readonly Outgoing[]): Outgoing[] {
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
        case "slow-leader":
          if (o.msg.type === "h-prepare" || o.msg.type === "p-pre-prepare") this.holdProposal(i, o);
          else out.push(o);
          break;
        default:
          out.push(o);
      }
    }
    return out;
  }

  /** A slow leader keeps a proposal back (to be sent by releaseSlow). */
  private holdProposal(i: number, o: Outgoing): void {
    const held = this.slowHeld.get(i) ?? [];
    this.slowHeld.set(i, held);
    if (held.length >= 256) return; // retransmissions beyond this are lost
    held.push(o);
    this.count("byz-slow-held");
  }

  /** A slow leader sends its oldest held proposal once every SLOW_LEADER_TICKS ticks, faults or not. */
  private releaseSlow(i: number): void {
    const held = this.slowHeld.get(i);
    if (!held || held.length === 0 || this.now % SLOW_LEADER_TICKS !== 0) return;
    const o = held.shift() as Outgoing;
    this.count("byz-slow-released");
    if (o.to !== "all") return this.transmit(i, o.to, o.msg);
    for (let j = 0; j < this.n; j++) if (j !== i) this.transmit(i, j, o.msg);
  }

  /** What Byzantine replica i does on its own this tick (while faults last; a slow leader always). */
  tick(i: number): void {
    const kind = this.ctx.byz.get(i);
    if (kind === "slow-leader") this.releaseSlow(i);
    const r = this.ctx.rep(i).core;
    if (!kind || !r || !this.ctx.faulty) return;
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
    if (kind === "view-spam" && this.rng.chance(0.05)) this.viewSpam(i, r, peer);
    if (kind === "flood") this.flood(i, r, peer);
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
    if (kind === "garbage" && this.rng.chance(0.2)) this.garbage(i, peer);
  }

  /** Messages about views nobody entered, and votes and proposals it may not send. */
  private viewSpam(i: number, r: ReplicaCore, peer: () => number): void {
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

  /** Twenty STATUS messages and requests with bad signatures. */
  private flood(i: number, r: ReplicaCore, peer: () => number): void {
    this.count("byz-flood");
    for (let k = 0; k < 20; k++) {
      this.transmit(i, peer(), {
        type: "status",
        view: r.view,
        target: r.view,
        lastExecuted: 0,
        stableSeq: 0,
      });
      const c = this.rng.pick(this.ctx.clients);
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

  /** A malformed message. */
  private garbage(i: number, peer: () => number): void {
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

  /**
   * Hybrid: certifies a made-up NEW-VIEW summary for the next view this replica leads (one nobody
   * entered) with its own subsystem, and a VIEW-CHANGE anchored on it that hides its recent votes.
   */
  private fakeNewView(i: number): void {
    const r = this.ctx.rep(i).core as ReplicaCore;
    const sub = this.ctx.rep(i).counter;
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
      batchDigests: batches.map((b) => this.digests.batch(b)),
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
    this.ctx.rep(i).trustedSaved = sub.counters();
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
    const c = this.rng.pick(this.ctx.clients);
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
        cert = this.ctx
          .rep(i)
          .counter.certifyIndependent(ORDER_COUNTER, m.cert.value, this.digests.hPrepare(m.view, m.seq, bd));
        this.checks.violate("trusted subsystem certified a value twice");
      } catch (err) {
        if (err instanceof Violation) throw err;
        if (!(err instanceof CounterError)) throw err;
        this.count("byz-counter-refused");
      }
      alt = { ...m, batch: other, cert };
    } else {
      const sig = this.ctx.rep(i).deps.auth.sign(this.digests.pPrePrepare(m.view, m.seq, bd));
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
    let fork = this.checks.counterForks.get(key);
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
      fork = { alt: { ...m, batch, cert }, altTo, at: this.ctx.now };
      this.checks.counterForks.set(key, fork);
      if (this.checks.firstConflictAt === null) this.checks.firstConflictAt = this.ctx.now;
      this.count("byz-counter-equivocate");
      if (this.ctx.verbose)
        this.ctx.log.push(`t${this.ctx.now} r${i} equivocates on seq ${m.seq} view ${m.view}`);
    }
    const { alt, altTo } = fork;
    const to = o.to === "all" ? [...Array(this.n).keys()].filter((j) => j !== i) : [o.to];
    return to.map((j) => ({ to: j, msg: altTo.has(j) ? alt : m }));
  }

  /** An order-counter certificate made with replica i's counter key directly, bypassing its counter. */
  certifyWithStolenKey(i: number, value: CounterValue, digest: Uint8Array): CounterCert {
    const unsigned = { subsystem: i, counter: ORDER_COUNTER, value: { view: value.view, slot: value.slot } };
    return {
      ...unsigned,
      sig: this.ctx.crypto.sign(this.ctx.rep(i).counterSecret, certBytes(unsigned, digest)),
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
      const sig = this.ctx.rep(i).deps.auth.sign(this.digests.pCommit(m.view, m.seq, bd));
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
      const sig = this.ctx
        .rep(i)
        .deps.auth.sign(this.digests.pPrePrepare(m.view, m.seq, this.digests.batch(batch)));
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
