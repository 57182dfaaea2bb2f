// The simulated clients: their identities and keys (ed25519, or one MAC key per replica), the requests
// they sign and keep outstanding (a small pipeline each), and their retries: like a PBFT client, on a
// timeout a request goes to every replica.

import type { ClientKeys, ClientRequest } from "../../src/bft/index.ts";
import type { Checkers } from "./checkers.ts";
import { type SimClient, type SimContext, SimPart } from "./context.ts";

/** Creates the clients (into ctx.clients) and returns the client keys each replica knows. */
export function createClients(ctx: SimContext): Map<string, ClientKeys>[] {
  const { cfg, crypto, n } = ctx;
  const clientKeys: Map<string, ClientKeys>[] = [...Array(n)].map(() => new Map());
  for (let c = 0; c < cfg.clients; c++) {
    const ident = crypto.newIdentity(`client-${c}`);
    const scheme = cfg.authScheme === "mixed" ? (c % 2 === 0 ? "ed25519" : "mac") : cfg.authScheme;
    const id = `client-${c}`;
    // One session key per (client, replica), in both modes: a replica checks only its own MAC entry.
    const macKeys = [...Array(n).keys()].map((i) => crypto.sha256(new TextEncoder().encode(`mac:${c}:${i}`)));
    ctx.clients.push({ id, scheme, secret: ident.secret, macKeys, nextReqNo: 1, outstanding: new Map() });
    for (let i = 0; i < n; i++) {
      clientKeys[i]?.set(id, { ed25519PublicKey: ident.publicKey, macKey: macKeys[i] as Uint8Array });
    }
  }
  return clientKeys;
}

export class ClientDriver extends SimPart {
  private readonly checks: Checkers;
  /** Hands a request to replica `to` (if it runs) and drains it. */
  private readonly submit: (to: number, req: ClientRequest) => void;
  /** Requests the clients made. */
  requests = 0;

  constructor(ctx: SimContext, checks: Checkers, submit: (to: number, req: ClientRequest) => void) {
    super(ctx);
    this.checks = checks;
    this.submit = submit;
  }

  private makeRequest(c: SimClient): ClientRequest {
    const reqNo = c.nextReqNo++;
    const op = this.rng.bytes(this.cfg.opBytes);
    const base = { clientId: c.id, reqNo, op };
    const d = this.ctx.digests.request({ ...base, auth: { scheme: "mac", macs: [] } });
    const auth =
      c.scheme === "ed25519"
        ? { scheme: "ed25519" as const, sig: this.ctx.crypto.sign(c.secret, d) }
        : { scheme: "mac" as const, macs: c.macKeys.map((k) => this.ctx.crypto.hmacSha256(k, d)) };
    this.checks.genuine.set(`${c.id}#${reqNo}`, op);
    this.requests++;
    return { ...base, auth };
  }

  /** Drops answered requests, retries late ones, and sends new ones until the last quarter of the run. */
  act(): void {
    const stopNew = this.cfg.steps - Math.floor(this.cfg.steps * 0.25);
    const need = this.cfg.f + 1;
    for (const c of this.ctx.clients) {
      for (const [reqNo, o] of [...c.outstanding]) {
        if (this.checks.answered(`${c.id}#${reqNo}`, need)) {
          c.outstanding.delete(reqNo);
          continue;
        }
        if (this.now >= o.retryAt) {
          // Like a PBFT client: on timeout, send to every replica.
          o.retryAt = this.now + 80;
          this.ctx.count("client-retry");
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
}
