// Real protocol messages of both modes, collected from short simulator runs, one list per type.

import type { Message, Mode } from "../../src/bft/index.ts";
import { DEFAULT_SIM, Simulation } from "../sim/world.ts";

export function collectCorpus(perType = 40): Map<Message["type"], Message[]> {
  const byType = new Map<Message["type"], Message[]>();
  for (const mode of ["hybrid", "pbft"] as Mode[]) {
    for (const seed of [3, 5, 8]) {
      const sim = new Simulation({ ...DEFAULT_SIM, seed, mode, steps: 1500, byzantine: "none" });
      sim.onSend = (_from, msg) => {
        if (!msg || typeof msg !== "object" || !("type" in msg)) return;
        const list = byType.get(msg.type) ?? [];
        if (list.length < perType) list.push(msg);
        byType.set(msg.type, list);
      };
      sim.run();
    }
  }
  // Honest runs never prove an equivocation: make an h-proof of the right shape from two certificates.
  if (!byType.has("h-proof")) {
    const p = byType.get("h-prepare")?.[0];
    if (p?.type === "h-prepare") {
      const other = { ...p.cert, sig: p.cert.sig.map((x) => x ^ 0xff) };
      const digest = new Uint8Array(32).fill(7);
      byType.set("h-proof", [
        {
          type: "h-proof",
          culprit: p.cert.subsystem,
          proof: { a: { cert: p.cert, digest }, b: { cert: other, digest: digest.map((x) => x ^ 1) } },
        },
      ]);
    }
  }
  // Only a fork makes a replica send h-certs: make some from the PREPAREs' certificates.
  if (!byType.has("h-certs")) {
    const certs = (byType.get("h-prepare") ?? []).flatMap((p, i) =>
      p.type === "h-prepare" ? [{ cert: p.cert, digest: new Uint8Array(32).fill(i) }] : [],
    );
    byType.set("h-certs", [
      { type: "h-certs", certs },
      { type: "h-certs", certs: [] },
    ]);
  }
  return byType;
}
