// A replica run by an attacker who slows the cluster down without stopping it (a performance attack, as
// in Aardvark and Prime): the real node, except that while it leads, its proposals (hybrid PREPAREs,
// PBFT PRE-PREPAREs) leave one at a time, SLOW_PROPOSAL_MS apart, in order; everything else it sends
// at once. Its followers see a leader that keeps proposing, far below what their pending requests
// allow. Speaks node-process.ts's protocol ({type: "ready"}, {type: "event"}), so LocalCluster's
// NodeProcess runs it as a variant (tests, the slow-leader bench).

import { resolveNodeConfig } from "../../src/node/config.ts";
import { OrdererNode } from "../../src/node/orderer-node.ts";
import { MESSAGE_TYPES, WIRE_VERSION } from "../../src/transport/codec.ts";
import type { Transport } from "../../src/transport/transport.ts";
import { createLogger } from "../../src/util/log.ts";
import { takeHandOff } from "../../src/util/private-files.ts";

const send = (m: unknown) => process.send?.(m);
const REPORTED = new Set(["view-change-started", "new-view"]);
/** Proposals held at most (retransmissions beyond are dropped, as a slow leader may). */
const HELD_MAX = 10_000;

async function main(): Promise<void> {
  // The config comes in a private file the parent wrote (node-process.ts's protocol), read and removed.
  const { cluster, node: settings } = takeHandOff(process.env.ORDERER_NODE_FILE ?? "") as {
    cluster: Parameters<typeof resolveNodeConfig>[0];
    node: Parameters<typeof resolveNodeConfig>[1];
  };
  const node = resolveNodeConfig(cluster, settings);
  const delayMs = Number(process.env.SLOW_PROPOSAL_MS ?? 100);
  const held: (() => void)[] = [];
  let timer: NodeJS.Timeout | null = null;
  let sent = 0;
  const pump = () => {
    timer = null;
    const next = held.shift();
    if (!next) return;
    next();
    sent++;
    if (sent % 10 === 0) send({ type: "slow-leader", sent, held: held.length });
    timer = setTimeout(pump, delayMs);
  };
  // A frame is version ‖ type tag ‖ body (codec.ts): the tag tells a proposal without decoding it.
  const tags = new Set(["h-prepare", "p-pre-prepare"].map((t) => MESSAGE_TYPES.indexOf(t as never) + 1));
  const isProposal = (frame: Uint8Array): boolean =>
    frame[0] === WIRE_VERSION && tags.has(frame[1] as number);
  const hold = (frame: Uint8Array, go: () => void): boolean => {
    if (!isProposal(frame)) return false;
    if (held.length < HELD_MAX) held.push(go);
    timer ??= setTimeout(pump, delayMs);
    return true;
  };
  const wrap = (t: Transport): Transport =>
    new Proxy(t, {
      get(target, prop, receiver) {
        if (prop === "broadcast")
          return (frame: Uint8Array) => {
            if (!hold(frame, () => target.broadcast(frame))) target.broadcast(frame);
          };
        if (prop === "send")
          return (to: number, frame: Uint8Array) => {
            if (!hold(frame, () => target.send(to, frame))) target.send(to, frame);
          };
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  const n = await OrdererNode.start(cluster, node, {
    logger: createLogger(node.logLevel, { replica: node.id, attacker: "slow-leader" }),
    wrapTransport: wrap,
    onEvent: (e) => {
      if (REPORTED.has(e.kind)) send({ type: "event", event: e });
    },
  });
  const stop = () => {
    if (timer) clearTimeout(timer);
    n.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", stop);
  process.on("disconnect", stop);
  send({ type: "ready" });
}

main().catch((err: unknown) => {
  send({ type: "error", message: (err as Error).stack ?? String(err) });
  process.exit(1);
});
