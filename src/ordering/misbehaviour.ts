// Proofs of misbehaviour as JSON (GET /v1/misbehaviour, the CLI, the client). A proof is checked with
// public information only: the cluster file's counter keys (checkEquivocation).

import {
  type CertChecker,
  type CounterCert,
  checkEquivocation,
  type EquivocationProof,
} from "../bft/trusted.ts";
import { fromHexStr, toHexStr } from "./block.ts";

export interface CertJson {
  subsystem: number;
  counter: number;
  value: { view: number; slot: number };
  prev?: { view: number; slot: number };
  sig: string;
}

export interface EquivocationJson {
  /** The replica whose trusted counter certified two messages with one value. */
  culprit: number;
  kind: "counter-equivocation";
  a: { cert: CertJson; digest: string };
  b: { cert: CertJson; digest: string };
}

/** What GET /v1/misbehaviour answers. */
export interface MisbehaviourReport {
  /** Why this replica stopped ordering, or null. */
  halted: string | null;
  proofs: EquivocationJson[];
}

function certToJson(c: CounterCert): CertJson {
  const out: CertJson = {
    subsystem: c.subsystem,
    counter: c.counter,
    value: { ...c.value },
    sig: toHexStr(c.sig),
  };
  if (c.prev) out.prev = { ...c.prev };
  return out;
}

function certFromJson(j: CertJson): CounterCert {
  const base = {
    subsystem: j.subsystem,
    counter: j.counter,
    value: { view: j.value.view, slot: j.value.slot },
  };
  const sig = fromHexStr(j.sig);
  return j.prev ? { ...base, prev: { view: j.prev.view, slot: j.prev.slot }, sig } : { ...base, sig };
}

export function equivocationToJson(culprit: number, p: EquivocationProof): EquivocationJson {
  return {
    culprit,
    kind: "counter-equivocation",
    a: { cert: certToJson(p.a.cert), digest: toHexStr(p.a.digest) },
    b: { cert: certToJson(p.b.cert), digest: toHexStr(p.b.digest) },
  };
}

/** The proof in a JSON report, or a reason it is malformed. */
export function equivocationFromJson(j: EquivocationJson): EquivocationProof | string {
  try {
    return {
      a: { cert: certFromJson(j.a.cert), digest: fromHexStr(j.a.digest) },
      b: { cert: certFromJson(j.b.cert), digest: fromHexStr(j.b.digest) },
    };
  } catch (err) {
    return `malformed proof (${(err as Error).message})`;
  }
}

/** null when `j` proves that replica `j.culprit`'s counter equivocated, else why not. */
export function checkEquivocationJson(j: EquivocationJson, checker: CertChecker): string | null {
  const p = equivocationFromJson(j);
  if (typeof p === "string") return p;
  if (p.a.cert.subsystem !== j.culprit) return "the proof names another culprit than its certificates";
  return checkEquivocation(p, checker);
}
