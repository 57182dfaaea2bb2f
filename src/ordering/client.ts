// Client of the ordering service, for Node and the browser. It trusts no single replica: every receipt
// (Merkle proof + header + certificate) and every streamed block (hash chain, Merkle root, certificate)
// is verified against the cluster's replica keys, and a replica that serves something that does not
// verify is reported with the reason and skipped for the next one.
// Receipt verification is in receipt.ts, the WebSocket streams in client-streams.ts (re-exported here).

import { UsigChecker } from "../bft/trusted.ts";
import { type WithDefaults, withDefaults } from "../util/defaults.ts";
import {
  type CaTransport,
  loadCaTransport,
  loadWebSocket,
  type WebSocketCtor,
  wsBase,
} from "../util/websocket.ts";
import {
  type Block,
  BlockVerificationError,
  blockFromJson,
  bytesEq,
  ChainVerifier,
  fromHexStr,
  type HashFn,
  headerHash,
  nobleHash,
  nobleVerify,
  toHexStr,
  type VerifyFn,
} from "./block.ts";
import { deliverStream, opened, type Seek, SubmitStream } from "./client-streams.ts";
import { checkEquivocationJson, type MisbehaviourReport } from "./misbehaviour.ts";
import { OrderingClientError, type ReceiptJson, type VerifiedReceipt, verifyReceipt } from "./receipt.ts";

export type { Seek } from "./client-streams.ts";
export { SubmitStream } from "./client-streams.ts";
export type { ReceiptJson, VerifiedReceipt } from "./receipt.ts";
export { OrderingClientError, verifyReceipt } from "./receipt.ts";

export interface ClientOptions {
  /** Base URLs of the replicas' APIs (http://host:port, or https:// when they serve TLS). */
  readonly urls: readonly string[];
  /** ed25519 public keys of the replicas by id (bytes or hex). */
  readonly replicaKeys: readonly (Uint8Array | string)[];
  /** Signatures a block needs: f+1 in hybrid mode, 2f+1 in PBFT mode. */
  readonly quorum: number;
  /** Header hash of the cluster's genesis block, when known: block 0 must match it. */
  readonly genesisHash?: Uint8Array;
  readonly hash?: HashFn;
  readonly verify?: VerifyFn;
  readonly fetch?: typeof fetch;
  /** A WebSocket constructor (the browser's by default; in Node 20 the `ws` package is loaded). */
  readonly WebSocket?: WebSocketCtor;
  /**
   * Node only: the CA certificate(s), PEM, that replicas' TLS certificates must chain to (their https://
   * and wss:// URLs). It replaces the system's trusted roots for this client: a replica whose
   * certificate does not chain to it is refused (CERTIFICATE_REFUSED). Browsers use their own trust
   * store; the option is refused there. A `fetch` or `WebSocket` given is used as it is, without it.
   */
  readonly ca?: string | Uint8Array;
  /** Called when a replica answers with something that does not verify, or cannot be reached. */
  readonly onProblem?: (p: { url: string; error: Error }) => void;
  /**
   * Before a receipt is trusted, this many distinct replicas must serve the same header hash for its
   * block and hold no proof of misbehaviour (default 1: the certificate alone). In hybrid mode a
   * replica whose trusted counter is compromised can get a forked block certified; f+1 replicas
   * always include an honest one, which detects and reports the fork. See docs/protocol.md.
   */
  readonly confirmReplicas?: number;
  /** Hybrid mode: the replicas' counter keys, to check proofs of misbehaviour (cluster.jsonc). */
  readonly counterKeys?: readonly (Uint8Array | string)[];
  /** How long a replica behind the block may take to catch up before another is asked (default 3 s). */
  readonly confirmWaitMs?: number;
}

/** The ordering client's option defaults (see ClientOptions): the one place they are written. */
export const ORDERING_CLIENT_DEFAULTS = Object.freeze({
  confirmReplicas: 1,
  confirmWaitMs: 3000,
}) satisfies Partial<ClientOptions>;

export class OrderingClient {
  private readonly o: WithDefaults<ClientOptions, typeof ORDERING_CLIENT_DEFAULTS>;
  private readonly keys: Uint8Array[];
  private readonly hash: HashFn;
  private next = 0;
  private caTransport: Promise<CaTransport | null> | null = null;

  constructor(o: ClientOptions) {
    if (o.urls.length === 0) throw new OrderingClientError("BAD_OPTIONS", "no replica URLs");
    this.o = withDefaults(ORDERING_CLIENT_DEFAULTS, o);
    this.keys = o.replicaKeys.map((k) => (typeof k === "string" ? fromHexStr(k) : k));
    this.hash = o.hash ?? nobleHash;
  }

  private get policy() {
    return { replicaKeys: this.keys, quorum: this.o.quorum, hash: this.hash, verify: this.o.verify };
  }

