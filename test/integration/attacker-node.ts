// Replica 0 run by an attacker, for the hybrid-mode attack tests: the real node (its config, key and
// data directory are the attacker's), with its messages rewritten on the way out. As leader it
// equivocates on every PREPARE: the victim (replica 2) gets another batch ("transfer 100 to BOB") for
// the same seq, certified as well as the attacker can:
//   ATTACK=honest-counter  its counter process is out of reach: it asks the counter to certify the same
//                          value again (refused), and sends the PREPARE with the original certificate
//                          or one signed with the replica's own key instead (neither verifies);
//   ATTACK=stolen-counter  it also holds the counter's key (ORDERER_STOLEN_COUNTER_SEED): the second
//                          certificate is valid. This is what hybrid mode cannot prevent, only detect.
// It also signs every block header the victim asks it to, so the victim's fork gets f+1 signatures.
// Reports {type: "attack", ...counts} to its parent after each forged PREPARE.

import { Digests, ORDER_COUNTER } from "../../src/bft/index.ts";
import { type CounterCert, certBytes } from "../../src/bft/trusted.ts";
import { RemoteCounter } from "../../src/counter/client.ts";
import { nodeCrypto, signEd25519 } from "../../src/crypto/node-crypto.ts";
import { gatewayClientId } from "../../src/node/config.ts";
import { OrdererNode } from "../../src/node/orderer-node.ts";
import { signedRequest } from "../../src/ordering/gateway.ts";
import { APP_FRAME_TAG } from "../../src/ordering/ledger.ts";
import { encodeTxBatch } from "../../src/ordering/tx-batch.ts";
import { decodeMessage, encodeMessage } from "../../src/transport/codec.ts";
import type { Transport } from "../../src/transport/transport.ts";
import { createLogger } from "../../src/util/log.ts";
import { takeHandOff } from "../../src/util/private-files.ts";

const VICTIM = 2;
const hex = (s: string) => Uint8Array.from(Buffer.from(s, "hex"));
const send = (m: unknown) => process.send?.(m);

async function main(): Promise<void> {
  // biome-ignore lint/suspicious/noExplicitAny: the parent's own config, as node-process.ts reads it
  const { cluster, node } = takeHandOff(process.env.ORDERER_NODE_FILE ?? "") as any;
  const attack = process.env.ATTACK === "stolen-counter" ? "stolen-counter" : "honest-counter";
  const stolen = process.env.ORDERER_STOLEN_COUNTER_SEED
    ? hex(process.env.ORDERER_STOLEN_COUNTER_SEED)
    : null;
  const seed = hex(node.seed);
  const digests = new Digests(nodeCrypto);
  const counts = { forged: 0, counterRefused: 0, counterCertified: 0, headersSigned: 0 };
  // A second link to our own counter, as an attacker in our process can open (it has our key).
  const counter =
    attack === "honest-counter"
      ? await RemoteCounter.open({
          socketPath: node.counterSocket,
          id: node.id,
          counterPublicKey: hex(cluster.replicas[node.id].counterPublicKey),
          replicaSeed: seed,
        })
      : null;
  const forged = new Map<string, Uint8Array>();

  const forge = (frame: Uint8Array): Uint8Array | null => {
    const res = decodeMessage(frame);
    if (!res.ok || res.msg.type !== "h-prepare") return null;
    const p = res.msg;
    const key = `${p.view}/${p.seq}`;
    const done = forged.get(key);
    if (done) return done;
    const op = encodeTxBatch([new TextEncoder().encode(`transfer 100 to BOB (seq ${p.seq})`)]);
    const req = signedRequest(gatewayClientId(node.id), 1_000_000 + p.seq, op, digests, (d) =>
      signEd25519(seed, d),
    );
    const batch = { requests: [req] };
    const digest = digests.hPrepare(p.view, p.seq, digests.batch(batch));
    const value = { view: p.view, slot: p.seq + 1 };
    let cert: CounterCert;
    if (stolen) {
      const c = { subsystem: node.id, counter: ORDER_COUNTER, value };
      cert = { ...c, sig: signEd25519(stolen, certBytes(c, digest)) };
    } else {
      try {
        cert = (counter as RemoteCounter).certifyIndependent(ORDER_COUNTER, value, digest);
        counts.counterCertified++; // must never happen: the counter certified a value twice
      } catch {
        counts.counterRefused++;
        // Alternate between the two certificates an attacker without the counter key can make.
        cert =
          p.seq % 2 === 0 ? p.cert : { ...p.cert, sig: signEd25519(seed, certBytes({ ...p.cert }, digest)) };
      }
    }
    const out = encodeMessage({ ...p, batch, cert });
    forged.set(key, out);
    counts.forged++;
    send({ type: "attack", ...counts });
    return out;
  };

  const wrap = (t: Transport): Transport =>
    new Proxy(t, {
      get(target, prop, receiver) {
        if (prop === "broadcast")
          return (frame: Uint8Array) => {
            const f = forge(frame);
            if (!f) return target.broadcast(frame);
            for (const r of cluster.replicas as { id: number }[])
              if (r.id !== target.self) target.send(r.id, r.id === VICTIM ? f : frame);
          };
        if (prop === "send")
          return (to: number, frame: Uint8Array) => target.send(to, (to === VICTIM && forge(frame)) || frame);
        if (prop === "onFrame")
          return (handler: (from: number, frame: Uint8Array) => void) =>
            target.onFrame((from, frame) => {
              // The victim asks for (or sends) signatures over its block: sign whatever header it has.
              if (
                from === VICTIM &&
                frame[0] === APP_FRAME_TAG &&
                (frame[1] === 1 || frame[1] === 2) &&
                frame.length === 2 + 8 + 32 + 64
              ) {
                const reply = frame.slice();
                reply[1] = 1;
                reply.set(signEd25519(seed, frame.subarray(10, 42)), 42);
                target.send(VICTIM, reply);
                counts.headersSigned++;
              }
              handler(from, frame);
            });
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });

  await OrdererNode.start(cluster, node, {
    logger: createLogger(node.logLevel ?? "warn", { replica: node.id, attacker: attack }),
    wrapTransport: wrap,
  });
  send({ type: "ready" });
}

main().catch((err: unknown) => {
  send({ type: "error", message: (err as Error).stack ?? String(err) });
  process.exit(1);
});
