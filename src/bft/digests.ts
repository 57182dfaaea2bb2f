// Digests of everything that gets certified or signed. Each has its own domain tag.

import { ByteWriter } from "./bytes.ts";
import type { ClientTableSnapshot } from "./client-table.ts";
import type { Hashing } from "./crypto.ts";
import type { CounterCert } from "./trusted.ts";
import type {
  Batch,
  CheckpointProof,
  ClientRequest,
  HNewViewSummary,
  HViewChange,
  PPrePrepareRef,
  PPreparedProof,
  PViewChange,
} from "./types.ts";

enum Tag {
  Request = 1,
  Batch = 2,
  State = 3,
  Checkpoint = 4,
  HPrepare = 5,
  HNewView = 6,
  HViewChange = 7,
  HVcSet = 8,
  PPrePrepare = 9,
  PPrepare = 10,
  PCommit = 11,
  PViewChange = 12,
  PNewView = 13,
  Clients = 14,
}

/** Computes digests with caches keyed by object identity (messages are immutable once built). */
export class Digests {
  private readonly reqCache = new WeakMap<ClientRequest, Uint8Array>();
  private readonly batchCache = new WeakMap<Batch, Uint8Array>();

  constructor(readonly hashing: Hashing) {}

  sha(w: ByteWriter): Uint8Array {
    return this.hashing.sha256(w.view());
  }

  /** What a client signs: its id, request number and operation. */
  request(r: ClientRequest): Uint8Array {
    let d = this.reqCache.get(r);
    if (!d) {
      d = this.sha(new ByteWriter(r.op.length + 64).u8(Tag.Request).str(r.clientId).u64(r.reqNo).bytes(r.op));
      this.reqCache.set(r, d);
    }
    return d;
  }

  /** Binds the requests and their authenticators. */
  batch(b: Batch): Uint8Array {
    let d = this.batchCache.get(b);
    if (!d) {
      const w = new ByteWriter(64 + b.requests.length * 96).u8(Tag.Batch).u32(b.requests.length);
      for (const r of b.requests) {
        w.raw(this.request(r));
        if (r.auth.scheme === "ed25519") w.u8(1).bytes(r.auth.sig);
        else {
          w.u8(2).u32(r.auth.macs.length);
          for (const m of r.auth.macs) w.bytes(m);
        }
      }
      d = this.sha(w);
      this.batchCache.set(b, d);
    }
    return d;
  }

  /** Hash chain over executed batches: the state digest after `seq`. */
  nextState(prev: Uint8Array, seq: number, batchDigest: Uint8Array): Uint8Array {
    return this.sha(new ByteWriter(80).u8(Tag.State).raw(prev).u64(seq).raw(batchDigest));
  }

  checkpoint(seq: number, stateDigest: Uint8Array, clientsDigest: Uint8Array): Uint8Array {
    return this.sha(new ByteWriter(88).u8(Tag.Checkpoint).u64(seq).bytes(stateDigest).bytes(clientsDigest));
  }

  /**
   * The client table as it affects execution (which requests count as executed, and the eviction
   * order): ids in table order with their windows. Kept replies are not covered (they are a cache).
   */
  clients(snap: ClientTableSnapshot): Uint8Array {
    const w = new ByteWriter(64 + snap.length * 48).u8(Tag.Clients).u32(snap.length);
    for (const [id, low, seen, lastSeq] of snap) {
      w.str(id).u64(low).u64(lastSeq).u32(seen.length);
      for (const r of seen) w.u64(r);
    }
    return this.sha(w);
  }

  // ------------------------------------------------------------ hybrid

  /** Certified by the leader's PREPARE and by every matching COMMIT. */
  hPrepare(view: number, seq: number, batchDigest: Uint8Array): Uint8Array {
    return this.sha(new ByteWriter(64).u8(Tag.HPrepare).u64(view).u64(seq).raw(batchDigest));
  }

  hNewView(
    view: number,
    checkpointSeq: number,
    checkpointDigest: Uint8Array,
    maxSeq: number,
    batchDigests: readonly Uint8Array[],
    vcSetDigest: Uint8Array,
  ): Uint8Array {
    const w = new ByteWriter(128 + batchDigests.length * 32)
      .u8(Tag.HNewView)
      .u64(view)
      .u64(checkpointSeq)
      .bytes(checkpointDigest)
      .u64(maxSeq)
      .u32(batchDigests.length);
    for (const d of batchDigests) w.raw(d);
    return this.sha(w.raw(vcSetDigest));
  }