  /** Submits one transaction (bytes, or a value sent as JSON) and verifies its receipt. */
  async submit(tx: Uint8Array | object, opts: { url?: string } = {}): Promise<VerifiedReceipt> {
    const json = !(tx instanceof Uint8Array);
    const body = json ? new TextEncoder().encode(JSON.stringify(tx)) : tx;
    const receipt = (await this.request("POST", "/v1/transactions", {
      body,
      json,
      url: opts.url,
    })) as ReceiptJson;
    return this.confirmed(verifyReceipt(body, receipt, this.policy));
  }

  private async confirmed(r: VerifiedReceipt): Promise<VerifiedReceipt> {
    if (this.o.confirmReplicas > 1) await this.confirmHeader(r.block, r.headerHash);
    return r;
  }

  /** Proofs of misbehaviour a replica holds, and whether it stopped ordering. */
  async misbehaviour(url?: string): Promise<MisbehaviourReport> {
    return (await this.request("GET", "/v1/misbehaviour", { url })) as MisbehaviourReport;
  }

  /**
   * Asks distinct replicas (confirmReplicas of them, default `replicas`) for block `n`'s header hash and
   * their proofs of misbehaviour; throws FORK_SUSPECTED when one serves another hash or holds a proof
   * that verifies, NOT_CONFIRMED when too few replicas answer. Agreeing on a header hash agrees on the
   * whole chain below it (hash links), so confirming the newest block a client relies on is enough.
   */
  async confirmHeader(n: number, hh: Uint8Array, replicas = this.o.confirmReplicas): Promise<string[]> {
    const confirmed: string[] = [];
    const waitMs = this.o.confirmWaitMs;
    const checker = this.o.counterKeys
      ? new UsigChecker(
          this.o.counterKeys.map((k) => (typeof k === "string" ? fromHexStr(k) : k)),
          { verifyEd25519: (pk, m, sig) => (this.o.verify ?? nobleVerify)(pk, m, sig) },
        )
      : null;
    const start = this.next;
    for (let i = 0; i < this.o.urls.length && confirmed.length < replicas; i++) {
      const url = this.o.urls[(start + i) % this.o.urls.length] as string;
      try {
        const m = await this.misbehaviour(url);
        for (const p of m.proofs ?? []) {
          const why = checker ? checkEquivocationJson(p, checker) : null;
          if (why !== null) {
            this.o.onProblem?.({
              url,
              error: new OrderingClientError("BAD_PROOF", `a proof that does not verify: ${why}`),
            });
            continue;
          }
          throw new OrderingClientError(
            "FORK_SUSPECTED",
            `${url} holds a proof that replica ${p.culprit}'s trusted counter equivocated${checker ? " (verified)" : ""}: no receipt of this cluster can be trusted until an operator resolves it`,
          );
        }
        let b: Block | null = null;
        const deadline = Date.now() + waitMs;
        for (;;) {
          try {
            b = await this.block(n, url);
            break;
          } catch (err) {
            const notYet = err instanceof OrderingClientError && err.code === "BLOCK_NOT_FOUND";
            if (!notYet || Date.now() >= deadline) throw err;
            await new Promise((r) => setTimeout(r, 50));
          }
        }
        if (!bytesEq(headerHash(b.header, this.hash), hh))
          throw new OrderingClientError(
            "FORK_SUSPECTED",
            `${url} serves another block ${n} (header ${toHexStr(headerHash(b.header, this.hash)).slice(0, 16)}…, expected ${toHexStr(hh).slice(0, 16)}…)`,
          );
        confirmed.push(url);
      } catch (err) {
        if (err instanceof OrderingClientError && err.code === "FORK_SUSPECTED") throw err;
        this.o.onProblem?.({ url, error: err as Error });
      }
    }
    if (confirmed.length < replicas)
      throw new OrderingClientError(
        "NOT_CONFIRMED",
        `block ${n}: ${confirmed.length} of the ${replicas} replicas asked confirmed its header hash`,
      );
    return confirmed;
  }

  /** height: certified blocks; writtenHeight: blocks written, some still collecting signatures. */
  async chain(url?: string): Promise<{ height: number; headHash: string | null; writtenHeight: number }> {
    return (await this.request("GET", "/v1/chain", { url })) as {
      height: number;
      headHash: string | null;
      writtenHeight: number;
    };
  }

  /** One block, verified on its own terms (Merkle root and certificate). */
  async block(n: number, url?: string): Promise<Block> {
    const b = blockFromJson(await this.request("GET", `/v1/blocks/${n}`, { url }));
    if (b.header.number !== n)
      throw new BlockVerificationError("BAD_NUMBER", b.header.number, `asked for ${n}`);
    if (n === 0) new ChainVerifier({ ...this.policy, genesisHash: this.o.genesisHash }).next(b);
    else new ChainVerifier({ ...this.policy }, { number: n, previousHash: b.header.previousHash }).next(b);
    return b;
  }

  /** A committed transaction's verified receipt, or undefined when no replica knows it. */
  async transaction(tx: Uint8Array, url?: string): Promise<VerifiedReceipt | undefined> {
    try {
      const r = (await this.request("GET", `/v1/transactions/${toHexStr(this.hash(tx))}`, {
        url,
      })) as ReceiptJson;
      return await this.confirmed(verifyReceipt(tx, r, this.policy));
    } catch (err) {
      if (err instanceof OrderingClientError && err.code === "TX_NOT_FOUND") return undefined;
      throw err;
    }
  }

  /**
   * Streams verified blocks in order. On a connection failure or a block that does not verify (reported
   * through onProblem), continues from the next expected block at the next replica; gives up after every
   * replica failed in a row.
   */
  async *blocks(seek: Seek = {}): AsyncGenerator<Block> {
    let start = seek.start ?? "oldest";
    const verifier = { v: null as ChainVerifier | null };
    let failures = 0;
    let lastError: Error | null = null;
    while (failures < this.o.urls.length) {
      const url = this.o.urls[this.next++ % this.o.urls.length] as string;
      try {
        for await (const b of this.deliverFrom(url, { ...seek, start })) {
          if (!verifier.v) {
            verifier.v =
              b.header.number === 0
                ? new ChainVerifier({ ...this.policy, genesisHash: this.o.genesisHash })
                : new ChainVerifier(
                    { ...this.policy },
                    { number: b.header.number, previousHash: b.header.previousHash },
                  );
          }
          verifier.v.next(b);
          failures = 0;
          start = b.header.number + 1;
          yield b;
          if (typeof seek.stop === "number" && b.header.number >= seek.stop) return;
        }
        return;
      } catch (err) {
        if (err instanceof OrderingClientError && err.code === "NOT_READY") throw err;
        lastError = err as Error;
        failures++;
        this.o.onProblem?.({ url, error: err as Error });
      }
    }
    throw lastError ?? new OrderingClientError("UNAVAILABLE", "no replica could serve the blocks");
  }

  /** A pipelined submission stream over one WebSocket (one ack per transaction). */
  async submitStream(url?: string): Promise<SubmitStream> {
    const Ctor = await this.webSocketCtor();
    const ws = new Ctor(`${wsBase(url ?? this.pick())}/v1/submit`);
    ws.binaryType = "arraybuffer";
    await opened(ws);
    return new SubmitStream(ws, this.policy);
  }

  // ------------------------------------------------------------------ internals

  private pick(): string {
    return this.o.urls[this.next++ % this.o.urls.length] as string;
  }

  private async request(
    method: string,
    path: string,
    opts: { body?: Uint8Array; json?: boolean; url?: string },
  ): Promise<unknown> {
    const f = this.o.fetch ?? (await this.tls())?.fetch ?? fetch;
    const tries = opts.url ? 1 : this.o.urls.length;
    let last: Error | null = null;
    for (let i = 0; i < tries; i++) {
      const url = opts.url ?? this.pick();
      let res: Response;
      try {
        res = await f(url + path, {
          method,
          body: opts.body,
          headers: opts.body
            ? { "content-type": opts.json ? "application/json" : "application/octet-stream" }
            : {},
        });
      } catch (err) {
        const refused = (await this.tls())?.isCertificateError(err) === true;
        last = new OrderingClientError(
          refused ? "CERTIFICATE_REFUSED" : "UNREACHABLE",
          `${url}: ${(err as Error).message}${refused ? " (the replica's TLS certificate was refused: not of the client's CA, expired, or for another host)" : ""}`,
        );
        this.o.onProblem?.({ url, error: last });
        continue;
      }
      const text = await res.text();
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new OrderingClientError(
          "BAD_RESPONSE",
          `${url}${path}: not JSON (HTTP ${res.status})`,
          res.status,
        );
      }
      if (res.ok) return body;
      const e = (body as { error?: { code?: string; message?: string } }).error;
      const err = new OrderingClientError(
        e?.code ?? "HTTP_ERROR",
        e?.message ?? `HTTP ${res.status}`,
        res.status,
      );
      // Another replica may do better when this one has no quorum or is overloaded.
      if (res.status === 503 && i + 1 < tries) {
        last = err;
        continue;
      }
      throw err;
    }
    throw last ?? new OrderingClientError("UNREACHABLE", "no replica reachable");
  }

  private async webSocketCtor(): Promise<WebSocketCtor> {
    return this.o.WebSocket ?? (await this.tls())?.WebSocket ?? loadWebSocket();
  }

  /** With the `ca` option: the fetch and WebSocket that trust it alone (null without it). */
  private tls(): Promise<CaTransport | null> {
    const ca = this.o.ca;
    if (ca === undefined) return Promise.resolve(null);
    this.caTransport ??= loadCaTransport(ca).then((t) => {
      if (!t)
        throw new OrderingClientError(
          "BAD_OPTIONS",
          "the ca option needs Node: a browser checks certificates against its own trust store",
        );
      return t;
    });
    return this.caTransport;
  }

  private async *deliverFrom(url: string, seek: Seek): AsyncGenerator<Block> {
    yield* deliverStream(await this.webSocketCtor(), url, seek);
  }
}

export { bytesEq, fromHexStr, headerHash, toHexStr };