  hNewViewSummary(s: HNewViewSummary): Uint8Array {
    return this.hNewView(
      s.view,
      s.checkpointSeq,
      s.checkpointDigest,
      s.maxSeq,
      s.batchDigests,
      s.vcSetDigest,
    );
  }

  /** What the last link of a VIEW-CHANGE's chain certifies: everything but the chain and the proofs. */
  hViewChange(vc: Omit<HViewChange, "chain" | "type" | "proofs">): Uint8Array {
    const w = new ByteWriter(256).u8(Tag.HViewChange).u32(vc.replica).u64(vc.newView);
    writeCheckpoint(w, vc.checkpoint);
    if (vc.nv) {
      w.u8(1).raw(this.hNewViewSummary(vc.nv)).u32(vc.nv.certs.length);
      for (const c of vc.nv.certs) writeCert(w, c);
    } else w.u8(0);
    w.u32(vc.entries.length);
    for (const e of vc.entries) {
      w.u64(e.seq).u64(e.view).raw(e.batchDigest);
      writeCert(w, e.cert);
    }
    return this.sha(w);
  }

  /** Binds a NEW-VIEW to the exact VIEW-CHANGEs (including their chains) it was built from. */
  hVcSet(vcs: readonly HViewChange[]): Uint8Array {
    const w = new ByteWriter(64 + vcs.length * 64).u8(Tag.HVcSet).u32(vcs.length);
    for (const vc of vcs) {
      w.raw(this.hViewChange(vc)).u32(vc.chain.length);
      for (const link of vc.chain) {
        writeCert(w, link.cert);
        w.bytes(link.digest);
      }
    }
    return this.sha(w);
  }

  // ------------------------------------------------------------ PBFT

  pPrePrepare(view: number, seq: number, batchDigest: Uint8Array): Uint8Array {
    return this.sha(new ByteWriter(64).u8(Tag.PPrePrepare).u64(view).u64(seq).raw(batchDigest));
  }

  pPrepare(view: number, seq: number, batchDigest: Uint8Array): Uint8Array {
    return this.sha(new ByteWriter(64).u8(Tag.PPrepare).u64(view).u64(seq).raw(batchDigest));
  }

  pCommit(view: number, seq: number, batchDigest: Uint8Array): Uint8Array {
    return this.sha(new ByteWriter(64).u8(Tag.PCommit).u64(view).u64(seq).raw(batchDigest));
  }

  pViewChange(vc: Omit<PViewChange, "sig" | "type">): Uint8Array {
    const w = new ByteWriter(256).u8(Tag.PViewChange).u32(vc.replica).u64(vc.newView);
    writeCheckpoint(w, vc.checkpoint);
    w.u32(vc.prepared.length);
    for (const p of vc.prepared) this.writePrepared(w, p);
    return this.sha(w);
  }

  pNewView(view: number, vcs: readonly PViewChange[], prePrepares: readonly PPrePrepareRef[]): Uint8Array {
    const w = new ByteWriter(128).u8(Tag.PNewView).u64(view).u32(vcs.length);
    for (const vc of vcs) w.raw(this.pViewChange(vc)).bytes(vc.sig);
    w.u32(prePrepares.length);
    for (const pp of prePrepares) w.u64(pp.view).u64(pp.seq).raw(pp.batchDigest).bytes(pp.sig);
    return this.sha(w);
  }

  private writePrepared(w: ByteWriter, p: PPreparedProof): void {
    const pp = p.prePrepare;
    w.u64(pp.view).u64(pp.seq).raw(pp.batchDigest).bytes(pp.sig).u32(p.prepares.length);
    for (const x of p.prepares) w.u64(x.view).u64(x.seq).bytes(x.batchDigest).u32(x.replica).bytes(x.sig);
  }
}

function writeCheckpoint(w: ByteWriter, c: CheckpointProof): void {
  w.u64(c.seq).bytes(c.stateDigest).bytes(c.clientsDigest).u32(c.sigs.length);
  for (const s of c.sigs) w.u32(s.replica).bytes(s.sig);
}

function writeCert(w: ByteWriter, c: CounterCert): void {
  w.u32(c.subsystem).u32(c.counter).u64(c.value.view).u64(c.value.slot);
  if (c.prev) w.u8(1).u64(c.prev.view).u64(c.prev.slot);
  else w.u8(0);
  w.bytes(c.sig);
}
